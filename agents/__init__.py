"""Agents trained against the rlhf_envs suite (custom PPO, policy-gradient family, SB3 baselines).

``PPO``, ``A2C`` and ``REINFORCE`` share one rollout and checkpoint implementation; they take an
env id, a Gymnasium ``Env`` or a ``VectorEnv``, a ``seed`` and the keyword options of their config
dataclass (:mod:`agents.config`).
"""

from agents.base import TrainingDivergedError
from agents.config import A2CConfig, OnPolicyConfig, PPOConfig, REINFORCEConfig
from agents.policy_gradient import A2C, REINFORCE
from agents.ppo import PPO

__all__ = [
    "PPO",
    "A2C",
    "REINFORCE",
    "PPOConfig",
    "A2CConfig",
    "REINFORCEConfig",
    "OnPolicyConfig",
    "TrainingDivergedError",
]
