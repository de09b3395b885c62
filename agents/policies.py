"""Actor-critic policies trained from scratch: MLPs for any Gymnasium env with Discrete or Box
actions, and a small transformer (``policy="transformer"``) for the rlhf token observation.

MLPs: separate actor and critic networks (CleanRL detail 13), orthogonal initialisation with gain
sqrt(2) on hidden layers, 0.01 on the policy head and 1.0 on the value head, zero biases (detail 2).
All initialisation draws from the agent's ``torch.Generator``: building a policy never touches the
global torch RNG.

Observations are encoded to a flat float vector by :class:`ObsEncoder`: Box and MultiBinary are
flattened, Discrete is one-hot, and the rlhf token observation (``Dict(input_ids, attention_mask)``)
is a one-hot of every position's token, zeroed on padding (``L * V`` features; the toy tasks have
``14 * 30 = 420``), optionally followed by a one-hot of the sequence length (``token_features=
"length"``: ``L + 1`` more features). Anything else is refused at construction with an error that
says what works. The transformer (:class:`TransformerActorCritic`) reads the token ids and attention
mask directly.

With ``use_action_mask`` the Categorical policy is restricted to the env's valid actions (masked
PPO, as sb3-contrib's MaskablePPO): invalid logits are replaced by a large negative constant, so
they get probability 0 when sampling and contribute nothing to log-probs or entropy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from agents.envs import is_token_space
from rlhf_envs.errors import ConfigError

#: the one-hot token encoding is refused above this many features (use policy="lm" instead)
MAX_ONE_HOT_FEATURES = 65_536


class ObsEncoder:
    """Numpy observation batch -> float32 tensor ``(B, n_features)``."""

    def __init__(self, space: spaces.Space, token_features: str = "none") -> None:
        self.space = space
        self.token_features = token_features
        if is_token_space(space):
            self.kind = "tokens"
            self.length = int(space["input_ids"].shape[0])
            self.vocab = int(np.max(space["input_ids"].high)) + 1
            self.n_features = self.length * self.vocab
            if token_features == "length":
                self.n_features += self.length + 1
            if self.n_features > MAX_ONE_HOT_FEATURES:
                raise ConfigError(
                    f"token observation of length {self.length} with vocabulary {self.vocab} would one-hot "
                    f"to {self.n_features} features (limit {MAX_ONE_HOT_FEATURES}); use policy='lm'"
                )
        elif isinstance(space, spaces.Box | spaces.MultiBinary):
            self.kind = "box"
            self.n_features = int(np.prod(space.shape))
        elif isinstance(space, spaces.Discrete):
            self.kind = "discrete"
            self.n_features = int(space.n)
        else:
            raise ConfigError(
                f"unsupported observation space {space}; the MLP policy takes Box, MultiBinary, Discrete "
                "or the rlhf token Dict(input_ids, attention_mask)"
            )

    def __call__(self, obs, device: torch.device | str = "cpu") -> torch.Tensor:  # noqa: ANN001
        if self.kind == "tokens":
            ids = torch.as_tensor(np.asarray(obs["input_ids"]), device=device).long()
            mask = torch.as_tensor(np.asarray(obs["attention_mask"]), device=device)
            onehot = torch.nn.functional.one_hot(ids.clamp(0, self.vocab - 1), self.vocab).float()
            onehot = onehot * mask.unsqueeze(-1).float()
            flat = onehot.reshape(ids.shape[0], -1)
            if self.token_features == "length":
                n_real = (mask != 0).sum(-1).long()
                flat = torch.cat([flat, torch.nn.functional.one_hot(n_real, self.length + 1).float()], -1)
            return flat
        if self.kind == "discrete":
            x = torch.as_tensor(np.asarray(obs), device=device).long().reshape(-1)
            return torch.nn.functional.one_hot(x, self.n_features).float()
        x = torch.as_tensor(np.asarray(obs), device=device, dtype=torch.float32)
        return x.reshape(x.shape[0], -1)


#: logit given to invalid actions under an action mask (MaskablePPO uses the same constant)
MASKED_LOGIT = -1e8


def _init_layer(layer: nn.Linear, gain: float, generator: torch.Generator) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain=gain, generator=generator)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(sizes: list[int], activation: str, out_gain: float, generator: torch.Generator) -> nn.Sequential:
    act = nn.Tanh if activation == "tanh" else nn.ReLU
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        layers.append(
            _init_layer(nn.Linear(sizes[i], sizes[i + 1]), out_gain if last else math.sqrt(2), generator)
        )
        if not last:
            layers.append(act())
    return nn.Sequential(*layers)


@dataclass
class PolicyOutput:
    """What the rollout needs from one policy call."""

    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor


class MLPActorCritic(nn.Module):
    """Separate actor and critic MLPs; Categorical (Discrete) or diagonal Gaussian (Box) actions.

    Box actions are sampled unbounded and clipped to the space only when sent to the env; the log
    probability is that of the unclipped sample (as in CleanRL and SB3).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        hidden_sizes: tuple[int, ...],
        activation: str,
        log_std_init: float,
        generator: torch.Generator,
        token_features: str = "none",
        use_action_mask: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = ObsEncoder(observation_space, token_features)
        self.use_action_mask = use_action_mask
        if isinstance(action_space, spaces.Discrete):
            self.discrete = True
            self.n_out = int(action_space.n)
            self.action_start = int(action_space.start)
        elif isinstance(action_space, spaces.Box) and np.issubdtype(action_space.dtype, np.floating):
            self.discrete = False
            self.n_out = int(np.prod(action_space.shape))
            self.action_shape = action_space.shape
            self.low, self.high = action_space.low, action_space.high
        else:
            raise ConfigError(
                f"unsupported action space {action_space}; the agents support Discrete and float Box actions"
            )
        if use_action_mask and not self.discrete:
            raise ConfigError("use_action_mask=True needs a Discrete action space")
        sizes = [self.encoder.n_features, *hidden_sizes]
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init would draw from the global RNG
            self.actor = _mlp([*sizes, self.n_out], activation, 0.01, generator)
            self.critic = _mlp([*sizes, 1], activation, 1.0, generator)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((self.n_out,), float(log_std_init)))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """State values ``(B,)`` of encoded observations."""
        return self.critic(x).squeeze(-1)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(distribution parameters, values)`` of encoded observations."""
        return self.actor(x), self.value(x)

    def _log_probs_all(self, logits: torch.Tensor, action_mask: torch.Tensor | None) -> torch.Tensor:
        """Categorical log-probabilities ``(B, n)``, restricted to ``action_mask`` when masking."""
        if self.use_action_mask:
            if action_mask is None:
                raise ValueError("this policy uses action masks (use_action_mask=True): pass action_mask")
            logits = torch.where(action_mask.bool(), logits, torch.full_like(logits, MASKED_LOGIT))
        return torch.log_softmax(logits, dim=-1)

    def act(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        deterministic: bool = False,
        action_mask: torch.Tensor | None = None,
        world: Any = None,
    ) -> PolicyOutput:
        """Sample (or take the mode of) the policy for a batch of encoded observations.

        ``action_mask`` (bool ``(B, n)``, True = valid) is required when ``use_action_mask``.
        ``world`` (an :class:`agents.distributed.World`): draw the random numbers of the whole
        global batch and use this rank's rows (data-parallel rollouts).
        """
        out, values = self._forward(x)
        if self.discrete:
            logp_all = self._log_probs_all(out, action_mask)
            if deterministic:
                a = logp_all.argmax(-1)
            else:  # inverse-CDF sampling with the agent's generator
                if world is not None and world.active:
                    u = world.uniforms(x.shape[0], generator, x.device)
                else:
                    u = torch.rand(x.shape[0], 1, generator=generator, device=x.device)
                cdf = logp_all.exp().cumsum(-1)
                # right=True: the first index whose cdf exceeds the draw, never a 0-probability action
                a = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)
                a = a.clamp_(max=self.n_out - 1)
                if (
                    self.use_action_mask
                ):  # a draw rounded up to the very top may land past the last valid action
                    top = logp_all.gather(-1, a.unsqueeze(-1)).squeeze(-1) <= MASKED_LOGIT / 2
                    a = torch.where(top, logp_all.argmax(-1), a)
            logp = logp_all.gather(-1, a.unsqueeze(-1)).squeeze(-1)
        else:
            std = self.log_std.exp()
            if deterministic:
                a = out
            else:
                if world is not None and world.active:
                    z = world.normals(out.shape, generator, x.device)
                else:
                    z = torch.randn(out.shape, generator=generator, device=x.device)
                a = out + std * z
            logp = self._gauss_logp(out, a)
        return PolicyOutput(a, logp, values)

    def _gauss_logp(self, mean: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        log_std = self.log_std.expand_as(mean)
        return (-0.5 * ((a - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def evaluate_actions(
        self, x: torch.Tensor, actions: torch.Tensor, action_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities, entropies and values for stored ``actions`` (training pass).

        With ``use_action_mask`` both are those of the masked distribution (the one sampled from).
        """
        out, values = self._forward(x)
        if self.discrete:
            logp_all = self._log_probs_all(out, action_mask)
            logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        else:
            logp = self._gauss_logp(out, actions)
            entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(out.shape[0])
        return logp, entropy, values

    def to_env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Tensor actions -> what ``env.step`` takes (Discrete offset added, Box clipped)."""
        a = actions.detach().cpu().numpy()
        if self.discrete:
            return a.astype(np.int64) + self.action_start
        return np.clip(a.reshape(a.shape[0], *self.action_shape), self.low, self.high).astype(np.float32)


class TokenIdsEncoder:
    """rlhf token observation -> int64 ``(B, 2L)``: the token ids, then the attention mask."""

    kind = "token_ids"

    def __init__(self, space: spaces.Space) -> None:
        self.space = space
        self.length = int(space["input_ids"].shape[0])
        self.vocab = int(np.max(space["input_ids"].high)) + 1
        self.n_features = 2 * self.length

    def __call__(self, obs, device: torch.device | str = "cpu") -> torch.Tensor:  # noqa: ANN001
        ids = torch.as_tensor(np.asarray(obs["input_ids"]), device=device).long().clamp(0, self.vocab - 1)
        mask = torch.as_tensor(np.asarray(obs["attention_mask"]), device=device).long()
        return torch.cat([ids, mask], dim=-1)


class TransformerActorCritic(MLPActorCritic):
    """A small transformer over the rlhf token observation with actor and critic heads.

    For ``policy="transformer"``: token and learned position embeddings, ``n_layers`` pre-norm
    encoder layers (GELU, no dropout) attending over the real (unpadded) tokens, and the final
    hidden state of the last real token read out by a linear policy head (orthogonal, gain 0.01)
    and a linear value head (gain 1.0) sharing the trunk. Attention can look a token up by its
    position, which an MLP over one-hot positions must learn separately for every
    (position, symbol) pair. Sampling, masking and log-probs are :class:`MLPActorCritic`'s.
    The observation is passed through as ``(B, 2L)`` integer ids and attention mask.

    ``anchor_token`` (a token id, e.g. the toy tasks' separator ``=``) adds a second learned
    position embedding: every token's offset from the first real occurrence of that token
    (``-(L-1) .. L-1``; one extra index when the sequence has none). The inductive bias: positions
    are also measured from the end of the prompt, so "the k-th generated token" and "k tokens
    before the separator" have the same embedding whatever the prompt's length. Copy then becomes
    "attend to the source token whose absolute position equals my offset" and Reverse "attend to
    the token whose offset is -1 - my offset", one fixed attention lookup for every prompt length
    instead of a separate (length, step) table learnt from reward. It tells the policy where the
    prompt ends (as a segment embedding would), not what to answer.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        d_model: int,
        n_layers: int,
        n_heads: int,
        generator: torch.Generator,
        use_action_mask: bool = False,
        anchor_token: int | None = None,
    ) -> None:
        nn.Module.__init__(self)
        if not is_token_space(observation_space) or not isinstance(action_space, spaces.Discrete):
            raise ConfigError(
                "policy='transformer' needs the rlhf token observation Dict(input_ids, attention_mask) "
                f"and Discrete actions, got {observation_space} / {action_space}"
            )
        self.encoder = TokenIdsEncoder(observation_space)
        self.use_action_mask = use_action_mask
        self.discrete = True
        self.n_out = int(action_space.n)
        self.action_start = int(action_space.start)
        length, vocab = self.encoder.length, self.encoder.vocab
        if anchor_token is not None and (
            isinstance(anchor_token, bool)
            or not isinstance(anchor_token, int)
            or not 0 <= anchor_token < vocab
        ):
            raise ConfigError(
                f"anchor_token must be None or a token id in [0, {vocab}), got {anchor_token!r}"
            )
        self.anchor_token = anchor_token
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
            self.tok_emb = nn.Embedding(vocab, d_model)
            self.pos_emb = nn.Embedding(length, d_model)
            # offsets -(L-1)..L-1 from the anchor, shifted to 0..2L-2; index 2L-1 = no anchor
            self.anchor_emb = nn.Embedding(2 * length, d_model) if anchor_token is not None else None
            layer = nn.TransformerEncoderLayer(
                d_model,
                n_heads,
                4 * d_model,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.trunk = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d_model)
            self.actor_head = nn.Linear(d_model, self.n_out)
            self.critic_head = nn.Linear(d_model, 1)
        for name, p in self.named_parameters():  # re-initialise everything from the agent's generator
            if name.endswith("emb.weight"):
                nn.init.normal_(p, 0.0, 0.02, generator=generator)
            elif p.dim() > 1 and "head" not in name:
                nn.init.xavier_uniform_(p, generator=generator)
            elif "norm" in name and name.endswith("weight"):
                nn.init.ones_(p)
            elif p.dim() == 1:
                nn.init.zeros_(p)
        _init_layer(self.actor_head, 0.01, generator)
        _init_layer(self.critic_head, 1.0, generator)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        length = self.encoder.length
        ids, mask = x[:, :length].long(), x[:, length:] != 0
        pos = torch.arange(length, device=x.device)
        h = self.tok_emb(ids) + self.pos_emb(pos)
        if self.anchor_emb is not None:
            h = h + self.anchor_emb(self._anchor_offsets(ids, mask))
        h = self.trunk(h, src_key_padding_mask=~mask)
        last = torch.where(mask, pos, -1).amax(-1).clamp(min=0)  # the last real token, however padded
        return self.norm(h[torch.arange(h.shape[0], device=x.device), last])

    def _anchor_offsets(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Embedding indices ``(B, L)``: ``position - first anchor position + L - 1``, or ``2L - 1``."""
        length = ids.shape[1]
        pos = torch.arange(length, device=ids.device)
        hit = (ids == self.anchor_token) & mask
        first = torch.where(hit, pos, length).amin(-1, keepdim=True)  # (B, 1); L when absent
        return torch.where(first < length, pos - first + length - 1, 2 * length - 1)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """State values ``(B,)`` of encoded observations."""
        return self.critic_head(self._features(x)).squeeze(-1)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._features(x)  # one trunk pass for both heads
        return self.actor_head(h), self.critic_head(h).squeeze(-1)
