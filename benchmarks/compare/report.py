"""The comparison's outputs: the curves and runs CSVs, the plot and the markdown summary table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.common import machine_info, mean_ci, pyplot, save_figure, write_csv
from benchmarks.compare.suites import EnvSpec

CURVE_FIELDS = ["algo", "env", "env_id", "seed", "timesteps", "score", "preset"]
RUN_FIELDS = [
    "algo",
    "env",
    "env_id",
    "env_kwargs",
    "seed",
    "status",
    "timesteps",
    "train_seconds",
    "tokens_per_second",
    "final_score",
    "success_rate",
    "eval_episodes",
    "threshold",
    "steps_to_threshold",
    "settings",
    "preset",
    "resolved_config",
]


def write_curves(path: str, rows: list[dict[str, Any]]) -> None:
    """Write the gridded learning curves (one row per run and grid point)."""
    write_csv(path, rows, CURVE_FIELDS)


def write_runs(path: str, rows: list[dict[str, Any]]) -> None:
    """Write one row per run (its preset and full resolved config in the last two columns)."""
    write_csv(path, rows, RUN_FIELDS)


def plot(path: str, suite: Sequence[EnvSpec], algos: list[str], curves: list[dict[str, Any]]) -> None:
    """One panel per env: the mean curve over seeds with a 95% confidence band."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(suite), figsize=(5.5 * len(suite), 4), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, spec in zip(axes[0], suite, strict=True):
        for k, algo in enumerate(algos):
            rows = [r for r in curves if r["env"] == spec.label and r["algo"] == algo]
            if not rows:
                continue
            steps = sorted({r["timesteps"] for r in rows})
            stats = [mean_ci([r["score"] for r in rows if r["timesteps"] == s]) for s in steps]
            mean = np.array([m for m, _ in stats])
            half = np.array([h for _, h in stats])
            ls = "-" if algo.startswith("sb3-") else "--"
            ax.plot(steps, mean, ls, color=colors(k), label=algo)
            if np.isfinite(half).any():
                ax.fill_between(steps, mean - half, mean + half, color=colors(k), alpha=0.15)
        ax.axhline(spec.threshold, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{spec.label} ({spec.env_id})", fontsize=10)
        ax.set_xlabel("env steps (tokens on text envs)")
        ax.set_ylabel("mean return, last 100 training episodes")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    save_figure(fig, path)


def _fmt(x: float, digits: int) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:,.{digits}f}"


def summary_table(suite: Sequence[EnvSpec], algos: list[str], runs: list[dict[str, Any]]) -> str:
    """The markdown summary: one row per (env, algo), aggregated over seeds."""
    head = (
        "| env | algorithm | final score (mean ± 95% CI) | success | steps to threshold "
        "(median, seeds reaching it) | train time s (mean) | tokens/s (mean) |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for spec in suite:
        for algo in algos:
            rows = [r for r in runs if r["env"] == spec.label and r["algo"] == algo]
            if not rows:
                continue
            ok = [r for r in rows if r["status"] == "ok"]
            if not ok:
                lines.append(f"| {spec.label} | {algo} | not applicable: {rows[0]['status']} | | | | |")
                continue
            digits = 3 if spec.is_text else 1
            m, h = mean_ci([r["final_score"] for r in ok])
            score = _fmt(m, digits) + ("" if not math.isfinite(h) else f" ± {_fmt(h, digits)}")
            succ = _fmt(float(np.mean([r["success_rate"] for r in ok])), 3) if spec.is_text else ""
            reached = [r["steps_to_threshold"] for r in ok if r["steps_to_threshold"] != ""]
            steps = f"{int(np.median(reached)):,}" if reached else "-"
            steps += f" ({len(reached)}/{len(ok)})"
            secs = float(np.mean([r["train_seconds"] for r in ok]))
            tps = float(np.mean([r["tokens_per_second"] for r in ok]))
            lines.append(
                f"| {spec.label} | {algo} | {score} | {succ} | {steps} | {_fmt(secs, 1)} | {_fmt(tps, 0)} |"
            )
    return head + "\n".join(lines) + "\n"


def markdown(
    suite: Sequence[EnvSpec],
    algos: list[str],
    runs: list[dict[str, Any]],
    *,
    quick: bool,
    command: str,
    seeds: list[int],
    wall_seconds: float,
    load_before: list[float],
    load_after: list[float],
) -> str:
    """``compare.md``: the command, seeds, envs, machine and load, then :func:`summary_table`."""
    envs = "; ".join(
        f"{s.label} = `{s.env_id}`"
        + (f" ({', '.join(f'{k}={v}' for k, v in s.env_kwargs.items())})" if s.env_kwargs else "")
        + f", {s.timesteps:,} steps, threshold {s.threshold:g}, {s.eval_episodes} eval episodes"
        for s in suite
    )
    machine = machine_info()
    return (
        f"# Algorithm comparison ({'quick' if quick else 'full'} suite)\n\n"
        f"Command: `{command.strip()}`  \n"
        f"Seeds: {', '.join(map(str, seeds))}. Envs: {envs}.  \n"
        f"Total wall time {wall_seconds:.0f} s on {machine['cpus']} CPU cores, one torch thread, Python "
        f"{machine['python']}, torch {machine['torch']}; load average (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after.\n\n"
        "Final score: greedy evaluation on fresh episodes (seeds 10_000 + seed). Steps to threshold: "
        "first step at which the mean return of the last 100 training episodes reached the env's "
        "threshold. Train time and tokens/s (env steps per second) are measured sequentially in this "
        "one run on a shared machine; compare them as ratios. Settings: the preset of each run "
        "(agents/presets.py) and its full resolved config are in `compare_runs.csv`.\n\n"
        + summary_table(suite, algos, runs)
    )
