"""Stock SB3 / sb3-contrib baselines on the toy tasks: PPO, A2C, DQN and MaskablePPO.

For every (algorithm, env, seed) it trains with :func:`agents.sb3.train_baseline` for ``--steps``
env steps (generated tokens), evaluates the deterministic policy on ``--eval-episodes`` episodes
from evaluation seeds (``10_000``, disjoint from training's), and appends one row to
``benchmarks/results/sb3_toy.csv``: mean task reward (the feedback model's partial-credit score),
exact-match success rate, wall time, and beside them the uniformly random policy's mean task
reward and success rate over the whole vocabulary and over the env's action mask (what
MaskablePPO samples from), measured on the same evaluation seeds.

Run from the repository root (one torch thread; the machine is shared)::

    python -m benchmarks.sb3_toy --steps 60000 --seeds 0
    python -m benchmarks.sb3_toy --algos ppo maskable_ppo --envs RLHF/Copy-v0 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import os
import time

import torch

from agents.sb3 import evaluate_baseline, random_baseline, train_baseline

ENVS = ("RLHF/Copy-v0", "RLHF/Reverse-v0", "RLHF/Sort-v0", "RLHF/Addition-v0")
ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo")
OUT = os.path.join(os.path.dirname(__file__), "results", "sb3_toy.csv")
#: settings found to learn fastest per wall-clock second on a 2-core CPU (see the module doc)
SETTINGS: dict[str, dict] = {
    "ppo": dict(n_envs=64, n_steps=32, batch_size=512, learning_rate=1e-3),
    "maskable_ppo": dict(n_envs=64, n_steps=32, batch_size=512, learning_rate=1e-3),
    "a2c": dict(n_envs=16, n_steps=8, learning_rate=7e-4),
    "dqn": dict(n_envs=8),
}
FIELDS = [
    "algo",
    "env",
    "seed",
    "timesteps",
    "train_seconds",
    "eval_episodes",
    "mean_task_reward",
    "success_rate",
    "mean_reward",
    "random_mean_task_reward",
    "random_success_rate",
    "random_masked_mean_task_reward",
    "random_masked_success_rate",
    "settings",
]


def main(argv: list[str] | None = None) -> None:
    """Run the grid and append rows to the CSV (created with a header if missing)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=list(ALGOS))
    p.add_argument("--envs", nargs="+", default=list(ENVS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=60_000)
    p.add_argument("--eval-episodes", type=int, default=500)
    p.add_argument("--out", default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    new = not os.path.exists(args.out)
    randoms = {
        env: (
            random_baseline(env, args.eval_episodes, seed=10_000),
            random_baseline(env, args.eval_episodes, seed=10_000, masked=True),
        )
        for env in args.envs
    }
    with open(args.out, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        for env in args.envs:
            rnd, rnd_m = randoms[env]
            for algo in args.algos:
                for seed in args.seeds:
                    t0 = time.perf_counter()
                    model = train_baseline(algo, env, args.steps, seed, **SETTINGS[algo])
                    train_s = time.perf_counter() - t0
                    res = evaluate_baseline(model, env, args.eval_episodes, seed=10_000)
                    row = {
                        "algo": f"sb3-{algo}",
                        "env": env,
                        "seed": seed,
                        "timesteps": model.num_timesteps,
                        "train_seconds": round(train_s, 1),
                        "eval_episodes": res["n_episodes"],
                        "mean_task_reward": round(res["mean_task_reward"], 4),
                        "success_rate": round(res["success_rate"], 4),
                        "mean_reward": round(res["mean_reward"], 4),
                        "random_mean_task_reward": round(rnd["mean_task_reward"], 4),
                        "random_success_rate": round(rnd["success_rate"], 4),
                        "random_masked_mean_task_reward": round(rnd_m["mean_task_reward"], 4),
                        "random_masked_success_rate": round(rnd_m["success_rate"], 4),
                        "settings": " ".join(f"{k}={v}" for k, v in SETTINGS[algo].items()),
                    }
                    writer.writerow(row)
                    f.flush()
                    print(row, flush=True)
                    model.get_env().close()


if __name__ == "__main__":
    main()
