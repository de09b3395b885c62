"""benchmarks/compare.py: the quick suite end to end (as CI runs it) and its statistics helpers."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import compare

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m benchmarks.compare --quick --out-dir <tmp>``, run once for the module."""
    out = tmp_path_factory.mktemp("compare_quick")
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", "--quick", "--out-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_quick_writes_curves_for_every_algorithm(quick_run: Path) -> None:
    rows = _rows(quick_run / "compare_curves.csv")
    assert set(compare.ALGOS) <= {r["algo"] for r in rows}
    text_env = compare.QUICK[0]
    for algo in compare.ALGOS:  # every algorithm runs on the toy task (MaskablePPO included)
        mine = [r for r in rows if r["algo"] == algo and r["env"] == text_env.label]
        assert mine, f"no curve for {algo} on {text_env.label}"
        steps = [int(r["timesteps"]) for r in mine]
        assert steps == sorted(steps) and steps[-1] == text_env.timesteps
        assert all(0.0 <= float(r["score"]) <= 1.0 for r in mine)  # the toy reward is a match fraction
    cart = [r for r in rows if r["env"] == "CartPole-v1"]
    assert cart and all(float(r["score"]) >= 1.0 for r in cart)  # CartPole pays 1 per step survived


def test_quick_writes_runs_table_and_plot(quick_run: Path) -> None:
    runs = _rows(quick_run / "compare_runs.csv")
    ok = [r for r in runs if r["status"] == "ok"]
    assert {r["algo"] for r in ok} == set(compare.ALGOS)
    for r in ok:
        assert int(r["timesteps"]) >= compare.QUICK[0].timesteps
        assert float(r["train_seconds"]) > 0 and float(r["tokens_per_second"]) > 0
        assert math.isfinite(float(r["final_score"]))
    # MaskablePPO cannot run on CartPole (no action mask): reported, not silently dropped
    na = [r for r in runs if r["algo"] == "sb3-maskable_ppo" and r["env"] == "CartPole-v1"]
    assert len(na) == 1 and "action mask" in na[0]["status"]
    table = (quick_run / "compare.md").read_text()
    for algo in compare.ALGOS:
        assert f"| {algo} |" in table
    assert "Seeds: 0." in table and "--quick" in table
    png = (quick_run / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_grid_curve_holds_the_last_value() -> None:
    points = [(100, 1.0), (250, 2.0), (400, 3.0)]
    grid = compare.grid_curve(points, 400, n=4)
    assert [s for s, _ in grid] == [100, 200, 300, 400]
    assert [v for _, v in grid] == [1.0, 1.0, 2.0, 3.0]
    assert math.isnan(compare.grid_curve([(150, 1.0)], 400, n=4)[0][1])  # nothing recorded yet


def test_mean_ci_and_threshold() -> None:
    m, h = compare.mean_ci([1.0, 2.0, 3.0])
    assert m == pytest.approx(2.0) and h == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-3)
    m1, h1 = compare.mean_ci([5.0])
    assert m1 == 5.0 and math.isnan(h1)
    assert compare.steps_to_threshold([(10, 0.1), (20, 0.6), (30, 0.4)], 0.5) == 20
    assert compare.steps_to_threshold([(10, 0.1)], 0.5) is None


def test_bad_arguments_are_named() -> None:
    with pytest.raises(SystemExit):
        compare.main(["--quick", "--algos", "sb3-sac"])
    with pytest.raises(SystemExit):
        compare.main(["--quick", "--envs", "Pong"])
    with pytest.raises(SystemExit):
        compare.main(["--quick", "--timesteps", "0"])
