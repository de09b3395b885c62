"""What both env classes accept and return: the observation space, the action, seed and option
checks, and the env's task (with an optional feedback model in place of the task's own).

Shared by :class:`~rlhf_envs.envs.text_env.TextGenerationEnv` and
:class:`~rlhf_envs.envs.vector_env.TextGenerationVectorEnv`, so the two cannot drift apart.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from rlhf_envs.errors import ConfigError, ConfigValueError, InvalidActionError, check_known_keys
from rlhf_envs.tasks.base import Task, make_task


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


def check_seed(seed: Any, what: str = "seed") -> int | None:
    """``None`` or a non-negative int (numpy ints too, which Gymnasium's seeding refuses) -> int."""
    if seed is None:
        return None
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"{what} must be None or an int >= 0, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ConfigValueError(f"{what} must be None or an int >= 0, got {seed}")
    return int(seed)


def check_options(options: Any, allowed: set[str], what: str) -> dict[str, Any]:
    """``reset(options=...)``: ``None`` or a mapping with only ``allowed`` keys -> a new dict."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{what} must be None or a dict, got {type(options).__name__} {options!r}")
    check_known_keys(options, allowed, what)
    return dict(options)


def make_env_task(task: str | Task, feedback: Any, task_kwargs: dict[str, Any]) -> Task:
    """The env's task: ``make_task(task, **task_kwargs)``, scored by ``feedback`` when one is given.

    ``feedback`` is any object with a ``score(episodes)`` method (the
    :class:`~rlhf_envs.feedback.FeedbackModel` protocol); the env's scoring validates every score
    it returns. A caller's ready ``Task`` instance is copied, not changed.
    """
    built = make_task(task, **task_kwargs)
    if feedback is None:
        return built
    if not callable(getattr(feedback, "score", None)):
        raise ConfigError(
            "feedback must be None or a feedback model: an object with a score(episodes) method that "
            f"returns one float per episode, got {type(feedback).__name__} {feedback!r}"[:400]
        )
    if built is task:
        built = copy.copy(built)
    built.feedback = feedback
    return built
