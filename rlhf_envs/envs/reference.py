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

Cost: the vector env makes one batched decoding step of one token per active sub-env per step,
through the suite's KV-cached decoder (:class:`rlhf_envs.lm.decoder.PrefixLogits`, fast GPT-2 path
or any ``transformers`` model's own cache): each sub-env is a decoder row at its own length, so the
cost of a token does not grow with the prefix beyond attention itself. A reset marks the sub-env's
row stale (the ``reset`` hook); its next step prefills the new prompt in one batched forward with
the other reset rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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
        self._prefix: Any = None  # the PrefixLogits decoder, built on first use

    # -- ShapingTerm API --------------------------------------------------------------------------

    def reset(self, env_indices: np.ndarray, input_ids: np.ndarray, lengths: np.ndarray) -> None:
        """Sub-envs ``env_indices`` start new episodes: their next step prefills the new prompt."""
        if self._prefix is not None:
            self._prefix.forget(np.asarray(env_indices, dtype=np.int64))

    def __call__(
        self,
        input_ids: np.ndarray,
        lengths: np.ndarray,
        actions: np.ndarray,
        env_indices: np.ndarray | None = None,
    ) -> np.ndarray:
        """Reference log-prob of ``actions`` (the last token of each row); returns ``kl_coef`` times it."""
        import torch

        input_ids, lengths = np.asarray(input_ids), np.asarray(lengths, dtype=np.int64)
        if env_indices is None:
            env_indices = np.arange(len(actions))
        if not len(actions):
            self._last = np.zeros(0, dtype=np.float64)
            return np.zeros(0, dtype=np.float32)
        # logits after each prefix without its last token (the action just taken)
        logits = self._logits()(input_ids, lengths - 1, rows=np.asarray(env_indices, dtype=np.int64))
        acts = torch.as_tensor(np.asarray(actions, dtype=np.int64), device=logits.device)
        logp = torch.log_softmax(logits, dim=-1).gather(1, acts[:, None])[:, 0].cpu().numpy()
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

    def _logits(self) -> Any:
        """The KV-cached next-token logits of the reference model (bound to it again after unpickling)."""
        from rlhf_envs.lm.decoder import PrefixLogits

        if self._prefix is None:
            self._prefix = PrefixLogits(self.lm, self.temperature)
        elif self._prefix.lm is None:
            self._prefix.bind(self.lm)
        return self._prefix
