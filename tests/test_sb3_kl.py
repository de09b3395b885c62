"""The KL-penalty callback rewrites SB3's rollout buffer with the policy's own log-probs.

A tiny fake reference (a shaping term that reports ``info["ref_logprob"]`` = a known function of
the taken token, as :class:`rlhf_envs.envs.reference.ReferenceKL` does for the language tasks) on a
toy env keeps this test independent of any language model.
"""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor

from agents.sb3 import KLPenaltyCallback, train_baseline
from rlhf_envs.errors import ConfigError


class FakeReference:
    """Shaping term ``kl``: pays nothing, reports ``ref_logprob = -0.05 * (token + 1)``."""

    name = "kl"

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self._last = np.zeros(0)

    def __call__(self, input_ids: np.ndarray, lengths: np.ndarray, actions: np.ndarray) -> np.ndarray:
        self._last = -0.05 * (np.asarray(actions, dtype=np.float64) + 1.0) + self.offset
        return np.zeros(len(actions), dtype=np.float32)

    def step_info(self) -> dict[str, np.ndarray]:
        return {"ref_logprob": self._last.copy()}


class Snapshot(BaseCallback):
    """Copies the buffer's rewards and advantages before the KL callback rewrites them."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buf = self.model.rollout_buffer
        for name in ("rewards", "advantages", "returns", "values", "log_probs", "actions", "episode_starts"):
            setattr(self, name, getattr(buf, name).copy())
        obs = obs_as_tensor(self.model._last_obs, self.model.device)
        self.last_values = self.model.policy.predict_values(obs).detach().numpy().ravel()
        self.last_dones = self.model._last_episode_starts.astype(np.float32)


def gae(rewards, values, episode_starts, last_values, last_dones, gamma, lam):  # noqa: ANN001, ANN201
    """Plain-numpy GAE with SB3's episode_starts convention (the oracle)."""
    n = len(rewards)
    adv = np.zeros_like(rewards)
    last = 0.0
    for t in reversed(range(n)):
        if t == n - 1:
            non_terminal, next_v = 1.0 - last_dones, last_values
        else:
            non_terminal, next_v = 1.0 - episode_starts[t + 1], values[t + 1]
        delta = rewards[t] + gamma * next_v * non_terminal - values[t]
        last = delta + gamma * lam * non_terminal * last
        adv[t] = last
    return adv


@pytest.mark.parametrize("algo", ["ppo", "a2c", "maskable_ppo"])
def test_kl_callback_rewrites_rewards_with_policy_logprobs(algo: str) -> None:
    beta = 0.3
    snap, after = Snapshot(), Snapshot()
    kl_cb = KLPenaltyCallback(kl_coef=beta)
    n_envs, n_steps = 4, 16
    model = train_baseline(
        algo,
        "RLHF/Copy-v0",
        n_envs * n_steps,
        seed=0,
        n_envs=n_envs,
        n_steps=n_steps,
        kl_coef=0.0,  # added explicitly below, after the snapshot
        callback=[snap, kl_cb, after],
        env_kwargs={"shaping": [FakeReference()]},
        gamma=0.9,
        gae_lambda=0.8,
        **({"batch_size": 32, "n_epochs": 1} if algo != "a2c" else {}),
    )
    del model
    buf = after  # the buffer as the algorithm trains on it
    ref = -0.05 * (buf.actions[..., 0] + 1.0)
    np.testing.assert_allclose(kl_cb._ref, ref, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(buf.log_probs, snap.log_probs)  # the policy's own rollout log-probs
    expected = snap.rewards - beta * (buf.log_probs - ref)
    np.testing.assert_allclose(buf.rewards, expected, rtol=0, atol=1e-5)
    assert np.abs(buf.rewards - snap.rewards).max() > 1e-3  # the penalty really changed something
    adv = gae(buf.rewards, buf.values, buf.episode_starts, buf.last_values, buf.last_dones, 0.9, 0.8)
    np.testing.assert_allclose(buf.advantages, adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buf.returns, adv + buf.values, rtol=1e-5, atol=1e-5)
    # the algorithm's own GAE on the unpenalised rewards is reproduced by the oracle too
    adv0 = gae(snap.rewards, snap.values, snap.episode_starts, snap.last_values, snap.last_dones, 0.9, 0.8)
    np.testing.assert_allclose(snap.advantages, adv0, rtol=1e-5, atol=1e-5)
    assert not np.allclose(buf.advantages, snap.advantages)
    assert kl_cb.last_stats["kl/coef"] == beta
    assert kl_cb.last_stats["kl/ref_kl_token"] == pytest.approx(float((buf.log_probs - ref).mean()), abs=1e-5)


def test_kl_coef_default_and_refusals() -> None:
    with pytest.raises(ConfigError, match="DQN"):
        train_baseline("dqn", "RLHF/Copy-v0", 100, kl_coef=0.1, env_kwargs={"shaping": [FakeReference()]})
    with pytest.raises(ConfigError, match="ref_logprob"):
        train_baseline("ppo", "RLHF/Copy-v0", 100, kl_coef=0.1)


@pytest.mark.parametrize(("target", "grows"), [(1e-3, True), (1e3, False)])
def test_adaptive_controller_moves_towards_target(target: float, grows: bool) -> None:
    # offset -5: the fake reference finds every token unlikely, so the k1 KL is clearly positive
    cb = KLPenaltyCallback(kl_coef=0.1, adaptive=True, target=target, horizon=10)
    train_baseline(
        "ppo",
        "RLHF/Copy-v0",
        64,
        seed=0,
        n_envs=4,
        n_steps=16,
        batch_size=32,
        n_epochs=1,
        kl_coef=0.0,
        callback=[cb],
        env_kwargs={"shaping": [FakeReference(offset=-5.0)]},
    )
    assert cb.last_stats["kl/ref_kl_token"] > 0
    assert (cb.kl_coef > 0.1) == grows and cb.kl_coef != 0.1


def test_env_side_kl_and_callback_kl_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="count twice"):
        train_baseline(
            "ppo", "RLHF/Sentiment-v0", 16, n_envs=2, n_steps=8, kl_coef=0.05, env_kwargs={"kl_coef": 0.1}
        )
