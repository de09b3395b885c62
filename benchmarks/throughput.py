"""Throughput of the envs, measured side by side in one run and printed as ratios.

Part 1 (env steps): the natively batched vector env against gymnasium's ``SyncVectorEnv`` over the
single env - what a user would otherwise get from ``gym.make_vec(..., vectorization_mode="sync")`` -
with the same number of sub-envs and uniformly random actions. Both run the same number of steps
in alternating rounds so that machine noise hits both alike; the ratio of medians is reported.

    python -m benchmarks.throughput                      # all toy tasks, 64 envs
    python -m benchmarks.throughput --envs RLHF/Copy-v0 --num-envs 64 --steps 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import rlhf_envs  # noqa: F401  (registers the ids)
from rlhf_envs.demo import TOY_IDS

RESULTS = Path(__file__).parent / "results"


def _steps_per_second(vec: gym.vector.VectorEnv, actions: np.ndarray) -> float:
    """Time ``len(actions)`` steps of ``vec`` (already reset); return env steps (sub-env steps) per second."""
    start = time.perf_counter()
    for a in actions:
        vec.step(a)
    elapsed = time.perf_counter() - start
    return actions.size / elapsed


def bench_env_steps(
    env_id: str, num_envs: int = 64, steps: int = 1000, rounds: int = 5, seed: int = 0
) -> dict:
    """Native vector env vs SyncVectorEnv: env steps per second of each and their ratio."""
    native = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
    sync = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    vocab = native.single_action_space.n
    rng = np.random.default_rng(seed)
    native.reset(seed=seed)
    sync.reset(seed=seed)
    # warm-up (the passive checker runs on the first step only; exclude it)
    warm = rng.integers(0, vocab, size=(20, num_envs))
    _steps_per_second(native, warm)
    _steps_per_second(sync, warm)
    native_sps, sync_sps = [], []
    for _ in range(rounds):
        actions = rng.integers(0, vocab, size=(steps, num_envs))
        native_sps.append(_steps_per_second(native, actions))
        sync_sps.append(_steps_per_second(sync, actions))
    n, s = float(np.median(native_sps)), float(np.median(sync_sps))
    return {
        "env_id": env_id,
        "num_envs": num_envs,
        "native_steps_per_s": n,
        "sync_steps_per_s": s,
        "ratio": n / s,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=TOY_IDS)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput_env.json")
    args = parser.parse_args(argv)

    rows = []
    print(f"env steps per second, {args.num_envs} envs, random actions (median of {args.rounds} rounds)")
    print(f"{'env':22s} {'native':>12s} {'SyncVectorEnv':>14s} {'ratio':>7s}")
    for env_id in args.envs:
        r = bench_env_steps(env_id, args.num_envs, args.steps, args.rounds)
        rows.append(r)
        print(
            f"{env_id:22s} {r['native_steps_per_s']:12,.0f} {r['sync_steps_per_s']:14,.0f} {r['ratio']:6.1f}x"
        )
    report = {
        "machine": {"processor": platform.processor(), "python": platform.python_version()},
        "env_steps": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"saved {args.out}")
    return report


if __name__ == "__main__":
    main()
