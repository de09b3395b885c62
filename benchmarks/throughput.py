"""Throughput of the envs, measured side by side in one run and printed as ratios.

Part 1 (env steps): the natively batched vector env against gymnasium's ``SyncVectorEnv`` over the
single env - what a user would otherwise get from ``gym.make_vec(..., vectorization_mode="sync")`` -
with the same number of sub-envs and uniformly random actions. Both run the same number of steps
in alternating rounds so that machine noise hits both alike; the ratio of medians is reported.

Part 2 (sampler): tokens per second of the custom agent's KV-cached sampler against Hugging Face
``generate()`` on the same model, and each as a fraction of the machine's matrix-multiply bound
(:func:`benchmarks.sampler.bench_sampler`).

Part 3 (PPO): generated tokens per second of the custom PPO against Stable-Baselines3's PPO on
``RLHF/Sentiment-v0`` with the embedded model, same batch and KL penalty
(:mod:`benchmarks.sb3_sentiment`), and of the custom PPO and the custom GRPO against TRL's online
trainer (``GRPOTrainer``) on the same model, prompts, reward, completion length and batch when
``trl`` is installed (:mod:`benchmarks.trl_speed`, which says how to set up its venv; ``make
bench-trl``; reported as skipped otherwise): TRL with its defaults (gradient checkpointing on) and
without gradient checkpointing. Then where a whole PPO and GRPO iteration's time goes (rollout:
sampling, env and reward, reference pass; update: forward, backward, clipping, optimiser) and the
fraction of the matmul bound a whole iteration reaches (:mod:`benchmarks.iteration_profile`).

All parts run in one process, one after the other; each ratio compares two measurements taken
side by side. The report is printed and saved as JSON.

    python -m benchmarks.throughput                      # every part (about 5 minutes idle)
    python -m benchmarks.throughput --parts env          # env steps only: all toy tasks, 64 envs
    python -m benchmarks.throughput --parts env --envs RLHF/Copy-v0 --num-envs 64 --steps 2000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import rlhf_envs  # noqa: F401  (registers the ids)
from benchmarks.common import RESULTS, init_torch, load_average, machine_info, write_json
from rlhf_envs.registration import TOY_IDS


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


PARTS = ("env", "sampler", "ppo")


def bench_ppo_vs_others(
    tokens: int = 4608, sb3_tokens: int = 1152, seed: int = 0, threads: int = 1, profile_iterations: int = 4
) -> dict:
    """Custom PPO against SB3 PPO, custom PPO and GRPO against TRL's GRPOTrainer (when installed):
    generated tokens/s; then the iteration profiles of the custom PPO and GRPO.

    The custom PPO and SB3 use :mod:`benchmarks.sb3_sentiment`'s presets (16 episodes x 24 tokens
    per update, 4 epochs x 4 minibatches, KL 0.05), the custom GRPO
    :data:`benchmarks.trl_speed.GRPO_PRESET` (the same shared settings, checked). SB3 gets fewer
    tokens because it is much slower; tokens/s is what is compared. Each side's preset and full
    resolved config are in the result.
    """
    from benchmarks.iteration_profile import profile_iterations as profile
    from benchmarks.sampler import matmul_flops
    from benchmarks.sb3_sentiment import CUSTOM_PRESET, SB3_PRESET, run_custom, run_sb3
    from benchmarks.trl_speed import GRPO_PRESET, check_held_equal, run_custom_grpo

    init_torch(threads)
    _, t_custom, n_custom, custom_cfg = run_custom(tokens, seed)
    t_grpo, n_grpo, grpo_cfg = run_custom_grpo(tokens, seed)
    _, t_sb3, n_sb3, sb3_cfg = run_sb3(sb3_tokens, seed)
    out: dict = {
        "env_id": "RLHF/Sentiment-v0",
        "torch_threads": threads,
        "custom_ppo": {
            "tokens": n_custom,
            "seconds": t_custom,
            "tok_s": n_custom / t_custom,
            "preset": CUSTOM_PRESET,
            "resolved_config": custom_cfg,
        },
        "custom_grpo": {
            "tokens": n_grpo,
            "seconds": t_grpo,
            "tok_s": n_grpo / t_grpo,
            "preset": GRPO_PRESET,
            "resolved_config": grpo_cfg,
        },
        "held_equal_with_trl": check_held_equal(),
        "sb3_ppo": {
            "tokens": n_sb3,
            "seconds": t_sb3,
            "tok_s": n_sb3 / t_sb3,
            "preset": SB3_PRESET,
            "resolved_config": sb3_cfg,
        },
    }
    out["ratio_custom_over_sb3"] = out["custom_ppo"]["tok_s"] / out["sb3_ppo"]["tok_s"]
    try:
        from benchmarks.trl_speed import bench_trl

        trl = bench_trl(tokens, seed, threads)
        trl_fast = bench_trl(tokens, seed, threads, gradient_checkpointing=False)
    except ImportError as exc:  # trl is optional: say so instead of inventing a number
        out["trl"] = {"skipped": str(exc)}
    else:
        out["trl"] = trl
        out["trl_no_checkpointing"] = trl_fast
        for who in ("ppo", "grpo"):
            ours = out[f"custom_{who}"]["tok_s"]
            out[f"ratio_{who}_over_trl"] = ours / trl["tokens_per_s"]
            out[f"ratio_{who}_over_trl_no_checkpointing"] = ours / trl_fast["tokens_per_s"]
        out["ratio_custom_over_trl"] = out["ratio_ppo_over_trl"]  # the name earlier reports used
    bound = matmul_flops()["flop_per_s_best"]
    out["profile"] = {a: profile(a, profile_iterations, seed, threads, bound) for a in ("ppo", "grpo")}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--envs", nargs="+", default=TOY_IDS)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the sampler and PPO parts")
    parser.add_argument("--ppo-tokens", type=int, default=4608, help="custom PPO (and TRL) tokens")
    parser.add_argument("--sb3-tokens", type=int, default=1152)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: results/throughput.json (results/throughput_env.json with --parts env)",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = RESULTS / ("throughput_env.json" if args.parts == ["env"] else "throughput.json")

    machine = machine_info()  # the machine may be shared: the ratios are what carry over
    load = machine["load_average"]
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {machine['cpus']} CPUs")
    report: dict = {"machine": machine}
    if "env" in args.parts:
        rows = []
        print(
            f"\n[env] env steps per second, {args.num_envs} envs, random actions (median of {args.rounds} rounds)"
        )
        print(f"{'env':22s} {'native':>12s} {'SyncVectorEnv':>14s} {'ratio':>7s}")
        for env_id in args.envs:
            r = bench_env_steps(env_id, args.num_envs, args.steps, args.rounds)
            rows.append(r)
            print(
                f"{env_id:22s} {r['native_steps_per_s']:12,.0f} {r['sync_steps_per_s']:14,.0f} {r['ratio']:6.1f}x"
            )
        report["rounds"] = args.rounds
        report["env_steps"] = rows
    if "sampler" in args.parts:
        from benchmarks.sampler import bench_sampler

        s = bench_sampler(threads=args.threads)
        report["sampler"] = s
        mm = s["matmul"]
        print(f"\n[sampler] batch 64, 32 new tokens; matmul bound {mm['flop_per_s_best'] / 1e9:.1f} GFLOP/s")
        for name, m in s["models"].items():
            print(
                f"  {name:9s} ours {m['ours_tok_s_best']:7,.0f} tok/s ({m['ours_fraction_of_bound']:.0%} of bound)"
                f"  generate() {m['generate_tok_s_best']:7,.0f} tok/s ({m['generate_fraction_of_bound']:.0%})"
                f"  ratio {m['ratio_best']:.2f}x best, {m['ratio_median']:.2f}x median"
            )
    if "ppo" in args.parts:
        p = bench_ppo_vs_others(args.ppo_tokens, args.sb3_tokens, threads=args.threads)
        report["ppo"] = p
        print(
            f"\n[ppo] RLHF/Sentiment-v0, embedded model: custom PPO {p['custom_ppo']['tok_s']:.0f} tok/s, "
            f"SB3 PPO {p['sb3_ppo']['tok_s']:.0f} tok/s -> {p['ratio_custom_over_sb3']:.1f}x"
        )
        if "skipped" in p["trl"]:
            print(f"  TRL: skipped ({p['trl']['skipped']})")
        else:
            t, tf = p["trl"]["tokens_per_s"], p["trl_no_checkpointing"]["tokens_per_s"]
            print(
                f"  TRL {p['trl'].get('trainer', '')} {t:.0f} tok/s (its defaults), {tf:.0f} tok/s without "
                f"gradient checkpointing; custom GRPO {p['custom_grpo']['tok_s']:.0f} tok/s"
            )
            for who in ("ppo", "grpo"):
                print(
                    f"  custom {who.upper()} / TRL: {p[f'ratio_{who}_over_trl']:.2f}x "
                    f"({p[f'ratio_{who}_over_trl_no_checkpointing']:.2f}x against TRL without checkpointing)"
                )
        for who, r in p["profile"].items():
            roll = ", ".join(f"{k} {v:.0%}" for k, v in r["rollout_parts"].items())
            upd = ", ".join(f"{k} {v:.0%}" for k, v in r["update_parts"].items())
            print(
                f"  [{who} iteration] {r['tok_s']:.0f} tok/s over {r['iterations_timed']} iterations: rollout "
                f"{r['rollout_share']:.0%} ({roll}), update {r['update_share']:.0%} ({upd}); "
                f"{r['fraction_of_matmul_bound']:.0%} of the matmul bound "
                f"({r['matmul_flop_per_s'] / 1e9:.0f} GFLOP/s)"
            )
    report["machine"]["load_average_at_end"] = load_average()
    write_json(args.out, report)
    print(f"\nsaved {args.out}")
    return report


if __name__ == "__main__":
    main()
