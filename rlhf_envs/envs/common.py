"""Plumbing shared by the single and the vector env: spaces, action checks, finishing episodes."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from rlhf_envs.errors import InvalidActionError
from rlhf_envs.feedback.base import EpisodeBatch, score_episodes
from rlhf_envs.tasks.base import Task
from rlhf_envs.tokenization import decode_batch


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


def finish_episodes(
    task: Task,
    prompt_ids: np.ndarray,
    prompt_lengths: np.ndarray,
    prompts: np.ndarray,
    completion_ids: np.ndarray,
    completion_lengths: np.ndarray,
    terminated: np.ndarray,
    seeds: np.ndarray,
    metadata: dict[str, np.ndarray],
) -> tuple[np.ndarray, EpisodeBatch, dict[str, np.ndarray]]:
    """Score a batch of finished episodes with one feedback call.

    Returns the validated float32 scores, the :class:`EpisodeBatch` and the per-episode info arrays
    (``prompt``, ``completion`` and the task's extras such as ``success``). ``seeds`` are the
    episodes' feedback seeds (:func:`rlhf_envs.seeding.key_to_seed` of their episode keys).
    """
    completions = decode_batch(task.tokenizer, completion_ids, completion_lengths)
    batch = EpisodeBatch(
        prompts=prompts,
        completions=completions,
        prompt_ids=prompt_ids,
        prompt_lengths=prompt_lengths,
        completion_ids=completion_ids,
        completion_lengths=completion_lengths,
        terminated=terminated,
        seeds=seeds,
        metadata=metadata,
        pad_id=task.tokenizer.pad_id,
    )
    scores = score_episodes(task.feedback, batch)
    infos = {"prompt": prompts, "completion": completions, **task.episode_infos(batch)}
    return scores, batch, infos


def reset_info_keys(task: Task, metadata: dict[str, np.ndarray]) -> list[str]:
    """The metadata keys a reset ``info`` reports."""
    return list(metadata) if task.info_keys is None else [k for k in task.info_keys if k in metadata]
