"""Training defaults that used to trap users (issue 15, item 11, agents side).

* ``rlhf-envs train --algo sb3-* --env CartPole-v1`` works (no ``autoreset_mode`` for ordinary ids);
* a ``log_dir`` works without the optional ``tensorboard`` package (CSV, and a warning saying how to
  get TensorBoard), simulated by making its import fail;
* the agents train on one torch thread unless told otherwise, and put the count back afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys

import pytest
import torch

from agents import PPO
from agents.cli_train import add_train_parser, run_train
from rlhf_envs.errors import ConfigError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("algo", ["sb3-ppo", "sb3-a2c", "sb3-dqn"])
def test_sb3_trains_on_an_ordinary_gymnasium_id(algo, tmp_path, restore_threads):
    args = _args(
        "--algo", algo, "--env", "CartPole-v1", "--steps", "256", "--n-envs", "2", "--eval-episodes", "2",
        "--log-dir", str(tmp_path), "--save", str(tmp_path / "model"),
        *(["--set", "n_steps=64"] if algo == "sb3-ppo" else []),
    )  # fmt: skip
    res = run_train(args)
    assert res["algo"] == algo and res["n_episodes"] == 2 and res["mean_reward"] > 0
    assert (tmp_path / "model.zip").exists()
    assert any(name.endswith("monitor.csv") for name in os.listdir(tmp_path))
    assert torch.get_num_threads() == 1  # the command's default (see agents.threads)


def test_sb3_refuses_what_cannot_work_on_an_ordinary_id():
    from agents.sb3 import train_baseline
    from rlhf_envs.errors import ConfigError

    with pytest.raises(ConfigError, match="action_masks"):
        train_baseline("maskable_ppo", "CartPole-v1", 64)
    with pytest.raises(ConfigError, match="bad argument for DQN on Pendulum-v1"):
        train_baseline("dqn", "Pendulum-v1", 64)


@pytest.fixture
def no_tensorboard(monkeypatch):
    """Make ``import tensorboard`` (and torch's wrapper of it) fail, as without the package."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)


def test_custom_agent_logs_csv_without_tensorboard(tmp_path, no_tensorboard, restore_threads):
    agent = PPO("RLHF/Copy-v0", seed=0, n_envs=2, n_steps=8, log_dir=str(tmp_path))
    with pytest.warns(UserWarning, match=r"tensorboard is not installed.*CSV.*pip install tensorboard"):
        agent.learn(32, progress_bar=False)
    assert (tmp_path / "progress.csv").read_text().count("\n") == 3  # header + 2 iterations
    assert not any(name.startswith("events.") for name in os.listdir(tmp_path))


def test_sb3_logs_csv_without_tensorboard(tmp_path, no_tensorboard, restore_threads):
    args = _args(
        "--algo", "sb3-ppo", "--env", "RLHF/Copy-v0", "--steps", "64", "--n-envs", "2",
        "--eval-episodes", "0", "--log-dir", str(tmp_path), "--set", "n_steps=32",
    )  # fmt: skip
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        res = run_train(args)
    assert res["algo"] == "sb3-ppo"
    assert any(name.endswith("monitor.csv") for name in os.listdir(tmp_path))
    assert not any(p.name.startswith("events.") for p in tmp_path.rglob("*"))


def test_agents_learn_on_one_thread_unless_told(restore_threads, monkeypatch):
    import agents.threads

    monkeypatch.setattr(agents.threads, "_process_choice", None)
    seen = []

    def record(agent, metrics):
        seen.append(torch.get_num_threads())

    def learn(**kw):
        seen.clear()
        PPO("CartPole-v1", seed=0, n_envs=2, n_steps=16, **kw).learn(32, progress_bar=False, callback=record)
        return seen[0]

    torch.set_num_threads(2)
    agent = PPO("CartPole-v1", seed=0, n_envs=2, n_steps=16)
    agent.learn(32, progress_bar=False, callback=record)
    assert seen == [1] and torch.get_num_threads() == 2  # one thread for the call, then restored
    agent.evaluate(1)
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    assert learn(threads=2) == 2 and torch.get_num_threads() == 1  # per agent
    agents.threads.set_training_threads(2)  # per process (--threads, benchmarks' init_torch)
    assert learn() == 2 and learn(threads=1) == 1
    with pytest.raises(ConfigError, match="threads must be"):
        agents.threads.set_training_threads(0)
    with pytest.raises(ConfigError, match="threads must be an int >= 1"):
        PPO("CartPole-v1", threads=0)
