"""``python -m benchmarks.compare``: parse the arguments, run the suite, write the outputs."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    RESULTS,
    Timer,
    config_columns,
    grid_curve,
    init_torch,
    load_average,
    settings_text,
    steps_to_threshold,
)
from benchmarks.compare import report
from benchmarks.compare.runners import NotApplicable, run_one
from benchmarks.compare.suites import ALGOS, SUITES


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks import compare

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.compare", description=compare.__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="the CI smoke-test suite (one seed, tiny budgets)")
    p.add_argument("--algos", nargs="+", default=list(ALGOS), help=f"subset of {', '.join(ALGOS)}")
    p.add_argument("--envs", nargs="+", default=None, help="subset of the suite's env labels")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 (quick) or 0 1 2 (full)")
    p.add_argument("--timesteps", type=int, default=None, help="override every env's step budget")
    p.add_argument(
        "--out-dir", default=None, help="default: benchmarks/results (runs/compare_quick with --quick)"
    )
    args = p.parse_args(argv)
    bad = [a for a in args.algos if a not in ALGOS]
    if bad:
        p.error(f"unknown algorithm(s) {', '.join(bad)}; allowed: {', '.join(ALGOS)}")
    suite = SUITES["quick" if args.quick else "full"]
    labels = [s.label for s in suite]
    if args.envs is not None:
        bad = [e for e in args.envs if e not in labels]
        if bad:
            p.error(f"unknown env label(s) {', '.join(bad)} for this suite; allowed: {', '.join(labels)}")
    if args.timesteps is not None and args.timesteps < 1:
        p.error(f"--timesteps must be a positive number of env steps, got {args.timesteps}")
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    if args.out_dir is None:
        args.out_dir = os.path.join("runs", "compare_quick") if args.quick else str(RESULTS)
    return args


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> int:
    """Run the suite and write the CSVs, the plot and the table into ``--out-dir``."""
    args = _parse_args(argv)
    init_torch(1)
    import rlhf_envs  # noqa: F401  (registers the RLHF/ ids)

    suite = tuple(
        s for s in SUITES["quick" if args.quick else "full"] if args.envs is None or s.label in args.envs
    )
    if args.timesteps is not None:
        suite = tuple(dataclasses.replace(s, timesteps=args.timesteps) for s in suite)
    os.makedirs(args.out_dir, exist_ok=True)
    load_before = load_average()
    clock = Timer()
    curves: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for spec in suite:
        for algo in args.algos:
            for seed in args.seeds:
                base = {
                    "algo": algo,
                    "env": spec.label,
                    "env_id": spec.env_id,
                    "env_kwargs": settings_text(spec.env_kwargs),
                    "seed": seed,
                    "eval_episodes": spec.eval_episodes,
                    "threshold": spec.threshold,
                }
                try:
                    res = run_one(algo, spec, seed)
                except NotApplicable as exc:
                    runs.append({**base, "status": f"{exc}"})
                    log(f"{spec.label:12s} {algo:17s} seed {seed}: not applicable ({exc})")
                    break  # the same for every seed
                reached = steps_to_threshold(res.curve, spec.threshold)
                row = {
                    **base,
                    "status": "ok",
                    "timesteps": res.timesteps,
                    "train_seconds": round(res.train_seconds, 2),
                    "tokens_per_second": round(res.timesteps / max(res.train_seconds, 1e-9), 1),
                    "final_score": round(res.final_score, 4),
                    "success_rate": round(res.success_rate, 4)
                    if math.isfinite(res.success_rate)
                    else math.nan,
                    "steps_to_threshold": "" if reached is None else reached,
                    "settings": settings_text(res.settings),
                    **config_columns(res.preset, res.config),
                }
                runs.append(row)
                report.write_runs(
                    os.path.join(args.out_dir, "compare_runs.csv"), runs
                )  # partial results survive
                for step, value in grid_curve(res.curve, spec.timesteps):
                    if math.isfinite(value):
                        curves.append(
                            {
                                "algo": algo,
                                "env": spec.label,
                                "env_id": spec.env_id,
                                "seed": seed,
                                "timesteps": step,
                                "score": round(value, 4),
                                "preset": res.preset,
                            }
                        )
                log(
                    f"{spec.label:12s} {algo:17s} seed {seed}: final {row['final_score']:9.4f}  "
                    f"{row['train_seconds']:7.1f} s  {row['tokens_per_second']:8.0f} steps/s  ({res.preset})",
                )
                sys.stdout.flush()
    wall = clock.seconds
    load_after = load_average()
    report.write_curves(os.path.join(args.out_dir, "compare_curves.csv"), curves)
    report.write_runs(os.path.join(args.out_dir, "compare_runs.csv"), runs)
    report.plot(os.path.join(args.out_dir, "compare.png"), suite, args.algos, curves)
    cmd = "python -m benchmarks.compare " + " ".join(argv if argv is not None else sys.argv[1:])
    md = report.markdown(
        suite,
        args.algos,
        runs,
        quick=args.quick,
        command=cmd,
        seeds=args.seeds,
        wall_seconds=wall,
        load_before=load_before,
        load_after=load_after,
    )
    with open(os.path.join(args.out_dir, "compare.md"), "w") as f:
        f.write(md)
    log(md)
    log(f"wrote {args.out_dir}/compare_curves.csv, compare_runs.csv, compare.png, compare.md")
    return 0
