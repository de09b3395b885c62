"""Evolution strategies against PPO on CartPole-v1: env steps and CPU seconds to solve it.

Both agents train on the same machine in the same run, seed by seed, interleaved (ES, then PPO):

* ``es``: ``agents.ES`` with the ``cartpole-es`` preset (OpenAI-ES on the 64x64 tanh actor, 32
  members per generation, one greedy episode each);
* ``ppo``: ``agents.PPO`` with rl-zoo's tuned CartPole settings (``cartpole-zoo``).

During training a check every ``--check-every`` env steps (rounded to whole iterations) plays 20
greedy episodes on a fresh env; the first check with mean return >= 475 counts as solved, and
training stops there (or at ``--max-steps``). The reported CPU seconds are the process's CPU time
in ``learn`` without the checks. The solved agent is then evaluated greedily on 100 episodes with
seeds disjoint from the checks'. "Solved" in the must-show sense is that final mean >= 475.

    nice -n 10 python -m benchmarks.es_cartpole [--seeds 0 1 2]

Writes ``benchmarks/results/es_cartpole.json`` and prints one line per run and the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from benchmarks.common import RESULTS, init_torch

OUT = RESULTS / "es_cartpole.json"
PRESETS = {"es": "cartpole-es", "ppo": "cartpole-zoo"}
SOLVED = 475.0


def run(algo: str, seed: int, max_steps: int, check_every: int, final_episodes: int) -> dict:
    """Train until the check says solved (or ``max_steps``); return steps, CPU seconds, final score."""
    import agents

    cls = {"es": agents.ES, "ppo": agents.PPO}[algo]
    agent = cls("CartPole-v1", seed=seed, preset=PRESETS[algo])
    state = {"next": check_every, "check_cpu": 0.0, "solved_at": None, "checks": []}

    def callback(a, metrics) -> bool:
        if a.num_timesteps < state["next"]:
            return True
        state["next"] = a.num_timesteps + check_every
        c0 = time.process_time()
        score = a.evaluate(20, seed=20_000 + a.iteration)["mean_return"]
        state["check_cpu"] += time.process_time() - c0
        state["checks"].append((a.num_timesteps, score))
        if score >= SOLVED:
            state["solved_at"] = a.num_timesteps
            return False
        return True

    c0, w0 = time.process_time(), time.perf_counter()
    agent.learn(max_steps, progress_bar=False, callback=callback)
    cpu = time.process_time() - c0 - state["check_cpu"]
    wall = time.perf_counter() - w0
    final = agent.evaluate(final_episodes, seed=30_000 + seed)
    agent.close()
    return {
        "algo": algo,
        "seed": seed,
        "preset": agent.config.preset,
        "steps": agent.num_timesteps,
        "iterations": agent.iteration,
        "solved_at_check": state["solved_at"],
        "cpu_seconds": cpu,
        "wall_seconds_with_checks": wall,
        "final_mean_return": final["mean_return"],
        "final_std_return": final["std_return"],
        "final_episodes": final_episodes,
        "solved": final["mean_return"] >= SOLVED,
        "checks": state["checks"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, nargs=2, default=[2_000_000, 300_000], metavar=("ES", "PPO"))
    parser.add_argument("--check-every", type=int, nargs=2, default=[20_000, 5_000], metavar=("ES", "PPO"))
    parser.add_argument("--final-episodes", type=int, default=100)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    init_torch(1)
    runs = []
    for seed in args.seeds:
        for i, algo in enumerate(("es", "ppo")):
            r = run(algo, seed, args.max_steps[i], args.check_every[i], args.final_episodes)
            runs.append(r)
            print(
                f"{algo:3s} seed {seed}: final greedy mean {r['final_mean_return']:6.1f} over "
                f"{args.final_episodes} episodes; {r['steps']:>9,} env steps, {r['cpu_seconds']:6.1f} CPU s",
                flush=True,
            )
    summary = {}
    for algo in ("es", "ppo"):
        rs = [r for r in runs if r["algo"] == algo]
        summary[algo] = {
            "preset": PRESETS[algo],
            "all_solved": all(r["solved"] for r in rs),
            "final_mean_returns": [r["final_mean_return"] for r in rs],
            "median_steps": statistics.median(r["steps"] for r in rs),
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in rs),
            "steps": [r["steps"] for r in rs],
            "cpu_seconds": [r["cpu_seconds"] for r in rs],
        }
        s = summary[algo]
        print(
            f"{algo}: solved {sum(r['solved'] for r in rs)}/{len(rs)} seeds; median {s['median_steps']:,.0f} "
            f"env steps, {s['median_cpu_seconds']:.1f} CPU s"
        )
    es, ppo = summary["es"], summary["ppo"]
    summary["es_over_ppo"] = {
        "steps": es["median_steps"] / ppo["median_steps"],
        "cpu_seconds": es["median_cpu_seconds"] / ppo["median_cpu_seconds"],
    }
    print(
        f"ES / PPO: {summary['es_over_ppo']['steps']:.1f}x the env steps, "
        f"{summary['es_over_ppo']['cpu_seconds']:.2f}x the CPU seconds"
    )
    with open(args.out, "w") as f:
        json.dump(
            {
                "command": "python -m benchmarks.es_cartpole " + " ".join(argv or sys.argv[1:]),
                "solved_threshold": SOLVED,
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
