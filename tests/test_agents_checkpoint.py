"""Checkpoints: atomic safetensors + JSON, exact resume, NaN guard that keeps the last checkpoint."""

from __future__ import annotations

import json
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlhf_envs  # noqa: F401
from agents import A2C, PPO, TrainingDivergedError
from agents.checkpoint import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same_state(a, b) -> None:
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for pid in oa:
        for key in oa[pid]:
            assert torch.equal(torch.as_tensor(oa[pid][key]), torch.as_tensor(ob[pid][key])), (pid, key)
    assert a.num_timesteps == b.num_timesteps and a.iteration == b.iteration


@pytest.mark.parametrize(
    "cls,env_id,kwargs",
    [
        (PPO, "CartPole-v1", dict(n_envs=4, n_steps=32, n_epochs=2, n_minibatches=2)),
        (PPO, "RLHF/Reverse-v0", dict(n_envs=8, n_steps=16, n_epochs=2)),
        (A2C, "CartPole-v1", dict(n_envs=4, n_steps=8)),
    ],
)
def test_resumed_run_equals_uninterrupted_run(tmp_path, cls, env_id, kwargs):
    every = 3
    per_iter = kwargs["n_envs"] * kwargs["n_steps"]
    total = per_iter * 10
    full = cls(env_id, seed=7, checkpoint_dir=str(tmp_path / "a"), checkpoint_every=every, **kwargs)
    full.learn(total, progress_bar=False)

    part = cls(env_id, seed=7, checkpoint_dir=str(tmp_path / "b"), checkpoint_every=every, **kwargs)
    part.learn(total, progress_bar=False, callback=lambda agent, m: agent.iteration < 8)  # "crash" at 8
    assert part.iteration == 8
    resumed = cls.load(str(tmp_path / "b" / "last"))
    assert resumed.iteration == 6
    resumed.learn(total - resumed.num_timesteps, progress_bar=False, reset_num_timesteps=False)
    _same_state(full, resumed)
    assert full.evaluate(5) == resumed.evaluate(5)


def test_checkpoint_layout_and_roundtrip(tmp_path):
    agent = PPO("Pendulum-v1", seed=1, n_envs=2, n_steps=32)
    agent.learn(128, progress_bar=False)
    path = agent.save(str(tmp_path / "ckpt"))
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors", "state.safetensors"]
    with open(os.path.join(path, "config.json")) as f:
        meta = json.load(f)
    assert meta["algorithm"] == "PPO" and meta["config"]["n_steps"] == 32 and meta["num_timesteps"] == 128
    agent.save(path)  # overwriting leaves no temporary or backup directories behind
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    loaded = PPO.load(path)
    _same_state(agent, loaded)
    obs = np.zeros((4, 3), dtype=np.float32)
    assert np.array_equal(agent.predict(obs), loaded.predict(obs))
    with pytest.raises(ValueError, match="holds a PPO agent"):
        A2C.load(path)
    with pytest.raises(FileNotFoundError):
        PPO.load(str(tmp_path / "missing"))


def test_checkpoint_recovers_backup_after_interrupted_swap(tmp_path):
    agent = PPO("CartPole-v1", seed=0, n_envs=2, n_steps=16)
    path = str(tmp_path / "ck")
    agent.save(path)
    os.rename(path, path + ".bak")  # a crash between the two renames of a later save
    with pytest.warns(RuntimeWarning, match="loaded the previous checkpoint"):
        meta, _, _ = read_checkpoint(path)
    assert meta["algorithm"] == "PPO"
    with pytest.warns(RuntimeWarning, match="is missing.*loaded the previous checkpoint"):
        PPO.load(path)


class NaNReward(gym.Wrapper):
    """Returns NaN rewards after ``after`` steps (a broken reward model)."""

    def __init__(self, env, after):
        super().__init__(env)
        self.after, self.t = after, 0

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self.t += 1
        return obs, (float("nan") if self.t > self.after else r), term, trunc, info


def test_nan_loss_stops_training_and_keeps_last_checkpoint(tmp_path):
    env = gym.vector.SyncVectorEnv([lambda: NaNReward(gym.make("CartPole-v1"), after=200)])
    agent = PPO(env, seed=0, n_envs=1, n_steps=32, checkpoint_dir=str(tmp_path), checkpoint_every=2)
    with pytest.raises(TrainingDivergedError, match="non-finite rewards") as info:
        agent.learn(2_000, progress_bar=False)
    assert "last checkpoint" in str(info.value) and "intact" in str(info.value)
    files = {n: open(tmp_path / "last" / n, "rb").read() for n in os.listdir(tmp_path / "last")}
    params = [p.detach().clone() for p in agent.policy.parameters()]
    assert all(torch.isfinite(p).all() for p in params)
    restored = PPO.load(
        str(tmp_path / "last"), env=gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")])
    )
    assert restored.iteration == 6 and restored.num_timesteps == 192
    assert {n: open(tmp_path / "last" / n, "rb").read() for n in files} == files
