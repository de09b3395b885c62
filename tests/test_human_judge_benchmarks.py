"""The issue-16 benchmarks on real ratings: human_comparisons, human_judge_ppo and query_selection's
``recorded`` design (their set-up functions, and their --quick modes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import human_comparisons as hc
from benchmarks import human_judge_ppo as hj
from benchmarks import query_selection as qs
from rlhf_envs.data import hutto2014

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_comparisons_use_each_train_sentence_once_within_a_domain() -> None:
    train = hutto2014.load(hc.DOMAINS, split="train")
    i, j = hc.all_pairs(train, seed=0)
    assert len(i) == sum(sum(r.domain == d for r in train) // 2 for d in hc.DOMAINS) == 5066
    used = np.r_[i, j]
    assert len(np.unique(used)) == len(used)  # no sentence twice
    assert all(train[a].domain == train[b].domain for a, b in zip(i, j, strict=True))
    i2, _ = hc.all_pairs(train, seed=0)
    np.testing.assert_array_equal(i, i2)  # seeded
    assert not np.array_equal(i, hc.all_pairs(train, seed=1)[0])


def test_comparison_labels_of_each_source() -> None:
    train = hutto2014.load("amazon", split="train")[:200]
    i, j = np.arange(0, 100), np.arange(100, 200)
    order = hc.labels_of("crowd_order", train, i, j, seed=0)
    mean = np.array([r.mean for r in train])
    np.testing.assert_array_equal(order[mean[i] > mean[j]], 1.0)
    real = hc.labels_of("recorded", train, i, j, seed=0)
    sim = hc.labels_of("crowd-2014", train, i, j, seed=0)
    assert set(np.unique(real)) <= {0.0, 0.5, 1.0} and (real == 0.5).any()  # real raters tie
    assert set(np.unique(sim)) <= {0.0, 1.0}  # the fitted rater never does
    np.testing.assert_array_equal(real, hc.labels_of("recorded", train, i, j, seed=0))


def test_linear_bradley_terry_learns_an_order() -> None:
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(0)
    x = csr_matrix((rng.random((400, 5)) < 0.5).astype(float))
    w_true = np.array([2.0, -1.0, 0.0, 0.5, 0.0])
    d = x[:200] - x[200:]
    y = (d @ w_true > 0).astype(float)
    w = hc.fit_bt(d, y, alpha=0.1)
    assert np.corrcoef(w, w_true)[0, 1] > 0.9


@pytest.mark.slow
def test_human_comparisons_quick(tmp_path) -> None:
    out = hc.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "human_comparisons.json").read_text())
    assert set(saved["curves"]) == set(hc.SOURCES) and (tmp_path / "human_comparisons.png").is_file()
    for curve in out["curves"].values():
        assert [p["comparisons"] for p in curve] == [100, 200]  # 100 and all 200 the quick split allows
        assert all(0.3 < p["mean"] < 0.8 for p in curve)


def test_judge_ppo_summary_across_seeds() -> None:
    runs = [
        {
            "seed": s,
            "before": {"reward": b, "vader": 0.1},
            "after": {"reward": a, "vader": 0.4},
            "gain": a - b,
            "kl_final": k,
        }
        for s, b, a, k in ((0, 0.05, 0.30, 5.0), (1, 0.05, 0.20, 3.0), (2, 0.05, 0.00, 1.0))
    ]
    s = hj.aggregate(runs)
    assert s["reward_after"]["mean"] == pytest.approx(0.1667, abs=1e-4)
    assert s["reward_after"]["sd"] == pytest.approx(np.std([0.3, 0.2, 0.0], ddof=1), abs=1e-4)
    assert s["seeds_improved"] == 2 and s["kl_final"]["mean"] == 3.0
    assert hj.demo_budget() == 20_000


@pytest.mark.slow
def test_human_judge_ppo_quick(tmp_path) -> None:
    out = hj.main(["--quick", "--out", str(tmp_path)])
    run = out["runs"][0]
    assert len(run["samples_before"]) == len(run["samples_after"]) == hj.N_SAMPLES
    for e in run["samples_before"] + run["samples_after"]:
        assert {"prompt", "completion", "reward", "vader", "human_mean_of_source"} <= set(e)
        assert -4 <= e["human_mean_of_source"] <= 4 and -1 <= e["vader"] <= 1
    assert run["timesteps"] >= 150 and np.isfinite(run["kl_final"])
    assert json.loads((tmp_path / "human_judge_ppo.json").read_text())["summary"]["seeds"] == [0]


def test_recorded_design_pool_and_held_out_set() -> None:
    train, a, b, ga, gb, held, hg = qs.recorded_setup(40, pool_pairs=64, eval_prompts=4, per_prompt=16)
    by_key = {r.key: r for r in hutto2014.load(qs.RECORDED_DOMAINS)}
    for x, y, u, v in zip(a, b, ga, gb, strict=True):
        rx, ry = by_key[x.metadata["sentence_id"]], by_key[y.metadata["sentence_id"]]
        assert rx.key != ry.key and rx.domain == ry.domain
        assert rx.split == ry.split == "train" and (u, v) == (rx.mean, ry.mean)
    keys = [e.metadata["sentence_id"] for e in held]
    assert len(set(keys)) == 64 and all(by_key[k].split == "test" for k in keys)
    assert hg.shape == (4, 16) and hg[0, 0] == by_key[keys[0]].mean
    assert qs.DESIGNS["recorded"]["primary"] == 0.5 and qs.DESIGNS["recorded"]["seeds"] == (
        40,
        41,
        42,
        43,
        44,
    )


@pytest.mark.slow
def test_query_selection_recorded_quick(tmp_path) -> None:
    assert qs.main(["--design", "recorded", "--quick", "--seeds", "40", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "query_selection_recorded.json").read_text())
    assert saved["protocol"]["gold"].startswith("crowd mean") and set(saved["decision_rule"]) >= {"shown"}
