"""The frozen reference model: per-token log-probs of the taken tokens, batched and KV-cached.

The KL penalty of RLHF is ``-beta * (log pi(a_t | s_t) - log pi_ref(a_t | s_t))`` on every token.
The env does not know the policy, so it cannot compute that; it reports the half it can:
``info["ref_logprob"]`` = ``log pi_ref(a_t | s_t)`` of the token just taken, under the reference model
at temperature ``ref_temperature``. An agent adds its own ``log pi(a_t | s_t)`` to get the per-token
KL estimate (k1) and the penalty.

:class:`ReferenceKL` is a :class:`~rlhf_envs.envs.shaping.ShapingTerm` named ``"kl"``. Its reward is
``reward_kl = kl_coef * ref_logprob``: the reference-log-prob part of the KL penalty. Summed with
the agent's ``-kl_coef * log pi(a_t | s_t)`` (in expectation an entropy bonus, which SB3 adds with
``ent_coef=kl_coef``) it gives exactly ``-kl_coef * (log pi - log pi_ref)``. With ``kl_coef=0`` (the
default) the term pays nothing and only reports ``ref_logprob``.

Cost: the vector env makes one batched forward of one token per active sub-env per step. For GPT-2
architecture models (the embedded one included) keys and values live in a preallocated
``(layers, envs, heads, length, head_dim)`` cache, each sub-env at its own position, so the cost
of a token does not grow with the length of the prefix beyond attention itself; a reset primes the
cache of the reset sub-envs with one batched forward over their prompts (the ``reset`` hook). Other
architectures fall back to a full forward over each active prefix per step (correct, slower).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _gelu(name: str):  # noqa: ANN202
    import torch

    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: torch.nn.functional.gelu(x, approximate="tanh")
    if name == "gelu":
        return torch.nn.functional.gelu
    if name == "relu":
        return torch.relu
    return None


class ReferenceKL:
    """Shaping term ``"kl"``: reports the reference log-prob of each taken token (and pays ``kl_coef`` times it).

    Args:
        lm: a frozen ``transformers`` causal LM (shared; never modified).
        loader: optional picklable zero-argument callable that returns ``lm`` again; if given, a
            pickled term drops the weights and reloads them through it.
        max_length: longest prefix (prompt + completion) an env holds.
        kl_coef: coefficient of ``reward_kl = kl_coef * ref_logprob`` (>= 0).
        temperature: the reference's sampling temperature (logits are divided by it), as in the
            policy's rollout.
    """

    name = "kl"
    #: the env passes the sub-env indices of the rows it calls with (``env_indices=``)
    needs_env_indices = True

    def __init__(
        self, lm: Any, max_length: int, kl_coef: float = 0.0, temperature: float = 1.0, loader: Any = None
    ) -> None:
        self._lm = lm
        self.loader = loader
        self.max_length = int(max_length)
        self.kl_coef = float(kl_coef)
        self.temperature = float(temperature)
        self._last: np.ndarray = np.zeros(0, dtype=np.float64)
        self._fast = self._fast_path_ok(lm)
        self._cache: list[Any] | None = None
        self._valid = np.zeros(0, dtype=np.int64)  # cached positions per sub-env

    # -- ShapingTerm API --------------------------------------------------------------------------

    def reset(self, env_indices: np.ndarray, input_ids: np.ndarray, lengths: np.ndarray) -> None:
        """Prime the KV cache of sub-envs ``env_indices`` with their new prompts (all but the last token)."""
        env_indices = np.asarray(env_indices, dtype=np.int64)
        if self._fast and env_indices.size:
            self._ensure(int(env_indices.max()) + 1)
            self._prime(env_indices, np.asarray(input_ids), np.asarray(lengths))

    def __call__(
        self,
        input_ids: np.ndarray,
        lengths: np.ndarray,
        actions: np.ndarray,
        env_indices: np.ndarray | None = None,
    ) -> np.ndarray:
        """Reference log-prob of ``actions`` (the last token of each row); returns ``kl_coef`` times it."""
        input_ids, lengths = np.asarray(input_ids), np.asarray(lengths, dtype=np.int64)
        if env_indices is None:
            env_indices = np.arange(len(actions))
        env_indices = np.asarray(env_indices, dtype=np.int64)
        if not len(actions):
            self._last = np.zeros(0, dtype=np.float64)
            return np.zeros(0, dtype=np.float32)
        if self._fast:
            logp = self._step(env_indices, input_ids, lengths)
        else:
            logp = self._full(input_ids, lengths)
        self._last = logp.astype(np.float64)
        return (self.kl_coef * logp + 0.0).astype(np.float32)

    def step_info(self) -> dict[str, np.ndarray]:
        """Per-row extra info of the last call: ``{"ref_logprob": float64[B]}``."""
        return {"ref_logprob": self._last.copy()}

    def __getstate__(self) -> dict[str, Any]:
        # The KV cache travels with the term (a rebuilt cache could differ in the last bits, and a
        # pickled env must continue exactly); the weights are reloaded through ``loader``.
        state = self.__dict__.copy()
        if self.loader is not None:
            state["_lm"] = None
        return state

    @property
    def lm(self) -> Any:
        """The frozen reference model."""
        if self._lm is None:
            self._lm = self.loader()
        return self._lm

    # -- full-sequence reference (any architecture; also the oracle the tests compare with) -------

    def _full(self, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        from rlhf_envs.lm.loading import token_logprobs

        width = int(lengths.max())
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        lp = token_logprobs(self.lm, input_ids[:, :width], mask, self.temperature).numpy()
        return lp[np.arange(len(lengths)), lengths - 1].astype(np.float64)

    # -- GPT-2 KV-cached path ---------------------------------------------------------------------

    @staticmethod
    def _fast_path_ok(lm: Any) -> bool:
        cfg = lm.config
        return (
            getattr(cfg, "model_type", None) == "gpt2"
            and _gelu(cfg.activation_function) is not None
            and bool(getattr(cfg, "scale_attn_weights", True))
            and not getattr(cfg, "scale_attn_by_inverse_layer_idx", False)
            and not getattr(cfg, "reorder_and_upcast_attn", False)
        )

    def _ensure(self, n: int) -> None:
        import torch

        cfg = self.lm.config
        if self._cache is not None and self._cache[0].shape[1] >= n:
            return
        old_n = 0 if self._cache is None else self._cache[0].shape[1]
        n = max(n, old_n)
        h, d = cfg.n_head, cfg.n_embd // cfg.n_head
        p = next(self.lm.parameters())
        new = torch.zeros((cfg.n_layer * 2, n, h, self.max_length, d), dtype=p.dtype, device=p.device)
        if self._cache is not None:
            new[:, :old_n] = self._cache[0]
        self._cache = [new]
        valid = np.zeros(n, dtype=np.int64)
        valid[: len(self._valid)] = self._valid
        self._valid = valid

    def _layers(self):  # noqa: ANN202
        return self.lm.transformer

    def _attn_block(
        self, i: int, block: Any, x: Any, rows: Any, pos: Any, write_mask: Any, width: int, act: Any
    ):  # noqa: ANN401
        """One transformer block for queries ``x`` (B, T, C) at positions ``pos`` (B, T) of rows ``rows``."""
        import torch

        cfg = self.lm.config
        nh, hd = cfg.n_head, cfg.n_embd // cfg.n_head
        b, t, c = x.shape
        kv = self._cache[0]
        hln = block.ln_1(x)
        qkv = block.attn.c_attn(hln)
        q, k, v = qkv.split(c, dim=2)
        q = q.view(b, t, nh, hd).transpose(1, 2)
        k = k.view(b, t, nh, hd).transpose(1, 2)
        v = v.view(b, t, nh, hd).transpose(1, 2)
        # write the new keys/values at their positions (only where write_mask is set)
        r_idx = rows[:, None].expand(b, t)[write_mask]
        p_idx = pos[write_mask]
        kv[2 * i][r_idx, :, p_idx] = k.transpose(1, 2)[write_mask]
        kv[2 * i + 1][r_idx, :, p_idx] = v.transpose(1, 2)[write_mask]
        if self._all_rows:  # every cached sub-env is stepped: views, no copies
            keys, vals = kv[2 * i][:, :, :width], kv[2 * i + 1][:, :, :width]
        else:
            keys, vals = kv[2 * i][rows, :, :width], kv[2 * i + 1][rows, :, :width]
        allowed = torch.arange(width, device=x.device)[None, None, :] <= pos[:, :, None]  # (B, T, W)
        att = torch.nn.functional.scaled_dot_product_attention(
            q, keys, vals, attn_mask=allowed[:, None], scale=1.0 / math.sqrt(hd)
        )
        att = att.transpose(1, 2).reshape(b, t, c)
        x = x + block.attn.c_proj(att)
        hmid = block.mlp.c_fc(block.ln_2(x))
        return x + block.mlp.c_proj(act(hmid))

    def _forward(self, rows: Any, tokens: Any, pos: Any, write_mask: Any) -> Any:
        import torch

        tr = self._layers()
        act = _gelu(self.lm.config.activation_function)
        n_cache = self._cache[0].shape[1]
        self._all_rows = len(rows) == n_cache and bool(
            (rows == torch.arange(n_cache, device=rows.device)).all()
        )
        width = int(pos.max()) + 1
        with torch.no_grad():
            x = tr.wte(tokens) + tr.wpe(pos)
            for i, block in enumerate(tr.h):
                x = self._attn_block(i, block, x, rows, pos, write_mask, width, act)
            x = tr.ln_f(x)
            logits = self.lm.lm_head(x)
        return logits

    def _prime(self, env_indices: np.ndarray, input_ids: np.ndarray, lengths: np.ndarray) -> None:
        import torch

        dev = next(self.lm.parameters()).device
        n_ctx = lengths - 1  # the last prompt token stays pending until the first step
        self._valid[env_indices] = 0
        todo = n_ctx > 0
        if todo.any():
            width = int(n_ctx[todo].max())
            rows = torch.as_tensor(env_indices[todo], device=dev)
            toks = torch.as_tensor(input_ids[todo, :width], device=dev)
            pos = torch.arange(width, device=dev)[None].expand(len(rows), width)
            write = pos < torch.as_tensor(n_ctx[todo], device=dev)[:, None]
            self._forward(rows, toks, pos.contiguous(), write)
        self._valid[env_indices] = n_ctx

    def _step(self, env_indices: np.ndarray, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        import torch

        self._ensure(int(env_indices.max()) + 1)
        stale = self._valid[env_indices] != lengths - 2
        if stale.any():  # e.g. after unpickling: rebuild those rows' caches from the ids
            # given length L - 1, _prime caches the first L - 2 tokens: exactly the state before this step
            self._prime(env_indices[stale], input_ids[stale], lengths[stale] - 1)
        dev = next(self.lm.parameters()).device
        b = len(env_indices)
        rows = torch.as_tensor(env_indices, device=dev)
        q = lengths - 2
        pending = torch.as_tensor(input_ids[np.arange(b), q], device=dev)[:, None]
        pos = torch.as_tensor(q, device=dev)[:, None]
        write = torch.ones((b, 1), dtype=torch.bool, device=dev)
        logits = self._forward(rows, pending, pos, write)[:, 0].float()
        logp = torch.log_softmax(logits / self.temperature, dim=-1)
        acts = torch.as_tensor(input_ids[np.arange(b), lengths - 1], device=dev)
        self._valid[env_indices] = lengths - 1
        return logp.gather(1, acts[:, None])[:, 0].cpu().numpy()
