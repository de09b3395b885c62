"""RLOO and GRPO on ``RLHF/Sentiment-v0`` with the embedded model: does the task reward rise?

For each algorithm and seed: the agent is built from its preset (``lm-sentiment-rloo`` /
``lm-sentiment-grpo``: 16 prompts x 4 completions per batch, lr 1e-4, KL coefficient 0.05, in the
reward for RLOO and as a loss term for GRPO; PPO with ``make demo``'s ``lm-sentiment-demo`` as the
reference point at the same budget), evaluated before training (the base model: the policy
equals the reference), trained for ``--tokens`` generated tokens, and evaluated again. Both
evaluations sample (temperature 1, as in training) ``--eval-episodes`` completions of the same
prompts (seed 999) and report the task reward and the generation metrics of
:mod:`agents.generation_metrics` (KL to the reference exact at every position). CPU seconds are
the process's CPU time spent in ``learn``.

    nice -n 10 python -m benchmarks.critic_free_sentiment [--seeds 0 1 2] [--tokens 20000]

Writes ``benchmarks/results/critic_free_sentiment.json`` and prints one line per run and a summary
(mean and spread over seeds of the reward gain, and the KL it cost).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from benchmarks.common import RESULTS, init_torch

OUT = RESULTS / "critic_free_sentiment.json"
#: algorithm -> preset; PPO (``make demo``'s preset) is the reference point at the same token budget
PRESETS = {"rloo": "lm-sentiment-rloo", "grpo": "lm-sentiment-grpo", "ppo": "lm-sentiment-demo"}
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


def run(algo: str, seed: int, tokens: int, eval_episodes: int) -> dict:
    """Train one agent and return its before/after evaluations."""
    import agents

    cls = {"rloo": agents.RLOO, "grpo": agents.GRPO, "ppo": agents.PPO}[algo]
    agent = cls("RLHF/Sentiment-v0", seed=seed, preset=PRESETS[algo])
    before = agent.evaluate(eval_episodes, deterministic=False, seed=999)
    c0, w0 = time.process_time(), time.perf_counter()
    agent.learn(tokens, progress_bar=False)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    after = agent.evaluate(eval_episodes, deterministic=False, seed=999)
    agent.close()
    return {
        "algo": algo,
        "seed": seed,
        "preset": agent.config.preset,
        "tokens": agent.num_timesteps,
        "iterations": agent.iteration,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "before": {k: before.get(k) for k in METRICS},
        "after": {k: after.get(k) for k in METRICS},
        "config": {k: v for k, v in agent.config.to_json_dict().items() if k != "model"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=128)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    init_torch(1)
    runs = []
    for algo in args.algos:
        for seed in args.seeds:
            r = run(algo, seed, args.tokens, args.eval_episodes)
            runs.append(r)
            b, a = r["before"], r["after"]
            print(
                f"{algo:5s} seed {seed}: reward {b['reward_task']:+.3f} -> {a['reward_task']:+.3f}  "
                f"KL {a['kl_ref']:.2f}  distinct-2 {b['distinct_2']:.2f} -> {a['distinct_2']:.2f}  "
                f"ref ppl {b['ref_perplexity']:.1f} -> {a['ref_perplexity']:.1f}  "
                f"({r['tokens']} tokens, {r['cpu_seconds']:.0f} CPU s)",
                flush=True,
            )
    summary = {}
    for algo in args.algos:
        rs = [r for r in runs if r["algo"] == algo]
        gains = [r["after"]["reward_task"] - r["before"]["reward_task"] for r in rs]
        summary[algo] = {
            "seeds": [r["seed"] for r in rs],
            "reward_before_mean": statistics.mean(r["before"]["reward_task"] for r in rs),
            "reward_after_mean": statistics.mean(r["after"]["reward_task"] for r in rs),
            "gain_mean": statistics.mean(gains),
            "gain_min": min(gains),
            "gain_max": max(gains),
            "gain_std": statistics.stdev(gains) if len(gains) > 1 else 0.0,
            "kl_after_mean": statistics.mean(r["after"]["kl_ref"] for r in rs),
            "kl_after_max": max(r["after"]["kl_ref"] for r in rs),
            "cpu_seconds_mean": statistics.mean(r["cpu_seconds"] for r in rs),
            "all_seeds_improved": all(g > 0 for g in gains),
        }
        s = summary[algo]
        print(
            f"{algo}: reward {s['reward_before_mean']:+.3f} -> {s['reward_after_mean']:+.3f} "
            f"(gain {s['gain_mean']:+.3f}, min {s['gain_min']:+.3f}, max {s['gain_max']:+.3f}), "
            f"KL {s['kl_after_mean']:.2f} nats, {s['cpu_seconds_mean']:.0f} CPU s per run"
        )
    with open(args.out, "w") as f:
        json.dump(
            {
                "command": " ".join(["python -m benchmarks.critic_free_sentiment", *(argv or sys.argv[1:])]),
                "tokens": args.tokens,
                "eval_episodes": args.eval_episodes,
                "summary": summary,
                "runs": runs,
            },
            f,
            indent=1,
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
