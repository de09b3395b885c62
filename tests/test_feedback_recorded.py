"""Recorded raters: real ratings replayed through SimulatedHuman's interface."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from rlhf_envs.data.hutto2014 import RatedSentence
from rlhf_envs.errors import BudgetExhaustedError, ConfigError, FeedbackError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.recorded import CrowdMean, RecordedRaters, episode_for
from rlhf_envs.feedback.simulated import Label

SKEWED = (-4, -4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3, 3, 3)  # 10% / 50% / 40%
RECORDS = [
    RatedSentence("movies", "1", "A skewed sentence.", 0.8, SKEWED),
    RatedSentence("movies", "2", "Always two.", 2.0, (2,) * 15),
    RatedSentence("movies", "3", "Always zero.", 0.0, (0,) * 15),
    RatedSentence("nyt", "1_1", "One or two.", 1.5, (1, 2) * 10),
    RatedSentence("nyt", "1_2", "One or two, again.", 1.5, (1, 2) * 10),
    RatedSentence("nyt", "2_1", "Every level.", 0.0, tuple(range(-4, 5))),
    RatedSentence("tweets", "7", "But why?", -1.0, (-1,) * 20),
    RatedSentence("nyt", "9_9", "But why?", 0.0, (0,) * 20),
]
EP = {r.key: episode_for(r) for r in RECORDS}


def ep(text: str, seed: int = 0, **metadata) -> Episode:
    return Episode("", text, (), (), True, metadata, seed)


def test_rating_draws_follow_the_real_distribution():
    rr = RecordedRaters(RECORDS, seed=3)
    draws = rr.rate([EP["movies/1"]] * 20000).ratings
    counts = np.array([(draws == v).sum() for v in (-4, 0, 3)])
    assert counts.sum() == 20000  # only real ratings come out
    assert chisquare(counts, 20000 * np.array([0.1, 0.5, 0.4])).pvalue > 1e-3
    assert np.allclose(counts / 20000, [0.1, 0.5, 0.4], atol=0.015)
    assert np.allclose(rr.rating_distribution([EP["movies/1"]])[0][[0, 4, 7]], [0.1, 0.5, 0.4])


def test_comparisons_prefer_the_higher_draw_with_documented_ties():
    rr = RecordedRaters(RECORDS, seed=0)
    res = rr.compare([EP["movies/2"]] * 50, [EP["movies/3"]] * 50)
    assert (res.labels == Label.A).all() and res.prob_a() == [1.0] * 50
    res = rr.compare([EP["nyt/1_1"]] * 4000, [EP["nyt/1_2"]] * 4000)  # ratings {1, 2} each
    frac = np.bincount(res.labels, minlength=4) / 4000
    assert np.allclose(frac[:3], [0.25, 0.25, 0.5], atol=0.03)
    assert set(res.prob_a()) == {1.0, 0.0, 0.5}
    skip = RecordedRaters(RECORDS, ties="skip", seed=0).compare([EP["nyt/1_1"]] * 400, [EP["nyt/1_2"]] * 400)
    assert Label.TIE not in skip.labels and (skip.labels == Label.SKIP).mean() > 0.4
    assert None in skip.prob_a()
    coin = RecordedRaters(RECORDS, ties="coin", seed=0).compare(
        [EP["movies/3"]] * 400, [EP["movies/3"]] * 400
    )
    assert set(coin.labels.tolist()) == {Label.A, Label.B} and 0.4 < (coin.labels == Label.A).mean() < 0.6


def test_comparisons_are_seeded_and_independent_of_batching():
    a, b = [EP["movies/1"], EP["nyt/2_1"]] * 100, [EP["nyt/2_1"], EP["movies/1"]] * 100
    one = RecordedRaters(RECORDS, seed=5).compare(a, b)
    two = RecordedRaters(RECORDS, seed=5)
    split = np.concatenate([two.compare(a[:73], b[:73]).labels, two.compare(a[73:], b[73:]).labels])
    assert np.array_equal(one.labels, split)
    assert np.array_equal(one.queries, np.arange(200))
    other = RecordedRaters(RECORDS, seed=6).compare(a, b)
    assert not np.array_equal(one.labels, other.labels)


def test_pool_raters_are_consistent_and_give_distinct_real_ratings():
    rr = RecordedRaters(RECORDS, pool=9, seed=1)
    res = rr.rate([EP["nyt/2_1"]] * 3000)
    by_rater = {int(r): set(res.ratings[res.raters == r].tolist()) for r in np.unique(res.raters)}
    assert sorted(by_rater) == list(range(9))
    assert all(len(v) == 1 for v in by_rater.values())  # each rater always says the same
    assert sorted(v.pop() for v in by_rater.values()) == list(range(-4, 5))  # nine different people
    other = RecordedRaters(RECORDS, pool=9, seed=2).rate([EP["nyt/2_1"]] * 3000)
    assert not np.array_equal(res.ratings, other.ratings)
    crowd = RecordedRaters(RECORDS, seed=1).rate([EP["nyt/2_1"]] * 10)
    assert (crowd.raters == -1).all()


def test_lookup_by_id_by_text_and_pooled_duplicates():
    rr = RecordedRaters(RECORDS, seed=0)
    assert rr.crowd_mean([ep("  Always   two. "), ep("anything", sentence_id="movies/3")]).tolist() == [
        2.0,
        0.0,
    ]
    assert rr.crowd_mean([Episode("Always", " two.", (), (), True)]).tolist() == [2.0]
    # "But why?" is rated under two ids: by text the ratings are pooled, by id they are not
    assert set(rr.rate([ep("But why?")] * 400).ratings.tolist()) == {-1, 0}
    assert set(rr.rate([EP["tweets/7"]] * 50).ratings.tolist()) == {-1}
    assert rr.crowd_mean([ep("But why?")])[0] == pytest.approx(-0.5)
    assert CrowdMean(RECORDS).score([EP["nyt/1_1"], EP["movies/2"]]).tolist() == [1.5, 2.0]


def test_text_without_ratings_is_an_error_and_charges_nothing():
    rr = RecordedRaters(RECORDS, seed=0, cost_per_comparison=1.0)
    with pytest.raises(FeedbackError, match="no real ratings for episode 1.*'A new sentence'"):
        rr.compare([EP["movies/1"]] * 2, [EP["movies/2"], ep("A new sentence")])
    with pytest.raises(FeedbackError, match="sentence_id.*'movies/999'"):
        rr.rate([ep("x", sentence_id="movies/999")])
    assert rr.ledger.queries == 0 and rr.ledger.money == 0.0
    with pytest.raises(ConfigError):
        RecordedRaters(RECORDS, ties="flip")
    with pytest.raises(ConfigError):
        RecordedRaters(RECORDS, pool=0)


def test_ledger_budget_and_delays_like_simulated_human():
    rr = RecordedRaters(
        RECORDS, seed=0, cost_per_comparison=0.5, seconds_per_query=2.0, budget=2.0, delay_queries=2
    )
    tickets = rr.request_comparisons([EP["movies/2"]], [EP["movies/3"]])
    assert tickets.tolist() == [0] and rr.collect() == [] and rr.pending == 1
    rr.compare([EP["movies/2"]] * 2, [EP["movies/3"]] * 2)
    assert rr.collect() == [(0, "comparison", Label.A)]
    assert rr.ledger.comparisons == 3 and rr.ledger.money == 1.5 and rr.ledger.rater_seconds == 6.0
    assert rr.remaining_budget() == 0.5
    with pytest.raises(BudgetExhaustedError, match="nothing was charged"):
        rr.compare([EP["movies/2"]] * 2, [EP["movies/3"]] * 2)
    assert rr.ledger.queries == 3


def test_score_is_a_real_rating_drawn_from_the_episode_seed():
    rr = RecordedRaters(RECORDS, seed=0)
    eps = [ep("Every level.", seed=s) for s in range(200)]
    s1 = rr.score(eps)
    s2 = rr.score(eps[::-1])[::-1]
    assert s1.dtype == np.float32 and np.array_equal(s1, s2)
    assert set(s1.tolist()) <= set(range(-4, 5)) and len(set(s1.tolist())) > 5


def test_real_sentences_replay_their_real_ratings():
    from rlhf_envs.data import hutto2014

    train = hutto2014.load("amazon", split="train")
    rr = RecordedRaters(train, seed=0)
    rec = train[10]
    got = rr.rate([episode_for(rec)] * 200).ratings
    assert set(got.tolist()) <= set(rec.ratings)
    assert rr.crowd_mean([ep(rec.text)])[0] == pytest.approx(rec.mean)
    held = hutto2014.load("amazon", split="test")[0]
    with pytest.raises(FeedbackError, match="no real ratings"):
        rr.rate([ep(held.text)])
