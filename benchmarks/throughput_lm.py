"""Throughput of the language envs with the reference model on (``info["ref_logprob"]`` every token).

Two measurements, one run, same machine:

1. ``RLHF/Sentiment-v0`` with ``kl_coef=0.05``, 64 sub-envs: the native vector env (one batched,
   KV-cached reference forward per step) against gymnasium's ``SyncVectorEnv`` over 64 single envs
   (64 batch-one forwards per step). Random actions; EOS is masked out so every episode runs its
   full budget and both see the same work. Reported: env steps per second (one step = one token
   in each of the 64 sub-envs) and the ratio.
2. Cost per token as episodes get longer: native vector env time per token at 32 and at 128 new
   tokens per episode (whole episodes, resets included). Flat means the ratio is near 1.

Run: ``python -m benchmarks.throughput_lm`` (add ``--quick`` for a short smoke run).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from benchmarks.common import init_torch, write_json


def _actions(rng: np.random.Generator, n: int, vocab: int, eos: int) -> np.ndarray:
    a = rng.integers(2, vocab, size=n)
    a[a == eos] = eos + 1
    return a


def _time_native(
    num_envs: int, new_tokens: int, episodes: int, kl_coef: float, seed: int = 0
) -> dict[str, Any]:
    import gymnasium as gym

    import rlhf_envs  # noqa: F401

    vec = gym.make_vec(
        "RLHF/Sentiment-v0",
        num_envs=num_envs,
        max_new_tokens=new_tokens,
        kl_coef=kl_coef,
        autoreset_mode="SameStep",
    )
    rng = np.random.default_rng(seed)
    u = vec.unwrapped
    vec.reset(seed=seed)
    for _ in range(3):  # warm-up
        vec.step(_actions(rng, num_envs, u.vocab_size, u.eos_id))
    vec.reset(seed=seed)
    steps = episodes * new_tokens
    t0 = time.perf_counter()
    for _ in range(steps):
        vec.step(_actions(rng, num_envs, u.vocab_size, u.eos_id))
    dt = time.perf_counter() - t0
    vec.close()
    return {"steps": steps, "seconds": dt, "steps_per_s": steps / dt, "s_per_token": dt / (steps * num_envs)}


def _time_sync(num_envs: int, new_tokens: int, steps: int, kl_coef: float, seed: int = 0) -> dict[str, Any]:
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    import rlhf_envs  # noqa: F401

    sync = SyncVectorEnv(
        [
            lambda: gym.make("RLHF/Sentiment-v0", max_new_tokens=new_tokens, kl_coef=kl_coef)
            for _ in range(num_envs)
        ],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    env0 = sync.envs[0].unwrapped
    rng = np.random.default_rng(seed)
    sync.reset(seed=seed)
    for _ in range(2):
        sync.step(_actions(rng, num_envs, env0.vocab_size, env0.eos_id))
    t0 = time.perf_counter()
    for _ in range(steps):
        sync.step(_actions(rng, num_envs, env0.vocab_size, env0.eos_id))
    dt = time.perf_counter() - t0
    sync.close()
    return {"steps": steps, "seconds": dt, "steps_per_s": steps / dt}


def bench_language(
    num_envs: int = 64, kl_coef: float = 0.05, quick: bool = False, threads: int = 1
) -> dict[str, Any]:
    """Run both measurements and return the figures (also printed by ``main``).

    ``threads`` is torch's intra-op thread count for both sides (1 by default: on a shared 2-core
    machine more threads than free cores make small matrix products much slower).
    """
    import torch

    init_torch(threads)
    native = _time_native(num_envs, 32, 2 if quick else 4, kl_coef)
    sync = _time_sync(num_envs, 32, 8 if quick else 32, kl_coef)
    short = _time_native(num_envs, 32, 2 if quick else 4, kl_coef, seed=1)
    long = _time_native(num_envs, 128, 1, kl_coef, seed=1)
    return {
        "num_envs": num_envs,
        "kl_coef": kl_coef,
        "torch_threads": torch.get_num_threads(),
        "native_steps_per_s": native["steps_per_s"],
        "sync_steps_per_s": sync["steps_per_s"],
        "native_over_sync": native["steps_per_s"] / sync["steps_per_s"],
        "us_per_token_32": short["s_per_token"] * 1e6,
        "us_per_token_128": long["s_per_token"] * 1e6,
        "per_token_ratio_128_over_32": long["s_per_token"] / short["s_per_token"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    res = bench_language(args.num_envs, args.kl_coef, args.quick, args.threads)
    print(json.dumps(res, indent=2))
    if args.out:
        write_json(args.out, res)


if __name__ == "__main__":
    main()
