"""The LM agents' fast paths compute what the paths they replace computed (issue 19).

Each fast path must leave the maths alone: the same values up to float rounding (bit for bit where
the change only skips work whose result is multiplied by zero). Tested one by one, and all together
against the old paths on whole PPO and GRPO iterations:

* :func:`rlhf_envs.lm.gpt2_forward.gpt2_hidden_states` against transformers' ``GPT2Model.forward``
  (hidden states on real positions, and parameter gradients), with and without ``keep``;
* :meth:`agents.rollout.Batch.trim_padding`;
* the entropy outside autograd when ``ent_coef`` is 0 (gradients bit for bit);
* the rollout's values from the sampler's hidden states against the separate value pass;
* fused Adam against the default implementation;
* the phase timer (off by default) and the FLOP count of :mod:`benchmarks.iteration_profile`;
* the settings TRL's job holds equal for the custom PPO and GRPO (:mod:`benchmarks.trl_speed`).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from agents import GRPO, PPO, base, lm_actor_critic
from agents.critic_free import GroupBatch
from agents.lm_actor_critic import LMActorCritic
from agents.lm_collector import EpisodeCollector
from agents.rollout import Batch
from rlhf_envs.lm.gpt2_forward import fast_forward_supported, gpt2_hidden_states
from rlhf_envs.lm.loading import load_causal_lm, position_ids

ENV = "RLHF/Sentiment-v0"


@pytest.fixture(scope="module")
def lm() -> torch.nn.Module:
    model = load_causal_lm("default", cache=False)
    model.requires_grad_(True)
    return model.eval()


def _padded_batch(rows: int = 4, width: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and a mask with left padding (rows 0, 1), right padding (row 2) and none (row 3)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 2000, (rows, width), generator=g)
    mask = torch.ones(rows, width, dtype=torch.long)
    mask[0, :5] = 0
    mask[1, :2] = 0
    mask[2, -4:] = 0
    return ids, mask


@pytest.mark.parametrize("keep", [None, slice(7, 19)])
def test_gpt2_forward_equals_transformers_values_and_gradients(lm, keep) -> None:
    ids, mask = _padded_batch()
    pos = position_ids(mask)
    ref = lm.base_model(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
    ours = gpt2_hidden_states(lm, ids, mask, pos, keep=keep)
    real = mask.bool()
    if keep is not None:
        ref, real = ref[:, keep], real[:, keep]
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours[real], ref[real], atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the no-grad path (oneDNN linears) too
        fast = gpt2_hidden_states(lm, ids, mask, pos, keep=keep)
    torch.testing.assert_close(fast[real], ref[real].detach(), atol=1e-5, rtol=1e-5)
    # gradients of a loss over real positions, parameter by parameter
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    grads = []
    for out in (ref, ours):
        lm.zero_grad(set_to_none=True)
        (out * w)[real].sum().backward(retain_graph=out is ref)
        grads.append({n: p.grad.clone() for n, p in lm.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:  # float noise scales with the tensor's largest entries (up to ~50 here)
        scale = max(1.0, float(grads[0][n].abs().max()))
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-5 * scale, rtol=1e-4, msg=n)
    lm.zero_grad(set_to_none=True)


def test_gpt2_forward_is_used_only_where_it_applies(lm) -> None:
    assert fast_forward_supported(lm)
    other = copy.deepcopy(lm)
    other.train()  # dropout would be on: the module forward is used
    assert not fast_forward_supported(other)
    other.eval()
    other.config.activation_function = "relu"
    assert not fast_forward_supported(other)
    with pytest.raises(ValueError, match="step 1"):
        gpt2_hidden_states(
            lm,
            *_padded_batch()[:1],
            torch.ones(4, 20, dtype=torch.long),
            torch.zeros(4, 20, dtype=torch.long),
            keep=slice(0, 10, 2),
        )


def _lm_batch() -> Batch:
    """Two episodes: prompts of 2 and 3 tokens left-padded to 5, completions of 2 and 3 in 6 columns."""
    am = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0]])
    ids = torch.arange(22).view(2, 11) * am
    mask = am[:, 5:].bool()
    per_token = [torch.arange(12, dtype=torch.float32).view(2, 6) + k for k in range(4)]
    return Batch({"input_ids": ids, "attention_mask": am}, mask.long() * 7, *per_token, mask, per_token[0])


def test_trim_padding_drops_only_columns_no_row_uses() -> None:
    b = _lm_batch()
    t = b.trim_padding()
    assert t.obs["input_ids"].shape == (2, 3 + 3)  # prompt columns 2-4, completion columns 0-2
    torch.testing.assert_close(t.obs["attention_mask"], b.obs["attention_mask"][:, 2:8])
    for f in ("actions", "log_probs", "values", "advantages", "returns", "mask", "rewards"):
        torch.testing.assert_close(getattr(t, f), getattr(b, f)[:, :3])
    # position ids of the real tokens are unchanged
    keep = t.obs["attention_mask"].bool()
    torch.testing.assert_close(
        position_ids(t.obs["attention_mask"])[keep], position_ids(b.obs["attention_mask"])[:, 2:8][keep]
    )
    # a subclass's per-token fields are trimmed too
    fields = {f.name: getattr(b, f.name) for f in dataclasses.fields(Batch)}
    g = GroupBatch(**fields, ref_log_probs=torch.ones(2, 6)).trim_padding()
    assert isinstance(g, GroupBatch) and g.ref_log_probs.shape == (2, 3)
    # nothing to trim, an empty batch, or a batch of transitions (MLP): the batch itself
    assert t.trim_padding() is t
    assert b.index(torch.tensor([], dtype=torch.long)).trim_padding().obs["input_ids"].shape == (0, 11)
    flat = Batch(torch.zeros(3, 4), *[torch.zeros(3) for _ in range(6)], torch.ones(3))
    assert flat.trim_padding() is flat


def test_entropy_outside_autograd_leaves_every_gradient_bit_for_bit() -> None:
    agent = PPO(ENV, seed=0, preset="lm-sb3-sentiment", n_envs=4)
    batch, _, _ = agent.collector.collect(agent)
    grads = []
    for entropy_grad in (True, False):
        agent.policy.zero_grad(set_to_none=True)
        logp, ent, values = agent.policy.evaluate_batch(batch, entropy_grad=entropy_grad)
        assert ent.requires_grad is entropy_grad
        m = batch.mask.float()
        loss = ((-batch.advantages * logp + 0.1 * values**2 - 0.0 * ent) * m).sum() / m.sum()
        loss.backward()
        grads.append([p.grad.clone() for p in agent.policy.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    agent.close()


def test_values_from_the_sampler_equal_the_value_pass() -> None:
    agent = PPO(ENV, seed=0, preset="lm-sb3-sentiment", n_envs=6)
    gen = torch.Generator().manual_seed(3)
    obs, actions, _, _, mask, _, values = agent.collector.rollout(agent.env, 11, gen, with_values=True)
    pass_values, _ = agent.policy.values_and_ref_logprobs(obs, actions)
    torch.testing.assert_close(values[mask], pass_values[mask], atol=1e-5, rtol=1e-5)
    assert (values[~mask] == 0).all()
    grpo = GRPO(ENV, seed=0, preset="lm-trl-sentiment-grpo", n_envs=4)  # no value head
    with pytest.raises(ValueError, match="value head"):
        grpo.collector.rollout(grpo.env, 0, gen, with_values=True)
    agent.close()
    grpo.close()


def test_fused_adam_equals_the_default_up_to_rounding(lm) -> None:
    params = [p.detach().clone().requires_grad_(True) for p in lm.parameters()]
    assert base.fused_adam_ok(params)
    assert not base.fused_adam_ok([torch.zeros(3, dtype=torch.long)])
    twins = [[p.detach().clone().requires_grad_(True) for p in params] for _ in range(2)]
    opts = [
        torch.optim.Adam(twins[0], lr=1e-3, eps=1e-5, foreach=False),
        torch.optim.Adam(twins[1], lr=1e-3, eps=1e-5, fused=True),
    ]
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        grads = [torch.randn(p.shape, generator=g) * 1e-2 for p in params]
        for ps, opt in zip(twins, opts, strict=True):
            for p, gr in zip(ps, grads, strict=True):
                p.grad = gr.clone()
            opt.step()
    for a, b in zip(*twins, strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(params, twins[1], strict=True))  # it moved


def _old_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch every fast path of issue 19 off (the paths from before it)."""
    monkeypatch.setattr(lm_actor_critic, "fast_forward_supported", lambda model: False)
    monkeypatch.setattr(Batch, "trim_padding", lambda self: self)
    evaluate = LMActorCritic.evaluate_batch
    monkeypatch.setattr(
        LMActorCritic, "evaluate_batch", lambda self, b, entropy_grad=True: evaluate(self, b, True)
    )
    monkeypatch.setattr(base, "fused_adam_ok", lambda params: False)
    monkeypatch.setattr(EpisodeCollector, "values_from_sampler", False)


@pytest.mark.parametrize(("cls", "preset"), [(PPO, "lm-sb3-sentiment"), (GRPO, "lm-trl-sentiment-grpo")])
def test_fast_paths_train_as_the_old_paths(monkeypatch: pytest.MonkeyPatch, cls, preset) -> None:
    """Two iterations of TRL's job (8 episodes per batch) with every fast path, then with none:
    the same samples, metrics and weights up to float rounding."""
    runs = []
    for old in (False, True):
        with monkeypatch.context() as mp:
            if old:
                _old_paths(mp)
            agent = cls(ENV, seed=0, preset=preset, n_envs=8)
            assert isinstance(agent.optimizer.param_groups[0]["fused"], bool)
            assert agent.optimizer.param_groups[0]["fused"] is not old
            logs: list[dict] = []
            agent.learn(
                10**6,
                progress_bar=False,
                callback=lambda a, m, logs=logs: logs.append(dict(m)) or len(logs) < 2,
            )
            runs.append(
                (
                    agent.num_timesteps,
                    logs,
                    {n: p.detach().clone() for n, p in agent.policy.named_parameters()},
                )
            )
            agent.close()
    (n_new, logs_new, new), (n_old, logs_old, old) = runs
    assert n_new == n_old and len(logs_new) == len(logs_old) == 2
    for a, b in zip(logs_new, logs_old, strict=True):
        for key in ("reward_task", "kl_ref", "policy_loss", "approx_kl_k3", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-6), key
    moved = 0.0
    for n in old:
        torch.testing.assert_close(new[n], old[n], atol=2e-6, rtol=1e-5, msg=n)
        moved = max(moved, float((new[n] - old[n]).abs().max()))
    assert moved < 2e-6


def test_phase_timer_is_off_by_default_and_times_the_phases_when_on() -> None:
    agent = PPO(ENV, seed=0, preset="lm-sb3-sentiment", n_envs=4)
    agent.learn(1, progress_bar=False)
    assert agent.phases.seconds == {} and not agent.phases.enabled
    agent.phases.enabled = True
    agent.learn(1, progress_bar=False)
    ph = agent.phases.seconds
    for name in ("rollout", "update", "rollout.sampling", "rollout.env", "rollout.ref_pass"):
        assert ph[name] > 0, name
    for name in ("update.forward", "update.backward", "update.clip_grad", "update.optimizer"):
        assert agent.phases.calls[name] == 16, name  # 4 epochs x 4 minibatches
    assert sum(v for k, v in ph.items() if k.startswith("update.")) <= ph["update"]
    assert sum(v for k, v in ph.items() if k.startswith("rollout.")) <= ph["rollout"]
    agent.phases.reset()
    assert agent.phases.seconds == {} and agent.phases.calls == {}
    agent.close()


def test_iteration_flops_counts_real_tokens_of_each_pass() -> None:
    from benchmarks.iteration_profile import iteration_flops

    b = _lm_batch()  # 4 and 6 real tokens, 2 and 3 of them completion tokens
    sizes = {"body": 100, "head": 10, "d": 2, "layers": 1}
    f = iteration_flops(b, sizes, n_epochs=4, value_pass=True)
    attn = 4 * 2 * (4 * 5 / 2 + 6 * 7 / 2)  # causal: token t attends to t + 1 keys
    body, head = 2 * 100 * 10 + attn, 2 * 10 * 5
    assert f["sampling"] == f["reference_pass"] == body + head
    assert f["value_pass"] == body
    assert f["update"] == 4 * 3 * (body + head)
    assert f["total"] == f["sampling"] + f["value_pass"] + f["reference_pass"] + f["update"]
    assert iteration_flops(b, sizes, n_epochs=4, value_pass=False)["value_pass"] == 0


def test_trl_job_settings_are_held_equal_and_checked() -> None:
    from agents.config import PPOConfig
    from agents.grpo import GRPOConfig
    from benchmarks.trl_speed import GRPO_PRESET, check_held_equal

    shared = check_held_equal()
    assert shared["n_envs"] == 16 and shared["group_size"] == 4
    assert shared["n_epochs"] == shared["n_minibatches"] == 4
    ppo = PPOConfig.from_kwargs(preset="lm-sb3-sentiment")
    for field, value in (("kl_coef", 0.1), ("n_minibatches", 2), ("clip_range", 0.3)):
        grpo = GRPOConfig.from_kwargs(preset=GRPO_PRESET, **{field: value})
        with pytest.raises(ValueError, match=field):
            check_held_equal(ppo, grpo)
