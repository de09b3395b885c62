"""CartPole-v1: the custom PPO against Stable-Baselines3 PPO on the same 100k-step budget.

Three configurations, each over the same seeds:

* ``custom-ppo-zoo``: ``agents.PPO`` with rl-zoo's tuned CartPole settings (8 envs x 32 steps,
  one 256-sample minibatch, 20 epochs, gamma 0.98, lambda 0.8, no entropy bonus, lr 1e-3 and clip
  0.2 both annealed linearly, unclipped value loss as in SB3);
* ``custom-ppo-cleanrl``: ``agents.PPO`` with its defaults (CleanRL's CartPole settings);
* ``sb3-ppo-zoo``: SB3 ``PPO("MlpPolicy")`` with the same rl-zoo settings.

Each trained agent is evaluated deterministically on a fresh env (20 episodes, seed 10_000 + seed).
Writes ``benchmarks/results/cartpole.csv`` and prints the per-configuration median.

    python benchmarks/cartpole.py [--seeds 0 1 2] [--timesteps 100000] [--eval-episodes 20]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents import PPO  # noqa: E402

ZOO = dict(
    n_envs=8,
    n_steps=32,
    n_minibatches=1,
    n_epochs=20,
    gamma=0.98,
    gae_lambda=0.8,
    ent_coef=0.0,
    learning_rate=1e-3,
    anneal_lr=True,
    anneal_clip=True,
    clip_range_vf=None,
)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "cartpole.csv")


def run_custom(seed: int, timesteps: int, eval_episodes: int, config: dict) -> dict:
    """Train and evaluate ``agents.PPO``."""
    t0 = time.perf_counter()
    agent = PPO("CartPole-v1", seed=seed, **config)
    agent.learn(timesteps, progress_bar=False)
    train_s = time.perf_counter() - t0
    ev = agent.evaluate(eval_episodes, deterministic=True, seed=10_000 + seed)
    return {"mean_return": ev["mean_return"], "std_return": ev["std_return"], "train_seconds": train_s}


def run_sb3(seed: int, timesteps: int, eval_episodes: int) -> dict:
    """Train and evaluate SB3 PPO with rl-zoo's CartPole-v1 hyperparameters."""
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.utils import get_linear_fn

    t0 = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = SB3PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=get_linear_fn(1e-3, 0.0, 1.0),
        clip_range=get_linear_fn(0.2, 0.0, 1.0),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.learn(timesteps)
    train_s = time.perf_counter() - t0
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=10_000 + seed)
    rets, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=eval_episodes, deterministic=True, return_episode_rewards=True
    )
    return {"mean_return": float(np.mean(rets)), "std_return": float(np.std(rets)), "train_seconds": train_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = [
        ("custom-ppo-zoo", lambda s: run_custom(s, args.timesteps, args.eval_episodes, ZOO)),
        ("custom-ppo-cleanrl", lambda s: run_custom(s, args.timesteps, args.eval_episodes, {})),
        ("sb3-ppo-zoo", lambda s: run_sb3(s, args.timesteps, args.eval_episodes)),
    ]
    rows = []
    for name, fn in runs:
        for seed in args.seeds:
            r = fn(seed)
            row = {
                "config": name,
                "seed": seed,
                "timesteps": args.timesteps,
                "eval_episodes": args.eval_episodes,
                **r,
            }
            rows.append(row)
            print(
                f"{name:20s} seed {seed}: mean return {r['mean_return']:7.2f} +- {r['std_return']:6.2f}  "
                f"({r['train_seconds']:.1f} s)",
                flush=True,
            )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print("\nmedian over seeds of the mean evaluation return:")
    for name, _ in runs:
        vals = [r["mean_return"] for r in rows if r["config"] == name]
        secs = [r["train_seconds"] for r in rows if r["config"] == name]
        print(
            f"  {name:20s} {statistics.median(vals):7.2f}   (median train time {statistics.median(secs):.1f} s)"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
