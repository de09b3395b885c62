"""Group Relative Policy Optimisation (GRPO; Shao et al. 2024, DeepSeekMath) for language models.

For each prompt the agent samples k completions (:mod:`agents.critic_free` has the rollout, the KL
options and the clipped update). A completion's advantage is its score normalised within its group:

    A_i = (s_i - mean_j s_j) / (std_j s_j + eps)

with the unbiased standard deviation and ``eps = 1e-4`` (TRL's GRPOTrainer); ``scale_rewards=False``
drops the division (Dr. GRPO, Liu et al. 2025: the division up-weights prompts whose completions
barely differ). A group whose completions all score the same gives zero advantages (no signal).
By default the KL to the reference is a loss term (``kl_mode="loss"``, k3 estimator, the paper's
choice); ``kl_mode="reward"`` subtracts it from the score instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from agents.checks import check_bool
from agents.critic_free import CriticFreeAgent, CriticFreeConfig, check_group_scores

#: added to the group's standard deviation before dividing (TRL's value)
GRPO_EPS = 1e-4


def grpo_advantages(scores: torch.Tensor, scale: bool = True, eps: float = GRPO_EPS) -> torch.Tensor:
    """Group-normalised advantages of ``(groups, k)`` scores: ``(s - mean) / (std + eps)``.

    ``std`` is the unbiased standard deviation within each group; ``scale=False`` returns
    ``s - mean`` only.
    """
    check_group_scores(scores)
    centred = scores - scores.mean(1, keepdim=True)
    if not scale:
        return centred
    return centred / (scores.std(1, keepdim=True) + eps)


@dataclass
class GRPOConfig(CriticFreeConfig):
    """GRPO's settings: :class:`~agents.critic_free.CriticFreeConfig` (KL as a loss term by default)."""

    kl_mode: str = "loss"
    #: divide the centred scores by the group's standard deviation (False: Dr. GRPO)
    scale_rewards: bool = True

    ALGO: ClassVar[str | None] = "grpo"
    LM_PRESET: ClassVar[str | None] = "lm-default-grpo"

    def validate(self) -> None:
        super().validate()
        check_bool("scale_rewards", self.scale_rewards)


class GRPO(CriticFreeAgent):
    """GRPO agent: ``GRPO(env_id, seed=0, model=..., group_size=4)``; options: :class:`GRPOConfig`.

    Example::

        agent = GRPO("RLHF/Sentiment-v0", seed=0, model="default", learning_rate=1e-4)
        agent.learn(20_000)
        agent.evaluate(64)   # {'mean_return': ..., 'kl_ref': ..., 'distinct_1': ..., ...}
    """

    config_class = GRPOConfig
    config: GRPOConfig

    def __init__(self, env_or_id: Any, seed: int = 0, **config: Any) -> None:
        super().__init__(env_or_id, seed=seed, **config)

    def group_advantages(self, scores: torch.Tensor) -> torch.Tensor:
        return grpo_advantages(scores, self.config.scale_rewards)
