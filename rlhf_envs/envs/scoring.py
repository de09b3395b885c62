"""Ending episodes: score a batch of finished episodes with one feedback call, and say which task
facts go into ``info``.

Shared by the single and the vector env: the single env finishes a batch of one, the vector env all
sub-envs that ended in a step, through the same code, so both give the same rewards.
"""

from __future__ import annotations

import numpy as np

from rlhf_envs.feedback.base import EpisodeBatch, score_episodes
from rlhf_envs.tasks.base import Task
from rlhf_envs.tokenization import decode_batch


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
    batch = episode_batch(
        task,
        prompt_ids,
        prompt_lengths,
        prompts,
        completion_ids,
        completion_lengths,
        terminated,
        seeds,
        metadata,
    )
    scores = score_episodes(task.feedback, batch)
    infos = {"prompt": prompts, "completion": batch.completions, **task.episode_infos(batch)}
    return scores, batch, infos


def episode_batch(
    task: Task,
    prompt_ids: np.ndarray,
    prompt_lengths: np.ndarray,
    prompts: np.ndarray,
    completion_ids: np.ndarray,
    completion_lengths: np.ndarray,
    terminated: np.ndarray,
    seeds: np.ndarray,
    metadata: dict[str, np.ndarray],
) -> EpisodeBatch:
    """The :class:`EpisodeBatch` of these (finished or unfinished) episodes, completions decoded.

    Finished episodes go to the feedback model through it; unfinished ones (the current prefixes)
    go to shaping terms that ask for ``episodes`` (potential-based shaping)."""
    return EpisodeBatch(
        prompts=prompts,
        completions=decode_batch(task.tokenizer, completion_ids, completion_lengths),
        prompt_ids=prompt_ids,
        prompt_lengths=prompt_lengths,
        completion_ids=completion_ids,
        completion_lengths=completion_lengths,
        terminated=terminated,
        seeds=seeds,
        metadata=metadata,
        pad_id=task.tokenizer.pad_id,
    )


def reset_info_keys(task: Task, metadata: dict[str, np.ndarray]) -> list[str]:
    """The metadata keys a reset ``info`` reports."""
    return list(metadata) if task.info_keys is None else [k for k in task.info_keys if k in metadata]
