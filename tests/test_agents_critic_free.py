"""RLOO and GRPO: hand-computed baselines and losses, grouped rollouts, KL modes, exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import rlhf_envs  # noqa: F401
from agents import GRPO, RLOO
from agents.critic_free import clipped_policy_loss, group_seeds, k3_kl_loss
from agents.grpo import GRPO_EPS, grpo_advantages
from agents.rloo import rloo_advantages
from rlhf_envs.errors import ConfigError
from tests.test_agents_lm import tiny_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rloo_baseline_is_the_mean_of_the_other_samples():
    scores = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 1.0, 1.0]])
    # by hand: completion i's baseline is the mean of the three others
    expected = torch.tensor(
        [
            [1 - (2 + 3 + 6) / 3, 2 - (1 + 3 + 6) / 3, 3 - (1 + 2 + 6) / 3, 6 - (1 + 2 + 3) / 3],
            [0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3, 1 - 1 / 3],
        ]
    )
    assert torch.allclose(rloo_advantages(scores), expected)
    # the sample itself is not in its baseline: raising s_0 by d raises A_0 by exactly d
    # and lowers each other advantage by d / (k - 1)
    bumped = scores.clone()
    bumped[0, 0] += 3.0
    diff = rloo_advantages(bumped) - rloo_advantages(scores)
    assert torch.allclose(diff[0], torch.tensor([3.0, -1.0, -1.0, -1.0]))
    assert torch.equal(diff[1], torch.zeros(4))
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(torch.ones(3, 1))


def test_grpo_normalises_within_each_group():
    scores = torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]])
    std = math.sqrt((4 + 1 + 0 + 9) / 3)  # unbiased std of 1, 2, 3, 6 (mean 3)
    expected = torch.tensor([-2.0, -1.0, 0.0, 3.0]) / (std + GRPO_EPS)
    adv = grpo_advantages(scores)
    assert torch.allclose(adv[0], expected, atol=1e-6)
    assert torch.equal(adv[1], torch.zeros(4))  # a group without signal contributes nothing
    assert torch.allclose(grpo_advantages(scores, scale=False)[0], torch.tensor([-2.0, -1.0, 0.0, 3.0]))


def test_clipped_loss_and_k3_term_on_a_hand_computed_batch():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]])
    old = torch.tensor([[-1.1, -2.0], [-0.5, -1.0]])  # ratios e^0.1, 1, 1, e^-2 (masked)
    adv = torch.tensor([[2.0, 2.0], [-1.0, -1.0]])
    mask = torch.tensor([[True, True], [True, False]])
    loss, ratio = clipped_policy_loss(logp, old, adv, mask, clip=0.05)
    # token 1: -2 * min(e^0.1, 1.05) = -2.1 (clipped); token 2: -2; token 3: +1; mean over 3 tokens
    assert float(loss) == pytest.approx((-2.1 - 2.0 + 1.0) / 3, abs=1e-6)
    assert float(ratio[0, 0]) == pytest.approx(math.exp(0.1), rel=1e-6)
    ref = torch.tensor([[-1.5, -2.0], [0.0, 0.0]])
    d = [-0.5, 0.0, 0.5]  # log p_ref - log pi on the three real tokens
    expected = sum(math.exp(x) - x - 1 for x in d) / 3
    assert float(k3_kl_loss(logp, ref, mask)) == pytest.approx(expected, rel=1e-6)


def agent(cls, seed=0, **kw):
    kw = {"n_envs": 8, "group_size": 4, "model": tiny_lm(), "learning_rate": 1e-3, **kw}
    return cls("RLHF/Reverse-v0", seed=seed, **kw)


@pytest.mark.parametrize("cls", [RLOO, GRPO])
def test_groups_share_a_prompt_and_the_update_is_the_policy_gradient(cls):
    a = agent(cls, n_envs=12, group_size=3)
    assert a.policy.value_head is None  # no value model
    batch, n_tokens, metrics = a.collector.collect(a)
    assert n_tokens == int(batch.mask.sum())
    prompts = batch.obs["input_ids"][:, : -batch.actions.shape[1]]
    for g in range(4):
        rows = prompts[3 * g : 3 * g + 3]
        assert torch.equal(rows[0], rows[1]) and torch.equal(rows[0], rows[2])
    assert len({tuple(r.tolist()) for r in prompts[::3]}) > 1  # groups get different prompts
    # advantages: one per completion, on every real token, summing to 0 within a group
    adv_seq = batch.advantages.sum(1) / batch.mask.sum(1)
    assert torch.allclose(adv_seq.view(4, 3).sum(1), torch.zeros(4), atol=1e-5)
    # one epoch of one minibatch: ratio 1, so the loss is -mean(A) over real tokens
    m = batch.mask.float()
    expected = float(-(batch.advantages * m).sum() / m.sum())
    stats = a.train(batch, 1.0)
    assert stats["policy_loss"] == pytest.approx(expected, abs=1e-5)
    assert stats["clip_fraction"] == 0.0


def test_kl_in_the_reward_or_in_the_loss():
    rloo = agent(RLOO, kl_coef=0.5, learning_rate=1e-2)
    rloo.learn(300, progress_bar=False)  # move away from the reference first
    batch, _, metrics = rloo.collector.collect(rloo)
    m = batch.mask.float()
    task = float((batch.rewards * m).sum(1).mean())
    # reward mode (RLOO's default): score = task return - beta * sum_t KL_t (k1)
    assert metrics["mean_total_reward"] == pytest.approx(task - 0.5 * metrics["kl_ref"], abs=1e-5)
    assert metrics["reward_kl_penalty"] == pytest.approx(-0.5 * metrics["kl_ref"], abs=1e-5)
    assert "kl_loss" not in rloo.train(batch, 1.0)
    grpo = agent(GRPO, kl_coef=0.5)  # loss mode (GRPO's default): scores are the task returns
    batch, _, metrics = grpo.collector.collect(grpo)
    m = batch.mask.float()
    assert metrics["mean_total_reward"] == pytest.approx(float((batch.rewards * m).sum(1).mean()), abs=1e-6)
    assert metrics["reward_kl_penalty"] == 0.0
    stats = grpo.train(batch, 1.0)
    assert stats["kl_loss"] == pytest.approx(0.0, abs=1e-6)  # policy == reference before the step


@pytest.mark.parametrize("cls", [RLOO, GRPO])
def test_resumed_run_equals_uninterrupted_run(tmp_path, cls):
    kw = dict(checkpoint_every=2, n_minibatches=2, n_epochs=2)
    full = agent(cls, checkpoint_dir=str(tmp_path / "a"), **kw)
    full.learn(400, progress_bar=False)
    part = agent(cls, checkpoint_dir=str(tmp_path / "b"), **kw)
    part.learn(400, progress_bar=False, callback=lambda a, m: a.iteration < 3)
    resumed = cls.load(str(tmp_path / "b" / "last"))
    assert resumed.iteration == 2 and resumed.config.preset == part.config.preset
    resumed.learn(400 - resumed.num_timesteps, progress_bar=False, reset_num_timesteps=False)
    assert resumed.iteration == full.iteration and resumed.num_timesteps == full.num_timesteps
    sa, sb = full.policy.state_dict(), resumed.policy.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert full.evaluate(4) == resumed.evaluate(4)


def test_config_errors_and_presets():
    with pytest.raises(ConfigError, match="multiple of group_size") as err:
        agent(RLOO, n_envs=6, group_size=4)
    assert "per rank" in str(err.value)  # under torchrun every rank runs whole groups
    with pytest.raises(ConfigError, match="group_size must be an int >= 2"):
        agent(GRPO, group_size=1)
    with pytest.raises(ConfigError, match="policy must be 'lm'"):
        RLOO("CartPole-v1", policy="mlp")
    with pytest.raises(ConfigError, match="kl_mode"):
        agent(RLOO, kl_mode="both")
    a = agent(GRPO)
    assert a.config.preset == "lm-default-grpo" and a.config.kl_mode == "loss"
    assert agent(RLOO).config.kl_mode == "reward"


def test_group_seeds_repeat_within_groups():
    seeds = group_seeds(np.random.default_rng(0), 6, 3)
    assert seeds[0] == seeds[1] == seeds[2] and seeds[3] == seeds[4] == seeds[5] and seeds[0] != seeds[3]
