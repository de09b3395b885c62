"""Scripted feedback rules: each gives the value its definition says, and bad input is an error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhf_envs.errors import ConfigError, FeedbackError
from rlhf_envs.feedback import Episode, score_episodes
from rlhf_envs.feedback.scripted import (
    BLEU,
    ROUGE,
    Constraint,
    DistinctN,
    FunctionFeedback,
    HardConstraints,
    KeywordCoverage,
    RegexMatch,
    Sentiment,
    StopAtWordCount,
    TargetLength,
    TargetMatch,
    WeightedSum,
)


def ep(completion: str, prompt: str = "p:", **metadata) -> Episode:
    return Episode(prompt, completion, (1,), tuple(range(len(completion.split()))), False, metadata)


def test_sentiment_orders_texts_and_flips_for_negative_target():
    eps = [ep("this is wonderful and great"), ep("the table is brown"), ep("this is awful and terrible")]
    pos = Sentiment().score(eps)
    assert pos.dtype == np.float32 and pos[0] > 0.5 and abs(pos[1]) < 1e-6 and pos[2] < -0.5
    np.testing.assert_allclose(Sentiment("negative").score(eps), -pos)
    # VADER's rules: negation turns a positive word negative
    assert Sentiment().score([ep("the food was not good")])[0] < 0
    assert Sentiment().score([ep("")])[0] == 0.0
    with pytest.raises(ConfigError, match="positive"):
        Sentiment("happy")


def test_keyword_coverage_whole_words_and_metadata():
    rule = KeywordCoverage(["cat", "big dog"])
    assert rule.score([ep("a cat and a big dog")])[0] == 1.0
    assert rule.score([ep("concatenate the big dogs")])[0] == 0.0  # whole words only
    assert rule.score([ep("the CAT")])[0] == 0.5
    per_prompt = KeywordCoverage()
    assert per_prompt.score([ep("red blue", keywords=["red", "green"])])[0] == 0.5
    with pytest.raises(FeedbackError, match="keywords"):
        per_prompt.score([ep("red")])
    with pytest.raises(ConfigError):
        KeywordCoverage("cat")


def test_target_length_linear_falloff():
    rule = TargetLength(4)
    scores = rule.score([ep("a b c d"), ep("a b"), ep("a b c d e f g h i"), ep("")])
    np.testing.assert_allclose(scores, [1.0, 0.5, 0.0, 0.0])
    assert TargetLength(4, tolerance=2).score([ep("a b")])[0] == 1.0
    assert TargetLength(unit="chars").score([ep("abc", target_length=3)])[0] == 1.0
    with pytest.raises(ConfigError):
        TargetLength(0)


def test_stop_at_word_count_pays_only_with_eos():
    def done(text: str, terminated: bool, target: int) -> Episode:
        return Episode("p:", text, (1,), (2, 3), terminated, {"target_words": target})

    rule = StopAtWordCount()
    scores = rule.score([done("a b c d", True, 4), done("a b", True, 4), done("a b c d", False, 4)])
    np.testing.assert_allclose(scores, [1.0, 0.5, 0.0])
    assert rule.score([done("a b c d e f g h i", True, 4)])[0] == 0.0
    # where it stopped, it agrees with TargetLength in words
    texts = ["a", "a b c", "a b c d e f"]
    np.testing.assert_array_equal(
        rule.score([done(t, True, 3) for t in texts]), TargetLength(3).score([ep(t) for t in texts])
    )
    with pytest.raises(FeedbackError, match="target_words"):
        rule.score([Episode("p:", "a", (1,), (2,), True, {})])


def test_distinct_n_measures_repetition():
    rule = DistinctN(2)
    assert rule.score([ep("a b c d")])[0] == 1.0
    assert rule.score([ep("the the the the the")])[0] == pytest.approx(1 / 4)
    assert rule.score([ep("one")])[0] == 0.0
    assert DistinctN(1).score([ep("a a b b")])[0] == 0.5


def test_regex_match_modes():
    assert RegexMatch(r"\d+").score([ep("abc 12"), ep("none")]).tolist() == [1.0, 0.0]
    assert RegexMatch(r"\d+", mode="fullmatch").score([ep("12"), ep("12a")]).tolist() == [1.0, 0.0]
    with pytest.raises(ConfigError, match="regular expression"):
        RegexMatch("(")


def test_bleu_and_rouge_agree_with_the_libraries():
    import sacrebleu
    from rouge_score import rouge_scorer

    ref = "the cat sat on the mat"
    hyp = "the cat sat on a mat"
    b = BLEU([ref]).score([ep(hyp)])[0]
    assert b == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score / 100, abs=1e-6)
    assert BLEU().score([ep(ref, reference=ref)])[0] == pytest.approx(1.0)
    r = ROUGE("rougeL").score([ep(hyp, references=[ref, "something else"])])[0]
    expected = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, hyp)["rougeL"].fmeasure
    assert r == pytest.approx(expected, abs=1e-6)
    with pytest.raises(FeedbackError, match="reference"):
        BLEU().score([ep(hyp)])
    with pytest.raises(FeedbackError, match="non-empty"):
        ROUGE().score([ep(hyp, reference="")])


def test_weighted_sum_and_components():
    comp = WeightedSum({"len": (TargetLength(2), 2.0), "kw": (KeywordCoverage(["x"]), -1.0)})
    e = [ep("x y"), ep("a b c d")]
    np.testing.assert_allclose(comp.score(e), [2.0 - 1.0, 0.0])
    parts = comp.components(e)
    assert set(parts) == {"len", "kw"}
    with pytest.raises(ConfigError, match="weight"):
        WeightedSum([(TargetLength(2), math.nan)])


def test_hard_constraint_costs_a_fixed_penalty_whatever_the_base_earns():
    base = TargetLength(3)
    rule = HardConstraints(
        base, [Constraint.forbidden_words(["bad"]), Constraint.regex(r"\.$")], penalty=-5.0
    )
    scores = rule.score([ep("a b c."), ep("a bad c."), ep("a b c"), ep("a b.")])
    np.testing.assert_allclose(scores, [1.0, -5.0, -5.0, 2 / 3], rtol=1e-6)
    assert rule.violations([ep("a bad c")])[0] == ["forbidden:bad", r"regex:\.$"]
    bad = HardConstraints(base, [Constraint("x", lambda e: 1)])
    with pytest.raises(FeedbackError, match="bool"):
        bad.score([ep("a")])


def test_user_scorer_nan_is_an_error_naming_the_episode():
    f = FunctionFeedback(lambda e: math.nan if "oops" in e.completion else 1.0, name="mine")
    assert f.score([ep("fine")]).tolist() == [1.0]
    with pytest.raises(FeedbackError, match="episode 1.*oops"):
        f.score([ep("fine"), ep("oops")])
    with pytest.raises(FeedbackError, match="shape"):
        FunctionFeedback(lambda eps: [1.0], batched=True).score([ep("a"), ep("b")])
    # a NaN inside a composite names the term's class too
    with pytest.raises(FeedbackError, match="FunctionFeedback"):
        WeightedSum([(f, 1.0)]).score([ep("oops")])
    assert score_episodes(TargetMatch(), []).shape == (0,)
