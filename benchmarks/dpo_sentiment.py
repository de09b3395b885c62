"""DPO (and IPO) against PPO on a reward model fitted from the same comparisons, on ``RLHF/Sentiment-v0``.

The question: given one budget of pairwise comparisons from a (simulated) human, does training the
policy directly on them (DPO, offline) raise the task reward, and how does it compare with the
classic route (fit a reward model on the comparisons, then PPO against it)?

Protocol (written and committed before any run of this script)
---------------------------------------------------------------

For each seed ``s`` in 0, 1, 2, on the embedded model:

1. **Comparisons.** The base model (the initial policy, which is also every route's frozen
   reference) samples two completions (temperature 1) for each of ``--pairs`` N = 512 prompts
   (:func:`agents.preference_data.sample_comparisons`, prompt seeds derived from ``s``). The task's
   simulated human labels every pair: :class:`~rlhf_envs.feedback.simulated.SimulatedHuman` over the
   task's gold utility (VADER compound score, what ``RLHF/Sentiment-v0`` pays) with the RLHF loop's
   default rater ``"Mistake"`` (``RLHFConfig.rater``), seeded with ``s``. Both routes get exactly these
   N labelled pairs.
2. **DPO** (preset ``lm-sentiment-dpo``: beta 0.1, sigmoid loss, 16 pairs per step, Adam lr 1e-4,
   the lr of ``make demo``'s PPO) trained for ``--update-tokens`` = 80,000 completion tokens (about
   3.6 epochs of the ~22k completion tokens of 512 pairs). **IPO** (the same preset with
   ``loss="ipo"``) is run beside it and reported, but is not part of the decision rule.
3. **PPO on a reward model** (the RLHF loop's recipe): a reward model fitted from scratch on the N
   pairs by :func:`agents.rlhf.reward_fitting.fit_reward_model` with ``RLHFConfig``'s defaults (3
   bootstrap members, 3 epochs, lr 3e-4, 10% random-label fraction), then PPO with the loop's preset
   (``lm-rlhf-loop``: 64 episodes per batch, 4 epochs x 4 minibatches, lr 1e-4, KL coefficient 0.05)
   on ``RLHF/SimulatedHuman-v0`` paying that reward model, for ``--ppo-tokens`` = 20,000 generated
   tokens (``make demo``'s budget).
4. **Token budget.** PPO passes its 20,000 generated tokens through 4 epochs of updates, i.e.
   80,000 completion tokens through forward and backward passes; DPO gets the same 80,000. The
   comparisons themselves (~22k tokens sampled by the base model) are shared by both routes.
5. **Evaluation.** Before training (the base model) and after each route: 128 sampled completions
   (temperature 1) of the same prompts (env seed 999), on ``RLHF/Sentiment-v0``: the task reward
   (the gold VADER score, never the reward model's), the exact KL to the reference summed over the
   completion, and the generation metrics (:mod:`agents.generation_metrics`). CPU seconds: the
   process's CPU time in each route's fitting and training.

Decision rule (fixed before the runs)
-------------------------------------

* "DPO raises the task reward" holds if the reward after DPO exceeds the base model's on all 3
  seeds (the issue's requirement), likewise for PPO-on-RM.
* DPO vs PPO-on-RM: the per-seed difference of task reward after training (paired: same seed, same
  comparisons). One route is called better if the mean difference exceeds twice its standard error
  over the 3 seeds; otherwise "not resolved at 3 seeds". The KL each route spent is reported beside
  it; a route that has both the higher mean reward and the lower mean KL is said to dominate at
  this budget; otherwise the comparison is between different points of the reward-KL trade-off,
  and is stated as such.

Budget
------

The run must finish by 06:00 UTC on about half of a 2-core machine (one torch thread, ``nice``). A
1-seed timing run (``--seeds 0``) comes first; if it takes more than 15 minutes of wall time, the
real run uses N = 256 and halves both token budgets (written here before the real run); the
timing run's figures are not reported as results.

    nice -n 10 python -m benchmarks.dpo_sentiment [--seeds 0 1 2] [--pairs 512]

Writes ``benchmarks/results/dpo_sentiment.json`` and prints one line per route and seed and a
summary.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from typing import Any

from benchmarks.common import RESULTS, init_torch

OUT = RESULTS / "dpo_sentiment.json"
ENV_ID = "RLHF/Sentiment-v0"
TRAIN_ENV_ID = "RLHF/SimulatedHuman-v0"
EVAL_SEED = 999
METRICS = (
    "mean_return",
    "reward_task",
    "kl_ref",
    "distinct_1",
    "distinct_2",
    "mean_length",
    "eos_rate",
    "ref_perplexity",
)
ROUTES = ("dpo", "ipo", "ppo_rm")


def _env(env_id: str, n: int, **kw: Any) -> Any:
    import gymnasium as gym

    import rlhf_envs  # noqa: F401

    return gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", ref_logprobs=False, **kw)


def _evaluate(agent: Any, n: int) -> dict[str, float]:
    env = _env(ENV_ID, min(n, 64), model="default")
    try:
        out = agent.evaluate(n, deterministic=False, seed=EVAL_SEED, env=env)
    finally:
        env.close()
    return {k: out.get(k) for k in METRICS}


def run_seed(seed: int, pairs: int, update_tokens: int, ppo_tokens: int, eval_episodes: int) -> dict:
    """One seed: the comparisons, then every route; returns the per-route results."""
    import numpy as np

    from agents import DPO, PPO
    from agents.preference_data import PreferencePairs, sample_comparisons
    from agents.rlhf.config import PPO_PRESET, RLHFConfig
    from agents.rlhf.reward_fitting import fit_reward_model
    from agents.rlhf.streams import Stream, stream_seed
    from rlhf_envs.feedback.simulated import SimulatedHuman

    cfg = RLHFConfig(seed=seed)
    out: dict[str, Any] = {"seed": seed}
    dpo = DPO(ENV_ID, seed=seed, preset="lm-sentiment-dpo")
    gold_env = _env(ENV_ID, 1, model="default")
    human = SimulatedHuman(gold_env.task.feedback, cfg.rater, seed=seed)
    gold_env.close()
    w0 = time.perf_counter()
    a, b, answers, info = sample_comparisons(dpo, pairs, human, seed=seed, env_id=ENV_ID)
    data = PreferencePairs.from_comparisons(a, b, answers, source=f"SimulatedHuman({cfg.rater}), seed {seed}")
    out["data"] = {
        **data.summary(),
        "label_gold_agreement": info["label_gold_agreement"],
        "gold_a_mean": float(np.mean(info["gold_a"])),
        "sample_wall_seconds": time.perf_counter() - w0,
    }
    out["before"] = _evaluate(dpo, eval_episodes)
    print(
        f"seed {seed}: {len(data)} pairs ({out['data']['skipped']} skipped, {out['data']['ties']} ties), "
        f"labels agree with gold on {info['label_gold_agreement']:.3f}; base reward "
        f"{out['before']['reward_task']:+.3f}",
        flush=True,
    )

    for route in ("dpo", "ipo"):
        agent = dpo if route == "dpo" else DPO(ENV_ID, seed=seed, preset="lm-sentiment-dpo", loss="ipo")
        c0, w0 = time.process_time(), time.perf_counter()
        agent.set_preferences(data)
        agent.learn(update_tokens, progress_bar=False)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        out[route] = {
            "preset": agent.config.preset,
            "loss": agent.config.loss,
            "update_tokens": agent.num_timesteps,
            "steps": agent.iteration,
            "epochs": agent.pairs_seen / len(data),
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "after": _evaluate(agent, eval_episodes),
            "config": {k: v for k, v in agent.config.to_json_dict().items() if k != "model"},
        }
        _report(route, seed, out["before"], out[route])
        agent.close()

    c0, w0 = time.process_time(), time.perf_counter()
    fit_seed = stream_seed(seed, 0, Stream.REWARD_MODEL_FIT)  # the loop's seed for round 0's fit
    reward_model, fit_log = fit_reward_model(cfg, a, b, answers.prob_a(), seed=fit_seed)
    fit_cpu = time.process_time() - c0
    with tempfile.TemporaryDirectory(prefix="dpo-bench-rm-") as rm_dir:
        reward_model.save(rm_dir)
        env = _env(TRAIN_ENV_ID, cfg.n_envs, model="default", proxy=rm_dir)
        ppo = PPO(env, seed=seed, model="default", preset=PPO_PRESET)
        ppo.learn(ppo_tokens, progress_bar=False)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        after = _evaluate(ppo, eval_episodes)
        env.close()
    out["ppo_rm"] = {
        "preset": ppo.config.preset,
        "generated_tokens": ppo.num_timesteps,
        "update_tokens": ppo.num_timesteps * ppo.config.n_epochs,
        "iterations": ppo.iteration,
        "rm_fit": fit_log,
        "rm_fit_cpu_seconds": fit_cpu,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "after": after,
        "config": {k: v for k, v in ppo.config.to_json_dict().items() if k != "model"},
    }
    _report("ppo_rm", seed, out["before"], out["ppo_rm"])
    return out


def _report(route: str, seed: int, before: dict, r: dict) -> None:
    a = r["after"]
    print(
        f"{route:6s} seed {seed}: reward {before['reward_task']:+.3f} -> {a['reward_task']:+.3f}  "
        f"KL {a['kl_ref']:.2f}  distinct-2 {before['distinct_2']:.2f} -> {a['distinct_2']:.2f}  "
        f"length {a['mean_length']:.1f}  EOS {a['eos_rate']:.2f}  ref ppl {a['ref_perplexity']:.2f}  "
        f"({r['cpu_seconds']:.0f} CPU s, {r['wall_seconds']:.0f} wall s)",
        flush=True,
    )


def _mean_sd(xs: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.mean(xs),
        "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
        "min": min(xs),
        "max": max(xs),
    }


def summarise(runs: list[dict]) -> dict[str, Any]:
    """Per route: reward before/after, gain, KL (mean, sd over seeds); then the decision rule."""
    summary: dict[str, Any] = {}
    for route in ROUTES:
        gains = [r[route]["after"]["reward_task"] - r["before"]["reward_task"] for r in runs]
        summary[route] = {
            "reward_before": _mean_sd([r["before"]["reward_task"] for r in runs]),
            "reward_after": _mean_sd([r[route]["after"]["reward_task"] for r in runs]),
            "gain": _mean_sd(gains),
            "kl_after": _mean_sd([r[route]["after"]["kl_ref"] for r in runs]),
            "cpu_seconds": _mean_sd([r[route]["cpu_seconds"] for r in runs]),
            "all_seeds_improved": all(g > 0 for g in gains),
        }
    diffs = [r["dpo"]["after"]["reward_task"] - r["ppo_rm"]["after"]["reward_task"] for r in runs]
    mean = statistics.mean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    if abs(mean) > 2 * se:
        verdict = "dpo better" if mean > 0 else "ppo_rm better"
    else:
        verdict = f"not resolved at {len(diffs)} seeds"
    kl_d, kl_p = summary["dpo"]["kl_after"]["mean"], summary["ppo_rm"]["kl_after"]["mean"]
    r_d, r_p = summary["dpo"]["reward_after"]["mean"], summary["ppo_rm"]["reward_after"]["mean"]
    if r_d >= r_p and kl_d <= kl_p:
        dominance = "dpo dominates (higher or equal reward at lower or equal KL)"
    elif r_p >= r_d and kl_p <= kl_d:
        dominance = "ppo_rm dominates (higher or equal reward at lower or equal KL)"
    else:
        dominance = "neither dominates: different points of the reward-KL trade-off"
    summary["decision"] = {
        "dpo_minus_ppo_rm_reward": diffs,
        "mean_difference": mean,
        "standard_error": se,
        "verdict": verdict,
        "dominance": dominance,
        "dpo_raises_reward_on_all_seeds": summary["dpo"]["all_seeds_improved"],
        "ppo_rm_raises_reward_on_all_seeds": summary["ppo_rm"]["all_seeds_improved"],
    }
    return summary


def _write(
    args: argparse.Namespace, argv: list[str] | None, runs: list[dict], summary: dict, wall: float
) -> None:
    from benchmarks.common import load_average

    with open(args.out, "w") as f:
        json.dump(
            {
                "command": " ".join(["python -m benchmarks.dpo_sentiment", *(argv or sys.argv[1:])]),
                "pairs": args.pairs,
                "update_tokens": args.update_tokens,
                "ppo_tokens": args.ppo_tokens,
                "eval_episodes": args.eval_episodes,
                "seeds_done": [r["seed"] for r in runs],
                "wall_seconds": wall,
                "load_average_at_end": load_average(),
                "summary": summary,
                "runs": runs,
            },
            f,
            indent=1,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--update-tokens", type=int, default=80_000)
    parser.add_argument("--ppo-tokens", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=128)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    init_torch(1)
    t0 = time.perf_counter()
    runs = []
    for s in args.seeds:  # the file is rewritten after every seed, so a stopped run keeps its seeds
        runs.append(run_seed(s, args.pairs, args.update_tokens, args.ppo_tokens, args.eval_episodes))
        _write(args, argv, runs, summarise(runs), time.perf_counter() - t0)
    summary = summarise(runs)
    for route in ROUTES:
        s = summary[route]
        print(
            f"{route}: reward {s['reward_before']['mean']:+.3f} -> {s['reward_after']['mean']:+.3f} "
            f"(sd {s['reward_after']['sd']:.3f}; gain {s['gain']['mean']:+.3f}, min {s['gain']['min']:+.3f}), "
            f"KL {s['kl_after']['mean']:.2f} (sd {s['kl_after']['sd']:.2f}), "
            f"{s['cpu_seconds']['mean']:.0f} CPU s per run"
        )
    d = summary["decision"]
    print(
        f"decision: DPO - PPO-on-RM reward {d['mean_difference']:+.3f} (se {d['standard_error']:.3f}): "
        f"{d['verdict']}; {d['dominance']}"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
