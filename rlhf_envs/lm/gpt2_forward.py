"""GPT-2's full-sequence forward pass as one loop over the layers' weights, with autograd.

The agents score whole sequences (prompt + completion) with the policy, the frozen reference and,
at update time, with gradients. For the small models this suite runs on a CPU, transformers'
``GPT2Model.forward`` spends a large part of such a pass in Python (module calls, mask objects,
output classes): at the update's minibatch of 4 x 37 tokens of the embedded model, about 1.7 of
7.6 ms per forward, measured (``benchmarks/iteration_profile.py``'s job). :func:`gpt2_hidden_states`
is the same computation written out, as :class:`~rlhf_envs.lm.decoder.GPT2Decoder`'s prefill is:
token + position embeddings, pre-LayerNorm blocks (Conv1D = ``addmm`` with the stored ``(in, out)``
weight, exactly what transformers' Conv1D calls), scaled dot-product attention with a causal mask
that also hides padded keys, the tanh GELU, the final LayerNorm. Gradients flow through it as
through the module forward; without gradients (reference and value passes) the linears use
:func:`~rlhf_envs.lm.kernels.fast_linear` (oneDNN, GELU fused).

It applies to the models :func:`~rlhf_envs.lm.decoder.fast_gpt2_supported` accepts, with dropout
off (the agents keep their LMs in eval mode); :func:`fast_forward_supported` says so, and callers
fall back to ``model.base_model(...)`` otherwise. Real positions' hidden states equal transformers'
up to float rounding (tested); padded query positions attend only to themselves (their outputs are
never used, and this keeps them finite), where transformers gives other finite values.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rlhf_envs.lm.decoder import fast_gpt2_supported
from rlhf_envs.lm.kernels import fast_linear


def fast_forward_supported(lm: Any) -> bool:
    """True when :func:`gpt2_hidden_states` computes what ``lm.base_model`` does: a standard GPT-2
    (:func:`~rlhf_envs.lm.decoder.fast_gpt2_supported`) in eval mode (dropout off)."""
    return fast_gpt2_supported(lm) and not lm.training


def _attention_mask(mask: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, 1, T, T)``: query ``t`` sees real keys ``<= t``, and itself (padded queries)."""
    t = mask.shape[1]
    dev = mask.device
    causal = torch.ones(t, t, dtype=torch.bool, device=dev).tril()
    keep = mask.bool()
    return ((causal[None] & keep[:, None, :]) | torch.eye(t, dtype=torch.bool, device=dev)[None])[:, None]


def gpt2_hidden_states(
    lm: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    keep: slice | None = None,
) -> torch.Tensor:
    """The final hidden states ``(B, T, d)`` of ``lm.base_model`` (a GPT-2 the fast path supports)
    for left- or right-padded ``input_ids`` with ``attention_mask`` and ``position_ids``.

    ``keep`` (a slice of positions, step 1): return only those positions' states, ``(B, len, d)``.
    The last block then computes its attention output, MLP and the final norm for those rows
    only (every earlier block and the last block's keys and values still cover every position,
    as the kept positions attend to them): the same values, less work when the prompt positions'
    outputs are not needed (the agents need the states that predict completion tokens only).
    """
    tr, c = lm.transformer, lm.config
    b, t = input_ids.shape
    e, h = c.n_embd, c.n_head
    d, eps = e // h, c.layer_norm_epsilon
    no_grad = not torch.is_grad_enabled()
    x = F.embedding(input_ids, tr.wte.weight) + F.embedding(position_ids, tr.wpe.weight)
    x = x.reshape(b * t, e)
    attn = _attention_mask(attention_mask)
    if keep is not None and keep.step not in (None, 1):
        raise ValueError(f"keep must be a slice with step 1, got {keep!r}")
    n_out = t if keep is None else len(range(t)[keep])
    last = len(tr.h) - 1

    def conv1d(m: Any, inp: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        if no_grad:  # Conv1D's (in, out) weight transposed is the (out, in) a linear takes
            return fast_linear(inp, m.weight.t(), m.bias, gelu=gelu)
        y = torch.addmm(m.bias, inp, m.weight)
        return F.gelu(y, approximate="tanh") if gelu else y

    for i, blk in enumerate(tr.h):
        y = F.layer_norm(x, (e,), blk.ln_1.weight, blk.ln_1.bias, eps)
        q, k, v = conv1d(blk.attn.c_attn, y).view(b, t, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        rows = t
        if i == last and keep is not None and n_out < t:  # only the kept queries from here on
            q, attn, rows = q[:, :, keep], attn[:, :, keep], n_out
            x = x.view(b, t, e)[:, keep].reshape(b * rows, e)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn)
        x = x + conv1d(blk.attn.c_proj, a.transpose(1, 2).reshape(b * rows, e))
        y = F.layer_norm(x, (e,), blk.ln_2.weight, blk.ln_2.bias, eps)
        x = x + conv1d(blk.mlp.c_proj, conv1d(blk.mlp.c_fc, y, gelu=True))
    out = F.layer_norm(x, (e,), tr.ln_f.weight, tr.ln_f.bias, eps)
    if keep is not None and n_out < t and not tr.h:  # no blocks: select the kept positions here
        return out.view(b, t, e)[:, keep]
    return out.view(b, n_out, e)
