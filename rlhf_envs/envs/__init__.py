"""Environment classes: the single env and its natively batched vector env."""

from rlhf_envs.envs.shaping import RepeatPenalty, ShapingTerm, StepPenalty
from rlhf_envs.envs.text_env import TextGenerationEnv
from rlhf_envs.envs.vector_env import TextGenerationVectorEnv

__all__ = ["RepeatPenalty", "ShapingTerm", "StepPenalty", "TextGenerationEnv", "TextGenerationVectorEnv"]
