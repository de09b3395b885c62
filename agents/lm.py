"""Language-model policies: an actor-critic over any ``transformers`` causal LM, token-level PPO.

The pieces, in the order a PPO iteration uses them:

1. :class:`EpisodeCollector` resets every sub-env (seed from the agent's generator) and samples one
   completion per sub-env with a KV cache: the prompt is encoded once, then each step feeds only the
   new token. Prompts of different lengths are left-padded with matching ``position_ids``. Sampling
   uses the same temperature as every later pass, with top-k 0 / top-p 1 (anything else would bias
   the KL estimate), by inverse CDF on one uniform per row from the agent's generator. Only the
   sampled tokens' log-probabilities are kept: the buffer never holds vocabulary-sized tensors.
   Each token is sent to the env, which pays the task reward on the final real token.
2. Whole sequences (prompt + completion) then go through the policy (values) and the frozen
   reference model (log-probs) in one batched pass each.
3. Per-token reward: ``env reward - beta * KL_t`` with ``KL_t`` the k1 (``logp - logp_ref``) or k3
   estimator; beta fixed or adapted towards a target (Ziegler et al. 2019). GAE with gamma 1,
   lambda 0.95 over the completion tokens; the episode's last real token ends the chain.
4. The PPO update (:mod:`agents.ppo`) runs on episodes as samples, with every per-token mean masked
   to real completion tokens; :meth:`LMActorCritic.evaluate_batch` is the training pass.

The value head is a linear layer on the LM's final hidden state, initialised near zero.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from torch import nn

from agents.envs import autoreset_mode, is_token_space
from agents.rollout import Batch, EpisodeTracker, compute_gae
from rlhf_envs.errors import ConfigError


def model_from_meta(meta: dict[str, Any]) -> nn.Module:
    """Rebuild an untrained LM of the architecture recorded in a checkpoint (weights load after)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_dict = dict(meta["lm_config"])
    model_type = cfg_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    with torch.random.fork_rng(devices=[]):
        return AutoModelForCausalLM.from_config(config)


#: tokens per block of the two-level inverse CDF in :func:`sample_tokens`
_SAMPLE_BLOCK = 64
_LOG2E = 1.4426950408889634


def sample_tokens(
    logits: torch.Tensor, generator: torch.Generator | None, deterministic: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of ``logits`` ``(B, V)`` (already divided by the temperature).

    Exact sampling from ``softmax(logits)`` by inverse CDF with one uniform per row drawn from
    ``generator`` (``torch.multinomial`` instead draws an exponential variate for every vocabulary
    entry, which was 41% of a decoding loop). The CDF is walked in two levels so that no
    vocabulary-long scan is needed: block sums of ``_SAMPLE_BLOCK`` probabilities, a search for the
    block, then a cumulative sum inside that block only. Probabilities are ``2 ** ((x - max) *
    log2 e)`` (``exp2`` is several times faster than ``exp`` on CPU; same value up to float
    rounding). The uniform lies in ``(0, 1]``, so a token of probability zero (a ``-inf`` logit)
    is never drawn. Returns ``(tokens, logp)`` with ``logp = log_softmax(logits)[token]``.
    """
    if logits.dim() != 2 or logits.shape[-1] == 0:
        raise ValueError(
            f"sample_tokens needs logits of shape (batch, vocab) with vocab >= 1, got {tuple(logits.shape)}"
        )
    logits = logits.float()
    n, vocab = logits.shape
    top = logits.amax(-1, keepdim=True)
    n_blocks = -(-vocab // _SAMPLE_BLOCK)
    probs = logits.new_empty(n, n_blocks * _SAMPLE_BLOCK)
    if n_blocks * _SAMPLE_BLOCK > vocab:
        probs[:, vocab:] = 0.0  # zero mass on the padding up to whole blocks
    torch.add(top * -_LOG2E, logits, alpha=_LOG2E, out=probs[:, :vocab]).exp2_()
    blocks = probs.view(n, n_blocks, _SAMPLE_BLOCK)
    block_cdf = logits.new_zeros(n, n_blocks + 1)  # exclusive-inclusive: block_cdf[:, 0] = 0
    torch.cumsum(blocks.sum(-1), -1, out=block_cdf[:, 1:])
    z = block_cdf[:, -1]  # the partition function (>= 1: the top logit contributes 2 ** 0)
    if not math.isfinite(float(z.sum())):  # each finite z is in [1, vocab]: only NaN/inf rows break the sum
        bad = int((~torch.isfinite(z)).nonzero()[0, 0])
        raise ValueError(f"sample_tokens: row {bad} of the logits has NaN, +inf or no finite entry")
    if deterministic:
        tokens = logits.argmax(-1)
    else:
        u = 1.0 - torch.rand(n, 1, generator=generator, device=logits.device)  # in (0, 1]
        target = u * z[:, None]  # in (0, z]
        # first block whose inclusive cdf reaches the target (block_cdf[:, 0] = 0 < target)
        block = torch.searchsorted(block_cdf, target) - 1
        inner_cdf = blocks.gather(1, block[:, :, None].expand(n, 1, _SAMPLE_BLOCK)).squeeze(1).cumsum(-1)
        # rounding can leave the remainder just above this block's own sum: stay inside the block
        rest = torch.minimum(target - block_cdf.gather(1, block), inner_cdf[:, -1:])
        inner = torch.searchsorted(inner_cdf, rest)  # first entry >= rest > 0: positive mass
        tokens = (block * _SAMPLE_BLOCK + inner).squeeze(-1)
    logp = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - top.squeeze(-1) - z.log()
    return tokens, logp


def positions(mask: torch.Tensor) -> torch.Tensor:
    """``position_ids`` for a left-padded attention mask (0 on padding, then 0, 1, 2, ...)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class LMActorCritic(nn.Module):
    """A causal LM (the actor), a value head on its last hidden state, and a frozen reference copy.

    The LM passed in is trained in place; the reference is a deep copy taken at construction.
    Logits are restricted to the env's ``n_actions`` first ids (the env's vocabulary) and divided by
    ``temperature`` in every pass.
    """

    def __init__(
        self,
        lm: nn.Module,
        n_actions: int,
        temperature: float,
        value_init_std: float,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.lm = lm
        self.ref = copy.deepcopy(lm)
        for p in self.ref.parameters():
            p.requires_grad_(False)
        self.ref.eval()
        self.n_actions = int(n_actions)
        self.temperature = float(temperature)
        hidden = int(lm.get_output_embeddings().weight.shape[1])
        self.value_head = nn.Linear(hidden, 1)
        with torch.no_grad():
            self.value_head.weight.normal_(0.0, value_init_std, generator=generator)
            self.value_head.bias.zero_()
        self.train()

    def train(self, mode: bool = True) -> LMActorCritic:
        """Dropout stays off in both LMs: rollout, reference and training passes must agree."""
        super().train(mode)
        self.lm.eval()
        self.ref.eval()
        return self

    @classmethod
    def from_config(
        cls, cfg: Any, observation_space: spaces.Space, action_space: spaces.Space, generator: torch.Generator
    ) -> LMActorCritic:
        """Build from an agent config (``cfg.model`` is an LM instance or a path)."""
        if not is_token_space(observation_space):
            raise ConfigError(
                f"policy='lm' needs the rlhf token observation Dict(input_ids, attention_mask), got {observation_space}"
            )
        if not isinstance(action_space, spaces.Discrete) or int(action_space.start) != 0:
            raise ConfigError(f"policy='lm' needs a Discrete(vocab_size) action space, got {action_space}")
        lm = cfg.model
        if isinstance(lm, str):  # "default" = the embedded model; else a directory or cached hub name
            from rlhf_envs.lm.loading import load_causal_lm

            lm = load_causal_lm(lm, device=cfg.device, cache=False)
            lm.requires_grad_(True)
        if not hasattr(lm, "get_output_embeddings") or lm.get_output_embeddings() is None:
            raise ConfigError(
                f"model must be a transformers causal LM with an output embedding, got {type(lm).__name__}"
            )
        vocab = int(lm.get_output_embeddings().weight.shape[0])
        if vocab < action_space.n:
            raise ConfigError(
                f"the LM's vocabulary ({vocab}) is smaller than the env's action space ({action_space.n})"
            )
        return cls(lm, int(action_space.n), cfg.temperature, cfg.value_head_init_std, generator)

    def checkpoint_meta(self) -> dict[str, Any]:
        """The LM architecture (for :func:`model_from_meta`)."""
        return {"lm_config": self.lm.config.to_dict(), "lm_class": type(self.lm).__name__}

    # -- passes -----------------------------------------------------------------------------------

    def _logits(self, model: nn.Module, hidden: torch.Tensor, inference: bool = False) -> torch.Tensor:
        """Temperature-scaled logits over the env's vocabulary; ``inference`` (no autograd needed)
        lets the output product use :func:`fast_linear`."""
        head = model.get_output_embeddings()
        if type(head) is nn.Linear:  # only the env's ``n_actions`` rows of the output matrix
            bias = None if head.bias is None else head.bias[: self.n_actions]
            linear = fast_linear if inference else torch.nn.functional.linear
            logits = linear(hidden, head.weight[: self.n_actions], bias).float()
        else:
            logits = head(hidden)[..., : self.n_actions].float()
        return logits if self.temperature == 1.0 else logits / self.temperature

    @torch.no_grad()
    def start(
        self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, max_new_tokens: int | None = None
    ) -> tuple[torch.Tensor, Any]:
        """Encode left-padded prompts; return the next-token logits and the KV cache.

        With ``max_new_tokens`` given and a standard GPT-2, decoding uses :class:`GPT2Decoder`
        (preallocated cache, no per-layer module calls); otherwise the model's own cache.
        """
        if max_new_tokens is not None and GPT2Decoder.supports(self.lm):
            dec = GPT2Decoder(self.lm)
            return self._logits(self.lm, dec.start(prompt_ids, prompt_mask, max_new_tokens), True), dec
        out = self.lm.base_model(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            position_ids=positions(prompt_mask),
            use_cache=True,
        )
        return self._logits(self.lm, out.last_hidden_state[:, -1]), out.past_key_values

    @torch.no_grad()
    def next(
        self, tokens: torch.Tensor, cache: Any, mask: torch.Tensor, pos: torch.Tensor
    ) -> tuple[torch.Tensor, Any]:
        """Feed one token per row (``mask`` covers cache + this token); return logits and the cache."""
        if isinstance(cache, GPT2Decoder):
            return self._logits(self.lm, cache.step(tokens, pos), True), cache
        out = self.lm.base_model(
            input_ids=tokens[:, None],
            attention_mask=mask,
            position_ids=pos[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        return self._logits(self.lm, out.last_hidden_state[:, -1]), out.past_key_values

    def _sequence_pass(self, model: nn.Module, obs: dict[str, torch.Tensor], n_response: int):  # noqa: ANN202
        ids, mask = obs["input_ids"], obs["attention_mask"]
        hidden = model.base_model(
            input_ids=ids, attention_mask=mask, position_ids=positions(mask)
        ).last_hidden_state
        # hidden state at position P-1+t predicts completion token t (and is the state it is taken in)
        return hidden[:, -n_response - 1 : -1]

    def evaluate_batch(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: ``(log-probs, entropies, values)`` of the completion tokens, ``(B, R)``."""
        h = self._sequence_pass(self.lm, batch.obs, batch.actions.shape[1])
        logp_all = torch.log_softmax(self._logits(self.lm, h), dim=-1)
        logp = logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy, self.value_head(h).squeeze(-1).float()

    @torch.no_grad()
    def values_and_ref_logprobs(
        self, obs: dict[str, torch.Tensor], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched policy pass (values) and one reference pass (log-probs) over whole sequences."""
        n = actions.shape[1]
        values = self.value_head(self._sequence_pass(self.lm, obs, n)).squeeze(-1).float()
        h_ref = self._sequence_pass(self.ref, obs, n)
        ref_logp = (
            torch.log_softmax(self._logits(self.ref, h_ref), dim=-1)
            .gather(-1, actions.unsqueeze(-1))
            .squeeze(-1)
        )
        return values, ref_logp


#: tanh GELU as ``x * sigmoid(_GELU_A * x + _GELU_B * x ** 3)``: ``0.5 (1 + tanh(z)) = sigmoid(2 z)``
_GELU_A = 2.0 * math.sqrt(2.0 / math.pi)
_GELU_B = _GELU_A * 0.044715


def _gelu_tanh_(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh GELU of ``x`` (overwritten). Two to three times faster than ``gelu(approximate=
    "tanh")`` on CPU (``sigmoid`` is vectorised well, ``tanh`` is not); equal up to float rounding.
    """
    z = x * x
    z.mul_(_GELU_B).add_(_GELU_A).mul_(x).sigmoid_()
    return x.mul_(z)


def _find_onednn_linear() -> Any:
    """oneDNN's fused linear (``x @ W^T + b``, optionally followed by an activation), or ``None``.

    ``torch.ops.mkldnn._linear_pointwise`` is the kernel ``torch.compile`` uses for CPU linears. On
    the test machine (AMD EPYC, MKL build) it runs the decoder's small products 1.3-2x faster than
    ``addmm`` (MKL) and its result is the same up to float rounding; it also fuses the tanh GELU.
    It is a private operator: it is looked up, then checked once on a small product against
    ``torch.nn.functional.linear`` (plain and with the GELU); any error or mismatch (a build without
    oneDNN, a changed signature) selects the ``linear`` fallback instead.
    """
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        op = torch.ops.mkldnn._linear_pointwise
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*shape, generator=g) for shape in ((3, 8), (5, 8), (5,)))
        with torch.no_grad():
            ref = torch.nn.functional.linear(x, w, b)
            plain = op(x, w, b, "none", [], "")
            fused = op(x, w.t().contiguous().t(), b, "gelu", [], "tanh")
        ok = torch.allclose(plain, ref, atol=1e-5) and torch.allclose(
            fused, torch.nn.functional.gelu(ref, approximate="tanh"), atol=1e-5
        )
        return op if ok else None
    except (AttributeError, RuntimeError, TypeError):
        return None


_ONEDNN_LINEAR = _find_onednn_linear()


def fast_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False
) -> torch.Tensor:
    """``x @ weight.T + bias`` (``weight`` is ``(out, in)``, any strides), then GPT-2's tanh GELU if ``gelu``.

    Inference only (no autograd). Uses oneDNN's fused kernel for float32 CPU tensors when torch has
    it, else ``torch.nn.functional.linear`` (+ :func:`_gelu_tanh_`): same values up to float rounding.
    """
    if (
        _ONEDNN_LINEAR is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
    ):
        return _ONEDNN_LINEAR(x, weight, bias, "gelu" if gelu else "none", [], "tanh" if gelu else "")
    y = torch.nn.functional.linear(x, weight, bias)
    return _gelu_tanh_(y) if gelu else y


class GPT2Decoder:
    """KV-cached decoding for Hugging Face GPT-2 models with a preallocated cache.

    The same computation as ``GPT2Model.forward`` (Conv1D = a linear with the transposed weight,
    tanh GELU, pre-LayerNorm blocks), written as one loop over the layers' weights: per decoding
    step it makes no module calls, builds no attention-mask objects and copies no cache, which is
    where transformers spends much of a small model's step. Linears go through :func:`fast_linear`
    (oneDNN, GELU fused into the MLP's first product). The prompt pass uses
    ``scaled_dot_product_attention``. The cache is position-major, ``(N, B * H, D)`` per layer, so a
    step writes one contiguous block and attention reads one contiguous prefix (keys stored
    transposed per head, the previous layout, made a whole batch-64 rollout ~8% slower). A decoding step (one query per row) does ``scores = bias + scale * q K^T`` as one
    ``baddbmm`` over the ``B * H`` heads (padding hidden by an additive ``-inf`` bias) and
    ``weights @ V`` as a product and a sum over positions into a preallocated buffer (``bmm`` on
    this layout was several times slower). Rows share one write position (prompts are left-padded).
    Only standard GPT-2 configurations are accepted (see ``supports``).
    """

    def __init__(self, lm: nn.Module) -> None:
        self.tr = lm.transformer
        c = lm.config
        self.n_head, self.n_embd, self.eps = c.n_head, c.n_embd, c.layer_norm_epsilon
        self.head_dim = c.n_embd // c.n_head
        self.scale = self.head_dim**-0.5
        # the weights, looked up once (each nn.Module attribute access costs Python time per step);
        # Conv1D stores (in, out): its transpose (a view, no copy) is the (out, in) a linear takes
        self.layers = [
            (
                blk.ln_1.weight,
                blk.ln_1.bias,
                blk.attn.c_attn.weight.t(),
                blk.attn.c_attn.bias,
                blk.attn.c_proj.weight.t(),
                blk.attn.c_proj.bias,
                blk.ln_2.weight,
                blk.ln_2.bias,
                blk.mlp.c_fc.weight.t(),
                blk.mlp.c_fc.bias,
                blk.mlp.c_proj.weight.t(),
                blk.mlp.c_proj.bias,
            )
            for blk in self.tr.h
        ]
        self.wte, self.wpe = self.tr.wte.weight, self.tr.wpe.weight
        self.ln_f = (self.tr.ln_f.weight, self.tr.ln_f.bias)

    @staticmethod
    def supports(lm: nn.Module) -> bool:
        """True for a GPT2LMHeadModel whose attention and activation match the fast path."""
        c = getattr(lm, "config", None)
        return (
            type(lm).__name__ == "GPT2LMHeadModel"
            and getattr(c, "model_type", None) == "gpt2"
            and c.scale_attn_weights
            and not c.scale_attn_by_inverse_layer_idx
            and not c.reorder_and_upcast_attn
            and c.activation_function in ("gelu_new", "gelu_pytorch_tanh")
            and not getattr(c, "add_cross_attention", False)
        )

    def _ln(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (self.n_embd,), weight, bias, self.eps)

    @torch.no_grad()
    def start(self, ids: torch.Tensor, mask: torch.Tensor, max_new: int) -> torch.Tensor:
        """Run the left-padded prompts ``(B, P)``; return the last position's final hidden state ``(B, E)``.

        Allocates the cache for ``P + max_new`` positions.
        """
        b, p = ids.shape
        h, d, e = self.n_head, self.head_dim, self.n_embd
        n = p + max_new
        dtype, dev = self.wte.dtype, ids.device
        # every position read by a step has been written before, so no zero fill is needed
        cache = torch.empty(2, len(self.layers), n, b * h, d, dtype=dtype, device=dev)
        self.keys, self.values = list(cache[0].unbind(0)), list(cache[1].unbind(0))
        self.mix = torch.empty(n, b * h, d, dtype=dtype, device=dev)  # weights * V, summed over positions
        self.n_cache = n
        keep = mask.bool()
        # additive key mask per (row, head): 0 on real positions, -inf on padding and unwritten ones
        self.key_bias = torch.full((b, h, 1, n), float("-inf"), dtype=dtype, device=dev)
        self.key_bias[..., :p].masked_fill_(keep[:, None, None, :], 0.0)
        self.key_bias_mat = self.key_bias.view(b * h, 1, n)
        self.t = p
        x = (self.wte[ids] + self.wpe[positions(mask)]).reshape(-1, e)
        causal = torch.ones(p, p, dtype=torch.bool, device=dev).tril()
        # padded query rows attend to themselves only (their outputs are never used; avoids NaN)
        attn = ((causal[None] & keep[:, None, :]) | torch.eye(p, dtype=torch.bool, device=dev)[None])[:, None]
        for i, (w1, b1, wa, ba, wp, bp, w2, b2, wf, bf, wo, bo) in enumerate(self.layers):
            qkv = fast_linear(self._ln(x, w1, b1), wa, ba).view(b, p, 3, h, d)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, P, D) each
            self.keys[i][:p].view(p, b, h, d).copy_(qkv[:, :, 1].transpose(0, 1))
            self.values[i][:p].view(p, b, h, d).copy_(qkv[:, :, 2].transpose(0, 1))
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn)
            x = fast_linear(a.transpose(1, 2).reshape(-1, e), wp, bp).add_(x)
            y = fast_linear(self._ln(x, w2, b2), wf, bf, gelu=True)
            x = fast_linear(y, wo, bo).add_(x)
        return self._ln(x.view(b, p, e)[:, -1], *self.ln_f)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Feed one token per row ``(B,)`` at positions ``pos`` ``(B,)``; return the new final hidden state ``(B, E)``.

        Attention for the single query: ``scores = bias + scale * q K^T`` as ``B * H`` batched
        products on the cache, softmax, then ``sum_t weights_t V_t``.
        """
        t = self.t
        if t >= self.n_cache:
            raise RuntimeError(f"GPT2Decoder: the cache is full ({t} positions allocated)")
        b, h, d, e = tokens.shape[0], self.n_head, self.head_dim, self.n_embd
        bh, n_keys = b * h, t + 1
        self.key_bias[..., t] = 0.0
        bias = self.key_bias_mat[:, :, :n_keys]  # (B * H, 1, t + 1)
        mix = self.mix[:n_keys]
        x = self.wte[tokens].add_(self.wpe[pos])
        for i, (w1, b1, wa, ba, wp, bp, w2, b2, wf, bf, wo, bo) in enumerate(self.layers):
            qkv = fast_linear(self._ln(x, w1, b1), wa, ba)
            keys, values = self.keys[i], self.values[i]
            keys[t].view(b, e).copy_(qkv[:, e : 2 * e])
            values[t].view(b, e).copy_(qkv[:, 2 * e :])
            q = qkv[:, :e].reshape(bh, 1, d)  # a small copy (rows of qkv are 3 E apart)
            # (B * H, 1, t + 1): the keys as B * H matrices (D, t + 1), a strided view of the prefix
            scores = torch.baddbmm(bias, q, keys[:n_keys].permute(1, 2, 0), alpha=self.scale)
            weights = scores.softmax(-1).view(bh, n_keys).t()  # (t + 1, B * H)
            torch.mul(values[:n_keys], weights[:, :, None], out=mix)
            a = mix.sum(0).view(b, e)
            x = fast_linear(a, wp, bp).add_(x)
            y = fast_linear(self._ln(x, w2, b2), wf, bf, gelu=True)
            x = fast_linear(y, wo, bo).add_(x)
        self.t = t + 1
        return self._ln(x, *self.ln_f)


class KLController:
    """Fixed or adaptive KL coefficient (Ziegler et al. 2019).

    Adaptive: ``beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n_episodes / horizon``.
    """

    def __init__(self, coef: float, adaptive: bool, target: float, horizon: int) -> None:
        self.value = float(coef)
        self.adaptive, self.target, self.horizon = adaptive, float(target), int(horizon)

    def update(self, kl: float, n_episodes: int) -> None:
        """Move beta after a batch whose mean per-episode KL was ``kl``."""
        if self.adaptive:
            error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
            self.value *= 1.0 + error * n_episodes / self.horizon


class EpisodeCollector:
    """Samples one completion per sub-env with the KV-cached LM and assembles the PPO batch."""

    def __init__(self, agent: Any) -> None:
        cfg = agent.config
        self.env = agent.env
        self.policy: LMActorCritic = agent.policy
        self.device = cfg.device
        self.kl = KLController(cfg.kl_coef, cfg.adaptive_kl, cfg.kl_target, cfg.kl_horizon)
        self.tracker = EpisodeTracker(self.env.num_envs)

    def reset(self, seed: int) -> None:
        """Nothing to do: every LM rollout starts by resetting all sub-envs."""

    def state_dict(self) -> dict[str, float]:
        return {"kl_coef": self.kl.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        if "kl_coef" in state:
            self.kl.value = float(state["kl_coef"])

    @torch.no_grad()
    def rollout(
        self, env: Any, seed: int, generator: torch.Generator, deterministic: bool = False
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[dict]]:
        """One episode per sub-env of ``env``.

        Returns ``(obs, actions, log_probs, env_rewards, mask, episodes)``: ``obs`` holds the
        left-padded ``(B, P + R)`` sequences, the others are ``(B, R)`` over completion tokens.
        """
        pol, dev = self.policy, self.device
        n = env.num_envs
        mode = autoreset_mode(env)
        obs, _ = env.reset(seed=seed)
        ids = torch.as_tensor(obs["input_ids"])
        lens = torch.as_tensor(obs["attention_mask"]).long().sum(1)
        p_max = int(lens.max())
        prompt = torch.zeros(n, p_max, dtype=torch.long)
        pmask = torch.zeros(n, p_max, dtype=torch.long)
        for i in range(n):  # left-pad each prompt (ids arrive right-padded)
            k = int(lens[i])
            prompt[i, p_max - k :] = ids[i, :k]
            pmask[i, p_max - k :] = 1
        prompt, pmask = prompt.to(dev), pmask.to(dev)
        max_new = int(ids.shape[1] - lens.min())
        tracker = EpisodeTracker(n, maxlen=None)
        logits, cache = pol.start(prompt, pmask, max_new)
        attn, pos = pmask, lens.to(dev).clone()
        active = np.ones(n, dtype=bool)
        acts, logps, rews, masks = [], [], [], []
        episodes: list[dict] = []
        for _ in range(max_new):
            tokens, logp = sample_tokens(logits, generator, deterministic)
            step_actions = np.where(active, tokens.cpu().numpy(), 0).astype(np.int64)
            _, rewards, term, trunc, infos = env.step(step_actions)
            ended = tracker.update(np.asarray(rewards, dtype=np.float64), term, trunc, infos, active)
            episodes.extend(list(tracker.completed)[len(tracker.completed) - len(ended) :])
            acts.append(torch.where(torch.as_tensor(active, device=dev), tokens, 0))
            logps.append(torch.where(torch.as_tensor(active, device=dev), logp, 0.0))
            rews.append(torch.as_tensor(np.where(active, rewards, 0.0), dtype=torch.float32, device=dev))
            masks.append(torch.as_tensor(active, device=dev))
            done = (np.asarray(term) | np.asarray(trunc)) & active
            active = active & ~done
            if not active.any():
                break
            if mode == AutoresetMode.DISABLED and done.any():
                env.reset(options={"reset_mask": done})
            attn = torch.cat([attn, torch.ones(n, 1, dtype=attn.dtype, device=dev)], dim=1)
            logits, cache = pol.next(tokens, cache, attn, pos)
            pos = pos + 1
        actions = torch.stack(acts, 1)
        mask = torch.stack(masks, 1)
        seq = {
            "input_ids": torch.cat([prompt, actions], 1),
            "attention_mask": torch.cat([pmask, mask.long()], 1),
        }
        return seq, actions, torch.stack(logps, 1), torch.stack(rews, 1), mask, episodes

    def collect(self, agent: Any) -> tuple[Batch, int, dict[str, float]]:
        """One PPO batch: rollout, reference/value passes, KL-penalised rewards, GAE."""
        cfg = agent.config
        seed = int(agent.np_rng.integers(2**31))
        obs, actions, logp, env_rewards, mask, episodes = self.rollout(self.env, seed, agent.torch_rng)
        values, ref_logp = self.policy.values_and_ref_logprobs(obs, actions)
        m = mask.float()
        log_ratio = (logp - ref_logp) * m  # log(p / p_ref) per token
        k1 = log_ratio
        k3 = (torch.exp(-log_ratio) - 1.0 + log_ratio) * m  # r = p_ref / p: (r - 1) - log r
        beta = self.kl.value
        penalty = -beta * (k1 if cfg.kl_estimator == "k1" else k3)
        rewards = (env_rewards + penalty) * m
        values = values * m
        last = (mask.long().cumsum(1) == mask.long().sum(1, keepdim=True)) & mask  # the final real token
        adv, ret = compute_gae(
            rewards.T,
            values.T,
            last.float().T,
            torch.zeros(len(m), device=m.device),
            cfg.gamma,
            cfg.gae_lambda,
        )
        adv, ret = adv.T * m, ret.T * m
        kl_k1 = float(k1.sum(1).mean())
        kl_k3 = float(k3.sum(1).mean())
        self.kl.update(kl_k1, len(m))
        for ep in episodes:
            self.tracker.completed.append(ep)
        summary = self.tracker.summary(episodes)
        metrics = {
            **summary,
            "kl_ref": kl_k1,
            "kl_ref_k3": kl_k3,
            "kl_coef": beta,
            "reward_kl_penalty": float(penalty.sum(1).mean()),
            "mean_total_reward": float(rewards.sum(1).mean()),
            "completion_tokens": float(m.sum(1).mean()),
        }
        batch = Batch(obs, actions, logp, values, adv, ret, mask, rewards)
        return batch, int(m.sum()), metrics

    def evaluate(
        self, env: Any, n_episodes: int, deterministic: bool, seed: int, generator: torch.Generator
    ) -> list[dict]:
        """``n_episodes`` episodes from batches of ``env.num_envs`` (seeds ``seed``, ``seed + n``, ...)."""
        episodes: list[dict] = []
        s = seed
        while len(episodes) < n_episodes:
            episodes.extend(self.rollout(env, s, generator, deterministic)[-1])
            s += env.num_envs
        return episodes[:n_episodes]
