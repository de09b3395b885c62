"""MLP actor-critic policies for any Gymnasium env with Discrete or Box actions.

Separate actor and critic networks (CleanRL detail 13), orthogonal initialisation with gain
sqrt(2) on hidden layers, 0.01 on the policy head and 1.0 on the value head, zero biases (detail 2).
All initialisation draws from the agent's ``torch.Generator``: building a policy never touches the
global torch RNG.

Observations are encoded to a flat float vector by :class:`ObsEncoder`: Box and MultiBinary are
flattened, Discrete is one-hot, and the rlhf token observation (``Dict(input_ids, attention_mask)``)
is a one-hot of every position's token, zeroed on padding (``L * V`` features; the toy tasks have
``16 * 30 = 480``). Anything else is refused at construction with an error that says what works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    def __init__(self, space: spaces.Space) -> None:
        self.space = space
        if is_token_space(space):
            self.kind = "tokens"
            self.length = int(space["input_ids"].shape[0])
            self.vocab = int(np.max(space["input_ids"].high)) + 1
            self.n_features = self.length * self.vocab
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
            return onehot.reshape(ids.shape[0], -1)
        if self.kind == "discrete":
            x = torch.as_tensor(np.asarray(obs), device=device).long().reshape(-1)
            return torch.nn.functional.one_hot(x, self.n_features).float()
        x = torch.as_tensor(np.asarray(obs), device=device, dtype=torch.float32)
        return x.reshape(x.shape[0], -1)


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
    ) -> None:
        super().__init__()
        self.encoder = ObsEncoder(observation_space)
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
        sizes = [self.encoder.n_features, *hidden_sizes]
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init would draw from the global RNG
            self.actor = _mlp([*sizes, self.n_out], activation, 0.01, generator)
            self.critic = _mlp([*sizes, 1], activation, 1.0, generator)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((self.n_out,), float(log_std_init)))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """State values ``(B,)`` of encoded observations."""
        return self.critic(x).squeeze(-1)

    def _dist_params(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(x)

    def act(self, x: torch.Tensor, generator: torch.Generator, deterministic: bool = False) -> PolicyOutput:
        """Sample (or take the mode of) the policy for a batch of encoded observations."""
        out = self._dist_params(x)
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            if deterministic:
                a = logp_all.argmax(-1)
            else:  # inverse-CDF sampling with the agent's generator
                u = torch.rand(x.shape[0], 1, generator=generator, device=x.device)
                cdf = logp_all.exp().cumsum(-1)
                a = torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(-1).clamp_(max=self.n_out - 1)
            logp = logp_all.gather(-1, a.unsqueeze(-1)).squeeze(-1)
        else:
            std = self.log_std.exp()
            if deterministic:
                a = out
            else:
                a = out + std * torch.randn(out.shape, generator=generator, device=x.device)
            logp = self._gauss_logp(out, a)
        return PolicyOutput(a, logp, self.value(x))

    def _gauss_logp(self, mean: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        log_std = self.log_std.expand_as(mean)
        return (-0.5 * ((a - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def evaluate_actions(
        self, x: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities, entropies and values for stored ``actions`` (training pass)."""
        out = self._dist_params(x)
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        else:
            logp = self._gauss_logp(out, actions)
            entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(out.shape[0])
        return logp, entropy, self.value(x)

    def to_env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Tensor actions -> what ``env.step`` takes (Discrete offset added, Box clipped)."""
        a = actions.detach().cpu().numpy()
        if self.discrete:
            return a.astype(np.int64) + self.action_start
        return np.clip(a.reshape(a.shape[0], *self.action_shape), self.low, self.high).astype(np.float32)
