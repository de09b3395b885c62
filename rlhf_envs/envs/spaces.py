"""What both env classes accept and return: the observation space and the action check.

Shared by :class:`~rlhf_envs.envs.text_env.TextGenerationEnv` and
:class:`~rlhf_envs.envs.vector_env.TextGenerationVectorEnv`, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from rlhf_envs.errors import InvalidActionError
from rlhf_envs.tasks.base import Task


def observation_space(task: Task) -> spaces.Dict:
    """The Dict observation shared by the single and vector envs."""
    length = task.max_prompt_tokens + task.max_new_tokens
    vocab = task.tokenizer.vocab_size
    return spaces.Dict(
        {
            "input_ids": spaces.Box(0, vocab - 1, shape=(length,), dtype=np.int64),
            "attention_mask": spaces.Box(0, 1, shape=(length,), dtype=np.int8),
        }
    )


def check_action(action: Any, vocab_size: int) -> int:
    """Return ``action`` as an int, or raise :class:`InvalidActionError` saying what is allowed."""
    if isinstance(action, np.ndarray) and action.shape == ():
        action = action[()]
    if isinstance(action, bool | np.bool_) or not isinstance(action, int | np.integer):
        raise InvalidActionError(
            f"action must be an integer token id in [0, {vocab_size}), got {type(action).__name__} {action!r}"
        )
    if not 0 <= action < vocab_size:
        raise InvalidActionError(
            f"action {int(action)} is out of range; allowed token ids are [0, {vocab_size})"
        )
    return int(action)
