"""The SB3 VecEnv adapter over the native vector env follows SB3's conventions exactly.

The reference is SB3's own ``DummyVecEnv`` over single envs seeded ``s + i`` (which is how the
native vector env seeds its sub-envs): observations, rewards, dones, ``terminal_observation`` and
``TimeLimit.truncated`` must agree step for step.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import rlhf_envs  # noqa: F401
from agents.sb3 import NativeVecEnv, make_native_vec_env, make_sb3_env
from rlhf_envs.errors import ConfigError

N = 4


def _actions(rng: np.random.Generator, eos: int, vocab: int) -> np.ndarray:
    # EOS often enough that episodes end both ways (terminated by EOS, truncated at the budget)
    a = rng.integers(vocab, size=N)
    return np.where(rng.random(N) < 0.15, eos, a)


@pytest.mark.parametrize("env_id", ["RLHF/Copy-v0", "RLHF/Addition-v0"])
def test_adapter_matches_dummy_vec_env(env_id: str) -> None:
    native = NativeVecEnv(make_native_vec_env(env_id, N), bootstrap_truncated=True)
    dummy = DummyVecEnv([lambda: gym.make(env_id) for _ in range(N)])
    native.seed(3)
    dummy.seed(3)
    o1, o2 = native.reset(), dummy.reset()
    for k in o1:
        np.testing.assert_array_equal(o1[k], o2[k])
    assert [r["prompt"] for r in native.reset_infos] == [r["prompt"] for r in dummy.reset_infos]
    eos = native.venv.eos_id
    rng = np.random.default_rng(0)
    n_term = n_trunc = 0
    for _ in range(80):
        a = _actions(rng, eos, native.action_space.n)
        o1, r1, d1, i1 = native.step(a)
        o2, r2, d2, i2 = dummy.step(a)
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_allclose(r1, r2, rtol=0, atol=1e-6)
        for k in o1:
            np.testing.assert_array_equal(o1[k], o2[k])
        for i in range(N):
            assert i1[i]["TimeLimit.truncated"] == i2[i]["TimeLimit.truncated"]
            if d1[i]:
                for k in o1:
                    np.testing.assert_array_equal(
                        i1[i]["terminal_observation"][k], i2[i]["terminal_observation"][k]
                    )
                assert i1[i]["success"] == i2[i]["success"]
                assert i1[i]["completion"] == i2[i]["completion"]
                assert i1[i]["reward_task"] == pytest.approx(i2[i]["reward_task"])
                assert native.reset_infos[i]["prompt"] == dummy.reset_infos[i]["prompt"]
                n_trunc += int(i1[i]["TimeLimit.truncated"])
                n_term += int(not i1[i]["TimeLimit.truncated"])
            else:
                assert "terminal_observation" not in i1[i]
    assert n_term > 5 and n_trunc > 5  # both kinds of episode end were exercised


def test_terminal_observation_is_the_native_final_obs_and_truncation_flags() -> None:
    raw = gym.make_vec(
        "RLHF/Copy-v0", num_envs=N, vectorization_mode="vector_entry_point", autoreset_mode="SameStep"
    )
    adapted = NativeVecEnv(make_native_vec_env("RLHF/Copy-v0", N), bootstrap_truncated=True)
    no_boot = NativeVecEnv(make_native_vec_env("RLHF/Copy-v0", N), bootstrap_truncated=False)
    raw.reset(seed=7)
    for env in (adapted, no_boot):
        env.seed(7)
        env.reset()
    eos = adapted.venv.eos_id
    rng = np.random.default_rng(1)
    seen_trunc = False
    for _ in range(40):
        a = _actions(rng, eos, 30)
        _, _, term, trunc, infos = raw.step(a)
        _, _, d, ia = adapted.step(a)
        _, _, _, ib = no_boot.step(a)
        np.testing.assert_array_equal(d, term | trunc)
        for i in range(N):
            assert ia[i]["TimeLimit.truncated"] == bool(trunc[i] and not term[i])
            assert ib[i]["TimeLimit.truncated"] is False
            if d[i]:
                for k, v in infos["final_obs"][i].items():
                    np.testing.assert_array_equal(ia[i]["terminal_observation"][k], v)
                    assert ia[i]["terminal_observation"][k].dtype == v.dtype
                assert ia[i]["is_success"] == bool(infos["final_info"]["success"][i])
            seen_trunc |= bool(trunc[i])
    assert seen_trunc


def test_action_masks_via_env_method_and_maskable_utils() -> None:
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    env = make_sb3_env("RLHF/Copy-v0", n_envs=N, seed=0)
    env.reset()
    masks = env.env_method("action_masks")
    assert len(masks) == N and all(m.dtype == bool and m.shape == (30,) for m in masks)
    expected = env.unwrapped.venv.task.action_mask().astype(bool)
    for m in masks:
        np.testing.assert_array_equal(m, expected)
    assert is_masking_supported(env)
    np.testing.assert_array_equal(get_action_masks(env), np.stack(masks))
    assert env.env_method("action_masks", indices=[1])[0].shape == (30,)
    assert env.get_attr("vocab_size") == [30] * N
    assert not env.has_attr("no_such_attribute")


def test_vec_monitor_reports_episode_and_task_facts() -> None:
    env = make_sb3_env("RLHF/Reverse-v0", n_envs=N, seed=0)
    assert isinstance(env, VecMonitor)
    env.reset()
    rng = np.random.default_rng(2)
    returns = np.zeros(N)
    episodes = 0
    for _ in range(30):
        _, r, d, infos = env.step(_actions(rng, 1, 30))
        returns += r
        for i in np.flatnonzero(d):
            ep = infos[i]["episode"]
            assert ep["r"] == pytest.approx(returns[i], abs=1e-5)
            assert ep["reward_task"] == pytest.approx(infos[i]["reward_task"])
            assert "success" in ep
            returns[i] = 0
            episodes += 1
    assert episodes > 0


def test_adapter_refuses_other_autoreset_modes() -> None:
    venv = gym.make_vec("RLHF/Copy-v0", num_envs=2, vectorization_mode="vector_entry_point")
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    with pytest.raises(ConfigError, match="SameStep"):
        NativeVecEnv(venv)
