"""The one KV-cached decoder: next-token logits for a batch of rows, one new token per row per step.

Every place that samples from or scores with a causal language model token by token goes through
:func:`make_decoder` (or :class:`PrefixLogits`, built on it). Two usage patterns share one interface:

* **synchronous batches** (the PPO rollout, best-of-n, the simulated-human task's completions):
  left-padded prompts are prefilled together (:meth:`Decoder.prefill`), then every row is fed one
  token per :meth:`Decoder.step`. All rows then write the same cache slot: the fast special case.
* **per-row streams** (the env's reference model, :class:`~rlhf_envs.lm.policy.LMPolicy`, NLPO's
  top-p mask): each row is a sub-env at its own length and is reset on its own. ``prefill(...,
  rows=r)`` starts rows ``r`` over while the others keep their cache; ``step(..., rows=r)`` feeds
  only rows ``r``. :class:`PrefixLogits` works out which rows continue and which start over from the
  token prefixes themselves.

Words used below. A row's *cache slots* are where its keys and values are stored; its *positions* are
the position ids of its real tokens (0, 1, 2, ... from its first real token, as
:func:`~rlhf_envs.lm.loading.position_ids` gives for left or right padding). A prefill of ``W``
columns writes slots ``0 .. W-1`` and leaves the row's next write slot just after its last real
token; each step writes one slot further. Padding and stale slots are hidden by the attention mask.
``capacity`` bounds a row's slots: a prefill may be at most ``capacity`` wide and a row can be
stepped until its next slot reaches ``capacity`` (then :class:`RuntimeError` "the cache is full").

Two implementations, chosen by the one support check :func:`fast_gpt2_supported`:

* :class:`GPT2Decoder` (standard Hugging Face GPT-2, the embedded model included): the GPT-2 block
  math written once as a loop over the layers' weights, with a preallocated position-major cache
  and no per-step module calls; several times faster than ``generate()`` on small models.
* :class:`HFDecoder` (any other ``transformers`` causal LM): the model's own forward with a
  ``transformers.DynamicCache`` passed as ``cache=`` (the API of transformers >= 5.24); rows share
  the cache's columns and a per-row column mask hides what is not theirs.

Logits are those of the model's output embedding applied to the base model's final hidden state
(as in the PPO training pass), restricted to the first ``n_actions`` ids and divided by
``temperature``, in float32. Decoders are for inference: no autograd, dropout ignored.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from rlhf_envs.lm.kernels import fast_linear
from rlhf_envs.lm.loading import context_length, position_ids


def fast_gpt2_supported(lm: Any) -> bool:
    """True when :class:`GPT2Decoder` computes exactly what ``lm`` computes (else :class:`HFDecoder` is used).

    That is a ``GPT2LMHeadModel`` with scaled dot-product attention (``scale_attn_weights``, no
    per-layer scaling, no reordered upcast), the tanh GELU (``gelu_new`` / ``gelu_pytorch_tanh``)
    and no cross-attention.
    """
    c = getattr(lm, "config", None)
    return (
        type(lm).__name__ == "GPT2LMHeadModel"
        and getattr(c, "model_type", None) == "gpt2"
        and bool(getattr(c, "scale_attn_weights", True))
        and not getattr(c, "scale_attn_by_inverse_layer_idx", False)
        and not getattr(c, "reorder_and_upcast_attn", False)
        and getattr(c, "activation_function", None) in ("gelu_new", "gelu_pytorch_tanh")
        and not getattr(c, "add_cross_attention", False)
    )


def make_decoder(
    lm: Any, rows: int, capacity: int, n_actions: int | None = None, temperature: float = 1.0
) -> Decoder:
    """A decoder of ``rows`` rows with ``capacity`` cache slots each for the causal LM ``lm``.

    :class:`GPT2Decoder` when :func:`fast_gpt2_supported`, else :class:`HFDecoder`. Logits cover
    the first ``n_actions`` ids (default: the whole output vocabulary), divided by ``temperature``.
    """
    cls = GPT2Decoder if fast_gpt2_supported(lm) else HFDecoder
    return cls(lm, rows, capacity, n_actions, temperature)


class Decoder:
    """KV-cached decoding of ``rows`` rows of one causal LM (see the module doc); use :func:`make_decoder`.

    Attributes:
        lengths: ``int64[rows]``, the number of real tokens in each row's context (its next position).
    """

    #: attributes that hold the model or views of its weights: dropped when pickled, set by ``bind``
    _model_attrs: tuple[str, ...] = ("lm", "_head", "_head_w", "_head_b")

    def __init__(
        self, lm: Any, rows: int, capacity: int, n_actions: int | None = None, temperature: float = 1.0
    ) -> None:
        for name, value in (("rows", rows), ("capacity", capacity)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"decoder {name} must be a positive int, got {value!r}")
        if not temperature > 0:
            raise ValueError(f"decoder temperature must be > 0, got {temperature!r}")
        self.rows, self.capacity = int(rows), int(capacity)
        self.temperature = float(temperature)
        self.n_positions = int(context_length(lm))
        vocab = int(lm.get_output_embeddings().weight.shape[0])
        self.n_actions = vocab if n_actions is None else int(n_actions)
        if not 1 <= self.n_actions <= vocab:
            raise ValueError(
                f"n_actions must be in [1, {vocab}] (the model's output rows), got {n_actions!r}"
            )
        self.lengths = np.zeros(self.rows, dtype=np.int64)
        self._slot = np.zeros(self.rows, dtype=np.int64)  # next cache slot each row writes
        # the hot path of synchronous batches keeps Python ints: the slot every row writes next
        # (None when rows differ) and the largest slot and length
        self._shared: int | None = 0
        self._hi_slot = self._hi_len = 0
        self._all_rows = np.arange(self.rows)
        #: the final hidden states ``(B, d)`` (after the final norm) that the last prefill's or
        #: step's logits were computed from: e.g. for a value head on the states sampled in
        self.last_hidden: torch.Tensor | None = None
        self.bind(lm)
        self._allocate()

    # -- model binding and pickling ---------------------------------------------------------------

    def bind(self, lm: Any) -> None:
        """(Re)attach the model, e.g. after unpickling (a pickled decoder keeps its cache, not the weights)."""
        self.lm = lm
        head = lm.get_output_embeddings()
        self._head = head
        if type(head) is torch.nn.Linear:  # only the first n_actions rows of the output matrix
            self._head_w = head.weight[: self.n_actions]
            self._head_b = None if head.bias is None else head.bias[: self.n_actions]
        else:
            self._head_w = self._head_b = None
        p = next(lm.parameters())
        self.device, self.dtype = p.device, p.dtype
        self._bind_weights()

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in self._model_attrs}
        state["last_hidden"] = None
        return state

    @property
    def bound(self) -> bool:
        """Whether a model is attached (False right after unpickling, until :meth:`bind`)."""
        return getattr(self, "lm", None) is not None

    # -- the interface ----------------------------------------------------------------------------

    @torch.no_grad()
    def prefill(self, ids: Any, mask: Any = None, rows: Any = None) -> torch.Tensor:
        """Start rows over with the prompts ``ids`` ``(B, W)`` (``mask`` marks real tokens, left or right
        padded; default all real). Returns the logits ``(B, n_actions)`` after each row's last real token.

        ``rows``: which decoder rows the ``B`` prompts go to (default: all, then ``B == rows``); the
        other rows keep their cache. A row without real tokens is emptied (its logits are meaningless).
        """
        ids = torch.as_tensor(ids, device=self.device).long()
        if ids.dim() != 2:
            raise ValueError(f"prefill needs ids of shape (batch, width), got {tuple(ids.shape)}")
        mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask, device=self.device).long()
        if mask.shape != ids.shape:
            raise ValueError(f"prefill: mask shape {tuple(mask.shape)} differs from ids {tuple(ids.shape)}")
        b, w = ids.shape
        idx = self._row_index(rows, b)
        if w > self.capacity:
            raise ValueError(
                f"prefill of {w} columns exceeds the decoder's capacity of {self.capacity} slots"
            )
        keep = mask.cpu().numpy() != 0
        n_real = keep.sum(1)
        if n_real.max(initial=0) > self.n_positions:
            raise ValueError(
                f"a prompt of {n_real.max()} tokens exceeds the model's {self.n_positions} positions"
            )
        next_slot = np.where(n_real > 0, keep.argmax(1) + n_real, 0)  # just after the last real token
        hidden = self._prefill(ids, mask, idx, next_slot)
        sel = self._all_rows if idx is None else idx
        self._slot[sel] = next_slot
        self.lengths[sel] = n_real
        self._sync()
        self.last_hidden = hidden
        return self._logits(hidden)

    @torch.no_grad()
    def step(self, tokens: Any, rows: Any = None) -> torch.Tensor:
        """Feed one token per row (``tokens`` ``(B,)``; ``rows`` as in :meth:`prefill`, default all) at
        each row's own next slot and position; return the next-token logits ``(B, n_actions)``."""
        if not isinstance(tokens, torch.Tensor) or tokens.device != self.device:
            tokens = torch.as_tensor(tokens, device=self.device)
        tokens = tokens.reshape(-1)
        if tokens.dtype != torch.long:
            tokens = tokens.long()
        idx = None if rows is None and len(tokens) == self.rows else self._row_index(rows, len(tokens))
        if idx is None:
            full, too_long = self._hi_slot >= self.capacity, self._hi_len >= self.n_positions
        else:
            full = bool((self._slot[idx] >= self.capacity).any())
            too_long = bool((self.lengths[idx] >= self.n_positions).any())
        if full:
            raise RuntimeError(
                f"{type(self).__name__}: the cache is full ({self.capacity} positions allocated per row)"
            )
        if too_long:
            raise RuntimeError(
                f"{type(self).__name__}: a row reached the model's {self.n_positions} positions"
            )
        hidden = self._step(tokens, idx)
        if idx is None:  # every row moves on by one
            self._slot += 1
            self.lengths += 1
            self._hi_slot += 1
            self._hi_len += 1
            if self._shared is not None:
                self._shared += 1
        else:
            self._slot[idx] += 1
            self.lengths[idx] += 1
            self._sync()
        self.last_hidden = hidden
        return self._logits(hidden)

    # -- helpers ----------------------------------------------------------------------------------

    def _sync(self) -> None:
        """Recompute the hot path's Python ints from the per-row arrays."""
        lo, hi = int(self._slot.min()), int(self._slot.max())
        self._shared = lo if lo == hi else None
        self._hi_slot, self._hi_len = hi, int(self.lengths.max())

    def _row_index(self, rows: Any, b: int) -> np.ndarray | None:
        """``None`` for all rows in order, else the distinct row indices as an int64 array of length ``b``."""
        if rows is None:
            if b != self.rows:
                raise ValueError(
                    f"{b} inputs for a decoder of {self.rows} rows; pass rows= to address a subset"
                )
            return None
        idx = np.asarray(
            torch.as_tensor(rows).cpu() if isinstance(rows, torch.Tensor) else rows, dtype=np.int64
        )
        if idx.shape != (b,):
            raise ValueError(f"rows must list one decoder row per input ({b}), got shape {idx.shape}")
        if b and (idx.min() < 0 or idx.max() >= self.rows or len(np.unique(idx)) != b):
            raise ValueError(f"rows must be distinct indices in [0, {self.rows}), got {idx.tolist()}")
        if b == self.rows and (idx == self._all_rows).all():
            return None
        return idx

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self._head_w is not None:  # oneDNN for the full batch only (a shape that repeats)
            logits = fast_linear(hidden, self._head_w, self._head_b, onednn=len(hidden) == self.rows).float()
        else:
            logits = self._head(hidden)[..., : self.n_actions].float()
        return logits if self.temperature == 1.0 else logits / self.temperature

    def _bind_weights(self) -> None:  # subclasses: look up the weights they use
        pass

    def _allocate(self) -> None:  # subclasses: create the empty cache
        raise NotImplementedError

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, idx: np.ndarray | None, next_slot: np.ndarray):  # noqa: ANN202
        raise NotImplementedError

    def _step(self, tokens: torch.Tensor, idx: np.ndarray | None) -> torch.Tensor:
        raise NotImplementedError


class GPT2Decoder(Decoder):
    """The fast path for standard Hugging Face GPT-2 models (see :func:`fast_gpt2_supported`).

    The same computation as ``GPT2Model.forward`` (Conv1D = a linear with the transposed weight,
    tanh GELU, pre-LayerNorm blocks), written as one loop over the layers' weights: per decoding
    step it makes no module calls, builds no attention-mask objects and copies no cache, which is
    where transformers spends much of a small model's step. Linears go through
    :func:`~rlhf_envs.lm.kernels.fast_linear` (oneDNN, GELU fused into the MLP's first product).
    The prefill uses ``scaled_dot_product_attention``.

    One cache layout for both usage patterns: position-major, ``(slots, rows * heads, head_dim)`` per
    layer, plus one scratch slot, and an additive key bias ``(rows, heads, 1, slots)`` that is 0 on a
    row's valid slots and ``-inf`` elsewhere. When every row writes the same slot (synchronous
    batches) a step writes one contiguous block; otherwise each row writes its own slot (one indexed
    write). A step computes every row: rows not being stepped run on a placeholder token at their
    own next slot (visible to themselves for that step only, so everything stays finite) and keep
    their state; a step of at most half the rows computes only those (on copies of their cache). Attention for the single query: ``scores = bias + scale * q K^T`` as one
    ``baddbmm`` over the ``rows * heads`` heads on a strided view of the cache prefix, then
    ``weights @ V`` as a product and a sum over slots into a preallocated buffer (``bmm`` on this
    layout was several times slower; keys stored transposed per head made a batch-64 rollout ~8%
    slower).
    """

    _model_attrs = (*Decoder._model_attrs, "layers", "wte", "wpe", "ln_f")

    def _bind_weights(self) -> None:
        tr, c = self.lm.transformer, self.lm.config
        self.n_head, self.n_embd, self.eps = c.n_head, c.n_embd, c.layer_norm_epsilon
        self.head_dim = c.n_embd // c.n_head
        self.scale = self.head_dim**-0.5

        # the weights, looked up once (each nn.Module attribute access costs Python time per step);
        # Conv1D stores (in, out): its transpose (a view, no copy) is the (out, in) a linear takes
        def norm(m: Any) -> tuple[torch.Tensor, torch.Tensor]:
            return m.weight, m.bias

        def conv1d(m: Any) -> tuple[torch.Tensor, torch.Tensor]:
            return m.weight.t(), m.bias

        self.layers = [
            (
                *norm(blk.ln_1),
                *conv1d(blk.attn.c_attn),
                *conv1d(blk.attn.c_proj),
                *norm(blk.ln_2),
                *conv1d(blk.mlp.c_fc),
                *conv1d(blk.mlp.c_proj),
            )
            for blk in tr.h
        ]
        self.wte, self.wpe = tr.wte.weight, tr.wpe.weight
        self.ln_f = (tr.ln_f.weight, tr.ln_f.bias)

    def _allocate(self) -> None:
        n, r, h, d = self.capacity + 1, self.rows, self.n_head, self.head_dim
        self._kv = torch.empty(2, len(self.layers), n, r * h, d, dtype=self.dtype, device=self.device)
        # A row's attention window can cover slots it never wrote (other rows are further on), and
        # 0 weight times uninitialised memory could be NaN. Synchronous batches write every slot for
        # every row before reading it and need no zero fill (``_init``: slots from 0 written by all
        # rows); the first per-row operation zeroes whatever is not yet written, once.
        self._init = 0
        self.key_bias = torch.full((r, h, 1, n), float("-inf"), dtype=self.dtype, device=self.device)
        self._views()

    def _zero_upto(self, n: int) -> None:
        """Make slots ``[0, n)`` safe to read for every row (zero those not yet written by all rows)."""
        if n > self._init:
            self._kv[:, :, self._init : n].zero_()
            self._init = n

    def _views(self) -> None:
        """Views into the cache tensors (rebuilt after unpickling, where views would become copies)."""
        n = self.capacity + 1
        self.keys, self.values = list(self._kv[0].unbind(0)), list(self._kv[1].unbind(0))
        self.key_bias_mat = self.key_bias.view(self.rows * self.n_head, 1, n)
        self.mix = torch.empty(
            n, self.rows * self.n_head, self.head_dim, dtype=self.dtype, device=self.device
        )
        self._row_ids = torch.arange(self.rows, device=self.device)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for k in ("keys", "values", "key_bias_mat", "mix", "_row_ids"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._views()

    def _ln(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (self.n_embd,), weight, bias, self.eps)

    def _prefill(
        self, ids: torch.Tensor, mask: torch.Tensor, idx: np.ndarray | None, next_slot: np.ndarray
    ) -> torch.Tensor:
        b, p = ids.shape
        h, d, e = self.n_head, self.head_dim, self.n_embd
        dev = ids.device
        keep = mask.bool()
        # additive key mask per (row, head): 0 on real positions, -inf on padding and unwritten ones
        bias = torch.full((b, h, 1, self.capacity + 1), float("-inf"), dtype=self.dtype, device=dev)
        bias[..., :p].masked_fill_(keep[:, None, None, :], 0.0)
        rows_t = None if idx is None else torch.as_tensor(idx, device=dev)
        # oneDNN only for a prefill of every row (once per batch); a few reset rows' shape varies
        linear = fast_linear if rows_t is None else functools.partial(fast_linear, onednn=False)
        if rows_t is None:
            self.key_bias.copy_(bias)
            self._init = max(self._init, p)  # every row writes slots [0, p) below
        else:
            self._zero_upto(self.capacity + 1)
            self.key_bias[rows_t] = bias
        x = (self.wte[ids] + self.wpe[position_ids(mask)]).reshape(-1, e)
        causal = torch.ones(p, p, dtype=torch.bool, device=dev).tril()
        # padded query rows attend to themselves only (their outputs are never used; avoids NaN)
        attn = ((causal[None] & keep[:, None, :]) | torch.eye(p, dtype=torch.bool, device=dev)[None])[:, None]
        for i, (w1, b1, wa, ba, wp, bp, w2, b2, wf, bf, wo, bo) in enumerate(self.layers):
            qkv = linear(self._ln(x, w1, b1), wa, ba).view(b, p, 3, h, d)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, P, D) each
            if rows_t is None:
                self.keys[i][:p].view(p, b, h, d).copy_(qkv[:, :, 1].transpose(0, 1))
                self.values[i][:p].view(p, b, h, d).copy_(qkv[:, :, 2].transpose(0, 1))
            else:
                self.keys[i][:p].view(p, self.rows, h, d)[:, rows_t] = qkv[:, :, 1].transpose(0, 1)
                self.values[i][:p].view(p, self.rows, h, d)[:, rows_t] = qkv[:, :, 2].transpose(0, 1)
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn)
            x = linear(a.transpose(1, 2).reshape(-1, e), wp, bp).add_(x)
            y = linear(self._ln(x, w2, b2), wf, bf, gelu=True)
            x = linear(y, wo, bo).add_(x)
        x = x.view(b, p, e)
        if (next_slot == p).all():  # left padding (or none): every row ends in the last column
            last = x[:, -1]
        else:
            last = x[torch.arange(b, device=dev), torch.as_tensor(np.maximum(next_slot - 1, 0), device=dev)]
        return self._ln(last, *self.ln_f)

    def _step(self, tokens: torch.Tensor, idx: np.ndarray | None) -> torch.Tensor:
        if idx is not None and 2 * len(idx) <= self.rows:
            return self._step_few(tokens, idx)
        r, h, d, e = self.rows, self.n_head, self.head_dim, self.n_embd
        bh, dev = r * h, self.device
        if idx is None:
            tok, slots = tokens, self._slot
            t0 = self._shared if self._shared is not None else int(slots.min())
            t1 = self._hi_slot
            pos = torch.as_tensor(self.lengths, device=dev)  # every stepped row is within n_positions
        else:  # rows not stepped run on a placeholder (a full one on the scratch slot)
            tok = torch.zeros(r, dtype=torch.long, device=dev)
            tok[torch.as_tensor(idx, device=dev)] = tokens
            slots = np.minimum(self._slot, self.capacity)
            t0, t1 = int(slots.min()), int(slots.max())
            pos = torch.as_tensor(np.minimum(self.lengths, self.n_positions - 1), device=dev)
        shared = t0 == t1
        n_keys = t1 + 1
        if shared:  # slot t0 is written below for every row
            if t0 > self._init:
                self._zero_upto(t0)
            if n_keys > self._init:
                self._init = n_keys
            self.key_bias[..., t0] = 0.0
        else:
            self._zero_upto(self.capacity + 1)
            slot_t = torch.as_tensor(slots, device=dev)
            self.key_bias[self._row_ids, :, 0, slot_t] = 0.0
        bias = self.key_bias_mat[:, :, :n_keys]  # (R * H, 1, n_keys)
        mix = self.mix[:n_keys]
        x = self.wte.index_select(0, tok).add_(self.wpe.index_select(0, pos))  # (cheaper than [])
        for i, (w1, b1, wa, ba, wp, bp, w2, b2, wf, bf, wo, bo) in enumerate(self.layers):
            qkv = fast_linear(self._ln(x, w1, b1), wa, ba)
            keys, values = self.keys[i], self.values[i]
            if shared:
                keys[t0].view(r, e).copy_(qkv[:, e : 2 * e])
                values[t0].view(r, e).copy_(qkv[:, 2 * e :])
            else:
                keys.view(-1, r, e)[slot_t, self._row_ids] = qkv[:, e : 2 * e]
                values.view(-1, r, e)[slot_t, self._row_ids] = qkv[:, 2 * e :]
            q = qkv[:, :e].reshape(bh, 1, d)  # a small copy (rows of qkv are 3 E apart)
            # (R * H, 1, n_keys): the keys as R * H matrices (D, n_keys), a strided view of the prefix
            scores = torch.baddbmm(bias, q, keys[:n_keys].permute(1, 2, 0), alpha=self.scale)
            weights = scores.softmax(-1).view(bh, n_keys).t()  # (n_keys, R * H)
            torch.mul(values[:n_keys], weights[:, :, None], out=mix)
            a = mix.sum(0).view(r, e)
            x = fast_linear(a, wp, bp).add_(x)
            y = fast_linear(self._ln(x, w2, b2), wf, bf, gelu=True)
            x = fast_linear(y, wo, bo).add_(x)
        if idx is not None:  # the placeholder slots stay invisible to their rows
            rest = np.ones(r, dtype=bool)
            rest[idx] = False
            rest_t = torch.as_tensor(np.flatnonzero(rest), device=dev)
            self.key_bias[rest_t, :, 0, torch.as_tensor(slots[rest], device=dev)] = float("-inf")
            x = x[torch.as_tensor(idx, device=dev)]
        return self._ln(x, *self.ln_f)

    def _step_few(self, tokens: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """A step of at most half the rows: only those rows are computed, on copies of their cache.

        (Computing every row, as :meth:`_step` does, costs more once most rows are idle, e.g. at
        the end of a rollout where a few episodes are still running.) The number of rows changes
        from call to call, so the linears skip oneDNN (a new kernel per shape).
        """
        r, h, d, e = self.rows, self.n_head, self.head_dim, self.n_embd
        b, dev = len(idx), self.device
        self._zero_upto(self.capacity + 1)
        rows_t = torch.as_tensor(idx, device=dev)
        slots = self._slot[idx]
        slot_t = torch.as_tensor(slots, device=dev)
        n_keys = int(slots.max()) + 1
        self.key_bias[rows_t, :, 0, slot_t] = 0.0
        bias = self.key_bias.index_select(0, rows_t)[..., :n_keys].reshape(b * h, 1, n_keys)
        pos = torch.as_tensor(self.lengths[idx], device=dev)
        x = self.wte.index_select(0, tokens).add_(self.wpe.index_select(0, pos))
        linear = functools.partial(fast_linear, onednn=False)
        for i, (w1, b1, wa, ba, wp, bp, w2, b2, wf, bf, wo, bo) in enumerate(self.layers):
            qkv = linear(self._ln(x, w1, b1), wa, ba)
            keys, values = self.keys[i].view(-1, r, e), self.values[i].view(-1, r, e)
            keys[slot_t, rows_t] = qkv[:, e : 2 * e]
            values[slot_t, rows_t] = qkv[:, 2 * e :]
            k = keys[:n_keys].index_select(1, rows_t).view(n_keys, b * h, d)
            v = values[:n_keys].index_select(1, rows_t).view(n_keys, b * h, d)
            q = qkv[:, :e].reshape(b * h, 1, d)
            scores = torch.baddbmm(bias, q, k.permute(1, 2, 0), alpha=self.scale)
            weights = scores.softmax(-1).view(b * h, n_keys).t()
            a = v.mul_(weights[:, :, None]).sum(0).view(b, e)
            x = linear(a, wp, bp).add_(x)
            y = linear(self._ln(x, w2, b2), wf, bf, gelu=True)
            x = linear(y, wo, bo).add_(x)
        return self._ln(x, *self.ln_f)


class HFDecoder(Decoder):
    """The generic path: any ``transformers`` causal LM through its own forward and a ``DynamicCache``.

    The model's base (``lm.base_model``) is called with ``cache=`` (never the deprecated
    ``past_key_values`` keyword), an explicit 2-D attention mask over the cache's columns plus the new
    ones, and explicit ``position_ids``. Rows share the cache's columns: a step appends one column
    for every row, a prefill of some rows appends its width for every row, and a per-row column
    mask records which columns are a row's own (the others, placeholders and a reset row's old
    columns, are masked out). Rows not being fed run on placeholder tokens visible only to
    themselves in that call. When the columns reach twice the capacity, the cache is rebuilt from
    each row's tokens with one prefill (so memory stays bounded under endless resets).

    Models whose cache has linear-attention layers, or sliding-window layers with a window shorter
    than twice the capacity, are refused with a :class:`ValueError` (the column bookkeeping above
    would not match their cache).
    """

    _model_attrs = (*Decoder._model_attrs, "base")

    def _bind_weights(self) -> None:
        self.base = self.lm.base_model

    def _allocate(self) -> None:
        self._limit = 2 * self.capacity
        self.cache = self._new_cache()
        self.col_mask = torch.zeros(self.rows, 0, dtype=torch.long, device=self.device)
        self.history = torch.zeros(self.rows, self.capacity, dtype=torch.long, device=self.device)

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.lm.config)
        for i, layer in enumerate(getattr(cache, "layers", [])):
            window = getattr(layer, "sliding_window", None)
            if cache.is_linear[i] or (cache.is_sliding[i] and (window is None or window < self._limit)):
                raise ValueError(
                    f"the cached decoder does not support {type(self.lm).__name__}: layer {i} of its cache is a "
                    f"{type(layer).__name__} (linear attention or a sliding window under {self._limit} tokens)"
                )
        return cache

    def _forward(self, ids: torch.Tensor, attn: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        out = self.base(
            input_ids=ids, attention_mask=attn, position_ids=pos, cache=self.cache, use_cache=True
        )
        self.cache = out.cache
        return out.last_hidden_state

    def _rebuild(self) -> None:
        """Re-encode every row's tokens into a fresh cache (columns = each row's own tokens, right-padded)."""
        width = max(int(self.lengths.max(initial=0)), 1)
        lengths = torch.as_tensor(self.lengths, device=self.device)
        mask = (torch.arange(width, device=self.device)[None] < lengths[:, None]).long()
        self.cache = self._new_cache()
        self._forward(self.history[:, :width], mask, position_ids(mask))
        self.col_mask = mask

    def _prefill(
        self, ids: torch.Tensor, mask: torch.Tensor, idx: np.ndarray | None, next_slot: np.ndarray
    ) -> torch.Tensor:
        b, w = ids.shape
        dev = self.device
        # each row's real tokens, in order, at the front (for rebuilds)
        compact = ids.gather(1, torch.argsort((mask == 0).int(), dim=1, stable=True))
        if idx is None:
            self.cache = self._new_cache()
            self.col_mask = torch.zeros(self.rows, 0, dtype=torch.long, device=dev)
            fwd_ids, fwd_mask, store, pos = ids, mask, mask, position_ids(mask)
            self.history[:, :w] = compact
        else:
            if self.col_mask.shape[1] + w > self._limit:
                self._rebuild()
            rows_t = torch.as_tensor(idx, device=dev)
            self.col_mask[rows_t] = 0  # forget the reset rows' old columns
            fwd_ids = torch.zeros(self.rows, w, dtype=torch.long, device=dev)
            fwd_mask = torch.ones(self.rows, w, dtype=torch.long, device=dev)  # placeholders see themselves
            store = torch.zeros(self.rows, w, dtype=torch.long, device=dev)
            pos = torch.zeros(self.rows, w, dtype=torch.long, device=dev)
            fwd_ids[rows_t], fwd_mask[rows_t], store[rows_t] = ids, mask, mask
            pos[rows_t] = position_ids(mask)
            self.history[rows_t, :w] = compact
        hidden = self._forward(fwd_ids, torch.cat([self.col_mask, fwd_mask], 1), pos)
        self.col_mask = torch.cat([self.col_mask, store], 1)
        if idx is not None:
            hidden = hidden[torch.as_tensor(idx, device=dev)]
        last = torch.as_tensor(np.maximum(next_slot - 1, 0), device=dev)
        return hidden[torch.arange(b, device=dev), last]

    def _step(self, tokens: torch.Tensor, idx: np.ndarray | None) -> torch.Tensor:
        dev = self.device
        if self.col_mask.shape[1] + 1 > self._limit:
            self._rebuild()
        sel = torch.as_tensor(self._all_rows if idx is None else idx, device=dev)
        if idx is None:
            tok, store = tokens, torch.ones(self.rows, 1, dtype=torch.long, device=dev)
        else:
            tok = torch.zeros(self.rows, dtype=torch.long, device=dev)
            tok[sel] = tokens
            store = torch.zeros(self.rows, 1, dtype=torch.long, device=dev)
            store[sel] = 1
        pos = torch.as_tensor(np.minimum(self.lengths, self.n_positions - 1), device=dev)[:, None]
        visible = torch.ones(self.rows, 1, dtype=torch.long, device=dev)
        hidden = self._forward(tok[:, None], torch.cat([self.col_mask, visible], 1), pos)[:, -1]
        self.col_mask = torch.cat([self.col_mask, store], 1)
        self.history[sel, torch.as_tensor(self.lengths, device=dev)[sel]] = tokens
        return hidden if idx is None else hidden[sel]


class PrefixLogits:
    """Next-token logits for rows of token prefixes that grow by one token between calls, or start over.

    For callers that see only sequences (an env's reference model, a policy over observations):
    call it with right-padded ``input_ids`` ``(B, L)`` and each row's prefix length; it returns the
    logits of the token after each prefix. A row whose cached tokens are exactly its prefix minus
    the last token is stepped with that token; any other row (a new episode, an edited prefix) is
    prefilled from its prefix. So each call costs one decoding step per continuing row, whatever
    the length. ``rows`` names the decoder row of each input (default ``0 .. B-1``); the decoder
    grows to the largest row index and the widest input seen (a grown decoder starts empty).

    Args:
        lm: the causal LM (never modified).
        temperature, n_actions: as for :func:`make_decoder`.
    """

    def __init__(self, lm: Any, temperature: float = 1.0, n_actions: int | None = None) -> None:
        self.lm = lm
        self.temperature, self.n_actions = float(temperature), n_actions
        self.decoder: Decoder | None = None
        self._tokens = np.zeros((0, 0), dtype=np.int64)  # tokens fed to each decoder row
        self._fed = np.zeros(0, dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        # the cache travels (a rebuilt one could differ in the last bits); the weights do not
        state = self.__dict__.copy()
        state["lm"] = None
        return state

    def bind(self, lm: Any) -> None:
        """Attach the model after unpickling."""
        self.lm = lm
        if self.decoder is not None:
            self.decoder.bind(lm)

    def forget(self, rows: Any) -> None:
        """Rows ``rows`` start new sequences: their next call prefills them."""
        rows = np.asarray(rows, dtype=np.int64)
        self._fed[rows[rows < len(self._fed)]] = 0

    def _ensure(self, n_rows: int, width: int) -> Decoder:
        dec = self.decoder
        if dec is None or n_rows > dec.rows or width > dec.capacity:
            n_rows = max(n_rows, dec.rows if dec else 0)
            width = max(width, dec.capacity if dec else 0)
            dec = self.decoder = make_decoder(self.lm, n_rows, width, self.n_actions, self.temperature)
            self._tokens = np.zeros((n_rows, width), dtype=np.int64)
            self._fed = np.zeros(n_rows, dtype=np.int64)
        elif not dec.bound:
            dec.bind(self.lm)
        return dec

    @torch.no_grad()
    def __call__(self, input_ids: Any, lengths: Any, rows: Any = None) -> torch.Tensor:
        """Logits ``(B, n_actions)`` of the token after ``input_ids[i, :lengths[i]]`` for every row ``i``."""
        ids = np.asarray(
            input_ids.cpu() if isinstance(input_ids, torch.Tensor) else input_ids, dtype=np.int64
        )
        lengths = np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths, dtype=np.int64)
        b = len(ids)
        if ids.ndim != 2 or lengths.shape != (b,):
            raise ValueError(
                f"PrefixLogits needs ids (batch, width) and lengths (batch,), got {ids.shape}, {lengths.shape}"
            )
        if b and (lengths.min() < 1 or lengths.max() > ids.shape[1]):
            raise ValueError(f"prefix lengths must be in [1, {ids.shape[1]}], got {lengths.tolist()}")
        rows = np.arange(b) if rows is None else np.asarray(rows, dtype=np.int64)
        if not b:
            return torch.zeros(0, self.n_actions or 0)
        dec = self._ensure(int(rows.max()) + 1, ids.shape[1])
        fed = self._fed[rows]
        # a row continues when it was fed exactly its prefix minus the last token
        cont = (fed > 0) & (fed == lengths - 1)
        if cont.any():
            c = np.flatnonzero(cont)
            m = int(fed[c].max())
            same = (self._tokens[rows[c], :m] == ids[c, :m]) | (np.arange(m) >= fed[c, None])
            cont[c] = same.all(1)
        out = torch.empty(b, dec.n_actions, device=dec.device)
        c, new = np.flatnonzero(cont), np.flatnonzero(~cont)
        if c.size:
            last = ids[c, lengths[c] - 1]
            out[torch.as_tensor(c, device=dec.device)] = dec.step(last, rows=rows[c])
            self._tokens[rows[c], lengths[c] - 1] = last
        if new.size:
            w = int(lengths[new].max())
            mask = np.arange(w)[None] < lengths[new, None]
            out[torch.as_tensor(new, device=dec.device)] = dec.prefill(
                ids[new, :w] * mask, mask, rows=rows[new]
            )
            self._tokens[rows[new], :w] = ids[new, :w]
        self._fed[rows] = lengths
        return out
