"""Dense per-token shaping vs the sparse task reward: tokens PPO needs to reach a fixed reward level.

Protocol (fixed before any run of this script; committed with it):

* Tasks: ``RLHF/Sentiment-v0`` and ``RLHF/Length-v0`` on the embedded model, default task settings.
* Agent: the custom PPO with preset ``lm-sentiment-demo`` (lm-default with lr 1e-4: 64 episodes per
  batch, gamma 1, lambda 0.95, 4 epochs x 4 minibatches, fixed KL coefficient 0.05 to the initial
  model), one torch thread, seeds 0, 1, 2.
* Conditions: ``sparse`` = the env as registered (task reward on the last token); ``dense`` = the
  same env with ``shaping={"potential": "scripted"}``: potential-based shaping
  ``F_t = Phi(s_{t+1}) - Phi(s_t)`` with ``gamma = 1`` (PPO's discount), ``Phi`` = the task's own
  score of each prefix as if it ended there (VADER of the partial text; the word-count score of the
  partial text). Everything else is identical, seeds included.
* Measure: after each PPO iteration, the mean *task* reward (``reward_task``: the unshaped score,
  never including shaping) of that iteration's episodes; smoothed as the mean of the last two
  iterations. "Tokens to level" = generated tokens (``num_timesteps``) at the first iteration whose
  smoothed task reward is >= the level. Levels: **0.60 on Sentiment-v0, 0.60 on Length-v0**
  (base model at about 0.08 and 0.43 respectively). A run that never reaches it within its budget
  is censored: reported as not reached, counted at its budget in the mean (a lower bound), and
  flagged in the table.
* Budget: 12 PPO iterations on Sentiment-v0 (about 17k tokens), 14 on Length-v0 (about 10k
  tokens): chosen so that all 12 runs take about 40 CPU minutes under ``nice -n 10`` on this shared
  2-core machine (a pilot of one unshaped Length-v0 run on seed 99 measured ~13 s per iteration).
* Interval: mean over the 3 seeds with a 95% Student-t interval (:func:`benchmarks.common.mean_ci`).

Run (each task may run in its own process; runs append to ``results/dense_shaping_runs.jsonl`` and
a finished (task, condition, seed) is skipped, so a killed run resumes)::

    nice -n 10 python -m benchmarks.dense_shaping --tasks RLHF/Sentiment-v0
    nice -n 10 python -m benchmarks.dense_shaping --tasks RLHF/Length-v0
    python -m benchmarks.dense_shaping --report   # JSON summary, CSV curves, PNG plot, table

The learned prefix scorer's speed (one pass vs one pass per prefix) is the other part of this
benchmark: ``python -m benchmarks.dense_shaping --prefix-speed``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np

from benchmarks.common import (
    RESULTS,
    init_torch,
    machine_info,
    mean_ci,
    pyplot,
    save_figure,
    write_csv,
    write_json,
)

TASKS = {"RLHF/Sentiment-v0": (0.60, 12), "RLHF/Length-v0": (0.60, 14)}
CONDITIONS = {"sparse": {}, "dense": {"shaping": {"potential": "scripted"}}}
SEEDS = (0, 1, 2)
PRESET = "lm-sentiment-demo"
RUNS = RESULTS / "dense_shaping_runs.jsonl"


def smoothed(values: list[float], k: int = 2) -> list[float]:
    """Mean of the last ``k`` values at each point (fewer at the start)."""
    return [float(np.mean(values[max(0, i - k + 1) : i + 1])) for i in range(len(values))]


def tokens_to_level(steps: list[int], rewards: list[float], level: float) -> int | None:
    """First step whose smoothed reward is >= ``level`` (``None``: never)."""
    for s, r in zip(steps, smoothed(rewards), strict=True):
        if r >= level:
            return int(s)
    return None


def run_one(env_id: str, condition: str, seed: int, iterations: int) -> dict[str, Any]:
    """One PPO run; returns its curve (tokens, task reward, return, KL) and timings."""
    from agents import PPO

    agent = PPO(env_id, preset=PRESET, seed=seed, env_kwargs=CONDITIONS[condition])
    rows: list[dict[str, float]] = []
    cpu0, t0 = time.process_time(), time.perf_counter()

    def record(a: Any, m: dict[str, float]) -> bool:
        rows.append(
            {
                "tokens": int(a.num_timesteps),
                "reward_task": float(m["reward_task"]),
                "mean_return": float(m["mean_return"]),
                "kl_ref": float(m.get("kl_ref", math.nan)),
            }
        )
        return len(rows) < iterations

    agent.learn(10**9, progress_bar=False, callback=record)
    return {
        "env_id": env_id,
        "condition": condition,
        "seed": seed,
        "iterations": iterations,
        "preset": PRESET,
        "env_kwargs": CONDITIONS[condition],
        "curve": rows,
        "cpu_seconds": time.process_time() - cpu0,
        "wall_seconds": time.perf_counter() - t0,
        "resolved_config": agent.config.to_json_dict(),
    }


def _done() -> set[tuple[str, str, int]]:
    if not RUNS.exists():
        return set()
    out = set()
    for line in RUNS.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out.add((r["env_id"], r["condition"], r["seed"]))
    return out


def run(tasks: list[str]) -> None:
    done = _done()
    for env_id in tasks:
        _, iterations = TASKS[env_id]
        for seed in SEEDS:
            for condition in CONDITIONS:  # interleaved: both conditions of a seed under similar load
                if (env_id, condition, seed) in done:
                    continue
                r = run_one(env_id, condition, seed, iterations)
                with RUNS.open("a") as fh:
                    fh.write(json.dumps(r) + "\n")
                last = r["curve"][-1]
                print(
                    f"{env_id} {condition} seed {seed}: task reward {last['reward_task']:.3f} after "
                    f"{last['tokens']} tokens ({r['cpu_seconds']:.0f} CPU s)",
                    flush=True,
                )


def report() -> dict[str, Any]:
    runs = [json.loads(x) for x in RUNS.read_text().splitlines() if x.strip()]
    summary: dict[str, Any] = {"machine": machine_info(), "preset": PRESET, "seeds": list(SEEDS), "tasks": {}}
    curves = []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(TASKS), figsize=(5.5 * len(TASKS), 4))
    for ax, (env_id, (level, _)) in zip(np.atleast_1d(axes), TASKS.items(), strict=True):
        summary["tasks"][env_id] = {"level": level, "conditions": {}}
        for condition, colour in zip(CONDITIONS, ("tab:blue", "tab:orange"), strict=True):
            rs = sorted(
                (r for r in runs if r["env_id"] == env_id and r["condition"] == condition),
                key=lambda r: r["seed"],
            )
            if not rs:
                continue
            per_seed, reached = [], []
            for r in rs:
                steps = [c["tokens"] for c in r["curve"]]
                rew = [c["reward_task"] for c in r["curve"]]
                t = tokens_to_level(steps, rew, level)
                reached.append(t is not None)
                per_seed.append(t if t is not None else steps[-1])
                ax.plot(
                    steps, smoothed(rew), color=colour, alpha=0.7, label=condition if r is rs[0] else None
                )
                for c, s in zip(r["curve"], smoothed(rew), strict=True):
                    curves.append(
                        {
                            "env_id": env_id,
                            "condition": condition,
                            "seed": r["seed"],
                            **c,
                            "reward_task_smoothed": s,
                        }
                    )
            mean, half = mean_ci(per_seed)
            final = [r["curve"][-1]["reward_task"] for r in rs]
            fmean, fhalf = mean_ci(final)
            summary["tasks"][env_id]["conditions"][condition] = {
                "tokens_to_level": per_seed,
                "reached": reached,
                "tokens_mean": mean,
                "tokens_ci95": half,
                "final_reward_task": final,
                "final_mean": fmean,
                "final_ci95": fhalf,
                "cpu_seconds": sum(r["cpu_seconds"] for r in rs),
                "seeds": [r["seed"] for r in rs],
            }
        ax.axhline(level, color="grey", ls="--", lw=1)
        ax.set_title(f"{env_id} (level {level})")
        ax.set_xlabel("generated tokens")
        ax.set_ylabel("task reward (mean of last 2 iterations)")
        ax.legend()
    save_figure(fig, RESULTS / "dense_shaping.png")
    write_csv(RESULTS / "dense_shaping_curves.csv", curves)
    write_json(RESULTS / "dense_shaping.json", summary)
    print(
        "| task | condition | tokens to level (mean ± 95% CI) | per seed | final task reward (mean ± 95% CI) |"
    )
    print("|---|---|---|---|---|")
    for env_id, t in summary["tasks"].items():
        for condition, c in t["conditions"].items():
            seeds = ", ".join(
                f"{x}" + ("" if ok else " (not reached)")
                for x, ok in zip(c["tokens_to_level"], c["reached"], strict=True)
            )
            print(
                f"| {env_id} (level {t['level']}) | {condition} | {c['tokens_mean']:.0f} ± {c['tokens_ci95']:.0f} | {seeds} | "
                f"{c['final_mean']:.3f} ± {c['final_ci95']:.3f} |"
            )
    return summary


def prefix_speed(n_episodes: int = 64, rounds: int = 5) -> dict[str, Any]:
    """The learned prefix scorer on ``n_episodes`` completions the embedded model wrote for
    RLHF/Sentiment-v0 prompts, scored by a reward model on the embedded model: ``one_pass``
    (:meth:`LearnedPrefixScorer.score_prefixes`: one causal forward per batch of 64 episodes, head at
    every position) vs ``per_prefix_length`` (one forward per prefix length, each over all
    episodes) vs ``per_prefix_each_episode`` (one forward per prefix of each episode: scoring
    prefixes one by one). The three run interleaved, ``rounds`` times, in one process; the report
    gives best and median seconds, their ratios to one_pass, and the largest difference of each
    table from one_pass's."""
    import gymnasium as gym
    import torch

    import rlhf_envs  # noqa: F401
    from rlhf_envs.feedback.base import Episode
    from rlhf_envs.feedback.learned import RewardModel
    from rlhf_envs.feedback.prefix import LearnedPrefixScorer, as_batch
    from rlhf_envs.lm.sampling import sample_with_logprobs

    env = gym.make("RLHF/Sentiment-v0", ref_logprobs=False)
    task = env.unwrapped.task
    prompts = []
    for i in range(n_episodes):
        _, info = env.reset(seed=i)
        prompts.append(task.prompt_from_text(info["prompt"]))
    tok = task.tokenizer
    comps, _ = sample_with_logprobs(
        task.lm,
        [p.ids for p in prompts],
        task.max_new_tokens,
        tok.eos_id,
        torch.Generator().manual_seed(0),
        tok.vocab_size,
    )
    episodes = [
        Episode(p.text, tok.decode(c), p.ids, tuple(c), bool(c) and c[-1] == tok.eos_id, {}, i)
        for i, (p, c) in enumerate(zip(prompts, comps, strict=True))
    ]
    batch = as_batch(episodes, task.tokenizer.pad_id)
    rm = RewardModel(seed=0)
    scorer = LearnedPrefixScorer(rm, task.tokenizer)

    def one_by_one(batch: Any) -> np.ndarray:
        out = np.zeros((len(batch), int(batch.completion_lengths.max()) + 1), dtype=np.float32)
        for b in range(len(batch)):
            ids, ends = scorer.aligner.align(
                batch.prompt_ids[b, : batch.prompt_lengths[b]],
                batch.completion_ids[b, : batch.completion_lengths[b]],
            )
            for t, e in enumerate(ends):
                out[b, t] = rm.score_prefixes([ids[:e]])[0][-1]
        return out

    methods = {
        "one_pass": scorer.score_prefixes,
        "per_prefix_length": scorer.score_prefixes_one_by_one,
        "per_prefix_each_episode": one_by_one,
    }
    times: dict[str, list[float]] = {k: [] for k in methods}
    tables = {}
    for _ in range(rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            tables[name] = fn(batch)
            times[name].append(time.perf_counter() - t0)
    diff = {k: float(np.abs(tables[k] - tables["one_pass"]).max()) for k in methods}
    best = {k: min(v) for k, v in times.items()}
    med = {k: float(np.median(v)) for k, v in times.items()}
    res = {
        "machine": machine_info(),
        "episodes": len(batch),
        "prefixes": int((batch.completion_lengths + 1).sum()),
        "mean_tokens_per_episode": float((batch.prompt_lengths + batch.completion_lengths).mean()),
        "rounds": rounds,
        "seconds_best": best,
        "seconds_median": med,
        "speedup_best": {k: best[k] / best["one_pass"] for k in methods},
        "speedup_median": {k: med[k] / med["one_pass"] for k in methods},
        "max_abs_difference_from_one_pass": diff,
    }
    write_json(RESULTS / "dense_prefix_speed.json", res)
    print(
        json.dumps(
            {
                k: res[k]
                for k in (
                    "episodes",
                    "prefixes",
                    "seconds_median",
                    "speedup_median",
                    "max_abs_difference_from_one_pass",
                )
            },
            indent=1,
        )
    )
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--report", action="store_true", help="summarise the runs so far (no training)")
    p.add_argument("--prefix-speed", action="store_true", help="time the learned prefix scorer")
    args = p.parse_args()
    init_torch(1)
    if args.prefix_speed:
        prefix_speed()
    elif args.report:
        report()
    else:
        run(args.tasks)


if __name__ == "__main__":
    main()
