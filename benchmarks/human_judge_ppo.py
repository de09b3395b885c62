"""Custom PPO against a judge made of people: RLHF/HumanRatedReview-v0 within the demo's budget.

The env's prompts are openings of held-out real review snippets; its reward is a reward model
fitted by regression on real people's mean ratings of the train split (:mod:`rlhf_envs.tasks.human_rated`).
The question (issue 16, item 5): does the suite's own PPO raise that reward from the base model
within the budget of ``make demo`` (20,000 generated tokens, :func:`agents.demo.run`), and what
does it write?

Protocol, per seed (default 0, 1, 2): PPO with the demo's preset (``lm-sentiment-demo``: the
embedded model as policy, value head, frozen reference, KL penalty 0.05, lr 1e-4, 64 episodes per
batch) built on the env; **before** = the untouched policy (the base model) on 64 fresh episodes
(prompts seeded 999, the same prompts for every seed and for before/after), sampled at temperature
1; train ``--timesteps`` generated tokens; **after** = the trained policy on the same 64 prompts.
Reported per seed: mean reward (the judge) before and after, the mean VADER compound score of the
same texts (``prompt + completion``: the text the judge reads) and the mean published human rating
of the sentences the prompts were cut from (the same for before and after: a reference for the
scale), the KL to the reference in the last training batch (nats per episode, the demo's ``k1``
figure) and the learning curve; four sample completions before and after (prompts seeded 12345).
Across seeds: mean and standard deviation of before, after and the gain.

    python -m benchmarks.human_judge_ppo                    # 3 seeds; writes results/human_judge_ppo.json
    python -m benchmarks.human_judge_ppo --seeds 1 --name human_judge_ppo_seed1   # one seed per process
    python -m benchmarks.human_judge_ppo --merge a.json b.json c.json             # ... then merged
    python -m benchmarks.human_judge_ppo --backbone DIR     # policy, env model and judge on DIR
    python -m benchmarks.human_judge_ppo --quick --out /tmp/hj   # a small judge, 1 seed, a few batches

The judge is the env's default (fitted at the first ``gym.make``, cached; see the env's module).
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, init_torch, machine_info, pyplot, save_figure, write_json

ENV_ID = "RLHF/HumanRatedReview-v0"
PRESET = "lm-sentiment-demo"
EVAL_SEED, SAMPLE_SEED, N_SAMPLES = 999, 12_345, 4
QUICK_ENV = {"n_train": 64, "fit_epochs": 1, "max_new_tokens": 8}


def demo_budget() -> int:
    """The generated-token budget of ``make demo`` (the default of :func:`agents.demo.run`)."""
    from agents import demo

    return int(inspect.signature(demo.run).parameters["timesteps"].default)


def episodes(agent: Any, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` episodes of the agent's current policy on prompts seeded ``seed``: prompt, completion,
    reward (the judge), VADER of ``prompt + completion`` and the source sentence's human mean."""
    import torch

    from agents.envs import make_vector_env

    env = make_vector_env(agent.env_id, n, agent.config.env_kwargs)
    task = env.task
    tok = task.tokenizer
    gen = torch.Generator(device=agent.config.device).manual_seed(seed)
    obs, actions, _, rewards, mask, _ = agent.collector.rollout(env, seed, gen)
    n_prompt = obs["input_ids"].shape[1] - actions.shape[1]
    _, info = env.reset(seed=seed)  # the same prompts again, for their human means
    out = []
    for i in range(n):
        p_ids = obs["input_ids"][i, :n_prompt][obs["attention_mask"][i, :n_prompt].bool()].tolist()
        c_ids = actions[i][mask[i]].tolist()
        prompt, completion = tok.decode(p_ids), tok.decode(c_ids)
        out.append(
            {
                "prompt": prompt,
                "completion": completion,
                "reward": round(float(rewards[i].sum()), 4),
                "vader": round(task.vader.compound(prompt + completion), 4),
                "human_mean_of_source": float(info["human_mean"][i]),
            }
        )
    env.close()
    return out


def summary(eps: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "reward": round(float(np.mean([e["reward"] for e in eps])), 4),
        "reward_sem": round(float(np.std([e["reward"] for e in eps], ddof=1) / np.sqrt(len(eps))), 4),
        "vader": round(float(np.mean([e["vader"] for e in eps])), 4),
        "human_mean_of_sources": round(float(np.nanmean([e["human_mean_of_source"] for e in eps])), 4),
        "mean_completion_words": round(float(np.mean([len(e["completion"].split()) for e in eps])), 2),
        "n": len(eps),
    }


def run_seed(seed: int, timesteps: int, env_kwargs: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Train and measure one seed (see the module docstring)."""
    from agents.ppo import PPO

    t0 = time.perf_counter()
    agent = PPO(ENV_ID, seed=seed, preset=PRESET, env_kwargs=env_kwargs, **config)
    n_eval = agent.config.n_envs
    before = episodes(agent, n_eval, EVAL_SEED)
    samples_before = episodes(agent, N_SAMPLES, SAMPLE_SEED)
    history: list[dict[str, float]] = []

    def record(a: Any, m: dict[str, float]) -> None:
        history.append(
            {
                "timesteps": a.num_timesteps,
                **{k: float(m[k]) for k in ("reward_task", "kl_ref", "kl_ref_k3") if k in m},
            }
        )

    agent.learn(timesteps, callback=record)
    after = episodes(agent, n_eval, EVAL_SEED)
    samples_after = episodes(agent, N_SAMPLES, SAMPLE_SEED)
    out = {
        "seed": seed,
        "before": summary(before),
        "after": summary(after),
        "kl_final": history[-1]["kl_ref"] if history else float("nan"),
        "kl_final_k3": history[-1].get("kl_ref_k3", float("nan")) if history else float("nan"),
        "timesteps": agent.num_timesteps,
        "history": history,
        "samples_before": samples_before,
        "samples_after": samples_after,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out["gain"] = round(out["after"]["reward"] - out["before"]["reward"], 4)
    print(
        f"seed {seed}: reward {out['before']['reward']:+.3f} -> {out['after']['reward']:+.3f} "
        f"(VADER {out['before']['vader']:+.3f} -> {out['after']['vader']:+.3f}), KL {out['kl_final']:.2f} "
        f"({out['seconds']:.0f} s)",
        flush=True,
    )
    return out


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of before, after, gain, VADER and the final KL."""

    def ms(values: list[float]) -> dict[str, float]:
        v = np.asarray(values, float)
        return {
            "mean": round(float(v.mean()), 4),
            "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4),
        }

    return {
        "seeds": [r["seed"] for r in runs],
        "reward_before": ms([r["before"]["reward"] for r in runs]),
        "reward_after": ms([r["after"]["reward"] for r in runs]),
        "gain": ms([r["gain"] for r in runs]),
        "seeds_improved": sum(r["gain"] > 0 for r in runs),
        "vader_before": ms([r["before"]["vader"] for r in runs]),
        "vader_after": ms([r["after"]["vader"] for r in runs]),
        "kl_final": ms([r["kl_final"] for r in runs]),
    }


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in runs:
        t = [h["timesteps"] for h in r["history"]]
        ax[0].plot(t, [h["reward_task"] for h in r["history"]], marker="o", ms=3, label=f"seed {r['seed']}")
        ax[1].plot(t, [h["kl_ref"] for h in r["history"]], marker="o", ms=3, label=f"seed {r['seed']}")
    ax[0].set(xlabel="generated tokens", ylabel="mean reward (judge of real ratings)", title="reward")
    ax[1].set(xlabel="generated tokens", ylabel="KL(policy || reference) per episode", title="KL")
    ax[0].legend()
    fig.suptitle(f"PPO on {ENV_ID}")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--timesteps", type=int, default=None, help="generated tokens (default: the demo's budget)"
    )
    p.add_argument(
        "--backbone", default="default", help="'default' or a model directory (policy, env, judge)"
    )
    p.add_argument("--quick", action="store_true", help="a small judge, one seed, 8 episodes per batch")
    p.add_argument("--merge", nargs="+", default=None, help="merge per-seed result files into one")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--name", default="human_judge_ppo", help="output file stem")
    args = p.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        result = dict(parts[0])
        result["runs"] = sorted((r for part in parts for r in part["runs"]), key=lambda r: r["seed"])
        result["summary"] = aggregate(result["runs"])
        result["merged_from"] = args.merge
        result["seconds"] = round(sum(part["seconds"] for part in parts), 1)
    else:
        init_torch(1)
        budget = demo_budget()
        timesteps = args.timesteps or budget
        env_kwargs: dict[str, Any] = {}
        config: dict[str, Any] = {}
        if args.backbone != "default":
            env_kwargs["model"] = config["model"] = str(Path(args.backbone).resolve())
        if args.quick:
            env_kwargs |= QUICK_ENV
            config |= {"n_envs": 8}
            args.seeds, timesteps = args.seeds[:1], args.timesteps or 150
        t0 = time.perf_counter()
        runs = [run_seed(s, timesteps, env_kwargs, config) for s in args.seeds]
        result = {
            "question": f"does custom PPO raise {ENV_ID}'s reward (a judge fitted on real ratings) from the "
            "base model within make demo's budget?",
            "env": ENV_ID,
            "env_kwargs": env_kwargs,
            "preset": PRESET,
            "config_overrides": config,
            "timesteps": timesteps,
            "demo_budget": budget,
            "quick": args.quick,
            "protocol": f"before/after on the same {EVAL_SEED}-seeded prompts, temperature 1; KL = last "
            "training batch's k1 estimate, nats per episode",
            "runs": runs,
            "summary": aggregate(runs),
            "seconds": round(time.perf_counter() - t0, 1),
            "machine": machine_info(),
        }
    write_json(out_dir / f"{args.name}.json", result, indent=1)
    plot(result["runs"], out_dir / f"{args.name}.png")
    s = result["summary"]
    print(
        f"reward before {s['reward_before']['mean']:+.3f} (sd {s['reward_before']['sd']:.3f}) -> after "
        f"{s['reward_after']['mean']:+.3f} (sd {s['reward_after']['sd']:.3f}); gain {s['gain']['mean']:+.3f} "
        f"(sd {s['gain']['sd']:.3f}, {s['seeds_improved']}/{len(s['seeds'])} seeds up); KL at the end "
        f"{s['kl_final']['mean']:.2f} (sd {s['kl_final']['sd']:.2f})"
    )
    for r in result["runs"]:
        for b, a in zip(r["samples_before"], r["samples_after"], strict=True):
            print(
                f"  seed {r['seed']} prompt {b['prompt']!r}\n    before [{b['reward']:+.2f}] {b['completion']!r}"
                f"\n    after  [{a['reward']:+.2f}] {a['completion']!r}"
            )
    return result


if __name__ == "__main__":
    main()
