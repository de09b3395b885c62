"""SimulatedHuman: each noise operator and bias has the statistical effect it is configured to have."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhf_envs.errors import BudgetExhaustedError, ConfigError, FeedbackError
from rlhf_envs.feedback import Episode
from rlhf_envs.feedback.scripted import FunctionFeedback
from rlhf_envs.feedback.simulated import (
    PRESETS,
    Label,
    RaterConfig,
    SimulatedHuman,
    alpacafarm_pool,
    preset,
)

N = 10_000


class MetaUtility:
    """Gold utility read from ``metadata["u"]`` (fast and exact, for statistics over 10k queries)."""

    def score(self, episodes):
        return np.array([e.metadata["u"] for e in episodes], dtype=np.float32)


class Reversed(MetaUtility):
    def score(self, episodes):
        return -super().score(episodes)


def ep(u: float, completion: str = "x", i: int = 0) -> Episode:
    return Episode(f"q{i}", completion, (), (), True, {"u": u}, seed=i)


def pairs(
    rng: np.random.Generator, n: int = N
) -> tuple[list[Episode], list[Episode], np.ndarray, np.ndarray]:
    ua = rng.uniform(-1, 1, n)
    ub = rng.uniform(-1, 1, n)
    a = [ep(u, f"a {i}", i) for i, u in enumerate(ua)]
    b = [ep(u, f"b {i}", i) for i, u in enumerate(ub)]
    return a, b, ua.astype(np.float32), ub.astype(np.float32)


def better(ua, ub) -> np.ndarray:
    return np.where(ua > ub, Label.A, Label.B)


def test_presets_match_b_pref():
    assert list(PRESETS) == ["Oracle", "Stoc", "Mistake", "Skip", "Myopic", "Equal", "crowd-2014"]
    assert preset("Crowd-2014") == PRESETS["crowd-2014"]  # fitted in benchmarks/human_calibration.py
    assert PRESETS["Stoc"].rationality == 1.0 and PRESETS["Mistake"].mistake_rate == 0.1
    assert (
        PRESETS["Skip"].skip == 0.1
        and PRESETS["Myopic"].myopia_discount == 0.9
        and PRESETS["Equal"].equal == 0.1
    )
    assert preset("oracle").rationality is None
    with pytest.raises(ConfigError, match="unknown rater preset 'Perfect'.*Oracle, Stoc"):
        SimulatedHuman(MetaUtility(), "Perfect")


def test_oracle_is_always_right():
    a, b, ua, ub = pairs(np.random.default_rng(0), 2000)
    labels = SimulatedHuman(MetaUtility(), "Oracle").compare(a, b).labels
    np.testing.assert_array_equal(labels, better(ua, ub))


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_mistake_rate_within_two_points_of_epsilon(eps):
    a, b, ua, ub = pairs(np.random.default_rng(1))
    labels = SimulatedHuman(MetaUtility(), RaterConfig(mistake_rate=eps), seed=3).compare(a, b).labels
    observed = np.mean(labels != better(ua, ub))
    assert abs(observed - eps) < 0.02, observed


def test_boltzmann_choice_follows_the_logistic_curve():
    rng = np.random.default_rng(2)
    d = 0.5
    a = [ep(d, "a", i) for i in range(N)]
    b = [ep(0.0, "b", i) for i in range(N)]
    for beta in (0.5, 2.0, 6.0):
        labels = (
            SimulatedHuman(MetaUtility(), RaterConfig(rationality=beta), seed=int(rng.integers(100)))
            .compare(a, b)
            .labels
        )
        expected = 1 / (1 + math.exp(-beta * d))
        assert abs(np.mean(labels == Label.A) - expected) < 0.02, (beta, np.mean(labels == Label.A))
    # scale divides utilities: beta 2 at scale 2 is beta 1 at scale 1
    labels = SimulatedHuman(MetaUtility(), RaterConfig(rationality=2.0), scale=2.0).compare(a, b).labels
    assert abs(np.mean(labels == Label.A) - 1 / (1 + math.exp(-0.5))) < 0.02


def test_skip_and_equal_thresholds_are_exact():
    a, b, ua, ub = pairs(np.random.default_rng(4))
    skip = SimulatedHuman(MetaUtility(), "Skip").compare(a, b).labels
    np.testing.assert_array_equal(skip == Label.SKIP, np.maximum(ua, ub) < 0.1)
    assert 0.2 < np.mean(skip == Label.SKIP) < 0.4
    equal = SimulatedHuman(MetaUtility(), preset("Equal", mistake_rate=0.5), seed=1).compare(a, b).labels
    # ties exactly where |dU| < 0.1, even with mistakes switched on (equal is applied last)
    np.testing.assert_array_equal(equal == Label.TIE, np.abs(ua - ub) < 0.1)


def test_myopia_discounts_early_tokens():
    def good_count(e: Episode) -> float:
        return float(e.completion.split().count("good"))

    gold = FunctionFeedback(good_count)
    early = Episode("p", "good good x x x x x x x x", (), (), True)
    late = Episode("p", "x x x x x x x x x good", (), (), True)
    assert SimulatedHuman(gold, "Oracle").compare([early], [late]).labels[0] == Label.A
    # myopic return: 0.9**9 + 0.9**8 = 0.82 < 1 for the late one
    assert SimulatedHuman(gold, "Myopic").compare([early], [late]).labels[0] == Label.B
    h = SimulatedHuman(gold, "Myopic")
    assert h._myopic(gold, early, 0.9) == pytest.approx(0.9**9 + 0.9**8)


def test_length_bias_prefers_the_longer_text_at_the_configured_rate():
    # the gold always prefers the shorter text; a biased rater picks the longer one at rate q
    q = 0.636
    a = [ep(1.0, "short", i) for i in range(N)]
    b = [ep(0.0, "much longer text here", i) for i in range(N)]
    labels = SimulatedHuman(MetaUtility(), RaterConfig(length_bias=q), seed=5).compare(a, b).labels
    assert abs(np.mean(labels == Label.B) - q) < 0.02


def test_position_bias_with_randomised_order():
    a = [ep(1.0, "a", i) for i in range(N)]
    b = [ep(0.0, "b", i) for i in range(N)]
    res = SimulatedHuman(MetaUtility(), RaterConfig(position_bias=0.3), seed=6).compare(a, b)
    assert abs(np.mean(res.shown_first) - 0.5) < 0.02  # the order shown is random
    assert abs(np.mean(res.labels == res.shown_first) - (0.3 + 0.7 * 0.5)) < 0.02
    assert abs(np.mean(res.labels == Label.B) - 0.15) < 0.02  # wrong only when B was shown first


def test_alpacafarm_label_replacement_flips_p():
    a, b, ua, ub = pairs(np.random.default_rng(7))
    labels = SimulatedHuman(MetaUtility(), RaterConfig(label_noise=0.25), seed=7).compare(a, b).labels
    assert abs(np.mean(labels != better(ua, ub)) - 0.25) < 0.02


def test_keyword_flattery_bias_shifts_the_choice():
    a = [ep(0.0, "good thanks friend", i) for i in range(N)]  # two flattery words
    b = [ep(0.0, "good", i) for i in range(N)]
    plain = SimulatedHuman(MetaUtility(), RaterConfig(rationality=1.0), seed=8).compare(a, b).labels
    biased = (
        SimulatedHuman(MetaUtility(), RaterConfig(rationality=1.0, keyword_bias=0.5), seed=8)
        .compare(a, b)
        .labels
    )
    assert abs(np.mean(plain == Label.A) - 0.5) < 0.02
    assert abs(np.mean(biased == Label.A) - 1 / (1 + math.exp(-1.0))) < 0.02


def test_pool_routes_by_seeded_hash_and_raters_disagree():
    pool = [RaterConfig(name="r0"), RaterConfig(name="r1", gold=Reversed()), RaterConfig(name="r2")]
    a, b, ua, ub = pairs(np.random.default_rng(9), 3000)
    h = SimulatedHuman(MetaUtility(), pool, seed=11)
    res = h.compare(a, b)
    counts = np.bincount(res.raters, minlength=3) / len(a)
    assert np.all(np.abs(counts - 1 / 3) < 0.04)
    right = better(ua, ub)
    for r in range(3):
        agree = np.mean(res.labels[res.raters == r] == right[res.raters == r])
        assert agree == (0.0 if r == 1 else 1.0)
    # the same pair (either order) goes to the same rater; another seed routes differently
    again = h.compare(b[:100], a[:100])
    np.testing.assert_array_equal(again.raters, res.raters[:100])
    other = SimulatedHuman(MetaUtility(), pool, seed=12).compare(a[:300], b[:300])
    assert np.mean(other.raters != res.raters[:300]) > 0.4
    assert len(alpacafarm_pool()) == 13


def test_likert_ratings():
    us = np.array([-0.9, -0.4, 0.0, 0.4, 0.9])
    det = SimulatedHuman(MetaUtility()).rate([ep(u, "x", i) for i, u in enumerate(us)]).ratings
    assert det.tolist() == [1, 2, 3, 4, 5]
    # ordered logit: P(rating > k) = sigmoid(beta * (u - c_k))
    beta, u = 3.0, 0.1
    r = (
        SimulatedHuman(MetaUtility(), RaterConfig(rationality=beta), seed=2)
        .rate([ep(u, "x", i) for i in range(N)])
        .ratings
    )
    cuts = np.array([-0.6, -0.2, 0.2, 0.6])
    p_above = 1 / (1 + np.exp(-beta * (u - cuts)))
    expected = -np.diff(np.concatenate([[1.0], p_above, [0.0]]))
    observed = np.bincount(r, minlength=6)[1:] / N
    assert np.all(np.abs(observed - expected) < 0.02), (observed, expected)


def test_delay_in_queries_and_steps():
    h = SimulatedHuman(MetaUtility(), delay_queries=2, delay_steps=1)
    t = h.request_comparisons([ep(1.0)], [ep(0.0)])
    assert t.tolist() == [0] and h.collect() == []
    h.advance(1)
    assert h.collect() == []  # needs two more queries
    h.request_ratings([ep(0.9, "y", 1), ep(0.0, "z", 2)])
    assert h.collect() == [(0, "comparison", Label.A)]
    assert h.pending == 2
    h.advance(1)
    h.compare([ep(0.0)] * 2, [ep(0.0)] * 2)
    assert h.collect() == [(1, "rating", 5), (2, "rating", 3)]
    assert h.pending == 0


def test_costs_and_budget_refusal():
    h = SimulatedHuman(
        MetaUtility(), cost_per_comparison=0.5, seconds_per_query=10, seconds_per_word=1, budget=2.0
    )
    h.compare([ep(1.0, "one two")] * 3, [ep(0.0, "three")] * 3)
    assert h.ledger.money == 1.5 and h.ledger.queries == 3
    assert h.ledger.rater_seconds == 3 * 10 + 3 * (2 + 1 + 2)  # completions plus the prompts "q0"
    with pytest.raises(BudgetExhaustedError, match="0.5 left"):
        h.compare([ep(1.0)] * 2, [ep(0.0)] * 2)
    assert h.ledger.money == 1.5 and h.ledger.queries == 3  # a refusal charges nothing
    h.compare([ep(1.0)], [ep(0.0)])
    assert h.remaining_budget() == 0.0
    with pytest.raises(BudgetExhaustedError):
        h.compare([ep(1.0)], [ep(0.0)])
    capped = SimulatedHuman(MetaUtility(), max_queries=2)
    capped.rate([ep(0.0), ep(1.0)])
    with pytest.raises(BudgetExhaustedError, match="max_queries"):
        capped.score([ep(0.0)])


def test_reproducible_and_independent_of_batching():
    cfg = RaterConfig(rationality=2.0, mistake_rate=0.1, label_noise=0.1, position_bias=0.1)
    a, b, _, _ = pairs(np.random.default_rng(10), 400)
    whole = SimulatedHuman(MetaUtility(), cfg, seed=5).compare(a, b).labels
    h = SimulatedHuman(MetaUtility(), cfg, seed=5)
    halves = np.concatenate([h.compare(a[:150], b[:150]).labels, h.compare(a[150:], b[150:]).labels])
    np.testing.assert_array_equal(whole, halves)
    assert not np.array_equal(whole, SimulatedHuman(MetaUtility(), cfg, seed=6).compare(a, b).labels)
    # score(): noise comes from Episode.seed, so order and batching do not matter
    eps = [ep(u, "x", i) for i, u in enumerate(np.linspace(-1, 1, 200))]
    s1 = SimulatedHuman(MetaUtility(), RaterConfig(rationality=2.0), seed=1).score(eps)
    s2 = SimulatedHuman(MetaUtility(), RaterConfig(rationality=2.0), seed=1).score(eps[::-1])[::-1]
    np.testing.assert_array_equal(s1, s2)
    assert s1.dtype == np.float32 and set(np.unique(s1)) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_bad_input_is_an_error():
    h = SimulatedHuman(MetaUtility())
    with pytest.raises(FeedbackError, match="3 A episodes but 2 B"):
        h.compare([ep(0.0)] * 3, [ep(0.0)] * 2)
    with pytest.raises(FeedbackError, match="empty"):
        h.compare([Episode("", "", (), (), True)], [ep(0.0)])
    nan_gold = FunctionFeedback(lambda e: math.nan)
    with pytest.raises(FeedbackError, match="episode 0"):
        SimulatedHuman(nan_gold).compare([ep(0.0)], [ep(1.0)])
    with pytest.raises(ConfigError, match="mistake_rate"):
        RaterConfig(mistake_rate=1.5)
    with pytest.raises(ConfigError, match="gold"):
        SimulatedHuman(object())


def test_former_rater_field_names_warn_and_map_to_the_new_ones():
    """beta/gamma/epsilon became rationality/myopia_discount/mistake_rate; old code keeps working."""
    with pytest.warns(DeprecationWarning) as caught:
        old = RaterConfig(beta=2.0, gamma=0.9, epsilon=0.1)
    messages = " ".join(str(w.message) for w in caught)
    assert len(caught) == 3 and all(n in messages for n in ("rationality", "myopia_discount", "mistake_rate"))
    assert old == RaterConfig(rationality=2.0, myopia_discount=0.9, mistake_rate=0.1)
    with pytest.warns(DeprecationWarning, match="mistake_rate"):
        assert preset("Stoc", epsilon=0.2).mistake_rate == 0.2
    with pytest.warns(DeprecationWarning, match="myopia_discount"):
        assert PRESETS["Myopic"].gamma == 0.9
    with pytest.raises(ConfigError, match="give only rationality"):
        RaterConfig(beta=1.0, rationality=2.0)


def test_cache_repr_keeps_the_former_field_names():
    """Cache keys hash cache_repr(): the 0.1.0 repr, so renaming fields kept cached proxies valid."""
    cfg = preset("Mistake", length_bias=0.3)
    want = (
        "RaterConfig(beta=None, gamma=1.0, epsilon=0.1, skip=None, equal=0.0, length_bias=0.3, "
        "position_bias=0.0, label_noise=0.0, keyword_bias=0.0, keywords=('thanks', 'thank', 'please', "
        "'friend', 'kindly', 'great question', 'wonderful question'), likert_cuts=(-0.6, -0.2, 0.2, 0.6), "
        "gold=None, name='Mistake')"
    )
    assert cfg.cache_repr() == want
    assert repr(cfg) == want.replace("beta=", "rationality=").replace("gamma=", "myopia_discount=").replace(
        "epsilon=", "mistake_rate="
    )
