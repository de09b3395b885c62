"""RLHF/SimulatedHuman-v0: the reward is the learned proxy, the gold utility is in info."""

from __future__ import annotations

import json

import gymnasium as gym  # noqa: E402
import numpy as np
import pytest

from rlhf_envs.feedback import Episode  # noqa: E402
from rlhf_envs.feedback.learned import RewardModel  # noqa: E402
from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config, word_tokenizer  # noqa: E402
from rlhf_envs.feedback.scripted import Sentiment  # noqa: E402
from rlhf_envs.tasks.simulated_human import ENV_ID  # noqa: E402


@pytest.fixture(scope="module")
def saved_proxy(tmp_path_factory):
    """A small ready proxy (fitting one from the embedded model is the slow test below)."""
    tok = word_tokenizer()
    rm = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32), tok, seed=0)
    rm.fit_preferences(
        ["the food was great ."] * 20, ["the food was bad ."] * 20, ["A"] * 20, epochs=2, lr=1e-3
    )
    path = tmp_path_factory.mktemp("proxy")
    rm.save(path)
    return path, rm


def run_episode(env, seed):
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    while True:
        obs, r, term, trunc, info = env.step(int(rng.integers(env.action_space.n)))
        if term or trunc:
            return r, info


def test_reward_is_the_proxy_and_gold_is_in_info(saved_proxy):
    path, rm = saved_proxy
    env = gym.make(ENV_ID, proxy=str(path), ref_logprobs=False, max_new_tokens=8)
    r, info = run_episode(env, 0)
    ep = Episode(info["prompt"], info["completion"], (), (), True)
    assert r == pytest.approx(float(rm.score([ep])[0]), abs=1e-5) == pytest.approx(info["reward_task"])
    assert info["reward_gold"] == pytest.approx(float(Sentiment().score([ep])[0]), abs=1e-6)
    vec = gym.make_vec(ENV_ID, num_envs=4, proxy=str(path), ref_logprobs=False, max_new_tokens=8)
    vec.reset(seed=1)
    seen = []
    for _ in range(9):
        _, _, term, trunc, infos = vec.step(vec.action_space.sample())
        if "reward_gold" in infos:
            seen.append(infos["reward_gold"][infos["_reward_gold"]])
    gold = np.concatenate(seen)
    assert len(gold) >= 4 and np.all(np.isfinite(gold)) and np.all(np.abs(gold) <= 1)


def test_proxy_is_fitted_from_the_simulated_human(tmp_path, monkeypatch):
    """Build the proxy from scratch (samples from the embedded model, Mistake rater, fit, cache)."""
    monkeypatch.setenv("RLHF_ENVS_CACHE", str(tmp_path))
    env = gym.make(ENV_ID, n_comparisons=60, fit_epochs=1, ref_logprobs=False, max_new_tokens=8)
    task = env.unwrapped.task
    assert task.proxy.last_fit.n_train == 54 and task.human.ledger.comparisons == 60
    assert any((tmp_path / "proxy").iterdir())  # cached for the next env
    again = gym.make(ENV_ID, n_comparisons=60, fit_epochs=1, ref_logprobs=False, max_new_tokens=8)
    eps = [Episode("I bought this.", " It is great.", (), (), True)]
    assert again.unwrapped.task.proxy.score(eps) == pytest.approx(task.proxy.score(eps))


def test_proxy_cache_key_is_versioned(monkeypatch):
    """The proxy cache key hashes everything that determines the fitted proxy plus the version of the
    code that fits it (PROXY_CACHE_VERSION and the package version), so a proxy fitted by older code
    (whose key had no version part) is never found again; fields set away from the defaults add
    parts."""
    import hashlib
    from importlib.metadata import version

    from rlhf_envs.tasks.simulated_human import PROXY_CACHE_VERSION, SimulatedHumanTask

    monkeypatch.setattr(
        SimulatedHumanTask, "_cached_or_fitted", lambda self, cache: RewardModel.__new__(RewardModel)
    )
    task = SimulatedHumanTask(ref_logprobs=False)
    rater = (
        "RaterConfig(beta=None, gamma=1.0, epsilon=0.1, skip=None, equal=0.0, length_bias=0.0, "
        "position_bias=0.0, label_noise=0.0, keyword_bias=0.0, keywords=('thanks', 'thank', 'please', "
        "'friend', 'kindly', 'great question', 'wonderful question'), likert_cuts=(-0.6, -0.2, 0.2, 0.6), "
        "gold=None, name='Mistake')"
    )
    old = [task.model_path, rater, 500, 3, 0.0003, 0, 24, 32, "built-in prompts", 400]
    code = ("code", PROXY_CACHE_VERSION, version("rlhf_envs"))
    assert PROXY_CACHE_VERSION >= 2
    assert task.proxy_cache_key() == hashlib.sha256(repr([*old, code]).encode()).hexdigest()[:16]
    assert task.proxy_cache_key() != hashlib.sha256(repr(old).encode()).hexdigest()[:16]  # 0.1.0's key
    fluent = SimulatedHumanTask(ref_logprobs=False, gold="fluent_vader", n_members=3)
    parts = [*old, ("n_members", 3), ("gold", "fluent_vader"), code]
    assert fluent.proxy_cache_key() == hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def test_proxy_from_older_code_is_not_reused(saved_proxy, tmp_path, monkeypatch):
    """A proxy cached under the unversioned key of version 0.1.0 is ignored (a new one is fitted and
    cached with its key record); a cache entry whose key record does not match is an error."""
    import hashlib
    import shutil

    from rlhf_envs.errors import ConfigValueError
    from rlhf_envs.tasks.simulated_human import CACHE_KEY_FILE, SimulatedHumanTask

    path, rm = saved_proxy
    monkeypatch.setenv("RLHF_ENVS_CACHE", str(tmp_path))
    fits = []

    def fake_fit(self):
        fits.append(1)
        return rm

    with monkeypatch.context() as m:
        m.setattr(SimulatedHumanTask, "_cached_or_fitted", lambda self, cache: rm)
        probe = SimulatedHumanTask(ref_logprobs=False, n_comparisons=7)
    old_key = hashlib.sha256(repr(probe.proxy_cache_parts()[:-1]).encode()).hexdigest()[:16]
    shutil.copytree(path, tmp_path / "proxy" / old_key)  # what 0.1.0 would have cached
    monkeypatch.setattr(SimulatedHumanTask, "fit_proxy", fake_fit)

    task = SimulatedHumanTask(ref_logprobs=False, n_comparisons=7)
    assert fits == [1], "the old-key proxy must not be loaded"
    entry = tmp_path / "proxy" / task.proxy_cache_key()
    record = json.loads((entry / CACHE_KEY_FILE).read_text())
    assert record["key"] == task.proxy_cache_key() and "('code', " in record["parts"]
    SimulatedHumanTask(ref_logprobs=False, n_comparisons=7)
    assert fits == [1], "the new entry is found again"
    record["parts"] = "something else"
    (entry / CACHE_KEY_FILE).write_text(json.dumps(record))
    with pytest.raises(ConfigValueError, match="Delete that directory"):
        SimulatedHumanTask(ref_logprobs=False, n_comparisons=7)
