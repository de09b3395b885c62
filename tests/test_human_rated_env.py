"""RLHF/HumanRatedReview-v0: held-out real review openings judged by a reward model of real ratings.

The registry-wide tests (tests/test_envs.py) run it with its default judge (fitted once per test
session into the session cache). These tests use a small fit (64 train sentences, one epoch, a few
seconds) or a saved model, and check what is particular to the env: where its prompts and training
sentences come from, the info keys, the reward's scale and the judge cache.
"""

from __future__ import annotations

import json
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlhf_envs
from rlhf_envs.data import hutto2014
from rlhf_envs.errors import ConfigError, ConfigValueError
from rlhf_envs.tasks.human_rated import (
    ENV_ID,
    JUDGE_CACHE_VERSION,
    RATING_SCALE,
    HumanRatedReviewTask,
    opening,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = {"n_train": 64, "fit_epochs": 1, "max_new_tokens": 6}


@pytest.fixture(scope="module")
def small_task() -> HumanRatedReviewTask:
    return HumanRatedReviewTask(cache=False, **SMALL)


@pytest.fixture(scope="module")
def judge_dir(small_task, tmp_path_factory):
    path = tmp_path_factory.mktemp("judge")
    small_task.judge.save(path)
    return path


def test_registered() -> None:
    assert ENV_ID in rlhf_envs.list_envs()


def test_opening_cuts_the_first_words() -> None:
    assert opening("one two three four five", 0.4) is None  # fewer than 6 words: no prompt
    words = [f"w{i}" for i in range(40)]
    assert opening(" ".join(words[:10]), 0.4) == "w0 w1 w2 w3"
    assert opening(" ".join(words[:6]), 0.1) == "w0 w1 w2"  # at least 3 words
    assert opening(" ".join(words), 0.9) == " ".join(words[:10])  # at most 10


def test_prompts_are_openings_of_held_out_sentences(small_task) -> None:
    by_key = {r.key: r for r in hutto2014.load(("movies", "amazon"))}
    assert len(small_task.prompts) > 2000
    for rec in small_task.prompts[::97]:
        source = by_key[rec["source_id"]]
        assert source.split == "test" and source.domain in ("movies", "amazon")
        assert source.text.startswith(rec["prompt"]) or " ".join(source.text.split()).startswith(
            rec["prompt"]
        )
        assert len(rec["prompt"].split()) < len(source.text.split())
        assert rec["human_mean"] == source.mean


def test_judge_is_fitted_on_train_sentences_only(small_task) -> None:
    train = small_task.training_sentences()
    assert len(train) == 64
    assert all(r.split == "train" and r.domain in ("movies", "amazon") for r in train)
    again = HumanRatedReviewTask.training_sentences(small_task)
    assert [r.key for r in again] == [r.key for r in train]  # seeded


def test_gymnasium_and_sb3_checkers_pass(judge_dir) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(ENV_ID, render_mode="ansi", reward_model=str(judge_dir), max_new_tokens=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)


def test_info_keys_and_reward_is_the_judge_on_prompt_plus_completion(small_task, judge_dir) -> None:
    env = gym.make(ENV_ID, reward_model=str(judge_dir), max_new_tokens=6)
    obs, info = env.reset(seed=5)
    assert {"human_mean", "source_id", "prompt"} <= set(info)
    source = {r.key: r for r in hutto2014.load(("movies", "amazon"), split="test")}[info["source_id"]]
    assert info["human_mean"] == source.mean
    rng = np.random.default_rng(0)
    done = False
    while not done:
        _, reward, term, trunc, step_info = env.step(int(rng.integers(env.action_space.n)))
        done = term or trunc
    text = info["prompt"] + step_info["completion"]
    expected = small_task.judge.score_texts([text])[0]
    assert reward == pytest.approx(float(expected), abs=1e-5)
    assert step_info["human_mean"] == source.mean
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer().polarity_scores(text)["compound"] if text.strip() else 0.0
    assert step_info["vader"] == pytest.approx(vader, abs=1e-6)


def test_user_prompt_has_no_human_mean(judge_dir) -> None:
    env = gym.make(ENV_ID, reward_model=str(judge_dir), max_new_tokens=3, prompts=["I watched it twice and"])
    _, info = env.reset(seed=0)
    assert info["source_id"] == "" and math.isnan(info["human_mean"])


def test_vector_env_infos(judge_dir) -> None:
    vec = gym.make_vec(ENV_ID, num_envs=3, reward_model=str(judge_dir), max_new_tokens=4)
    _, info = vec.reset(seed=1)
    assert info["human_mean"].shape == (3,) and np.all(np.abs(info["human_mean"]) <= 4)
    eos = vec.unwrapped.eos_id if hasattr(vec.unwrapped, "eos_id") else vec.eos_id
    _, rewards, term, _, info = vec.step(np.full(3, eos))
    assert term.all() and np.all(np.isfinite(rewards))
    assert np.all(np.abs(info["vader"]) <= 1) and info["human_mean"].shape == (3,)


def test_reward_scale_is_mean_rating_over_4(small_task, monkeypatch) -> None:
    """The regression targets are the mean ratings divided by 4 (the -4..+4 scale onto [-1, 1])."""
    from rlhf_envs.feedback.learned import RewardModel

    seen = {}

    def spy(self, items, ratings, **kw):  # noqa: ANN001, ANN202
        seen["items"], seen["ratings"], seen["kw"] = list(items), np.asarray(ratings), kw
        return None

    monkeypatch.setattr(RewardModel, "fit_ratings", spy)
    small_task.fit_judge()
    records = small_task.training_sentences()
    assert seen["items"] == [r.text for r in records]
    np.testing.assert_allclose(seen["ratings"], [r.mean / RATING_SCALE for r in records])
    assert np.all(np.abs(seen["ratings"]) <= 1.0)
    assert seen["kw"]["epochs"] == 1 and seen["kw"]["val_fraction"] == 0.0


@pytest.mark.slow
def test_default_judge_reads_real_sentiment_on_the_minus_1_to_1_scale() -> None:
    """The default judge (4,000 train sentences, one epoch; minutes to fit on a busy machine, then
    cached for the session) orders held-out real sentences like people do, on the -1..1 scale.
    (A 64-sentence fit does not: it predicts about the same number for every text.)"""
    env = gym.make(ENV_ID)
    judge = env.unwrapped.task.judge
    test = hutto2014.load(("movies", "amazon"), split="test")
    s = judge.score_texts([r.text for r in test]).astype(float)
    y = np.array([r.mean for r in test])
    assert np.corrcoef(s, y)[0, 1] > 0.3  # 0.376 measured
    assert np.mean(np.abs(s) <= 1.0) > 0.99
    assert s[y > 2.5].mean() > s[y < -2.5].mean() + 0.15  # 0.18 vs -0.06 measured


def test_judge_is_cached_and_reused(monkeypatch, rlhf_envs_cache) -> None:
    calls = []
    real = HumanRatedReviewTask.fit_judge

    def counting(self):  # noqa: ANN001, ANN202
        calls.append(1)
        return real(self)

    monkeypatch.setattr(HumanRatedReviewTask, "fit_judge", counting)
    kw = {"n_train": 16, "fit_epochs": 1, "max_new_tokens": 4, "fit_seed": 7, "ref_logprobs": False}
    a = HumanRatedReviewTask(**kw)
    b = HumanRatedReviewTask(**kw)
    assert len(calls) == 1
    path = rlhf_envs_cache / "human_rm" / a.judge_cache_key()
    record = json.loads((path / "cache_key.json").read_text())
    assert record["key"] == a.judge_cache_key() and record["version"] == JUDGE_CACHE_VERSION
    texts = ["A fine, warm film.", "Broke after a week."]
    np.testing.assert_allclose(a.judge.score_texts(texts), b.judge.score_texts(texts), atol=1e-6)
    assert HumanRatedReviewTask(**{**kw, "fit_seed": 8}).judge_cache_key() != a.judge_cache_key()
    assert len(calls) == 2


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"domains": "movies"}, ConfigError),
        ({"domains": ["movies", "poetry"]}, ConfigValueError),
        ({"domains": []}, ConfigError),
        ({"opening_fraction": 1.0}, ConfigValueError),
        ({"n_train": 0}, ConfigValueError),
        ({"fit_epochs": 1.5}, ConfigError),
        ({"cache": "yes"}, ConfigError),
    ],
)
def test_bad_arguments_name_the_field(kwargs, error) -> None:
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        HumanRatedReviewTask(**kwargs)
