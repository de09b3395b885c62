"""REINFORCE Leave-One-Out (RLOO; Kool et al. 2019, Ahmadian et al. 2024) for language models.

For each prompt the agent samples k completions (:mod:`agents.critic_free` has the rollout, the KL
options and the clipped update). Completion ``i``'s baseline is the mean score of the *other*
``k - 1`` completions of its prompt, so the baseline does not depend on the sample it is
subtracted from and the policy gradient stays unbiased:

    A_i = s_i - (sum_j s_j - s_i) / (k - 1)  =  k / (k - 1) * (s_i - mean_j s_j)

By default the KL to the reference is part of the score (``kl_mode="reward"``, the paper's and
TRL's choice); ``kl_mode="loss"`` adds it to the loss instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from agents.critic_free import CriticFreeAgent, CriticFreeConfig, check_group_scores


def rloo_advantages(scores: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages of ``(groups, k)`` scores: each minus the mean of the others."""
    check_group_scores(scores)
    k = scores.shape[1]
    baseline = (scores.sum(1, keepdim=True) - scores) / (k - 1)
    return scores - baseline


@dataclass
class RLOOConfig(CriticFreeConfig):
    """RLOO's settings: :class:`~agents.critic_free.CriticFreeConfig` (KL in the reward by default)."""

    kl_mode: str = "reward"

    ALGO: ClassVar[str | None] = "rloo"
    LM_PRESET: ClassVar[str | None] = "lm-default-rloo"


class RLOO(CriticFreeAgent):
    """RLOO agent: ``RLOO(env_id, seed=0, model=..., group_size=4)``; options: :class:`RLOOConfig`.

    Example::

        agent = RLOO("RLHF/Sentiment-v0", seed=0, model="default", learning_rate=1e-4)
        agent.learn(20_000)
        agent.evaluate(64)   # {'mean_return': ..., 'kl_ref': ..., 'distinct_1': ..., ...}
    """

    config_class = RLOOConfig
    config: RLOOConfig

    def __init__(self, env_or_id: Any, seed: int = 0, **config: Any) -> None:
        super().__init__(env_or_id, seed=seed, **config)

    def group_advantages(self, scores: torch.Tensor) -> torch.Tensor:
        return rloo_advantages(scores)
