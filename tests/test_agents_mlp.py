"""Custom PPO / A2C / REINFORCE with MLP policies: learning, spaces, autoreset modes, seeding, logging."""

from __future__ import annotations

import csv
import glob
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import rlhf_envs  # noqa: F401
from agents import A2C, PPO, REINFORCE
from agents.rollout import compute_gae
from rlhf_envs.envs.vector_env import TextGenerationVectorEnv
from rlhf_envs.errors import ConfigError

FAST = dict(n_envs=4, n_steps=32, n_epochs=2, n_minibatches=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_ppo_learns_cartpole():
    agent = PPO("CartPole-v1", seed=0)
    before = agent.evaluate(10)["mean_return"]
    agent.learn(15_000, progress_bar=False)
    after = agent.evaluate(10)
    assert set(after) >= {"mean_return", "std_return", "mean_length", "n_episodes"}
    assert after["mean_return"] > 80 and after["mean_return"] > 2 * before


@pytest.mark.parametrize("cls,kwargs,steps", [(A2C, {"n_envs": 8}, 10_000), (REINFORCE, {}, 20_000)])
def test_policy_gradient_family_learns_cartpole(cls, kwargs, steps):
    agent = cls("CartPole-v1", seed=0, **kwargs)
    before = agent.evaluate(10)["mean_return"]
    agent.learn(steps, progress_bar=False)
    after = agent.evaluate(10)["mean_return"]
    assert after > 1.5 * before and after > 40


def test_ppo_reward_rises_on_copy_task_and_reports_components():
    agent = PPO(
        "RLHF/Copy-v0",
        seed=0,
        n_envs=32,
        n_steps=16,
        hidden_sizes=(128, 128),
        gamma=1.0,
        learning_rate=1e-3,
        activation="relu",
        env_kwargs={"max_length": 3},
    )
    before = agent.evaluate(128)
    agent.learn(15_000, progress_bar=False)
    after = agent.evaluate(128)
    for key in ("mean_return", "std_return", "reward_task", "success_rate"):
        assert key in after
    assert after["reward_task"] == pytest.approx(after["mean_return"])
    assert after["mean_return"] > before["mean_return"] + 0.06


def test_box_actions_pendulum_runs_and_clips():
    agent = PPO("Pendulum-v1", seed=0, **FAST)
    agent.learn(256, progress_bar=False)
    a = agent.predict(np.zeros((3, 3), dtype=np.float32), deterministic=False)
    assert a.shape == (3, 1) and a.dtype == np.float32 and np.all(np.abs(a) <= 2.0)
    assert np.isfinite(agent.evaluate(2)["mean_return"])


class _Env(gym.Env):
    def __init__(self, obs_space, act_space):
        self.observation_space, self.action_space = obs_space, act_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


def test_unsupported_spaces_raise_at_construction():
    box = spaces.Box(-1, 1, (2,), np.float32)
    with pytest.raises(ConfigError, match="action space"):
        PPO(_Env(box, spaces.MultiDiscrete([2, 3])))
    with pytest.raises(ConfigError, match="observation space"):
        PPO(_Env(spaces.Tuple([box, box]), spaces.Discrete(2)))
    with pytest.raises(ConfigError, match="policy='lm'"):
        big = spaces.Dict(
            {
                "input_ids": spaces.Box(0, 49_999, (64,), np.int64),
                "attention_mask": spaces.Box(0, 1, (64,), np.int8),
            }
        )
        PPO(_Env(big, spaces.Discrete(50_000)))
    with pytest.raises(ConfigError, match="unknown PPOConfig option"):
        PPO("CartPole-v1", learning_rat=1e-3)
    with pytest.raises(ConfigError, match="norm_adv"):
        PPO("CartPole-v1", norm_adv="sometimes")
    with pytest.raises(ConfigError, match="needs model"):
        PPO("RLHF/Copy-v0", policy="lm")


def test_no_global_rng_side_effects_and_seed_determinism():
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a = PPO("CartPole-v1", seed=3, **FAST)
    a.learn(512, progress_bar=False)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    b = PPO("CartPole-v1", seed=3, **FAST)
    b.learn(512, progress_bar=False)
    c = PPO("CartPole-v1", seed=4, **FAST)
    for (k, p), q, _r in zip(
        a.policy.state_dict().items(),
        b.policy.state_dict().values(),
        c.policy.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(p, q), k
    assert any(
        not torch.equal(p, r) for p, r in zip(a.policy.parameters(), c.policy.parameters(), strict=True)
    )


@pytest.mark.parametrize("mode", ["NextStep", "SameStep", "Disabled"])
def test_native_vector_env_all_autoreset_modes(mode):
    env = TextGenerationVectorEnv("reverse", num_envs=8, autoreset_mode=mode)
    agent = PPO(env, seed=0, n_steps=16, n_epochs=1)
    agent.learn(256, progress_bar=False)
    assert agent.num_timesteps == 256
    ev = agent.evaluate(16, env=TextGenerationVectorEnv("reverse", num_envs=4, autoreset_mode=mode))
    assert ev["n_episodes"] == 16 and "success_rate" in ev


def test_evaluation_identical_across_autoreset_modes():
    agent = PPO("RLHF/Sort-v0", seed=0, n_envs=4, n_steps=16)
    agent.learn(1024, progress_bar=False)
    results = [
        agent.evaluate(
            12, deterministic=True, seed=5, env=TextGenerationVectorEnv("sort", num_envs=4, autoreset_mode=m)
        )
        for m in ("NextStep", "SameStep", "Disabled")
    ]
    assert results[0] == results[1] == results[2]


def test_next_step_reset_steps_are_masked_out():
    env = TextGenerationVectorEnv("copy", num_envs=4, min_length=2, max_length=2)  # 3-token episodes
    agent = PPO(env, seed=0, n_steps=12)
    agent.collector.reset(0)
    batch, n, _ = agent.collector.collect(agent)
    # every episode takes 3 steps (2 symbols + EOS or truncation) plus one masked reset step
    assert n == 48 and len(batch) == 36
    assert torch.isfinite(batch.advantages).all()


def test_sync_vector_env_same_step_and_truncation_bootstrap():
    env = gym.make_vec(
        "CartPole-v1",
        num_envs=2,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        max_episode_steps=20,
    )
    agent = PPO(env, seed=0, n_steps=64, n_epochs=1)
    agent.collector.reset(0)
    batch, _, _ = agent.collector.collect(agent)
    assert len(batch) == 128
    # truncated steps carry reward 1 + gamma * V(final obs), not 1
    assert (batch.rewards != 1.0).sum() > 0


def test_gae_matches_hand_computation():
    r = torch.tensor([[1.0], [0.0], [2.0]])
    v = torch.tensor([[0.5], [0.2], [0.1]])
    d = torch.tensor([[0.0], [1.0], [0.0]])
    adv, ret = compute_gae(r, v, d, torch.tensor([0.3]), gamma=0.9, gae_lambda=0.5)
    d2 = 2.0 + 0.9 * 0.3 - 0.1
    d1 = 0.0 - 0.2
    d0 = 1.0 + 0.9 * 0.2 - 0.5
    expected = torch.tensor([[d0 + 0.45 * d1], [d1], [d2]])
    assert torch.allclose(adv, expected) and torch.allclose(ret, expected + v)


def test_gradient_clipping_is_applied():
    agent = PPO("CartPole-v1", seed=0, max_grad_norm=1e-3, **FAST)
    norms = []
    original = agent.optimizer.step

    def step(*args, **kwargs):
        g = torch.cat(
            [
                p.grad.reshape(-1)
                for grp in agent.optimizer.param_groups
                for p in grp["params"]
                if p.grad is not None
            ]
        )
        norms.append(float(g.norm()))
        return original(*args, **kwargs)

    agent.optimizer.step = step
    agent.learn(256, progress_bar=False)
    assert norms and max(norms) <= 1e-3 * 1.0001


def test_logging_csv_and_tensorboard(tmp_path):
    agent = PPO("RLHF/Copy-v0", seed=0, log_dir=str(tmp_path), **FAST)
    agent.learn(512, progress_bar=True)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for col in (
        "approx_kl_k1",
        "approx_kl_k3",
        "clip_fraction",
        "explained_variance",
        "entropy",
        "learning_rate",
    ):
        assert col in rows[0]
    assert "reward_task" in rows[-1] and "success_rate" in rows[-1]
    assert glob.glob(os.path.join(tmp_path, "events.out.tfevents.*"))
    lrs = [float(r["learning_rate"]) for r in rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] == pytest.approx(2.5e-4)


def test_logging_csv_continues_a_run_but_a_fresh_run_replaces_it(tmp_path):
    def steps() -> list[float]:
        with open(tmp_path / "progress.csv") as f:
            return [float(r["timesteps"]) for r in csv.DictReader(f)]

    agent = PPO("RLHF/Copy-v0", seed=0, log_dir=str(tmp_path), **FAST)
    agent.learn(256, progress_bar=False)
    agent.learn(256, progress_bar=False, reset_num_timesteps=False)  # continues: rows accumulate
    assert steps() == [128.0, 256.0, 384.0, 512.0]
    PPO("RLHF/Copy-v0", seed=1, log_dir=str(tmp_path), **FAST).learn(256, progress_bar=False)
    assert steps() == [128.0, 256.0]  # a fresh run in the same directory: one curve, not two


# -- masked PPO (use_action_mask) and the token-length feature --------------------------------------


@pytest.mark.parametrize("mode", ["NextStep", "SameStep", "Disabled"])
def test_masked_policy_never_samples_masked_actions(mode):
    env = TextGenerationVectorEnv("copy", num_envs=8, autoreset_mode=mode)
    agent = PPO(env, seed=0, n_steps=16, n_epochs=1, use_action_mask=True)
    allowed = torch.as_tensor(env.action_masks()[0].astype(bool))
    # bias the untrained policy hard towards an invalid token: only the mask can keep it out
    invalid = int(torch.nonzero(~allowed)[0])
    with torch.no_grad():
        agent.policy.actor[-1].bias[invalid] = 50.0
    agent.collector.reset(0)
    batch = agent.collector.collect_steps(16, 1.0, 0.95, agent.torch_rng)
    assert batch.action_masks is not None and batch.action_masks.shape == (
        len(batch),
        env.single_action_space.n,
    )
    assert allowed[batch.actions.long()].all()
    # the update's log-probs are those of the masked distribution the rollout sampled from
    logp, entropy, _ = agent.evaluate_batch(batch)
    torch.testing.assert_close(logp, batch.log_probs)
    assert (entropy <= np.log(int(allowed.sum())) + 1e-5).all()
    obs, infos = env.reset(seed=1)
    for _ in range(5):
        actions = agent.predict(obs, deterministic=False, action_masks=infos["action_mask"])
        assert allowed[torch.as_tensor(actions)].all()
    agent.learn(256, progress_bar=False)
    assert agent.evaluate(8, deterministic=False)["n_episodes"] == 8


def test_unmasked_policy_follows_its_logits_and_masking_needs_env_masks():
    agent = PPO("RLHF/Copy-v0", seed=0, **FAST)
    with torch.no_grad():
        agent.policy.actor[-1].bias[0] = 50.0  # the pad token, which the task masks out
    obs, _ = agent.env.reset(seed=0)
    assert (agent.predict(obs, deterministic=False) == 0).all()
    masked = PPO("RLHF/Copy-v0", seed=0, use_action_mask=True, **FAST)
    with pytest.raises(ValueError, match="action_masks"):
        masked.predict(obs)
    with pytest.raises(ConfigError, match="action_mask"):
        PPO("CartPole-v1", seed=0, use_action_mask=True, **FAST).learn(64, progress_bar=False)
    with pytest.raises(ConfigError, match="Discrete"):
        PPO("Pendulum-v1", seed=0, use_action_mask=True)


def test_token_length_feature():
    agent = PPO("RLHF/Copy-v0", seed=0, token_features="length", **FAST)
    enc = agent.policy.encoder
    assert enc.n_features == enc.length * enc.vocab + enc.length + 1
    obs, _ = agent.env.reset(seed=0)
    x = enc(obs)
    n_real = obs["attention_mask"].sum(-1)
    assert torch.equal(x[:, enc.length * enc.vocab :].argmax(-1), torch.as_tensor(n_real))
    assert torch.equal(x[:, enc.length * enc.vocab :].sum(-1), torch.ones(len(n_real)))
    with pytest.raises(ConfigError, match="token_features"):
        PPO("RLHF/Copy-v0", token_features="positions")


def test_masked_agent_checkpoint_round_trip(tmp_path):
    agent = PPO("RLHF/Reverse-v0", seed=0, use_action_mask=True, token_features="length", **FAST)
    agent.learn(256, progress_bar=False)
    path = agent.save(str(tmp_path / "ckpt"))
    loaded = PPO.load(path)
    assert loaded.config.use_action_mask and loaded.config.token_features == "length"
    assert agent.evaluate(8, seed=3) == loaded.evaluate(8, seed=3)


def test_transformer_policy_masks_seeds_and_round_trips(tmp_path):
    kwargs = dict(policy="transformer", d_model=16, n_layers=1, n_heads=2, use_action_mask=True, **FAST)
    state = torch.get_rng_state()
    agent = PPO("RLHF/Reverse-v0", seed=0, **kwargs)
    agent.learn(256, progress_bar=False)
    assert torch.equal(torch.get_rng_state(), state)  # construction and training use the agent's generators
    again = PPO("RLHF/Reverse-v0", seed=0, **kwargs)
    again.learn(256, progress_bar=False)
    for p, q in zip(agent.policy.parameters(), again.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    # padding does not leak into the features: the same prefix gives the same output at any pad content
    obs, infos = agent.env.reset(seed=0)
    x = agent.policy.encoder(obs)
    noisy = x.clone()
    length = agent.policy.encoder.length
    noisy[:, :length] = torch.where(x[:, length:] == 0, torch.full_like(x[:, :length], 5), x[:, :length])
    torch.testing.assert_close(agent.policy.value(x), agent.policy.value(noisy))
    allowed = torch.as_tensor(infos["action_mask"][0].astype(bool))
    with torch.no_grad():
        agent.policy.actor_head.bias[int(torch.nonzero(~allowed)[0])] = 50.0
    actions = agent.predict(obs, deterministic=False, action_masks=infos["action_mask"])
    assert allowed[torch.as_tensor(actions)].all()
    loaded = PPO.load(agent.save(str(tmp_path / "ckpt")))
    assert agent.evaluate(8, seed=3) == loaded.evaluate(8, seed=3)
    with pytest.raises(ConfigError, match="transformer"):
        PPO("CartPole-v1", policy="transformer")
    with pytest.raises(ConfigError, match="divisible"):
        PPO("RLHF/Copy-v0", policy="transformer", d_model=10, n_heads=4)
