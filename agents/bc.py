"""Behaviour cloning: the policy maximises the log-likelihood of the demonstrations' tokens.

The baseline inverse RL must beat or match (:mod:`agents.airl` learns from the same
demonstrations). :class:`BC` has the agents' surface (``learn`` / ``evaluate`` / ``save`` /
``load``, from :class:`~agents.base.OnPolicyAgent`) and the same policies as PPO (any preset:
``BC(env_id, demonstrations, preset="toy-copy")`` builds PPO's toy transformer, ``policy="lm"`` the
embedded language model), so a BC policy and an AIRL/PPO policy differ only in how they were
trained. ``learn(n)`` takes ``n`` demonstration tokens through the loss (``n / tokens`` epochs):
shuffled minibatches of ``batch_size`` episodes, mean negative log-likelihood over their
completion tokens (``log pi`` under the env's action mask when the policy uses one), Adam with the
config's learning rate and gradient clipping. The demonstrations are saved with the checkpoint, so
``BC.load(path).learn(rest, reset_num_timesteps=False)`` resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from agents.base import OnPolicyAgent
from agents.checks import check_int
from agents.config import PPOConfig
from agents.demonstrations import load_episodes, policy_token_logprobs, save_episodes
from agents.rollout import Batch
from agents.run_logger import TrainingLogger
from agents.threads import uses_config_threads
from rlhf_envs import atomic_io
from rlhf_envs.errors import ConfigError, DataError
from rlhf_envs.feedback.base import Episode

DEMOS_FILE = "demonstrations.json"
ORDER_FILE = "bc_order.json"


@dataclass
class BCConfig(PPOConfig):
    """PPO's settings (for the policy and the optimiser; the PPO-only fields are unused) plus:"""

    #: demonstration episodes per gradient step
    batch_size: int = 64

    #: BC takes any agent preset (it uses only their policy and optimiser fields)
    ALGO: ClassVar[str | None] = None

    def validate(self) -> None:
        super().validate()
        check_int("batch_size", self.batch_size, 1)


class BC(OnPolicyAgent):
    """Behaviour cloning. ``BC(env_or_id, demonstrations, seed=0, **config)``; see the module docstring."""

    config_class = BCConfig
    config: BCConfig

    def __init__(
        self, env_or_id: Any, demonstrations: Sequence[Episode] | None = None, seed: int = 0, **config: Any
    ) -> None:
        super().__init__(env_or_id, seed=seed, **config)
        self.demonstrations: list[Episode] = []
        #: demonstration indices left in the current epoch (saved, so a resumed run continues it)
        self._order = np.zeros(0, dtype=np.int64)
        if demonstrations is not None:
            self.set_demonstrations(demonstrations)

    def set_demonstrations(self, demonstrations: Sequence[Episode]) -> None:
        """The episodes to imitate (token ids of this env's tokenizer)."""
        demos = list(demonstrations)
        if not demos or not all(isinstance(e, Episode) and e.completion_ids for e in demos):
            raise ConfigError("demonstrations must be a non-empty sequence of Episodes with completions")
        self.demonstrations = demos
        self._order = np.zeros(0, dtype=np.int64)

    def train(self, batch: Batch, progress_remaining: float) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError("BC learns from demonstrations, not rollouts: call learn()")

    @uses_config_threads
    def learn(
        self,
        total_timesteps: int,
        callback: Any = None,
        progress_bar: bool = True,
        reset_num_timesteps: bool = True,
    ) -> BC:
        """Take ``total_timesteps`` demonstration tokens through the loss (see the module docstring)."""
        if (
            isinstance(total_timesteps, bool)
            or not isinstance(total_timesteps, int | np.integer)
            or total_timesteps < 0
        ):
            raise ValueError(f"total_timesteps must be a non-negative int, got {total_timesteps!r}")
        if not self.demonstrations:
            raise ConfigError("BC has no demonstrations: pass them to BC(...) or set_demonstrations()")
        cfg = self.config
        if reset_num_timesteps:
            self.num_timesteps = self.iteration = 0
        self._total_timesteps = self.num_timesteps + int(total_timesteps)
        logger = TrainingLogger(
            cfg.log_dir, self._total_timesteps, self.num_timesteps, progress_bar, cfg.tensorboard
        )
        try:
            while self.num_timesteps < self._total_timesteps:
                if self._order.size == 0:
                    self._order = self.np_rng.permutation(len(self.demonstrations))
                idx, self._order = self._order[: cfg.batch_size], self._order[cfg.batch_size :]
                eps = [self.demonstrations[i] for i in idx]
                progress = 1.0 - self.num_timesteps / self._total_timesteps
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.learning_rate * (progress if cfg.anneal_lr else 1.0)
                self.policy.train()
                logp, mask = policy_token_logprobs(self, eps)
                m = mask.float()
                loss = -(logp * m).sum() / m.sum().clamp(min=1)
                # parameters the loss does not reach (the value head) get a zero gradient, so the
                # optimiser keeps state for every parameter and checkpoints stay loadable
                loss = loss + 0.0 * sum(p.sum() for p in self.policy.parameters() if p.requires_grad)
                zeros = torch.zeros(0)
                grad_norm = self.optimize(
                    loss, Batch(zeros, zeros, zeros, zeros, zeros, zeros, zeros, zeros), {"nll": loss}
                )
                self.policy.eval()
                n_tokens = int(m.sum())
                self.num_timesteps += n_tokens
                self.iteration += 1
                metrics = {"nll": float(loss.detach()), "grad_norm": grad_norm, "iteration": self.iteration}
                logger.log(self.num_timesteps, metrics, n_tokens)
                if callback is not None and callback(self, metrics) is False:
                    break
        finally:
            logger.close()
        return self

    def save(self, path: str) -> str:
        """The agents' checkpoint plus the demonstrations (``demonstrations.json``)."""
        out = super().save(path)
        save_episodes(os.path.join(path, DEMOS_FILE), self.demonstrations)
        atomic_io.write_json(Path(path) / ORDER_FILE, {"order": self._order.tolist()})
        return out

    @classmethod
    def load(cls, path: str, env: Any = None, *, allow_import: bool = False, **overrides: Any) -> BC:
        """:meth:`OnPolicyAgent.load`, then the saved demonstrations."""
        agent = super().load(path, env, allow_import=allow_import, **overrides)
        demos = os.path.join(path, DEMOS_FILE)
        if os.path.exists(demos):
            agent.set_demonstrations(load_episodes(demos))
            order_file = Path(path) / ORDER_FILE
            try:
                order = json.loads(order_file.read_text(encoding="utf-8"))["order"]
                agent._order = np.asarray(order, dtype=np.int64)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(f"BC file {str(order_file)!r} is missing or malformed ({exc!r})") from None
            if agent._order.size and (
                agent._order.min() < 0 or agent._order.max() >= len(agent.demonstrations)
            ):
                raise DataError(f"BC file {str(order_file)!r} names demonstrations that do not exist")
        return agent  # type: ignore[return-value]
