"""Stock SB3 / sb3-contrib baselines on the toy tasks: PPO, A2C, DQN and MaskablePPO.

For every (algorithm, env, seed) it trains with :func:`agents.sb3.train_baseline` for ``--steps``
env steps (generated tokens), evaluates the deterministic policy on ``--eval-episodes`` episodes
from evaluation seeds (``10_000``, disjoint from training's), and appends one row to
``benchmarks/results/sb3_toy.csv``: mean task reward (the feedback model's partial-credit score),
exact-match success rate, wall time, and beside them the uniformly random policy's mean task
reward and success rate over the whole vocabulary and over the env's action mask (what
MaskablePPO samples from), measured on the same evaluation seeds, and the preset each algorithm ran
with (``PRESETS``, the ``sb3-toy-fast-*`` settings of :mod:`agents.presets`) with the full resolved
config.

Run from the repository root (one torch thread; the machine is shared)::

    python -m benchmarks.sb3_toy --steps 60000 --seeds 0
    python -m benchmarks.sb3_toy --algos ppo maskable_ppo --envs RLHF/Copy-v0 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os

from agents.presets import get_preset
from agents.sb3 import evaluate_baseline, random_baseline, train_baseline
from benchmarks.common import (
    EVAL_SEED_OFFSET,
    RESULTS,
    Timer,
    append_csv_row,
    config_columns,
    init_torch,
    settings_text,
)

ENVS = ("RLHF/Copy-v0", "RLHF/Reverse-v0", "RLHF/Sort-v0", "RLHF/Addition-v0")
ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo")
OUT = RESULTS / "sb3_toy.csv"
#: the settings found to learn fastest per wall-clock second on a 2-core CPU, by algorithm
PRESETS: dict[str, str] = {
    "ppo": "sb3-toy-fast-ppo",
    "maskable_ppo": "sb3-toy-fast-ppo",
    "a2c": "sb3-toy-fast-a2c",
    "dqn": "sb3-toy-fast-dqn",
}


def main(argv: list[str] | None = None) -> None:
    """Run the grid and append rows to the CSV (created with a header if missing; columns it lacks
    are added)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=list(ALGOS))
    p.add_argument("--envs", nargs="+", default=list(ENVS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=60_000)
    p.add_argument("--eval-episodes", type=int, default=500)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    init_torch(1)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    randoms = {
        env: (
            random_baseline(env, args.eval_episodes, seed=EVAL_SEED_OFFSET),
            random_baseline(env, args.eval_episodes, seed=EVAL_SEED_OFFSET, masked=True),
        )
        for env in args.envs
    }
    for env in args.envs:
        rnd, rnd_m = randoms[env]
        for algo in args.algos:
            preset = PRESETS[algo]
            for seed in args.seeds:
                with Timer() as clock:
                    model = train_baseline(algo, env, args.steps, seed, preset=preset)
                res = evaluate_baseline(model, env, args.eval_episodes, seed=EVAL_SEED_OFFSET)
                row = {
                    "algo": f"sb3-{algo}",
                    "env": env,
                    "seed": seed,
                    "timesteps": model.num_timesteps,
                    "train_seconds": round(clock.seconds, 1),
                    "eval_episodes": res["n_episodes"],
                    "mean_task_reward": round(res["mean_task_reward"], 4),
                    "success_rate": round(res["success_rate"], 4),
                    "mean_reward": round(res["mean_reward"], 4),
                    "random_mean_task_reward": round(rnd["mean_task_reward"], 4),
                    "random_success_rate": round(rnd["success_rate"], 4),
                    "random_masked_mean_task_reward": round(rnd_m["mean_task_reward"], 4),
                    "random_masked_success_rate": round(rnd_m["success_rate"], 4),
                    "settings": settings_text(get_preset(preset)),
                    **config_columns(preset, model.train_config),
                }
                append_csv_row(args.out, row)
                print(row, flush=True)
                model.get_env().close()


if __name__ == "__main__":
    main()
