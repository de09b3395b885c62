"""Language-model PPO: KV-cached sampling, reference/value passes, KL penalty, memory, resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import rlhf_envs  # noqa: F401
from agents import PPO
from agents.lm import KLController, sample_tokens
from rlhf_envs.envs.vector_env import TextGenerationVectorEnv
from rlhf_envs.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_lm(vocab: int = 30, seed: int = 0, width: int = 32, layers: int = 1) -> GPT2LMHeadModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(
            GPT2Config(
                vocab_size=vocab,
                n_positions=32,
                n_embd=width,
                n_layer=layers,
                n_head=2,
                bos_token_id=1,
                eos_token_id=1,
                pad_token_id=0,
            )
        )


def lm_agent(env="RLHF/Reverse-v0", seed=0, **kw) -> PPO:
    kw = {"n_envs": 8, **kw}
    return PPO(env, seed=seed, policy="lm", model=kw.pop("model", None) or tiny_lm(), **kw)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_cached_sampler_matches_full_sequence_pass(temperature):
    agent = lm_agent(temperature=temperature, n_envs=16)
    batch, n_tokens, metrics = agent.collector.collect(agent)
    assert n_tokens == int(batch.mask.sum())
    with torch.no_grad():
        logp, _, values = agent.policy.evaluate_batch(batch)
    m = batch.mask
    # left-padded prompts of different lengths, KV cache vs whole sequences: same log-probs
    assert (batch.obs["attention_mask"][:, 0] == 0).any()
    assert torch.allclose(logp[m], batch.log_probs[m], atol=1e-5)
    assert torch.allclose(values[m], batch.values[m], atol=1e-5)
    # policy == reference at the start: KL (k1 and k3) is zero and so is the penalty
    assert abs(metrics["kl_ref"]) < 1e-4 and abs(metrics["kl_ref_k3"]) < 1e-4
    # the reward sits on the final real token only (plus the KL penalty, zero here)
    last = m.long().sum(1) - 1
    off_last = batch.rewards.clone()
    off_last[torch.arange(len(last)), last] = 0
    assert off_last.abs().max() < 1e-5
    assert metrics["kl_coef"] == pytest.approx(0.05)


def _batch_tensors(batch) -> list[torch.Tensor]:
    """Every tensor the rollout batch holds (all dataclass fields, dict values included)."""
    out = []
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        for t in value.values() if isinstance(value, dict) else [value]:
            if isinstance(t, torch.Tensor):
                out.append(t)
    return out


def test_rollout_buffer_does_not_grow_with_vocabulary():
    per_cell = {}
    for vocab in (30, 4096):
        agent = lm_agent(model=tiny_lm(vocab), n_envs=8)
        batch, _, _ = agent.collector.collect(agent)
        tensors = _batch_tensors(batch)
        assert len(tensors) >= 9  # obs ids + mask, actions, log-probs, values, advantages, returns, ...
        n_episodes, seq_len = batch.obs["input_ids"].shape
        # (episodes, positions) tensors only: nothing of size vocab, nothing with a third dimension
        assert all(t.dim() == 2 and t.shape[0] == n_episodes and t.shape[1] <= seq_len for t in tensors)
        assert all(max(t.shape) < 4096 for t in tensors)
        cells = sum(t.numel() for t in tensors)
        per_cell[vocab] = sum(t.numel() * t.element_size() for t in tensors) / cells
    assert per_cell[30] == per_cell[4096]


def test_value_head_starts_near_zero_and_reference_is_frozen():
    agent = lm_agent()
    assert agent.policy.value_head.weight.abs().max() < 0.01
    assert not any(p.requires_grad for p in agent.policy.ref.parameters())
    assert all(
        id(p) not in {id(q) for q in agent.policy.ref.parameters()} for p in agent.policy.lm.parameters()
    )
    ref_before = [p.clone() for p in agent.policy.ref.parameters()]
    agent.learn(200, progress_bar=False)
    assert all(torch.equal(a, b) for a, b in zip(ref_before, agent.policy.ref.parameters(), strict=True))


def test_lm_ppo_reward_rises_and_kl_is_reported(tmp_path):
    agent = lm_agent(
        "RLHF/Copy-v0",
        n_envs=32,
        learning_rate=3e-3,
        kl_coef=0.0,
        env_kwargs={"max_length": 3},
        log_dir=str(tmp_path),
        model=tiny_lm(),
    )
    history = []
    agent.learn(5000, progress_bar=False, callback=lambda a, m: history.append(m))
    first = np.mean([h["mean_return"] for h in history[:5]])
    last = np.mean([h["mean_return"] for h in history[-5:]])
    # +0.05: seeds 0-2 gave +0.06 to +0.11 (the old multinomial-free sampler: +0.07 to +0.13)
    assert last > first + 0.05
    assert history[-1]["kl_ref"] > 0.1  # the policy moved away from the reference
    header = open(tmp_path / "progress.csv").readline().strip().split(",")
    for col in (
        "kl_ref",
        "kl_ref_k3",
        "kl_coef",
        "reward_task",
        "approx_kl_k1",
        "approx_kl_k3",
        "clip_fraction",
        "explained_variance",
        "entropy",
        "reward_kl_penalty",
    ):
        assert col in header


def test_kl_estimators_and_adaptive_controller():
    fixed = KLController(0.1, adaptive=False, target=6.0, horizon=10_000)
    fixed.update(100.0, 64)
    assert fixed.value == 0.1
    ctl = KLController(0.1, adaptive=True, target=6.0, horizon=10_000)
    ctl.update(12.0, 100)  # KL above target: beta grows by at most 20% * batch / horizon
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 100 / 10_000))
    ctl.update(3.0, 100)
    assert ctl.value < 0.1 * (1 + 0.2 * 100 / 10_000)
    k3 = lm_agent(kl_estimator="k3", kl_coef=0.5, learning_rate=1e-2)
    k3.learn(400, progress_bar=False)
    batch, _, metrics = k3.collector.collect(k3)
    assert metrics["kl_ref_k3"] >= 0  # k3 is never negative
    assert metrics["reward_kl_penalty"] == pytest.approx(-0.5 * metrics["kl_ref_k3"], rel=1e-4, abs=1e-6)
    adaptive = lm_agent(adaptive_kl=True, kl_target=0.01, kl_horizon=100, learning_rate=1e-2)
    adaptive.learn(600, progress_bar=False)
    assert adaptive.collector.kl.value > 0.05


def test_lm_resume_equals_uninterrupted(tmp_path):
    kw = dict(n_envs=8, checkpoint_every=2, learning_rate=1e-3)
    full = lm_agent(checkpoint_dir=str(tmp_path / "a"), **kw)
    full.learn(500, progress_bar=False)
    part = lm_agent(checkpoint_dir=str(tmp_path / "b"), **kw)
    part.learn(500, progress_bar=False, callback=lambda a, m: a.iteration < 3)
    resumed = PPO.load(str(tmp_path / "b" / "last"))
    assert resumed.iteration == 2
    resumed.learn(500 - resumed.num_timesteps, progress_bar=False, reset_num_timesteps=False)
    assert resumed.iteration == full.iteration and resumed.num_timesteps == full.num_timesteps
    for (k, a), b in zip(full.policy.state_dict().items(), resumed.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_lm_policy_errors_and_evaluate():
    with pytest.raises(ConfigError, match="token observation"):
        PPO("CartPole-v1", policy="lm", model=tiny_lm())
    with pytest.raises(ConfigError, match="smaller than the env's action space"):
        PPO("RLHF/Copy-v0", policy="lm", model=tiny_lm(vocab=10))
    agent = lm_agent(env=TextGenerationVectorEnv("copy", num_envs=4, autoreset_mode="Disabled"), n_envs=4)
    agent.learn(100, progress_bar=False)
    ev = agent.evaluate(10)
    assert ev["n_episodes"] == 10 and "success_rate" in ev and "reward_task" in ev


def test_sample_tokens_distribution():
    g = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]])).repeat(20_000, 1)
    tokens, logp = sample_tokens(logits, g)
    freq = torch.bincount(tokens, minlength=3).float() / len(tokens)
    assert torch.allclose(freq, torch.tensor([0.1, 0.6, 0.3]), atol=0.015)
    assert torch.allclose(logp, torch.log(torch.tensor([0.1, 0.6, 0.3]))[tokens], atol=1e-5)


def test_block_inverse_cdf_sampler_is_exact():
    """The two-level inverse CDF draws from softmax(logits) exactly, across block boundaries,
    never draws a zero-probability token, and returns log_softmax of the chosen token."""
    g = torch.Generator().manual_seed(0)
    vocab = 300  # 4 whole blocks of 64 and a partial one
    logits = torch.randn(vocab, generator=g) * 1.5
    logits[64:128] = float("-inf")  # a whole block without mass
    logits[0] = logits[299] = logits[200] = float("-inf")  # first, last and a middle id
    logits[130] = 4.0  # one token just after the empty block holds a large share
    p = torch.softmax(logits.double(), -1)
    counts = torch.zeros(vocab, dtype=torch.float64)
    n_rows, n_calls = 4000, 30
    for _ in range(n_calls):
        tokens, logp = sample_tokens(logits.repeat(n_rows, 1), g)
        counts += torch.bincount(tokens, minlength=vocab).double()
        assert torch.allclose(logp.double(), p.log()[tokens], atol=1e-5)
    n = n_rows * n_calls
    assert counts[p == 0].sum() == 0
    freq = counts / n
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-4).all()
    # chi-square over the tokens with mass: its mean is the degrees of freedom, sd sqrt(2 dof)
    live = p > 0
    chi2 = float(((counts[live] - n * p[live]) ** 2 / (n * p[live])).sum())
    dof = int(live.sum()) - 1
    assert chi2 < dof + 5 * (2 * dof) ** 0.5


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logprobs_equal_log_softmax_and_follow_the_generator(temperature):
    g = torch.Generator().manual_seed(1)
    raw = torch.randn(257, 2288, generator=g) * 6  # the embedded model's vocabulary, wide spread
    logits = raw / temperature
    tokens, logp = sample_tokens(logits, torch.Generator().manual_seed(5))
    assert tokens.shape == logp.shape == (257,) and tokens.dtype == torch.long
    expected = torch.log_softmax(logits, -1).gather(-1, tokens[:, None]).squeeze(-1)
    assert torch.allclose(logp, expected, atol=1e-5)
    again, _ = sample_tokens(logits, torch.Generator().manual_seed(5))
    other, _ = sample_tokens(logits, torch.Generator().manual_seed(6))
    assert torch.equal(tokens, again) and not torch.equal(tokens, other)
    greedy, greedy_logp = sample_tokens(logits, None, deterministic=True)
    assert torch.equal(greedy, logits.argmax(-1))
    assert torch.allclose(greedy_logp, torch.log_softmax(logits, -1).amax(-1), atol=1e-5)
    bad = logits[:3].clone()
    bad[2, 7] = float("nan")
    with pytest.raises(ValueError, match="row 2"):
        sample_tokens(bad, g)
    with pytest.raises(ValueError, match="shape"):
        sample_tokens(logits[0], g)


def test_sampler_benchmark_runs_both_sides():
    """The speed comparison itself lives in benchmarks/sampler.py (ratios measured side by side on an
    idle machine, never asserted in tests); here only that both sides run and report what they did."""
    from benchmarks.sampler import compare_with_generate, reference_lm

    res = compare_with_generate(reference_lm(), batch=4, new_tokens=3, rounds=1)
    assert res["ours_tok_s_best"] > 0 and res["generate_tok_s_best"] > 0
    assert res["ratio_best"] == pytest.approx(res["ours_tok_s_best"] / res["generate_tok_s_best"])


@pytest.mark.slow
def test_demo_sentiment_reward_rises(tmp_path):
    from agents import demo

    out = demo.run(seed=0, timesteps=6000, out_dir=str(tmp_path), n_samples=2, progress_bar=False)
    assert out["reward_after"] > out["reward_before"] + 0.2
    assert (tmp_path / "learning_curve.png").exists() and (tmp_path / "checkpoint" / "config.json").exists()


@pytest.mark.parametrize("cls_name", ["A2C", "REINFORCE"])
def test_policy_gradient_family_runs_with_lm_policy(cls_name):
    import agents

    cls = getattr(agents, cls_name)
    agent = cls("RLHF/Copy-v0", seed=0, policy="lm", model=tiny_lm(), n_envs=8)
    before = [p.clone() for p in agent.policy.lm.parameters()]
    agent.learn(200, progress_bar=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.lm.parameters(), strict=True))
    assert agent.iteration >= 3


def test_fast_gpt2_decoder_matches_transformers_cache():
    lm = tiny_lm(vocab=50, width=32, layers=2)
    agent = PPO("RLHF/Copy-v0", seed=0, policy="lm", model=lm, n_envs=4)
    pol = agent.policy
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(2, 30, (5, 6), generator=g)
    pmask = torch.ones_like(prompt)
    pmask[0, :3] = 0  # left padding
    pmask[3, :1] = 0
    fast_logits, dec = pol.start(prompt, pmask, max_new_tokens=4)
    slow_logits, cache = pol.start(prompt, pmask)
    assert type(dec).__name__ == "GPT2Decoder"
    assert torch.allclose(fast_logits, slow_logits, atol=1e-5)
    attn, pos = pmask, pmask.sum(1)
    for _ in range(4):
        tok = fast_logits.argmax(-1)
        attn = torch.cat([attn, torch.ones(5, 1, dtype=attn.dtype)], 1)
        fast_logits, dec = pol.next(tok, dec, attn, pos)
        slow_logits, cache = pol.next(tok, cache, attn, pos)
        pos = pos + 1
        assert torch.allclose(fast_logits, slow_logits, atol=1e-5)


def test_lm_agent_skips_the_env_reference_pass_unless_asked():
    """The agent computes reference log-probs itself, so the env's own reference pass is switched off
    by default on language ids, and kept when the caller asks for it (or for an env-side KL)."""
    agent = PPO("RLHF/Sentiment-v0", policy="lm", model="default", n_envs=2)
    assert agent.config.env_kwargs == {"ref_logprobs": False}
    assert agent.env.task.ref_logprobs is False
    kept = PPO("RLHF/Sentiment-v0", policy="lm", model="default", n_envs=2, env_kwargs={"kl_coef": 0.1})
    assert "ref_logprobs" not in kept.config.env_kwargs and kept.env.task.ref_logprobs is True
    asked = PPO(
        "RLHF/Sentiment-v0", policy="lm", model="default", n_envs=2, env_kwargs={"ref_logprobs": True}
    )
    assert asked.env.task.ref_logprobs is True
    assert PPO("RLHF/Copy-v0", n_envs=2).config.env_kwargs == {}  # toy tasks have no such option


@pytest.mark.parametrize("onednn", [True, False])
def test_fast_linear_equals_linear_and_gelu(monkeypatch, onednn):
    """``fast_linear`` (oneDNN when present, else ``linear``) against ``torch.nn.functional.linear``,
    with a bias or none, a transposed (strided) weight as the decoder passes Conv1D weights, and the
    fused tanh GELU against transformers' ``gelu_new``."""
    from transformers.activations import NewGELUActivation

    import agents.lm as lm_mod

    if not onednn:
        monkeypatch.setattr(lm_mod, "_ONEDNN_LINEAR", None)
    elif lm_mod._ONEDNN_LINEAR is None:
        pytest.skip("this torch build has no usable oneDNN linear")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(17, 40, generator=g)
    w_in_out = torch.randn(40, 24, generator=g) * 0.3  # Conv1D layout
    b = torch.randn(24, generator=g)
    ref = torch.nn.functional.linear(x, w_in_out.t(), b)
    assert torch.allclose(lm_mod.fast_linear(x, w_in_out.t(), b), ref, atol=1e-5)
    assert torch.allclose(lm_mod.fast_linear(x, w_in_out.t().contiguous(), None), ref - b, atol=1e-5)
    gelu = lm_mod.fast_linear(x, w_in_out.t(), b, gelu=True)
    assert torch.allclose(gelu, NewGELUActivation()(ref), atol=1e-5)
    assert not torch.allclose(gelu, ref, atol=1e-3)  # the activation was applied


@pytest.mark.parametrize("onednn", [True, False])
def test_gpt2_decoder_steps_equal_full_forward_pass(monkeypatch, onednn):
    """Several decoding steps with left padding and 4 heads give the logits of a full forward pass
    over the whole sequence, on the oneDNN path and on the ``linear`` fallback."""
    import agents.lm as lm_mod

    if not onednn:
        monkeypatch.setattr(lm_mod, "_ONEDNN_LINEAR", None)
    elif lm_mod._ONEDNN_LINEAR is None:
        pytest.skip("this torch build has no usable oneDNN linear")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        lm = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=32, n_embd=48, n_layer=2, n_head=4)).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 40, (3, 5), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[2, :4] = 0
    dec = lm_mod.GPT2Decoder(lm)
    head = lm.lm_head.weight
    got = [dec.start(ids, mask, 6) @ head.t()]
    pos = mask.sum(1)
    seq, seq_mask = ids, mask
    for _ in range(6):
        tok = torch.randint(0, 40, (3,), generator=g)
        seq = torch.cat([seq, tok[:, None]], 1)
        seq_mask = torch.cat([seq_mask, torch.ones(3, 1, dtype=mask.dtype)], 1)
        got.append(dec.step(tok, pos) @ head.t())
        pos = pos + 1
    with pytest.raises(RuntimeError, match="cache is full"):
        dec.step(tok, pos)
    with torch.no_grad():
        full = lm(input_ids=seq, attention_mask=seq_mask, position_ids=lm_mod.positions(seq_mask)).logits
    want = full[:, ids.shape[1] - 1 :]  # position P - 1 + t predicts token t
    assert torch.allclose(torch.stack(got, 1), want, atol=1e-5)
