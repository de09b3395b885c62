"""``python -m benchmarks.compare_lm``: the jobs, ``--jobs`` processes, resuming, the outputs."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from benchmarks.common import RESULTS, Timer, append_csv_row, load_average, write_csv
from benchmarks.compare_lm import summary
from benchmarks.compare_lm.suites import ALGOS, FULL, QUICK, TASKS, Budget

RUNS_CSV, CURVES_CSV, TABLE_MD, PLOT_PNG = (
    "compare_lm_runs.csv",
    "compare_lm_curves.csv",
    "compare_lm.md",
    "compare_lm.png",
)
#: the longest runs first, so that --jobs keeps its processes busy to the end
ORDER = ("sb3-ppo", "dpo", "ppo", "best-of-n", "a2c", "reinforce", "rloo", "grpo", "es")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks import compare_lm

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_lm", description=compare_lm.__doc__.splitlines()[0]
    )
    p.add_argument(
        "--quick", action="store_true", help="CI smoke test: all algorithms, 2 tasks, 1 seed, tiny budget"
    )
    p.add_argument("--algos", nargs="+", default=list(ALGOS), help=f"subset of {', '.join(ALGOS)}")
    p.add_argument("--tasks", nargs="+", default=None, help=f"subset of {', '.join(TASKS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (each torch at 1 thread)")
    p.add_argument(
        "--out", default=None, help="output folder (default benchmarks/results; a temp dir with --quick)"
    )
    p.add_argument("--report-only", action="store_true", help="rewrite the table and plot from the CSVs")
    args = p.parse_args(argv)
    bad = [a for a in args.algos if a not in ALGOS]
    if bad:
        p.error(f"unknown algorithm(s) {', '.join(bad)}; allowed: {', '.join(ALGOS)}")
    if args.tasks is not None:
        bad = [t for t in args.tasks if t not in TASKS]
        if bad:
            p.error(f"unknown task(s) {', '.join(bad)}; allowed: {', '.join(TASKS)}")
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    return args


def _read(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _key(r: dict[str, Any]) -> tuple[str, str, int]:
    return (str(r["task"]), str(r["algo"]), int(r["seed"]))


def _init_worker() -> None:
    from benchmarks.common import init_torch

    init_torch(1)


def _job(task: str, algo: str, seed: int, budget: Budget) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from benchmarks.compare_lm.runners import run_one

    out = run_one(task, algo, seed, budget)
    return out.run, out.curve


def _log_run(run: dict[str, Any], log: Callable[[str], None]) -> None:
    log(
        f"{run['task']:15s} {run['algo']:10s} seed {run['seed']}: reward {float(run['base_reward']):+.3f} -> "
        f"{float(run['final_reward']):+.3f}  KL {float(run['final_kl']):6.2f}  tokens {run['tokens']}  "
        f"train CPU {float(run['cpu_seconds']):6.1f} s  wall {float(run['wall_seconds']):6.1f} s"
    )


def report(out: str, budget: Budget, tasks: list[str], algos: list[str], header: str) -> str:
    """Write the table (``compare_lm.md``) and the plot from the CSVs in ``out``; return the table."""
    runs = _read(os.path.join(out, RUNS_CSV))
    curves = _read(os.path.join(out, CURVES_CSV))
    table = summary.summarise(runs, curves, budget.kl_budgets, tasks, algos)
    md = summary.markdown_table(table, budget.kl_budgets)
    done = {_key(r) for r in runs}
    missing = [f"{t}/{a}/{s}" for t in tasks for a in algos for s in budget.seeds if (t, a, s) not in done]
    text = header + "\n\n" + md + "\n"
    if missing:
        text += f"\n**Partial: {len(missing)} run(s) missing:** {', '.join(missing)}\n"
    with open(os.path.join(out, TABLE_MD), "w") as f:
        f.write(text)
    summary.plot(os.path.join(out, PLOT_PNG), curves, tasks, algos)
    return text


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> int:
    """Run the missing (task, algorithm, seed) runs, then write the table and the plot."""
    args = _parse_args(argv)
    budget = QUICK if args.quick else FULL
    if args.tasks is not None or args.seeds is not None:
        budget = dataclasses.replace(
            budget,
            tasks=tuple(args.tasks or budget.tasks),
            seeds=tuple(budget.seeds if args.seeds is None else args.seeds),
        )
    out = args.out or (tempfile.mkdtemp(prefix="compare_lm_quick_") if args.quick else str(RESULTS))
    os.makedirs(out, exist_ok=True)
    tasks, algos = list(budget.tasks), [a for a in ALGOS if a in args.algos]  # the table's order
    runs_path, curves_path = os.path.join(out, RUNS_CSV), os.path.join(out, CURVES_CSV)
    cmd = "python -m benchmarks.compare_lm " + " ".join(argv if argv is not None else sys.argv[1:])
    clock = Timer()
    load0 = load_average()
    failed: list[tuple[str, str, int]] = []
    if not args.report_only:
        done = {_key(r) for r in _read(runs_path)}
        # curve rows of a run that never wrote its run row (killed mid-write) are dropped
        curves = _read(curves_path)
        kept = [r for r in curves if _key(r) in done]
        if len(kept) != len(curves):
            write_csv(curves_path, kept, list(curves[0]))
        # the longest runs first (ORDER), so that --jobs keeps its processes busy to the end
        by_cost = sorted(algos, key=ORDER.index)
        jobs = [(t, a, s) for a in by_cost for s in budget.seeds for t in tasks if (t, a, s) not in done]
        log(f"{len(done)} run(s) already in {runs_path}; {len(jobs)} to run with {args.jobs} process(es)")

        def save(run: dict[str, Any], curve: list[dict[str, Any]]) -> None:
            for row in curve:
                append_csv_row(curves_path, row)
            append_csv_row(runs_path, run)
            _log_run(run, log)
            sys.stdout.flush()

        if args.jobs == 1:
            _init_worker()
            for t, a, s in jobs:
                try:
                    save(*_job(t, a, s, budget))
                except Exception:  # noqa: BLE001 - one failed run must not lose the others
                    failed.append((t, a, s))
                    log(f"{t} {a} seed {s} FAILED:\n{traceback.format_exc()}")
        else:
            with ProcessPoolExecutor(
                args.jobs, mp_context=get_context("spawn"), initializer=_init_worker
            ) as pool:
                futures = {pool.submit(_job, t, a, s, budget): (t, a, s) for t, a, s in jobs}
                for fut in as_completed(futures):
                    try:
                        save(*fut.result())
                    except Exception:  # noqa: BLE001
                        failed.append(futures[fut])
                        log(f"{futures[fut]} FAILED:\n{traceback.format_exc()}")
        if failed:
            log(f"{len(failed)} run(s) failed: {failed}")
    header = (
        f"# compare_lm{' (--quick)' if args.quick else ''}\n\n"
        f"Command: `{cmd}`; this invocation's wall time {clock.seconds:.0f} s; load average before "
        f"{load0}, after {load_average()}.\n"
        f"Budget: {budget.tokens} generated tokens per trained run (SB3 PPO {budget.sb3_tokens}); DPO "
        f"{budget.dpo_pairs} comparisons and {budget.dpo_update_tokens} update tokens; best-of-n pool "
        f"{budget.bon_pool} per prompt; {budget.eval_episodes} evaluation prompts; seeds "
        f"{', '.join(map(str, budget.seeds))}.\n"
        "Reward = gold on simulated_human, task reward elsewhere; ± = 95% t-interval over seeds "
        "(t with n-1 df); reward @ KL≤b = best evaluated reward with KL ≤ b nats, per run, then over seeds. "
        "KL: exact per position (custom agents, DPO), sampled-token k1 (sb3-ppo), analytic log n - (n-1)/n "
        "(best-of-n). Train CPU s: training only (DPO without its comparisons; best-of-n = sampling and "
        "scoring its pool). Tokens: generated in training; other tokens: DPO's comparisons, best-of-n's pool."
    )
    text = report(out, budget, tasks, algos, header)
    log(text)
    log(f"wrote {out}/{RUNS_CSV}, {CURVES_CSV}, {TABLE_MD}, {PLOT_PNG}")
    return 1 if failed else 0


__all__ = ["CURVES_CSV", "PLOT_PNG", "RUNS_CSV", "TABLE_MD", "main", "report"]
