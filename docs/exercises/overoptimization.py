"""Exercise (c): PPO against a reward model fitted from a noisy simulated rater; log proxy and gold.

``RLHF/SimulatedHuman-v0`` pays the score of a learned reward model (the *proxy*), fitted to a
simulated human's pairwise answers about completions of the embedded model. The human judges a
hidden *gold* utility (VADER sentiment; ``--gold fluent_vader`` also asks for fluency) through a noisy rater (``--rater``: a preset such as
``Mistake``, which flips its answer 10% of the time, or ``Stoc``, Boltzmann-rational with
temperature 1). The env reports the gold score in ``info["reward_gold"]``, never in the reward.

This trains the custom PPO on the proxy with a small KL coefficient and logs, for every batch, the
mean proxy reward and the mean gold reward of the episodes collected, and the KL to the reference.
It prints one line per batch and writes ``--out`` (CSV: timesteps, proxy, gold, kl) for
``python -m docs.exercises.check overopt``. The first run fits the proxy (about 30 s on an idle
2-core CPU for 500 comparisons); the fit is cached under ``~/.cache/rlhf_envs``.

    python -m docs.exercises.overoptimization --rater Mistake --timesteps 30000
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    """Train, print and write the proxy/gold/KL curve."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rater", default="Mistake", help="simulated-human preset (Mistake, Stoc, Oracle, ...)")
    p.add_argument("--n-comparisons", type=int, default=500, help="rater answers the proxy is fitted on")
    p.add_argument("--timesteps", type=int, default=30_000, help="generated tokens to train on")
    p.add_argument("--kl-coef", type=float, default=0.01, help="per-token KL penalty to the reference")
    p.add_argument(
        "--gold",
        default="vader",
        choices=("vader", "fluent_vader"),
        help="the hidden gold utility: VADER, or VADER times fluency under the base model",
    )
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--n-envs", type=int, default=64, help="episodes per PPO batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/overopt.csv")
    args = p.parse_args(argv)
    if args.timesteps < 1 or args.n_comparisons < 1:
        p.error("--timesteps and --n-comparisons must be positive")
    torch.set_num_threads(1)
    from agents import PPO

    t0 = time.perf_counter()
    agent = PPO(
        "RLHF/SimulatedHuman-v0",
        seed=args.seed,
        policy="lm",
        model="default",
        kl_coef=args.kl_coef,
        n_envs=args.n_envs,
        learning_rate=args.learning_rate,
        env_kwargs={"rater": args.rater, "n_comparisons": args.n_comparisons, "gold": args.gold},
        tensorboard=False,
    )
    print(f"proxy ready ({time.perf_counter() - t0:.0f} s); rater {args.rater}, kl_coef {args.kl_coef}")
    rows: list[dict[str, float]] = []

    def record(a: PPO, m: dict[str, float]) -> None:
        if "reward_gold" not in m:
            raise RuntimeError(f"the env reported no reward_gold; metrics were {sorted(m)}")
        row = {
            "timesteps": a.num_timesteps,
            "proxy": round(m["reward_task"], 4),
            "gold": round(m["reward_gold"], 4),
            "kl": round(m["kl_ref"], 4),
        }
        rows.append(row)
        print(
            f"{row['timesteps']:7,d} tokens  proxy {row['proxy']:+.3f}  gold {row['gold']:+.3f}  KL {row['kl']:6.2f}",
            flush=True,
        )

    agent.learn(args.timesteps, callback=record, progress_bar=False)
    agent.close()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["timesteps", "proxy", "gold", "kl"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
