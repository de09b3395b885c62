"""benchmarks/compare_lm: the summary maths on hand-made tables, and the --quick run end to end."""

from __future__ import annotations

import csv
import math
import os

import pytest

from benchmarks.compare_lm import summary
from benchmarks.compare_lm.suites import ALGOS, QUICK

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_best_within_takes_the_best_reward_at_or_under_the_kl_budget():
    pts = [(0.0, 0.1), (0.5, 0.3), (1.5, 0.6), (4.0, 0.5), (8.0, 0.9), (math.nan, 5.0)]
    assert summary.best_within(pts, 1.0) == 0.3
    assert summary.best_within(pts, 1.5) == 0.6  # the budget itself is allowed
    assert summary.best_within(pts, 5.0) == 0.6  # a later, worse point does not lower it
    assert summary.best_within(pts, 10.0) == 0.9  # the nan-KL point never counts
    assert math.isnan(summary.best_within(pts, -0.1))
    assert math.isnan(summary.best_within([], 1.0))


def test_t_interval_uses_students_t_with_n_minus_one_degrees_of_freedom():
    mean, half = summary.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.303 * 1.0 / math.sqrt(3))  # sd 1, t(0.975, 2 df) = 4.303
    mean, half = summary.t_interval([0.5, 0.5, 0.5, 0.5])
    assert (mean, half) == (0.5, 0.0)
    mean, half = summary.t_interval([0.7])
    assert mean == 0.7 and math.isnan(half)


def _curve(algo: str, seed: int, points: list[tuple[float, float]], task: str = "t") -> list[dict]:
    return [
        {"task": task, "algo": algo, "seed": seed, "point": i, "kl_ref": kl, "reward": r}
        for i, (kl, r) in enumerate(points)
    ]


def _run(algo: str, seed: int, points: list[tuple[float, float]], task: str = "t") -> dict:
    return {
        "task": task,
        "algo": algo,
        "seed": seed,
        "status": "ok",
        "base_reward": points[0][1],
        "final_reward": points[-1][1],
        "final_kl": points[-1][0],
        "cpu_seconds": 10.0 * (seed + 1),
        "tokens": 100,
        "comparison_tokens": "",
        "sampled_tokens": "",
    }


def test_summarise_matches_kl_per_run_then_averages_over_seeds():
    a = {
        0: [(0.0, 0.0), (0.8, 0.2), (3.0, 0.6)],
        1: [(0.0, 0.0), (1.2, 0.5), (3.0, 0.7)],
        2: [(0.0, 0.0), (0.9, 0.4), (6.0, 0.9)],
    }
    b = {s: [(0.0, 0.0), (0.3, 0.1 * (s + 1))] for s in range(3)}
    curves = [row for s, p in a.items() for row in _curve("a", s, p)]
    curves += [row for s, p in b.items() for row in _curve("b", s, p)]
    runs = [_run("a", s, p) for s, p in a.items()] + [_run("b", s, p) for s, p in b.items()]
    table = summary.summarise(runs, curves, (1.0, 5.0), ["t"], ["a", "b", "missing"])
    assert [r["algo"] for r in table] == ["a", "b"]  # an algorithm without runs has no row
    ra, rb = table
    # KL <= 1: seed 0 -> 0.2, seed 1 -> 0.0 (its 1.2-nat point is over), seed 2 -> 0.4
    m, h = summary.t_interval([0.2, 0.0, 0.4])
    assert ra["reward_kl1"] == pytest.approx(m) and ra["ci_kl1"] == pytest.approx(h)
    # KL <= 5: 0.6, 0.7, 0.4 (seed 2's 6-nat final point is over the budget)
    assert ra["reward_kl5"] == pytest.approx((0.6 + 0.7 + 0.4) / 3)
    assert ra["final_reward"] == pytest.approx((0.6 + 0.7 + 0.9) / 3)
    assert ra["final_kl"] == pytest.approx(4.0) and ra["cpu_seconds"] == pytest.approx(20.0)
    assert rb["reward_kl1"] == pytest.approx(0.2) and rb["seeds"] == 3
    md = summary.markdown_table(table, (1.0, 5.0))
    assert "reward @ KL≤1" in md and "reward @ KL≤5" in md
    assert md.count("\n") == 3  # header, rule, two rows


def test_mean_curve_averages_each_evaluation_point_over_seeds():
    rows = _curve("a", 0, [(0.0, 0.0), (1.0, 0.2)]) + _curve("a", 1, [(0.0, 0.2), (3.0, 0.6)])
    (kl0, r0, h0), (kl1, r1, h1) = summary.mean_curve(rows)
    assert (kl0, kl1) == (0.0, 2.0)
    assert r0 == pytest.approx(0.1) and r1 == pytest.approx(0.4)
    assert h1 == pytest.approx(12.706 * 0.2 * math.sqrt(2) / math.sqrt(2))  # t(0.975, 1 df) x sd / sqrt 2


def _read(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_quick_run_writes_every_algorithm_and_resumes(tmp_path):
    from benchmarks.compare_lm import main

    out = str(tmp_path / "clm")
    lines: list[str] = []
    assert main(["--quick", "--out", out], log=lines.append) == 0
    runs = _read(os.path.join(out, "compare_lm_runs.csv"))
    curves = _read(os.path.join(out, "compare_lm_curves.csv"))
    assert len(runs) == len(ALGOS) * len(QUICK.tasks) * len(QUICK.seeds)
    assert {(r["task"], r["algo"]) for r in runs} == {(t, a) for t in QUICK.tasks for a in ALGOS}
    for r in runs:
        pts = [c for c in curves if (c["task"], c["algo"], c["seed"]) == (r["task"], r["algo"], r["seed"])]
        expected = len(QUICK.bon_n) if r["algo"] == "best-of-n" else len(QUICK.eval_fractions)
        assert 2 <= len(pts) <= expected, (r["algo"], len(pts))
        assert all(math.isfinite(float(p["reward"])) and math.isfinite(float(p["kl_ref"])) for p in pts)
        assert float(pts[0]["kl_ref"]) == pytest.approx(0.0, abs=0.05)  # the base model / n = 1
        if r["algo"] in ("dpo", "best-of-n"):
            assert int(r["tokens"]) == 0
        else:
            assert int(r["tokens"]) > 0 and float(r["cpu_seconds"]) > 0
    assert all(int(r["comparison_tokens"]) > 0 for r in runs if r["algo"] == "dpo")
    assert all(int(r["sampled_tokens"]) > 0 for r in runs if r["algo"] == "best-of-n")
    md = open(os.path.join(out, "compare_lm.md")).read()
    assert "Partial" not in md and md.count("| sentiment |") == len(ALGOS)
    assert os.path.getsize(os.path.join(out, "compare_lm.png")) > 10_000
    # resuming: every run is found, nothing runs again, the files keep their rows
    lines.clear()
    assert main(["--quick", "--out", out], log=lines.append) == 0
    assert any(f"{len(runs)} run(s) already in" in line and "0 to run" in line for line in lines)
    assert len(_read(os.path.join(out, "compare_lm_runs.csv"))) == len(runs)
    assert len(_read(os.path.join(out, "compare_lm_curves.csv"))) == len(curves)


def test_resume_drops_curve_rows_of_a_run_without_its_run_row(tmp_path):
    """A run killed between writing its curve and its run row is run again, not counted twice."""
    from benchmarks.common import write_csv
    from benchmarks.compare_lm import main

    out = str(tmp_path)
    pts = [(0.0, 0.1), (1.0, 0.5)]
    write_csv(os.path.join(out, "compare_lm_runs.csv"), [_run("ppo", 0, pts, "sentiment")])
    done = _curve("ppo", 0, pts, "sentiment")
    write_csv(os.path.join(out, "compare_lm_curves.csv"), done + _curve("ppo", 0, pts, "length"))
    lines: list[str] = []
    assert main(["--quick", "--out", out, "--algos", "ppo", "--tasks", "sentiment"], log=lines.append) == 0
    assert any("1 run(s) already in" in line and "0 to run" in line for line in lines)
    kept = _read(os.path.join(out, "compare_lm_curves.csv"))
    assert [(r["task"], r["point"]) for r in kept] == [("sentiment", "0"), ("sentiment", "1")]
    assert "| sentiment | ppo | 1 | +0.500 |" in open(os.path.join(out, "compare_lm.md")).read()
