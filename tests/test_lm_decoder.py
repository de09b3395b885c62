"""The one KV-cached decoder (rlhf_envs.lm.decoder) against full forward passes.

Both implementations (the fast GPT-2 path and the generic transformers path, on GPT-2, Llama and
GPT-NeoX built from small configs with random weights) and both usage patterns: synchronous batches
(left-padded prompts, every row one token per step) and per-row streams (rows at their own lengths,
stepped in subsets, reset independently, pickled mid-way).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf_envs.lm import kernels
from rlhf_envs.lm.decoder import (
    Decoder,
    GPT2Decoder,
    HFDecoder,
    PrefixLogits,
    fast_gpt2_supported,
    make_decoder,
)
from rlhf_envs.lm.loading import position_ids

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = 40
# float32: the cached step and a full pass sum in different orders (a few ulps apart)
TOL = {"rtol": 1e-5, "atol": 2e-5}


# (model, decoder class): the fast path, the generic path on the same GPT-2, and two other families
CASES = [("gpt2", GPT2Decoder), ("gpt2", HFDecoder), ("llama", HFDecoder), ("neox", HFDecoder)]
IDS = [f"{k}-{c.__name__}" for k, c in CASES]


@pytest.fixture(scope="module")
def models(tiny_causal_lm) -> dict[str, torch.nn.Module]:
    return {k: tiny_causal_lm(k, VOCAB, seed=3) for k in ("gpt2", "llama", "neox")}


def _full_logits(lm: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return lm(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits.float()


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, **TOL)


def test_one_support_check_picks_the_path(models) -> None:
    assert fast_gpt2_supported(models["gpt2"])
    assert isinstance(make_decoder(models["gpt2"], 2, 4), GPT2Decoder)
    for kind in ("llama", "neox"):
        assert not fast_gpt2_supported(models[kind])
        assert isinstance(make_decoder(models[kind], 2, 4), HFDecoder)
    for change in ({"activation_function": "relu"}, {"scale_attn_by_inverse_layer_idx": True}):
        cfg = GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1, n_head=2, **change)
        lm = GPT2LMHeadModel(cfg).eval()
        assert not fast_gpt2_supported(lm) and isinstance(make_decoder(lm, 1, 4), HFDecoder)


@pytest.mark.parametrize(("kind", "cls"), CASES, ids=IDS)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_synchronous_batch_matches_full_forward(models, kind, cls, temperature) -> None:
    """Left-padded prompts prefilled together, then several steps of all rows: the logits of a full
    forward pass over the whole sequences (restricted to n_actions ids, divided by the temperature)."""
    lm = models[kind]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (3, 5), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[2, :4] = 0
    n_actions, steps = 30, 6
    dec = cls(lm, 3, 5 + steps, n_actions=n_actions, temperature=temperature)
    got = [dec.prefill(ids, mask)]
    seq, seq_mask = ids, mask
    for _ in range(steps):
        tok = torch.randint(0, n_actions, (3,), generator=g)
        seq = torch.cat([seq, tok[:, None]], 1)
        seq_mask = torch.cat([seq_mask, torch.ones(3, 1, dtype=mask.dtype)], 1)
        got.append(dec.step(tok))
    with pytest.raises(RuntimeError, match="cache is full"):
        dec.step(tok)
    want = _full_logits(lm, seq, seq_mask)[:, 4:, :n_actions] / temperature  # column P-1+t predicts token t
    _close(torch.stack(got, 1), want)
    np.testing.assert_array_equal(dec.lengths, seq_mask.sum(1).numpy())


def _random_streams(lm, dec, rng: np.random.Generator, n_calls: int, width: int, pickle_at: int | None):
    """Drive ``dec`` with rows of random token streams: each call steps a random subset of rows,
    restarts some (a new random prompt, prefilled with the other restarts), and checks every
    returned logit row against a full forward pass over that row's whole stream."""
    rows = dec.rows
    streams: list[list[int]] = [[] for _ in range(rows)]
    checked = 0
    for call in range(n_calls):
        if call == pickle_at:
            dec = pickle.loads(pickle.dumps(dec))
            assert not dec.bound
            dec.bind(lm)
        picked = np.flatnonzero(rng.random(rows) < 0.7)
        restart = [r for r in picked if not streams[r] or len(streams[r]) >= width or rng.random() < 0.15]
        step = [r for r in picked if r not in restart]
        out: dict[int, torch.Tensor] = {}
        if step:
            toks = rng.integers(0, VOCAB, size=len(step))
            for r, t in zip(step, toks, strict=True):
                streams[r].append(int(t))
            logits = dec.step(torch.as_tensor(toks), rows=step)
            out.update(zip(step, logits, strict=True))
        if restart:
            prompts = [list(rng.integers(0, VOCAB, size=int(rng.integers(1, 5)))) for _ in restart]
            w = max(len(p) for p in prompts)
            ids = torch.zeros(len(restart), w, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, p in enumerate(prompts):  # right-padded: each row's slots start at 0
                ids[j, : len(p)], mask[j, : len(p)] = torch.as_tensor(p), 1
                streams[restart[j]] = list(p)
            logits = dec.prefill(ids, mask, rows=restart)
            out.update(zip(restart, logits, strict=True))
        for r, got in out.items():
            seq = torch.as_tensor([streams[r]])
            want = _full_logits(lm, seq, torch.ones_like(seq))[0, -1]
            _close(got, want)
            assert dec.lengths[r] == len(streams[r])
            checked += 1
    return dec, checked


@pytest.mark.parametrize(("kind", "cls"), CASES, ids=IDS)
def test_per_row_streams_with_independent_resets_match_full_forward(models, kind, cls, monkeypatch) -> None:
    lm = models[kind]
    width = 9
    rebuilds, subset_sizes = [], []
    orig = HFDecoder._rebuild
    # the generic cache is rebuilt when its shared columns reach 2 x capacity: count that it happens
    monkeypatch.setattr(HFDecoder, "_rebuild", lambda self: (rebuilds.append(1), orig(self))[1])
    step = cls._step
    monkeypatch.setattr(
        cls, "_step", lambda self, t, idx: (subset_sizes.append(len(t)), step(self, t, idx))[1]
    )
    dec, checked = _random_streams(lm, cls(lm, 5, width), np.random.default_rng(0), 40, width, pickle_at=20)
    assert checked > 100
    # subsets of both kinds: most rows (every row computed) and at most half (GPT-2: only those)
    assert {1, 2} & set(subset_sizes) and {3, 4} & set(subset_sizes)
    if cls is HFDecoder:
        assert rebuilds and dec.col_mask.shape[1] <= 2 * width


@pytest.mark.parametrize(("kind", "cls"), CASES, ids=IDS)
def test_a_pickled_decoder_continues_exactly(models, kind, cls) -> None:
    lm = models[kind]
    a = cls(lm, 4, 8)
    _random_streams(lm, a, np.random.default_rng(1), 6, 8, pickle_at=None)
    b = pickle.loads(pickle.dumps(a))
    b.bind(lm)
    toks = torch.tensor([3, 4, 5])
    rows = [r for r in range(4) if 0 < a.lengths[r] < 8][:3]
    assert rows
    assert torch.equal(a.step(toks[: len(rows)], rows=rows), b.step(toks[: len(rows)], rows=rows))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_prefix_logits_steps_continuing_rows_and_prefills_new_ones(models, kind, monkeypatch) -> None:
    """PrefixLogits works out from the prefixes alone which rows continue (one step) and which start
    over (prefill), and always returns the logits of a full forward pass."""
    lm = models[kind]
    prefilled: list[int] = []  # rows per prefill call
    orig = Decoder.prefill
    monkeypatch.setattr(
        Decoder,
        "prefill",
        lambda self, ids, *a, **k: (prefilled.append(len(ids)), orig(self, ids, *a, **k))[1],
    )
    pl = PrefixLogits(lm, temperature=0.8)
    rng = np.random.default_rng(2)
    n, width = 4, 12
    seqs = [list(rng.integers(0, VOCAB, size=3)) for _ in range(n)]
    for call in range(25):
        restarted = 0
        for i in range(n):
            if len(seqs[i]) == width or (call and rng.random() < 0.1):
                seqs[i] = list(rng.integers(0, VOCAB, size=int(rng.integers(1, 4))))
                restarted += 1
            elif call:
                seqs[i].append(int(rng.integers(0, VOCAB)))
        ids = np.zeros((n, width), dtype=np.int64)
        lengths = np.array([len(s) for s in seqs])
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
        before = sum(prefilled)
        got = pl(ids, lengths)
        if call:
            assert sum(prefilled) - before == restarted  # only new sequences were prefilled
        mask = torch.as_tensor((np.arange(width)[None] < lengths[:, None]).astype(np.int64))
        want = _full_logits(lm, torch.as_tensor(ids), mask)[torch.arange(n), torch.as_tensor(lengths - 1)]
        _close(got, want / 0.8)
        if call == 12:  # pickling keeps the cache, drops the weights
            pl = pickle.loads(pickle.dumps(pl))
            assert pl.lm is None
            pl.bind(lm)
    # every row grows by one token, but row 0's first token changed: only row 0 is prefilled
    keep = lengths < width
    ids[np.flatnonzero(keep), lengths[keep]] = 7
    lengths = lengths + keep
    ids[0, 0] = (ids[0, 0] + 1) % VOCAB
    before = sum(prefilled)
    pl(ids, lengths)
    assert sum(prefilled) - before == 1 + int((~keep[1:]).sum())


def test_generic_path_uses_the_cache_keyword_without_deprecation_warnings(models) -> None:
    """transformers 5.24 deprecates past_key_values= (FutureWarning); the decoder uses cache=."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kind in ("gpt2", "llama"):
            dec = HFDecoder(models[kind], 2, 6)
            dec.prefill(torch.tensor([[0, 5, 6], [4, 5, 6]]), torch.tensor([[0, 1, 1], [1, 1, 1]]))
            dec.step(torch.tensor([7, 8]))
            dec.step(torch.tensor([9]), rows=[1])


def test_bad_calls_raise(models) -> None:
    dec = make_decoder(models["gpt2"], 2, 4)
    with pytest.raises(ValueError, match="capacity"):
        dec.prefill(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="rows="):
        dec.prefill(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="distinct"):
        dec.step(torch.tensor([1, 2]), rows=[1, 1])
    with pytest.raises(ValueError, match="n_actions"):
        make_decoder(models["gpt2"], 2, 4, n_actions=VOCAB + 1)
    with pytest.raises(ValueError, match="positive int"):
        make_decoder(models["gpt2"], 0, 4)


@pytest.mark.parametrize("onednn", [True, False])
def test_fast_linear_equals_linear_and_gelu(monkeypatch, onednn) -> None:
    """``fast_linear`` (oneDNN when present, else ``linear``) against ``torch.nn.functional.linear``,
    with a bias or none, a transposed (strided) weight as the decoder passes Conv1D weights, and the
    fused tanh GELU against transformers' ``gelu_new``."""
    from transformers.activations import NewGELUActivation

    if not onednn:
        monkeypatch.setattr(kernels, "_ONEDNN_LINEAR", None)
    elif kernels._ONEDNN_LINEAR is None:
        pytest.skip("this torch build has no usable oneDNN linear")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(17, 40, generator=g)
    w_in_out = torch.randn(40, 24, generator=g) * 0.3  # Conv1D layout
    b = torch.randn(24, generator=g)
    ref = torch.nn.functional.linear(x, w_in_out.t(), b)
    _close(kernels.fast_linear(x, w_in_out.t(), b), ref)
    _close(kernels.fast_linear(x, w_in_out.t().contiguous(), None), ref - b)
    gelu = kernels.fast_linear(x, w_in_out.t(), b, gelu=True)
    _close(gelu, NewGELUActivation()(ref))
    assert not torch.allclose(gelu, ref, atol=1e-3)  # the activation was applied


@pytest.mark.parametrize("onednn", [True, False])
def test_fast_path_on_both_linear_kernels(models, monkeypatch, onednn) -> None:
    """The GPT-2 fast path equals a full pass on the oneDNN kernel and on the ``linear`` fallback."""
    if not onednn:
        monkeypatch.setattr(kernels, "_ONEDNN_LINEAR", None)
    elif kernels._ONEDNN_LINEAR is None:
        pytest.skip("this torch build has no usable oneDNN linear")
    lm = models["gpt2"]
    _, checked = _random_streams(lm, GPT2Decoder(lm, 3, 8), np.random.default_rng(4), 12, 8, pickle_at=6)
    assert checked > 15
