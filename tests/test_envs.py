"""Registry-wide env tests: every id in ``rlhf_envs.list_envs()`` is tested here by default.

Modelled on Minigrid's suite: the Gymnasium and SB3 checkers, determinism under seeds, the native
vector env against gymnasium's SyncVectorEnv over the single env, pickling, and the bad inputs.
"""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env, data_equivalence
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rlhf_envs
from rlhf_envs.envs import TextGenerationEnv, TextGenerationVectorEnv
from rlhf_envs.errors import ConfigError, EpisodeFinishedError, InvalidActionError

ENV_IDS = rlhf_envs.list_envs()


def rollout(env: gym.Env, seed: int, n_steps: int, action_seed: int = 1) -> list:
    """Step ``env`` with seeded random actions (resetting when done) and record everything."""
    rng = np.random.default_rng(action_seed)
    out = [env.reset(seed=seed)]
    for _ in range(n_steps):
        step = env.step(int(rng.integers(env.action_space.n)))
        out.append(step)
        if step[2] or step[3]:
            out.append(env.reset())
    return out


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_check_env_without_warnings(env_id: str) -> None:
    env = gym.make(env_id, render_mode="ansi")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_check_env(env_id: str) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_rollout(env_id: str) -> None:
    a = rollout(gym.make(env_id), seed=123, n_steps=60)
    b = rollout(gym.make(env_id), seed=123, n_steps=60)
    assert data_equivalence(a, b)
    c = rollout(gym.make(env_id), seed=124, n_steps=60)
    assert not data_equivalence(a, c), "a different seed should give different prompts"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observations_in_space_and_fresh(env_id: str) -> None:
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["input_ids"].dtype == np.int64 and obs["attention_mask"].dtype == np.int8
    obs2, *_ = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    assert env.observation_space.contains(obs2)
    assert not np.shares_memory(obs["input_ids"], obs2["input_ids"])
    assert obs2["attention_mask"].sum() == obs["attention_mask"].sum() + 1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_action_mask_matches_info_and_allows_eos(env_id: str) -> None:
    env = gym.make(env_id)
    _, info = env.reset(seed=0)
    mask = env.unwrapped.action_masks()
    assert mask.dtype == bool and mask.shape == (env.action_space.n,)
    np.testing.assert_array_equal(mask, info["action_mask"].astype(bool))
    assert info["action_mask"].dtype == np.int8
    assert mask[env.unwrapped.eos_id]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_render_ansi_shows_prompt_and_completion(env_id: str) -> None:
    env = gym.make(env_id, render_mode="ansi")
    _, info = env.reset(seed=0)
    assert env.render() == info["prompt"] + "|"
    done = False
    while not done:
        _, _, term, trunc, step_info = env.step(int(env.action_space.n - 1))
        done = term or trunc
    frame = env.render()
    assert frame.startswith(info["prompt"] + "|")
    assert step_info["completion"] in frame


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_pickles_mid_episode(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=3)
    env.step(2)
    clone = pickle.loads(pickle.dumps(env))
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = int(rng.integers(env.action_space.n))
        x, y = env.step(a), clone.step(a)
        assert data_equivalence(x, y)
        if x[2] or x[3]:
            assert data_equivalence(env.reset(), clone.reset())


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_env_pickles(env_id: str) -> None:
    vec = gym.make_vec(env_id, num_envs=3)
    vec.reset(seed=0)
    clone = pickle.loads(pickle.dumps(vec))
    actions = np.array([2, 3, 4])
    assert data_equivalence(vec.step(actions), clone.step(actions))


# -- vector env == SyncVectorEnv over the single env -------------------------------------------------


def _normalise_infos(infos: dict) -> dict:
    """Compare infos by value: SyncVectorEnv and the native env may pick different but equal dtypes."""
    out = {}
    for key, value in infos.items():
        if isinstance(value, dict):
            out[key] = _normalise_infos(value)
        elif isinstance(value, np.ndarray) and value.dtype != object:
            out[key] = value.astype(np.float64) if value.dtype.kind == "f" else value
        else:
            out[key] = value
    return out


def _assert_same_step(native: tuple, sync: tuple, step: int) -> None:
    names = ("obs", "info") if len(native) == 2 else ("obs", "reward", "terminated", "truncated", "info")
    for name, x, y in zip(names, native, sync, strict=True):
        if name == "info":
            x, y = _normalise_infos(x), _normalise_infos(y)
            assert x.keys() == y.keys(), f"step {step}: info keys {sorted(x)} != {sorted(y)}"
        assert data_equivalence(x, y), f"step {step}: {name} differs\nnative={x}\nsync={y}"


@pytest.mark.parametrize("mode", list(AutoresetMode))
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_env_matches_single_env(env_id: str, mode: AutoresetMode) -> None:
    n, steps = 5, 40
    native = gym.make_vec(env_id, num_envs=n, autoreset_mode=mode)
    assert native.metadata["autoreset_mode"] == mode
    sync = SyncVectorEnv([lambda: gym.make(env_id) for _ in range(n)], autoreset_mode=mode)
    _assert_same_step(native.reset(seed=7), sync.reset(seed=7), -1)
    rng = np.random.default_rng(0)
    vocab = native.single_action_space.n
    for t in range(steps):
        # Mostly sensible tokens so that episodes both terminate (EOS) and truncate.
        actions = rng.integers(0, vocab, size=n)
        actions[rng.random(n) < 0.15] = native.eos_id
        a, b = native.step(actions), sync.step(actions)
        _assert_same_step(a, b, t)
        if mode == AutoresetMode.DISABLED:
            done = a[2] | a[3]
            if done.any():
                opts = {"reset_mask": done}
                _assert_same_step(native.reset(options=opts), sync.reset(options=opts), t)


def _prefetch_task(name: str, prefetch: int):
    from rlhf_envs.tasks.base import make_task

    task = make_task(name)
    task.prompt_prefetch = prefetch
    return task


@pytest.mark.parametrize("prefetch", [1, 3])
@pytest.mark.parametrize("mode", list(AutoresetMode))
@pytest.mark.parametrize("task_name", ["copy", "addition"])
def test_prompt_prefetch_replays_single_env_across_blocks_and_reseeding(
    task_name: str, mode: AutoresetMode, prefetch: int
) -> None:
    """Small prompt blocks run out and are refilled many times; reseeding (all sub-envs, or some of
    them through a seed list and a reset_mask) must throw the prefetched prompts away. Addition
    also runs with shaping terms (their per-row path)."""
    n, steps = 4, 90
    shaping = {"step_penalty": 0.01, "repeat_penalty": 0.1} if task_name == "addition" else None
    native = TextGenerationVectorEnv(
        _prefetch_task(task_name, prefetch), num_envs=n, autoreset_mode=mode, shaping=shaping
    )
    sync = SyncVectorEnv(
        [lambda: TextGenerationEnv(task_name, shaping=shaping) for _ in range(n)],
        autoreset_mode=mode,
    )
    _assert_same_step(native.reset(seed=3), sync.reset(seed=3), -1)
    rng = np.random.default_rng(1)
    vocab = native.single_action_space.n
    for t in range(steps):
        actions = rng.integers(0, vocab, size=n)
        actions[rng.random(n) < 0.3] = native.eos_id  # short episodes: many prompts per block
        a, b = native.step(actions), sync.step(actions)
        _assert_same_step(a, b, t)
        if t == 40:  # reseed everything mid-block
            _assert_same_step(native.reset(seed=100), sync.reset(seed=100), t)
        if mode == AutoresetMode.DISABLED:
            done = a[2] | a[3]
            if done.any():
                # reseed the first finished sub-env, continue the others' streams
                seeds = [None] * n
                seeds[int(np.flatnonzero(done)[0])] = 1000 + t
                opts = {"reset_mask": done}
                _assert_same_step(
                    native.reset(seed=seeds, options=dict(opts)),
                    sync.reset(seed=seeds, options=dict(opts)),
                    t,
                )
        elif t == 60:
            seeds = [None, 7, None, 8]
            _assert_same_step(native.reset(seed=seeds), sync.reset(seed=seeds), t)


def test_prompt_prefetch_size_does_not_change_episodes() -> None:
    runs = []
    for prefetch in (1, 2, 5, 128):
        vec = TextGenerationVectorEnv(_prefetch_task("reverse", prefetch), num_envs=6)
        rng = np.random.default_rng(0)
        out = [vec.reset(seed=21)]
        for _ in range(80):
            actions = rng.integers(0, 30, size=6)
            actions[rng.random(6) < 0.3] = vec.eos_id
            out.append(vec.step(actions))
        runs.append(out)
    for other in runs[1:]:
        assert data_equivalence(runs[0], other)


def test_vector_env_pickles_mid_block_and_keeps_stepping() -> None:
    vec = TextGenerationVectorEnv(_prefetch_task("sort", 3), num_envs=3)
    vec.reset(seed=5)
    rng = np.random.default_rng(2)
    for _ in range(17):
        vec.step(rng.integers(0, 30, size=3))
    clone = pickle.loads(pickle.dumps(vec))
    for _ in range(40):  # crosses several block refills in both copies
        actions = rng.integers(0, 30, size=3)
        actions[rng.random(3) < 0.3] = vec.eos_id
        assert data_equivalence(vec.step(actions), clone.step(actions))


def test_bad_prompt_prefetch_raises() -> None:
    with pytest.raises(ConfigError, match="prompt_prefetch must be a positive int"):
        TextGenerationVectorEnv(_prefetch_task("copy", 0), num_envs=2)


def test_target_match_batch_equals_per_episode() -> None:
    """TargetMatch on an EpisodeBatch (with or without target_lengths) agrees with the per-episode path."""
    from rlhf_envs.feedback.base import EpisodeBatch
    from rlhf_envs.feedback.scripted import TargetMatch

    rng = np.random.default_rng(0)
    b, width = 200, 6
    target_len = rng.integers(0, 5, size=b)
    target = np.where(np.arange(width) < target_len[:, None], rng.integers(2, 6, size=(b, width)), -1)
    comp_len = rng.integers(0, width + 1, size=b)
    terminated = (rng.random(b) < 0.5) & (comp_len > 0)
    comp = np.where(np.arange(width) < comp_len[:, None], rng.integers(0, 6, size=(b, width)), 0)
    comp[terminated, comp_len[terminated] - 1] = 1  # EOS ends a terminated completion
    texts = np.full(b, "", dtype=object)

    def batch(meta: dict) -> EpisodeBatch:
        return EpisodeBatch(
            texts,
            texts,
            np.zeros((b, 1), dtype=np.int64),
            np.ones(b, dtype=np.int64),
            comp,
            comp_len,
            terminated,
            np.zeros(b, dtype=np.int64),
            meta,
            0,
        )

    plain = batch({"target_ids": target})
    expected = TargetMatch().score(list(plain))
    assert (expected == 1.0).any() and (expected < 1.0).any()
    np.testing.assert_array_equal(TargetMatch().score(plain), expected)
    with_lengths = batch({"target_ids": target, "target_lengths": target_len})
    np.testing.assert_array_equal(TargetMatch().score(with_lengths), expected)


def test_vector_env_uses_native_class() -> None:
    vec = gym.make_vec("RLHF/Copy-v0", num_envs=4)
    assert isinstance(vec.unwrapped, rlhf_envs.envs.TextGenerationVectorEnv)


# -- toy tasks: random scores low, optimal scores the maximum --------------------------------------

TOY_IDS = ["RLHF/Copy-v0", "RLHF/Reverse-v0", "RLHF/Sort-v0", "RLHF/Addition-v0"]


@pytest.mark.parametrize("env_id", TOY_IDS)
def test_toy_random_low_optimal_max(env_id: str) -> None:
    from rlhf_envs.toy_demo import play

    env = gym.make(env_id, render_mode="ansi")
    rand_mean, rand_success, _ = play(env, "random", 300, seed=0)
    opt_mean, opt_success, _ = play(env, "optimal", 300, seed=0)
    assert rand_mean < 0.1 and rand_success < 0.02
    assert opt_mean == 1.0 and opt_success == 1.0


def test_partial_credit() -> None:
    env = gym.make("RLHF/Copy-v0")
    tok = env.unwrapped.task.tokenizer
    env.reset(options={"prompt": "abcd="})
    for ch in "abpd":
        _, r, term, trunc, info = env.step(tok.encode(ch)[0])
    _, r, term, trunc, info = env.step(tok.eos_id)
    assert term and not trunc
    assert r == pytest.approx(0.75) and info["reward_task"] == pytest.approx(0.75)
    assert info["completion"] == "abpd" and info["success"] is False


def test_truncation_at_token_budget() -> None:
    env = gym.make("RLHF/Copy-v0", max_length=3)
    obs, info = env.reset(seed=0)
    a = env.unwrapped.task.tokenizer.encode("a")[0]
    for i in range(4):
        _, _, term, trunc, _ = env.step(a)
        assert not term
        assert trunc == (i == 3)


def test_shaping_terms_reported_and_summed() -> None:
    env = gym.make("RLHF/Copy-v0", shaping={"step_penalty": 0.05, "repeat_penalty": 0.1})
    tok = env.unwrapped.task.tokenizer
    env.reset(options={"prompt": "aa="})
    _, r, *_, info = env.step(tok.encode("a")[0])  # previous token is '=': no repeat
    assert info["reward_step_penalty"] == pytest.approx(-0.05) and info["reward_repeat_penalty"] == 0.0
    assert r == pytest.approx(-0.05)
    _, r, *_, info = env.step(tok.encode("a")[0])  # repeats 'a'
    assert r == pytest.approx(-0.15)
    _, r, term, _, info = env.step(tok.eos_id)
    assert term and info["reward_task"] == 1.0
    assert r == pytest.approx(1.0 - 0.05)


class _NoisyFeedback:
    """A feedback model whose score is pure noise drawn from ``Episode.seed``."""

    def __init__(self) -> None:
        self.seeds: list[int] = []

    def score(self, episodes):
        self.seeds += [ep.seed for ep in episodes]
        return np.array([np.random.default_rng(ep.seed).random() for ep in episodes], dtype=np.float32)


def test_feedback_randomness_follows_env_seed_not_batching() -> None:
    from rlhf_envs.tasks.toy import CopyTask

    def noisy_task():
        task = CopyTask()
        task.feedback = _NoisyFeedback()
        return task

    n = 4
    vec = rlhf_envs.envs.TextGenerationVectorEnv(noisy_task(), num_envs=n)
    singles = [rlhf_envs.envs.TextGenerationEnv(noisy_task()) for _ in range(n)]
    vec.reset(seed=11)
    for i, env in enumerate(singles):
        env.reset(seed=11 + i)
    rng = np.random.default_rng(0)
    pending = np.zeros(n, dtype=bool)
    for _ in range(50):
        actions = rng.integers(0, 30, size=n)
        _, rewards, term, trunc, _ = vec.step(actions)
        for i, env in enumerate(singles):
            if pending[i]:
                env.reset()
                assert rewards[i] == 0.0
                continue
            _, r, t1, t2, _ = env.step(int(actions[i]))
            assert np.float32(r) == np.float32(rewards[i])
        pending = term | trunc
    seen = vec.task.feedback.seeds
    assert len(seen) > 20 and len(set(seen)) == len(seen), "every episode gets its own seed"
    assert sorted(seen) == sorted(s for env in singles for s in env.task.feedback.seeds)
    # the same seed gives the same feedback seeds
    again = rlhf_envs.envs.TextGenerationEnv(noisy_task())
    again.reset(seed=11)
    again.step(again.eos_id)
    assert again.task.feedback.seeds[0] == singles[0].task.feedback.seeds[0]


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 30, 1.0, "a", None, True, np.array([1, 2]), np.float32(2)])
def test_bad_action_raises(bad) -> None:
    env = gym.make("RLHF/Copy-v0")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"\[0, 30\)"):
        env.unwrapped.step(bad)


def test_numpy_integer_actions_accepted() -> None:
    env = gym.make("RLHF/Copy-v0")
    env.reset(seed=0)
    env.step(np.int64(3))
    env.step(np.array(4))


def test_step_after_end_raises() -> None:
    env = gym.make("RLHF/Copy-v0").unwrapped
    env.reset(seed=0)
    env.step(env.eos_id)
    with pytest.raises(EpisodeFinishedError, match="reset"):
        env.step(3)


def test_unknown_reset_option_raises() -> None:
    env = gym.make("RLHF/Copy-v0")
    with pytest.raises(ConfigError, match="'promt'.*allowed: 'prompt'"):
        env.reset(options={"promt": "ab="})


def test_bad_prompt_option_raises() -> None:
    env = gym.make("RLHF/Copy-v0")
    with pytest.raises(ValueError, match="2-6 symbols"):
        env.reset(options={"prompt": "xyz!="})


def test_unknown_constructor_argument_raises() -> None:
    with pytest.raises(ConfigError, match="'max_lenght'.*allowed:.*max_length"):
        gym.make("RLHF/Copy-v0", max_lenght=4)
    with pytest.raises(ConfigError, match="'max_lenght'"):
        gym.make_vec("RLHF/Copy-v0", num_envs=2, max_lenght=4)


def test_bad_constructor_values_raise() -> None:
    with pytest.raises(ValueError, match=r"max_length must be in \[1, 7\]"):
        gym.make("RLHF/Copy-v0", max_length=12)
    with pytest.raises(ConfigError, match="max_length must be an int"):
        gym.make("RLHF/Copy-v0", max_length=4.0)
    with pytest.raises(ValueError, match="render_mode"):
        rlhf_envs.envs.TextGenerationEnv("copy", render_mode="human")
    with pytest.raises(ConfigError, match="unknown shaping term"):
        gym.make("RLHF/Copy-v0", shaping={"kl": 0.1})
    with pytest.raises(ConfigError, match="autoreset_mode must be one of"):
        gym.make_vec("RLHF/Copy-v0", num_envs=2, autoreset_mode="sometimes")
    with pytest.raises(ConfigError, match="unknown task"):
        rlhf_envs.envs.TextGenerationEnv("cpy")


def test_vector_bad_actions_raise() -> None:
    vec = gym.make_vec("RLHF/Copy-v0", num_envs=3)
    with pytest.raises(EpisodeFinishedError, match="before reset"):
        vec.step(np.array([2, 2, 2]))
    vec.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"shape \(3,\)"):
        vec.step(np.array([2, 2]))
    with pytest.raises(InvalidActionError, match="integer"):
        vec.step(np.array([2.0, 2.0, 2.0]))
    with pytest.raises(InvalidActionError, match=r"action 30 of sub-env 1 is out of range"):
        vec.step(np.array([2, 30, 2]))
    with pytest.raises(ConfigError, match="reset_mask must be a bool array"):
        vec.reset(options={"reset_mask": np.array([1, 0, 1])})
    with pytest.raises(ConfigError, match="unknown vector reset options"):
        vec.reset(options={"prompt": "ab="})


def test_vector_disabled_mode_requires_reset() -> None:
    vec = gym.make_vec("RLHF/Copy-v0", num_envs=2, autoreset_mode="Disabled")
    vec.reset(seed=0)
    eos = vec.unwrapped.eos_id
    _, _, term, _, _ = vec.step(np.array([eos, 3]))
    assert term.tolist() == [True, False]
    with pytest.raises(EpisodeFinishedError, match=r"sub-envs \[0\].*reset_mask"):
        vec.step(np.array([3, 3]))
    vec.reset(options={"reset_mask": np.array([True, False])})
    vec.step(np.array([3, 3]))


class _BadFeedback:
    def __init__(self, value):
        self.value = value

    def score(self, episodes):
        return self.value(len(episodes))


@pytest.mark.parametrize(
    "value, match",
    [
        (lambda n: np.full(n, np.nan), r"returned nan for episode 0 \(prompt '.*=', completion"),
        (lambda n: np.full(n, np.inf), "returned inf for episode 0"),
        (lambda n: np.zeros(n + 1), r"shape \(2,\) for 1 episodes"),
        (lambda n: "high", "not numeric"),
    ],
)
def test_bad_feedback_raises_naming_episode(value, match) -> None:
    from rlhf_envs.errors import FeedbackError
    from rlhf_envs.tasks.toy import CopyTask

    task = CopyTask()
    task.feedback = _BadFeedback(value)
    env = rlhf_envs.envs.TextGenerationEnv(task)
    env.reset(seed=0)
    with pytest.raises(FeedbackError, match=match):
        env.step(env.eos_id)
    vec = rlhf_envs.envs.TextGenerationVectorEnv(task, num_envs=1)
    vec.reset(seed=0)
    with pytest.raises(FeedbackError, match="_BadFeedback.score"):
        vec.step(np.array([vec.eos_id]))
