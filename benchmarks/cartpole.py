"""CartPole-v1: the custom PPO against Stable-Baselines3 PPO on the same 100k-step budget.

Three configurations, each over the same seeds, each a preset of :mod:`agents.presets`:

* ``custom-ppo-zoo``: ``agents.PPO`` with rl-zoo's tuned CartPole settings (``"cartpole-zoo"``);
* ``custom-ppo-cleanrl``: ``agents.PPO`` with its defaults, CleanRL's CartPole settings
  (``"cartpole-cleanrl"``);
* ``sb3-ppo-zoo``: SB3 ``PPO("MlpPolicy")`` with the same rl-zoo settings (``"sb3-cartpole-zoo-ppo"``).

Each trained agent is evaluated deterministically on a fresh env (20 episodes, seed 10_000 + seed).
Writes ``benchmarks/results/cartpole.csv`` (one row per run, with its preset and full resolved
config) and prints the per-configuration median. Training runs through the comparison's runners
(:mod:`benchmarks.compare.runners`); train seconds count ``learn`` only.

    python -m benchmarks.cartpole [--seeds 0 1 2] [--timesteps 100000] [--eval-episodes 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from benchmarks.common import RESULTS, config_columns, init_torch, write_csv
from benchmarks.compare.runners import run_custom, run_sb3

#: configuration name -> (algorithm, preset)
CONFIGS = {
    "custom-ppo-zoo": ("ppo", "cartpole-zoo"),
    "custom-ppo-cleanrl": ("ppo", "cartpole-cleanrl"),
    "sb3-ppo-zoo": ("sb3-ppo", "sb3-cartpole-zoo-ppo"),
}
OUT = RESULTS / "cartpole.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    init_torch(1)
    rows = []
    for name, (algo, preset) in CONFIGS.items():
        run = run_sb3 if algo.startswith("sb3-") else run_custom
        for seed in args.seeds:
            r = run(algo, "CartPole-v1", seed, args.timesteps, args.eval_episodes, preset)
            rows.append(
                {
                    "config": name,
                    "seed": seed,
                    "timesteps": args.timesteps,
                    "eval_episodes": args.eval_episodes,
                    "mean_return": r.final_score,
                    "std_return": r.score_std,
                    "train_seconds": r.train_seconds,
                    **config_columns(preset, r.config),
                }
            )
            print(
                f"{name:20s} seed {seed}: mean return {r.final_score:7.2f} +- {r.score_std:6.2f}  "
                f"({r.train_seconds:.1f} s)",
                flush=True,
            )
    write_csv(args.out, rows)
    print("\nmedian over seeds of the mean evaluation return:")
    for name in CONFIGS:
        vals = [r["mean_return"] for r in rows if r["config"] == name]
        secs = [r["train_seconds"] for r in rows if r["config"] == name]
        print(
            f"  {name:20s} {statistics.median(vals):7.2f}   (median train time {statistics.median(secs):.1f} s)"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
