"""Exercise (b): PPO on RLHF/Sentiment-v0 at several KL coefficients; print reward and KL for each.

For every coefficient ``beta`` in ``--coefs`` it trains the custom PPO with the embedded language
model as the policy (a frozen copy is the reference) for ``--timesteps`` generated tokens, with the
per-token penalty ``-beta * (log pi - log pi_ref)`` added to the reward. It then reports the mean
task reward (VADER sentiment, without the penalty) and the KL to the reference (nats per episode,
the k1 estimate on the sampled tokens), both averaged over the last ``--last`` training batches,
prints one line per coefficient and writes them to ``--out`` (CSV: kl_coef, timesteps, reward, kl,
seconds) for ``python -m docs.exercises.check kl``.

    python -m docs.exercises.kl_sweep --coefs 0.01 0.1 0.5 --timesteps 10000
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np
import torch


def run(kl_coef: float, timesteps: int, seed: int, n_envs: int, learning_rate: float, last: int) -> dict:
    """Train one PPO agent with ``kl_coef`` and return its row of the results table."""
    from agents import PPO

    agent = PPO(
        "RLHF/Sentiment-v0",
        seed=seed,
        policy="lm",
        model="default",
        kl_coef=kl_coef,
        n_envs=n_envs,
        learning_rate=learning_rate,
        tensorboard=False,
    )
    history: list[tuple[float, float]] = []

    def record(a: object, m: dict[str, float]) -> None:
        history.append((m["reward_task"], m["kl_ref"]))

    t0 = time.perf_counter()
    agent.learn(timesteps, callback=record, progress_bar=False)
    tail = np.array(history[-last:])
    agent.close()
    return {
        "kl_coef": kl_coef,
        "timesteps": agent.num_timesteps,
        "reward": round(float(tail[:, 0].mean()), 4),
        "kl": round(float(tail[:, 1].mean()), 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the sweep, print the table, write the CSV."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coefs", type=float, nargs="+", default=[0.01, 0.1, 0.5], help="KL coefficients to try")
    p.add_argument("--timesteps", type=int, default=10_000, help="generated tokens per coefficient")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-envs", type=int, default=64, help="episodes per PPO batch")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--last", type=int, default=3, help="average reward and KL over this many final batches")
    p.add_argument("--out", default="runs/kl_sweep.csv")
    args = p.parse_args(argv)
    if len(set(args.coefs)) < 2 or min(args.coefs) < 0:
        p.error(f"--coefs needs at least two different non-negative values, got {args.coefs}")
    if args.timesteps < 1 or args.last < 1:
        p.error("--timesteps and --last must be positive")
    torch.set_num_threads(1)
    rows = []
    for c in args.coefs:
        row = run(c, args.timesteps, args.seed, args.n_envs, args.learning_rate, args.last)
        rows.append(row)
        print(
            f"kl_coef {c:<6g} reward {row['reward']:+.3f}  KL {row['kl']:6.2f} nats/episode  "
            f"({row['timesteps']:,} tokens, {row['seconds']:.0f} s)",
            flush=True,
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
