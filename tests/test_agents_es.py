"""Evolution strategies: rank shaping, the antithetic gradient, one Adam step by hand, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rlhf_envs  # noqa: F401
from agents import ES
from agents.es import ESBatch, centered_ranks, es_gradient, last_block_parameters, noise_vector
from rlhf_envs.errors import ConfigError
from tests.test_agents_lm import tiny_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_centered_ranks_by_hand():
    # ranks 0..3 scaled to [-0.5, 0.5]; the two 2.0s share rank (1 + 2) / 2
    assert np.allclose(centered_ranks(np.array([3.0, 1.0, 2.0, 2.0])), [0.5, -0.5, 0.0, 0.0])
    assert np.allclose(centered_ranks(np.array([10.0, -5.0, 7.0])), [0.5, -0.5, 0.0])
    # invariant to any increasing transform of the fitness
    x = np.array([0.1, 5.0, -3.0, 2.0, 2.5, 100.0])
    assert np.array_equal(centered_ranks(x), centered_ranks(np.exp(x)))
    assert np.allclose(centered_ranks(np.full(4, 7.0)), 0.0)  # all tied: no signal


def test_antithetic_gradient_by_hand():
    shaped = np.array([[0.5, -0.5], [0.0, 1 / 6]])
    noise = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # sum_j (u_j+ - u_j-) eps_j / (2 pairs) = (1 * [1, 2] + (-1/6) * [3, 4]) / 4
    expected = (torch.tensor([1.0, 2.0]) - torch.tensor([3.0, 4.0]) / 6) / 4
    assert torch.allclose(es_gradient(shaped, noise), expected)
    assert torch.equal(noise_vector(5, 7), noise_vector(5, 7))  # seeded noise replays
    assert not torch.equal(noise_vector(5, 7), noise_vector(6, 7))


def test_one_update_is_adam_on_the_shaped_gradient():
    agent = ES("CartPole-v1", seed=0, n_envs=4, population_size=4, learning_rate=0.01, weight_decay=0.1)
    theta = agent.flat_parameters()
    seeds = np.array([11, 12])
    fitness = np.array([[30.0, 10.0], [20.0, 20.0]])
    agent.train(ESBatch(seeds, fitness), 1.0)
    shaped = np.array([[0.5, -0.5], [0.0, 0.0]])  # ranks of 30, 10, 20, 20
    g = (0.5 - -0.5) * noise_vector(11, theta.numel()) / 4
    step = -g + 0.1 * theta
    # Adam's first step moves each coordinate by lr * step / (|step| + eps)
    expected = theta - 0.01 * step / (step.abs() + 1e-8)
    assert np.allclose(centered_ranks(fitness.ravel()).reshape(2, 2), shaped)
    assert torch.allclose(agent.flat_parameters(), expected, atol=1e-6)


def test_population_members_are_antithetic_and_scored_in_lock_step():
    agent = ES("CartPole-v1", seed=3, n_envs=8, population_size=6, episodes_per_member=2)
    theta = agent.flat_parameters()
    batch, steps, metrics = agent.collector.collect(agent)
    assert batch.fitness.shape == (3, 2) and len(batch) == 6
    assert torch.equal(agent.flat_parameters(), theta)  # the centre is restored after scoring
    assert metrics["n_episodes"] == 12 and steps == metrics["mean_length"] * 12
    # the critic is frozen and only the actor is searched over
    assert agent.num_es_parameters == sum(p.numel() for p in agent.policy.actor.parameters())
    assert not any(p.requires_grad for p in agent.policy.critic.parameters())


@pytest.mark.slow
def test_es_learns_cartpole_quickly():
    agent = ES("CartPole-v1", seed=1, n_envs=16, population_size=16)
    before = agent.evaluate(5)["mean_return"]
    agent.learn(30_000, progress_bar=False)
    assert agent.evaluate(5)["mean_return"] > max(2 * before, 100)


@pytest.mark.parametrize(
    "env_id,kwargs",
    [
        ("CartPole-v1", dict(n_envs=4, population_size=4)),
        ("RLHF/Reverse-v0", dict(n_envs=4, population_size=4, policy="lm", kl_coef=0.1)),
    ],
)
def test_resumed_run_equals_uninterrupted_run(tmp_path, env_id, kwargs):
    def make(d):
        extra = {"model": tiny_lm()} if kwargs.get("policy") == "lm" else {}
        return ES(env_id, seed=5, checkpoint_dir=str(tmp_path / d), checkpoint_every=2, **kwargs, **extra)

    full = make("a")
    total = 600
    full.learn(total, progress_bar=False)
    part = make("b")
    part.learn(total, progress_bar=False, callback=lambda a, m: a.iteration < 3)
    resumed = ES.load(str(tmp_path / "b" / "last"))
    assert resumed.iteration == 2
    resumed.learn(total - resumed.num_timesteps, progress_bar=False, reset_num_timesteps=False)
    assert resumed.iteration == full.iteration and resumed.num_timesteps == full.num_timesteps
    for (k, a), b in zip(full.policy.state_dict().items(), resumed.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert full.evaluate(3) == resumed.evaluate(3)


def test_lm_es_perturbs_the_last_block_only():
    lm = tiny_lm(layers=2)
    names = [n for n, _ in last_block_parameters(lm)]
    assert names and all(n.startswith("transformer.h.1.") for n in names)
    agent = ES("RLHF/Reverse-v0", seed=0, policy="lm", model=lm, n_envs=4, population_size=4)
    assert agent.config.preset == "lm-default-es"
    frozen = {n: p.clone() for n, p in agent.policy.lm.named_parameters() if n not in names}
    block = {n: p.clone() for n, p in agent.policy.lm.named_parameters() if n in names}
    agent.learn(100, progress_bar=False)
    after = dict(agent.policy.lm.named_parameters())
    assert all(torch.equal(frozen[n], after[n]) for n in frozen)
    assert any(not torch.equal(block[n], after[n]) for n in block)
    ev = agent.evaluate(4)
    assert {"distinct_1", "distinct_2", "eos_rate", "ref_perplexity", "kl_ref"} <= set(ev)


def test_config_errors():
    with pytest.raises(ConfigError, match="population_size must be even"):
        ES("CartPole-v1", population_size=5)
    with pytest.raises(ConfigError, match="does not fit policy"):
        ES("CartPole-v1", es_params="last_block")
    with pytest.raises(ConfigError, match="not 'transformer'"):
        ES("RLHF/Copy-v0", policy="transformer")
    with pytest.raises(ConfigError, match="sigma"):
        ES("CartPole-v1", sigma=0.0)
