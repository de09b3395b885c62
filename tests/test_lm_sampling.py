"""The one sampler (rlhf_envs.lm.sampling): exact inverse-CDF sampling and batched completions."""

from __future__ import annotations

import pytest
import torch

from rlhf_envs.errors import ConfigError
from rlhf_envs.lm.sampling import sample_tokens, sample_with_logprobs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_completions_and_their_logprobs_are_the_models(kind, temperature, tiny_causal_lm):
    """Every completion's log-prob is the sum of its tokens' log-probs under a full forward pass of
    the model over prompt + completion (temperature and n_actions applied); rows stop at EOS."""
    lm = tiny_causal_lm(kind, vocab=30, heads=2)
    prompts = [[5, 6, 7], [8, 9], [10], [11, 12, 13, 14]]
    eos, n_actions = 2, 25
    comps, logp = sample_with_logprobs(
        lm, prompts, 7, eos, torch.Generator().manual_seed(0), n_actions=n_actions, temperature=temperature
    )
    assert len(comps) == len(prompts) and logp.shape == (len(prompts),)
    for p, c, lp in zip(prompts, comps, logp, strict=True):
        assert 1 <= len(c) <= 7 and all(t < n_actions for t in c)
        assert eos not in c[:-1] and (len(c) == 7 or c[-1] == eos)
        ids = torch.tensor([p + c])
        with torch.no_grad():
            full = (lm(ids).logits[0, :, :n_actions].float() / temperature).log_softmax(-1)
        expect = sum(float(full[len(p) - 1 + t, c[t]]) for t in range(len(c)))
        assert lp == pytest.approx(expect, rel=1e-5, abs=1e-4)
    again, _ = sample_with_logprobs(
        lm, prompts, 7, eos, torch.Generator().manual_seed(0), n_actions=n_actions, temperature=temperature
    )
    assert again == comps  # the generator alone decides


def test_sample_with_logprobs_rejects_bad_input(tiny_causal_lm):
    lm = tiny_causal_lm("gpt2", vocab=30)
    with pytest.raises(ConfigError, match="no empty prompt"):
        sample_with_logprobs(lm, [[1], []], 3, 2, torch.Generator())
    with pytest.raises(ConfigError, match="max_new_tokens"):
        sample_with_logprobs(lm, [[1]], 0, 2, torch.Generator())
