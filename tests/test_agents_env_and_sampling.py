"""The agents' public env swap (``set_env``) and episode sampling (``sample_episodes``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import rlhf_envs  # noqa: F401
from agents import PPO
from agents.episodes import SampledEpisodes
from rlhf_envs.envs.vector_env import TextGenerationVectorEnv
from rlhf_envs.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sort_env(mode: str, n: int = 4) -> TextGenerationVectorEnv:
    return TextGenerationVectorEnv("sort", num_envs=n, autoreset_mode=mode)


def _params(agent: PPO) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.policy.parameters()]


def test_set_env_switches_the_collector_and_its_autoreset_mode():
    """Training after ``set_env`` equals training an agent built on the new env from the start.

    The swapped-out env uses NEXT_STEP autoreset (a masked reset step after every episode), the new
    one SAME_STEP: a collector that still stepped the old env, or kept its mode, would see
    different transitions and end with different weights.
    """
    direct = PPO(_sort_env("SameStep"), seed=0, n_steps=16)
    direct.learn(256, progress_bar=False)
    swapped = PPO(_sort_env("NextStep"), seed=0, n_steps=16)
    old = swapped.env
    new = _sort_env("SameStep")
    swapped.set_env(new)
    assert swapped.env is new and swapped.collector.env is new and swapped.env_id is None
    swapped.learn(256, progress_bar=False)
    assert all(torch.equal(a, b) for a, b in zip(_params(direct), _params(swapped), strict=True))
    old.close()  # set_env leaves the old env to its owner


def test_set_env_takes_an_id_closes_what_it_built_and_refuses_other_spaces_or_sizes():
    agent = PPO("RLHF/Sort-v0", seed=0, n_envs=4, n_steps=16)
    built = agent.env
    agent.set_env("RLHF/Copy-v0")  # same spaces, another task
    assert agent.env_id == "RLHF/Copy-v0" and agent.env.num_envs == 4
    assert built.closed  # the agent built that env from an id, so it closes it
    agent.learn(64, progress_bar=False)
    before = agent.env
    with pytest.raises(ConfigError, match="observation space"):
        agent.set_env("RLHF/Addition-v0")  # 10-token observations instead of 14
    with pytest.raises(ConfigError, match="sub-envs"):
        agent.set_env(_sort_env("NextStep", n=2))
    assert agent.env is before and agent.env_id == "RLHF/Copy-v0"  # a refused swap changes nothing
    cart = PPO("CartPole-v1", seed=0, n_envs=2)
    with pytest.raises(ConfigError, match="action space"):
        cart.set_env("Acrobot-v1")


def _lm_agent(n_envs: int = 4) -> PPO:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=30,
                n_positions=32,
                n_embd=32,
                n_layer=1,
                n_head=2,
                bos_token_id=1,
                eos_token_id=1,
                pad_token_id=0,
            )  # fmt: skip
        )
    return PPO("RLHF/Reverse-v0", seed=0, policy="lm", model=model, n_envs=n_envs)


def test_sample_episodes_is_reproducible_and_leaves_training_generators_alone():
    agent = _lm_agent()
    torch_state = agent.torch_rng.get_state().clone()
    np_state = agent.np_rng.bit_generator.state
    first = agent.sample_episodes(agent.env, [3, 3, 5, 7], generator_seed=11)
    again = agent.sample_episodes(agent.env, [3, 3, 5, 7], generator_seed=11)
    assert isinstance(first, SampledEpisodes) and len(first) == 4
    assert torch.equal(first.completion_ids, again.completion_ids)
    assert torch.equal(first.log_probs, again.log_probs)
    assert torch.equal(agent.torch_rng.get_state(), torch_state)
    assert agent.np_rng.bit_generator.state == np_state
    other = agent.sample_episodes(agent.env, [3, 3, 5, 7], generator_seed=12)
    assert not torch.equal(first.completion_ids, other.completion_ids)
    # the policy starts as its reference: zero KL per episode
    assert np.allclose(first.log_prob_sums(), first.ref_log_prob_sums(), atol=1e-4)
    assert np.all(first.log_prob_sums() < 0)


def test_sampled_episodes_become_feedback_episodes_of_the_reset_prompts():
    agent = _lm_agent()
    sampled = agent.sample_episodes(agent.env, [3, 3, 5, 7], generator_seed=0)
    tok = agent.env.task.tokenizer
    eps = sampled.to_feedback_episodes(tok)
    assert [e.seed for e in eps] == [3, 3, 5, 7]
    assert eps[0].prompt == eps[1].prompt  # same reset seed, same prompt
    obs, _ = agent.env.reset(seed=[3, 3, 5, 7])
    lengths = obs["attention_mask"].sum(1)
    lengths_sampled = sampled.completion_lengths()
    for i, e in enumerate(eps):
        assert e.prompt_ids == tuple(int(x) for x in obs["input_ids"][i, : lengths[i]])
        assert len(e.completion_ids) == lengths_sampled[i]
        assert e.completion == tok.decode(list(e.completion_ids))
        assert e.terminated == (e.completion_ids[-1] == tok.eos_id)
    by_int = agent.sample_episodes(agent.env, 5, generator_seed=0)
    assert by_int.seeds == [5, 6, 7, 8]


def test_sample_episodes_checks_its_arguments():
    agent = _lm_agent()
    with pytest.raises(ConfigError, match="one seed per sub-env"):
        agent.sample_episodes(agent.env, [1, 2], generator_seed=0)
    built = agent.sample_episodes("RLHF/Reverse-v0", [1, 2], generator_seed=0)  # an id: built, closed
    assert len(built) == 2
    mlp = PPO("RLHF/Sort-v0", seed=0, n_envs=2, n_steps=8)
    with pytest.raises(ConfigError, match="LM policy"):
        mlp.sample_episodes(mlp.env, [0, 1], generator_seed=0)


def test_lm_agent_set_env_points_the_collector_at_the_new_env():
    agent = _lm_agent()
    new = PPO("RLHF/Reverse-v0", seed=1, policy="lm", model=agent.policy.lm, n_envs=4).env
    agent.set_env(new)
    assert agent.env is new and agent.collector.env is new
    agent.learn(16, progress_bar=False)
    assert agent.num_timesteps >= 16
