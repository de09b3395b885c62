"""Toy tasks (RLHF/Copy-v0, RLHF/Reverse-v0): the custom PPO with an MLP policy on one-hot tokens.

The policy sees the one-hot of every position's token (16 positions x 30 symbols = 480 inputs,
padding zeroed) and must emit the answer token by token, then EOS; the reward is the task's
partial-credit match on the final token, and success is an exact answer. Every ``--eval-every``
env steps the policy is evaluated greedily on 200 fresh episodes (a separate env seeded
10_000 + seed); at the end on ``--final-episodes`` episodes. Writes
``benchmarks/results/toy_tasks.csv`` (final) and ``benchmarks/results/toy_tasks_curve.csv``.

    python benchmarks/toy_tasks.py [--tasks RLHF/Copy-v0 RLHF/Reverse-v0] [--timesteps 1200000] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents import PPO  # noqa: E402

CONFIG = dict(
    n_envs=64,
    n_steps=16,
    n_minibatches=4,
    n_epochs=8,
    gamma=1.0,
    gae_lambda=0.95,
    learning_rate=5e-4,
    anneal_lr=True,
    ent_coef=0.01,
    hidden_sizes=(256, 256),
    activation="relu",
)
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _append(path: str, row: dict) -> None:
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def run(
    task: str, seed: int, timesteps: int, eval_every: int, final_episodes: int, deadline: float | None
) -> dict:
    """Train on ``task`` and return the final evaluation row."""
    agent = PPO(task, seed=seed, **CONFIG)
    t0 = time.perf_counter()
    next_eval = [eval_every]

    def callback(a: PPO, metrics: dict) -> bool:
        if a.num_timesteps >= next_eval[0]:
            next_eval[0] += eval_every
            ev = a.evaluate(200, deterministic=True, seed=10_000 + seed)
            row = {
                "task": task,
                "seed": seed,
                "timesteps": a.num_timesteps,
                "seconds": round(time.perf_counter() - t0, 1),
                "success_rate": ev["success_rate"],
                "mean_return": round(ev["mean_return"], 4),
            }
            _append(os.path.join(HERE, "toy_tasks_curve.csv"), row)
            print(row, flush=True)
        return deadline is None or time.time() < deadline

    agent.learn(timesteps, callback=callback, progress_bar=False)
    ev = agent.evaluate(final_episodes, deterministic=True, seed=20_000 + seed)
    return {
        "task": task,
        "seed": seed,
        "timesteps": agent.num_timesteps,
        "budget": timesteps,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "eval_episodes": final_episodes,
        "success_rate": ev["success_rate"],
        "mean_return": round(ev["mean_return"], 4),
        "config": " ".join(f"{k}={v}" for k, v in CONFIG.items()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["RLHF/Copy-v0", "RLHF/Reverse-v0"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=1_200_000)
    parser.add_argument("--eval-every", type=int, default=100_000)
    parser.add_argument("--final-episodes", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock limit per task (stops early)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(HERE, exist_ok=True)
    for task in args.tasks:
        deadline = time.time() + 60 * args.minutes if args.minutes else None
        row = run(task, args.seed, args.timesteps, args.eval_every, args.final_episodes, deadline)
        _append(os.path.join(HERE, "toy_tasks.csv"), row)
        print("FINAL", row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
