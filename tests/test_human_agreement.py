"""Agreement statistics of the admin page on examples computed by hand and on published examples."""

from __future__ import annotations

import math

import pytest

from agents.human.agreement import (
    agreement_report,
    fleiss_kappa,
    krippendorff_alpha,
    percent_agreement,
    position_bias,
)
from agents.human.store import Answer


def test_hand_computed_two_raters_four_items():
    # Items (rater 1, rater 2): (A, A), (A, B), (B, B), (tie, A).
    items = [["A", "A"], ["A", "B"], ["B", "B"], ["tie", "A"]]
    # Per item P_i = 1, 0, 1, 0 -> P = 0.5.
    assert percent_agreement(items) == pytest.approx(0.5)
    # Category shares over the 8 answers: A 4/8, B 3/8, tie 1/8 -> Pe = (16 + 9 + 1) / 64 = 26/64.
    pe = 26 / 64
    assert fleiss_kappa(items) == pytest.approx((0.5 - pe) / (1 - pe))  # = 0.1578...
    # Krippendorff nominal, by hand: coincidences o_AA = 2, o_BB = 2, o_AB = o_BA = 1, o_At = o_tA = 1;
    # n_A = 4, n_B = 3, n_t = 1, n = 8. D_o = (1 + 1 + 1 + 1) / 8 = 0.5;
    # D_e = (2 * 4 * 3 + 2 * 4 * 1 + 2 * 3 * 1) / (8 * 7) = 38 / 56; alpha = 1 - 0.5 / (38 / 56).
    assert krippendorff_alpha(items, "nominal") == pytest.approx(1 - 0.5 / (38 / 56))


def test_perfect_agreement_and_items_with_one_answer():
    items = [["A", "A", "A"], ["B", "B"], ["A"]]  # the last item has one answer: left out
    assert percent_agreement(items) == 1.0
    assert fleiss_kappa(items) == pytest.approx(1.0)
    assert krippendorff_alpha(items) == pytest.approx(1.0)
    assert math.isnan(percent_agreement([["A"]]))
    assert math.isnan(fleiss_kappa([["A", "A"], ["A", "A"]]))  # one category only: undefined


def test_fleiss_kappa_wikipedia_example():
    # Fleiss (1971) as on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters, 5 categories.
    counts = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    items = [[j for j, c in enumerate(row) for _ in range(c)] for row in counts]
    assert percent_agreement(items) == pytest.approx(0.378, abs=5e-4)
    assert fleiss_kappa(items) == pytest.approx(0.210, abs=5e-4)


def test_krippendorff_alpha_published_example_with_missing_values():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units.
    n = None
    obs = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    units = list(zip(*obs, strict=True))
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)
    with pytest.raises(ValueError, match="metric"):
        krippendorff_alpha(units, "ratio")


def test_position_bias_counts_left_choices():
    # not swapped: A is left; swapped: B is left.
    answers = [("A", False), ("B", True), ("A", True), ("tie", False), ("skip", True)]
    pb = position_bias(answers)
    assert pb["n"] == 3
    assert pb["left_share"] == pytest.approx(2 / 3)
    assert pb["se"] == pytest.approx(math.sqrt((2 / 3) * (1 / 3) / 3))


def _ans(q: int, rater: str, choice=None, rating=None, swapped=False, marks=None) -> Answer:
    return Answer(0, q, f"k{q}", rater, choice, rating, swapped, 1.0, 0.0, marks or {})


def test_agreement_report_by_kind():
    answers = [
        _ans(1, "x", "A"),
        _ans(1, "y", "A", swapped=True),
        _ans(2, "x", "B"),
        _ans(2, "y", "skip"),
        _ans(3, "x", rating=4),
        _ans(3, "y", rating=4),
        _ans(4, "x", marks={0: 1, 2: -1}),
        _ans(4, "y", marks={0: 1}),
    ]
    rep = agreement_report(answers, {1: "pairwise", 2: "pairwise", 3: "rating", 4: "per_token"})
    assert rep["pairwise"]["queries_with_2plus"] == 1  # query 2 has one non-skip answer
    assert rep["pairwise"]["percent_agreement"] == 1.0
    assert rep["rating"]["percent_agreement"] == 1.0
    # per-token units: token 0 (1, 1) and token 2 (-1, 0): one of two agrees
    assert rep["per_token"]["tokens_with_2plus"] == 2
    assert rep["per_token"]["percent_agreement"] == 0.5
    assert rep["position_bias"]["n"] == 3  # A, A(swapped), B
