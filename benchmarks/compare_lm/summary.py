"""The summary of :mod:`benchmarks.compare_lm`: reward at matched KL budgets, the table, the plot.

Matched KL: for one run (its evaluation points, KL and reward each), the reward at a KL budget is
the best evaluated reward among the points with ``KL <= budget`` (:func:`best_within`; nan when no
point qualifies). Every run's first point (the base model, KL 0; best-of-n's ``n = 1``) qualifies
for every budget >= 0, up to the noise of a sampled KL estimate. Over seeds: the mean and the
half-width of the 95% Student-t interval with ``n - 1`` degrees of freedom
(:func:`benchmarks.common.mean_ci`; 4.303 standard errors for 3 seeds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.common import mean_ci, pyplot


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def best_within(points: Iterable[tuple[float, float]], budget: float) -> float:
    """The highest reward among ``(kl, reward)`` points with ``kl <= budget`` (nan if none)."""
    ok = [r for kl, r in points if math.isfinite(kl) and math.isfinite(r) and kl <= budget]
    return max(ok) if ok else math.nan


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% t half-width over the finite values (see the module docstring)."""
    return mean_ci(values)


def _by_run(curves: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, int], list[Mapping[str, Any]]]:
    out: dict[tuple[str, str, int], list[Mapping[str, Any]]] = {}
    for r in curves:
        out.setdefault((str(r["task"]), str(r["algo"]), int(r["seed"])), []).append(r)
    for rows in out.values():
        rows.sort(key=lambda r: int(r["point"]))
    return out


def summarise(
    runs: Sequence[Mapping[str, Any]],
    curves: Sequence[Mapping[str, Any]],
    kl_budgets: Sequence[float],
    tasks: Sequence[str],
    algos: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per (task, algorithm) with runs: per KL budget the mean and 95% half-width over seeds
    of :func:`best_within`, then the final reward, final KL, CPU seconds and tokens (means)."""
    per_run = _by_run(curves)
    table = []
    for task in tasks:
        for algo in algos:
            rs = [
                r for r in runs if r["task"] == task and r["algo"] == algo and r.get("status", "ok") == "ok"
            ]
            if not rs:
                continue
            row: dict[str, Any] = {"task": task, "algo": algo, "seeds": len(rs)}
            for b in kl_budgets:
                vals = []
                for r in rs:
                    pts = per_run.get((task, algo, int(r["seed"])), [])
                    vals.append(best_within([(_num(p["kl_ref"]), _num(p["reward"])) for p in pts], b))
                row[f"reward_kl{b:g}"], row[f"ci_kl{b:g}"] = t_interval(vals)
            row["final_reward"], row["final_reward_ci"] = t_interval([_num(r["final_reward"]) for r in rs])
            row["base_reward"] = float(np.mean([_num(r["base_reward"]) for r in rs]))
            row["final_kl"], row["final_kl_ci"] = t_interval([_num(r["final_kl"]) for r in rs])
            row["cpu_seconds"] = float(np.mean([_num(r["cpu_seconds"]) for r in rs]))
            row["tokens"] = float(np.mean([_num(r["tokens"]) for r in rs]))
            extra = [_num(r.get("comparison_tokens")) for r in rs] + [
                _num(r.get("sampled_tokens")) for r in rs
            ]
            extra = [x for x in extra if math.isfinite(x)]
            row["other_tokens"] = float(np.mean(extra)) if extra else math.nan
            table.append(row)
    return table


def _pm(mean: float, half: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(half):
        return f"{mean:+.{digits}f}"
    return f"{mean:+.{digits}f} ± {half:.{digits}f}"


def markdown_table(table: Sequence[Mapping[str, Any]], kl_budgets: Sequence[float]) -> str:
    """The summary as a Markdown table (one line per task and algorithm)."""
    head = (
        ["task", "algorithm", "seeds"]
        + [f"reward @ KL≤{b:g}" for b in kl_budgets]
        + ["final reward", "final KL (nats)", "train CPU s", "tokens", "other tokens"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in table:
        cells = [r["task"], r["algo"], str(r["seeds"])]
        cells += [_pm(r[f"reward_kl{b:g}"], r[f"ci_kl{b:g}"]) for b in kl_budgets]
        cells += [
            _pm(r["final_reward"], r["final_reward_ci"]),
            _pm(r["final_kl"], r["final_kl_ci"], 2).lstrip("+"),
            f"{r['cpu_seconds']:.0f}",
            f"{r['tokens']:.0f}",
            "" if not math.isfinite(r["other_tokens"]) else f"{r['other_tokens']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_curve(rows: Sequence[Mapping[str, Any]]) -> list[tuple[float, float, float]]:
    """Per evaluation point index: (mean KL, mean reward, 95% t half-width of the reward) over seeds."""
    by_point: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_point.setdefault(int(r["point"]), []).append(r)
    out = []
    for p in sorted(by_point):
        pts = by_point[p]
        kl = float(np.mean([_num(r["kl_ref"]) for r in pts]))
        m, h = mean_ci([_num(r["reward"]) for r in pts])
        out.append((kl, m, 0.0 if not math.isfinite(h) else h))
    return out


def plot(path: str, curves: Sequence[Mapping[str, Any]], tasks: Sequence[str], algos: Sequence[str]) -> None:
    """One panel per task: reward against KL to the reference, per algorithm the mean over seeds at
    each evaluation point with a 95% t band of the reward."""
    plt = pyplot()
    tasks = [t for t in tasks if any(r["task"] == t for r in curves)]
    if not tasks:
        return
    cols = min(2, len(tasks))
    nrows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.2 * cols, 4.4 * nrows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, task in zip(axes.flat, tasks, strict=False):
        for i, algo in enumerate(algos):
            rows = [r for r in curves if r["task"] == task and r["algo"] == algo]
            if not rows:
                continue
            c = mean_curve(rows)
            x = np.array([p[0] for p in c])
            y = np.array([p[1] for p in c])
            h = np.array([p[2] for p in c])
            style = "--s" if algo == "best-of-n" else "-o"
            ax.plot(x, y, style, ms=3, color=cmap(i % 10), label=algo)
            ax.fill_between(x, y - h, y + h, color=cmap(i % 10), alpha=0.15, lw=0)
        gold = any(str(r.get("reward_gold", "")) not in ("", "nan") for r in curves if r["task"] == task)
        ax.set_title(task + (" (gold reward)" if gold else " (task reward)"))
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("KL to the reference (nats per completion)")
        ax.set_ylabel("reward")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the legend below (save_figure would undo it)
    fig.savefig(path, dpi=110)
    plt.close(fig)
