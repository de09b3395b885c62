"""benchmarks/query_selection.py: the threshold rule, the paired summary and a real smoke run."""

from __future__ import annotations

import csv
import json

import pytest

from benchmarks import query_selection as qs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(golds: list[float], batch: int = 8) -> list[dict]:
    return [
        {
            "queries": batch * (i + 1),
            "bo_gold": g,
            "concordance": 0.5 + g / 10,
            "chosen_gold_gap": 0.3,
            "chosen_gold_ties": 0.0,
        }
        for i, g in enumerate(golds)
    ]


def test_queries_to_level_is_the_first_model_at_or_above_it():
    rows = _rows([0.6, 0.76, 0.7, 0.9])
    assert qs.queries_to_level(rows, 0.75) == 16
    assert qs.queries_to_level(rows, 0.9) == 32
    assert qs.queries_to_level(rows, 0.95) is None


def test_isotonic_statistic_ignores_a_single_lucky_refit():
    rows = _rows([0.6, 0.9, 0.6, 0.7, 0.8, 0.8])  # one refit at 16 queries jumps, the next falls back
    assert qs.queries_to_level(rows, 0.75, "first") == 16
    # isotonic fit: (0.9, 0.6, 0.7) pool to 0.733, so the curve first reaches 0.75 at 40 queries
    assert qs.queries_to_level(rows, 0.75, "isotonic") == 40
    with pytest.raises(ValueError, match="statistic must be one of"):
        qs.queries_to_level(rows, 0.75, "median")


def test_decision_rule_needs_all_three_conditions():
    results = {
        s: {"random": _rows([0.5, 0.6, 0.7, 0.8]), "disagreement": _rows([0.5, 0.7 + e, 0.8, 0.8])}
        for s, e in ((1, 0.0), (2, 0.01), (3, 0.02))
    }
    summary = qs.summarize(results, levels=(0.75,), statistic="isotonic")
    assert qs.decision(summary, 0.75) == {
        "ratio_of_means_below_1": True,
        "fewer_in_more_seeds": True,
        "bo_gold_difference_above_2_sem": True,
        "shown": True,
    }
    results[2]["disagreement"] = _rows([0.5, 0.6, 0.6, 0.6])  # never reaches 0.75: counts as more
    summary = qs.summarize(results, levels=(0.75,), statistic="isotonic")
    q = summary["queries_to_level"]["0.75"]
    assert (q["disagreement_fewer_in"], q["random_fewer_in"], q["seeds_both_reached"]) == (2, 1, 2)
    assert not qs.decision(summary, 0.75)["bo_gold_difference_above_2_sem"]
    assert not qs.decision(summary, 0.75)["shown"]


def test_summary_ratio_counts_only_seeds_where_both_rules_reached_the_level():
    results = {
        1: {"random": _rows([0.5, 0.6, 0.8]), "disagreement": _rows([0.5, 0.8, 0.8])},
        2: {"random": _rows([0.5, 0.8, 0.8]), "disagreement": _rows([0.5, 0.6, 0.7])},  # d never at 0.75
        3: {"random": _rows([0.5, 0.6, 0.6, 0.8]), "disagreement": _rows([0.8, 0.8, 0.8, 0.8])},
    }
    s = qs.summarize(results, levels=(0.75,))["queries_to_level"]["0.75"]
    assert [p["ratio"] for p in s["per_seed"]] == [16 / 24, None, 8 / 32]
    assert s["seeds_both_reached"] == 2
    assert s["ratio_of_means"] == pytest.approx(((16 + 8) / 2) / ((24 + 32) / 2))
    # seed 2: disagreement never reached the level, so random needed fewer there
    assert (s["disagreement_fewer_in"], s["random_fewer_in"]) == (2, 1)
    d = qs.summarize(results, levels=(0.75,))["paired_difference"]["bo_gold"]
    # the first measurement is shared by both rules by design and is left out of the difference
    assert d["per_seed"][1] == pytest.approx((0.6 + 0.7) / 2 - 0.8)


def test_pool_too_small_for_the_steps_is_refused():
    with pytest.raises(ValueError, match="pool of at least 12 pairs"):
        qs.run_seed(0, pool_pairs=8, batch=4, steps=3, verbose=False)


def test_quick_run_pairs_the_rules_and_writes_its_files(tmp_path):
    assert qs.main(["--quick", "--seeds", "3", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "query_selection.csv")))
    by_rule = {r: [x for x in rows if x["selection"] == r] for r in qs.RULES}
    assert [len(v) for v in by_rule.values()] == [qs.QUICK["steps"]] * 2
    # the first model is fitted on the same random batch under both rules: identical measurements
    first = [
        {k: v for k, v in by_rule[r][0].items() if k not in ("selection", "fit_seconds")} for r in qs.RULES
    ]
    assert first[0] == first[1]
    assert [int(x["queries"]) for x in by_rule["disagreement"]] == [4, 8]
    for x in rows:
        assert 0.0 <= float(x["concordance"]) <= 1.0
    data = json.loads((tmp_path / "query_selection.json").read_text())
    first = qs.DESIGNS["first"]
    assert data["protocol"]["primary"] == first["primary"] and data["protocol"]["statistic"] == "first"
    assert set(data["summary"]["queries_to_level"]) == {str(v) for v in first["levels"]}
    assert set(data["decision_rule"]) >= {"shown", "ratio_of_means_below_1"}
    # the saved CSV re-summarises to the same numbers without re-running
    again = qs.summarize(qs.results_from_csv(str(tmp_path / "query_selection.csv")), first["levels"])
    assert again["queries_to_level"] == data["summary"]["queries_to_level"]
    for key, d in data["summary"]["paired_difference"].items():
        assert again["paired_difference"][key]["per_seed"] == pytest.approx(d["per_seed"])
    assert (tmp_path / "query_selection.png").stat().st_size > 10_000
