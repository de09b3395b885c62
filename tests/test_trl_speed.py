"""benchmarks.trl_speed: a clear ImportError without TRL, and a tiny real GRPOTrainer run with it.

TRL is not a dependency of rlhf_envs, so in the project venv the real run is skipped; it runs in an
environment that has ``trl`` installed (see the module docstring of benchmarks/trl_speed.py).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from benchmarks.trl_speed import TRL_MISSING, bench_trl

HAS_TRL = importlib.util.find_spec("trl") is not None


def test_missing_trl_raises_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # a None entry in sys.modules makes `import trl` raise ImportError, installed or not
    monkeypatch.setitem(sys.modules, "trl", None)
    with pytest.raises(ImportError) as info:
        bench_trl(tokens=16, seed=0)
    assert str(info.value) == TRL_MISSING
    assert "not a dependency of rlhf_envs" in str(info.value)
    assert "pip install trl" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"tokens": 0}, "tokens"),
        ({"seed": -1}, "seed"),
        ({"threads": 0}, "threads"),
        ({"tokens": 1.5}, "tokens"),
    ],
)
def test_bad_arguments_are_rejected_before_importing_trl(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be an int"):
        bench_trl(**kwargs)


@pytest.mark.skipif(not HAS_TRL, reason="trl is not installed (not a project dependency)")
def test_tiny_real_grpo_run_counts_tokens_and_stops_at_budget() -> None:
    # 385 tokens cannot fit one generation batch (16 completions x at most 24 tokens = 384)
    res = bench_trl(tokens=385, seed=0, threads=1)
    assert res["trainer"] == "trl.GRPOTrainer"
    n = res["generation_batches"]
    assert n >= 2
    assert res["completions"] == 16 * n
    assert res["optimizer_steps"] == 16 * n  # 4 iterations x 4 minibatches per batch
    per_batch = res["tokens_per_batch"]
    assert len(per_batch) == n and all(16 <= t <= 16 * 24 for t in per_batch)
    assert sum(per_batch) == res["tokens_generated"]
    # stopped after the first batch that reached the budget, not before and not later
    assert sum(per_batch[:-1]) < 385 <= sum(per_batch)
    assert 0 <= res["completions_ended_by_eos"] <= res["completions"]
    assert res["tokens_per_s"] == pytest.approx(res["tokens_generated"] / res["seconds"], rel=0.01)
    assert -1.0 <= res["reward_task_first_batch"] <= 1.0
    assert -1.0 <= res["reward_task_last_batch"] <= 1.0
