"""Agents trained against the rlhf_envs suite (custom PPO, policy-gradient family, SB3 baselines).

``RLOO`` and ``GRPO`` (critic-free, language models: :mod:`agents.critic_free`) and ``ES``
(evolution strategies, :mod:`agents.es`) and ``DPO`` (offline, from preference pairs:
:mod:`agents.dpo`) have the same surface. ``PPO``, ``A2C`` and ``REINFORCE`` share one rollout and checkpoint implementation; they take an
env id, a Gymnasium ``Env`` or a ``VectorEnv``, a ``seed`` and the keyword options of their config
dataclass (:mod:`agents.config`).
"""

from agents.base import TrainingDivergedError
from agents.config import A2CConfig, OnPolicyConfig, PPOConfig, REINFORCEConfig
from agents.dpo import DPO, DPOConfig
from agents.es import ES, ESConfig
from agents.grpo import GRPO, GRPOConfig
from agents.policy_gradient import A2C, REINFORCE
from agents.ppo import PPO
from agents.rloo import RLOO, RLOOConfig

__all__ = [
    "PPO",
    "A2C",
    "REINFORCE",
    "ES",
    "RLOO",
    "GRPO",
    "DPO",
    "PPOConfig",
    "A2CConfig",
    "REINFORCEConfig",
    "ESConfig",
    "RLOOConfig",
    "GRPOConfig",
    "DPOConfig",
    "OnPolicyConfig",
    "TrainingDivergedError",
]
