"""The feedback protocol: what every reward source (rules, learned models, simulated or real people) implements.

A feedback model sees finished episodes, never the policy. It is batched: the vector env gathers all
episodes that end in one step and makes a single ``score`` call, so a learned reward model runs one
forward pass per step instead of one per episode. Whatever a feedback model returns passes through
:func:`validate_scores`, so a NaN or a wrong shape is an error that names the episode, never a
silent reward.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload, runtime_checkable

import numpy as np

from rlhf_envs.errors import FeedbackError


@dataclass(frozen=True, slots=True)
class Episode:
    """One finished (or, for shaping, unfinished) text episode as a feedback model sees it.

    Attributes:
        prompt: the prompt text.
        completion: the generated text (EOS and padding removed).
        prompt_ids: token ids of the prompt.
        completion_ids: token ids the policy chose, EOS included if it was chosen.
        terminated: True if the policy ended the episode with EOS; False if the token budget ran out.
        metadata: task data for this prompt (for example the target string of a copy task or the
            keywords of a keyword task). Feedback models read what they need from it.
        seed: a per-episode seed drawn from the env's RNG at reset. Feedback models that are random
            (noisy raters) derive their randomness from it, so a score does not depend on how
            episodes were batched and the same env seed always gives the same feedback.
    """

    prompt: str
    completion: str
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    terminated: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


class EpisodeBatch(Sequence[Episode]):
    """A batch of finished episodes held as arrays; also a ``Sequence[Episode]``.

    The vector env hands feedback models one ``EpisodeBatch`` per step. A feedback model that only
    knows ``Episode`` iterates it (each item is built on demand); one that can work on arrays (for
    example :class:`~rlhf_envs.feedback.scripted.TargetMatch`) reads the arrays and skips the
    per-episode Python entirely.

    Attributes:
        prompts, completions: object arrays of texts, shape ``(B,)``.
        prompt_ids: int64 ``(B, P)``, right-padded with ``pad_id``; ``prompt_lengths``: int64 ``(B,)``.
        completion_ids: int64 ``(B, C)``, right-padded with ``pad_id``; ``completion_lengths``: int64
            ``(B,)`` (EOS counts when the policy chose it).
        terminated: bool ``(B,)``; seeds: int64 ``(B,)`` (see :attr:`Episode.seed`).
        metadata: task data, each value an array whose row ``b`` belongs to episode ``b``.
    """

    def __init__(
        self,
        prompts: np.ndarray,
        completions: np.ndarray,
        prompt_ids: np.ndarray,
        prompt_lengths: np.ndarray,
        completion_ids: np.ndarray,
        completion_lengths: np.ndarray,
        terminated: np.ndarray,
        seeds: np.ndarray,
        metadata: dict[str, np.ndarray],
        pad_id: int,
    ) -> None:
        self.prompts = prompts
        self.completions = completions
        self.prompt_ids = prompt_ids
        self.prompt_lengths = prompt_lengths
        self.completion_ids = completion_ids
        self.completion_lengths = completion_lengths
        self.terminated = terminated
        self.seeds = seeds
        self.metadata = metadata
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.prompts)

    @overload
    def __getitem__(self, i: int) -> Episode: ...
    @overload
    def __getitem__(self, i: slice) -> list[Episode]: ...
    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode index {i} out of range for a batch of {len(self)}")
        return Episode(
            prompt=self.prompts[i],
            completion=self.completions[i],
            prompt_ids=tuple(self.prompt_ids[i, : self.prompt_lengths[i]].tolist()),
            completion_ids=tuple(self.completion_ids[i, : self.completion_lengths[i]].tolist()),
            terminated=bool(self.terminated[i]),
            metadata={k: v[i] for k, v in self.metadata.items()},
            seed=int(self.seeds[i]),
        )

    def __iter__(self) -> Iterator[Episode]:
        return (self[i] for i in range(len(self)))


@runtime_checkable
class FeedbackModel(Protocol):
    """Anything with a batched ``score``: one float per episode, higher is better.

    Optional richer answers (``compare(a, b)`` for pairwise preferences, ``rate(episodes)`` for Likert
    ratings) are defined by the feedback kinds that support them.
    """

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        """Return a float32 array of shape ``(len(episodes),)``."""
        ...


def validate_scores(scores: Any, episodes: Sequence[Episode], source: object) -> np.ndarray:
    """Check that ``scores`` holds one finite number per episode and return it as float32.

    Raises:
        FeedbackError: wrong type, wrong shape, or a NaN / inf, naming the episode and its prompt.
    """
    try:
        if isinstance(scores, np.ndarray) and scores.dtype == np.float32:
            arr = scores  # already what the envs want: check it as it is
        else:
            arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FeedbackError(
            f"{type(source).__name__}.score returned {type(scores).__name__}, which is not numeric; "
            f"it must return one float per episode (shape ({len(episodes)},))"
        ) from exc
    if arr.shape != (len(episodes),):
        raise FeedbackError(
            f"{type(source).__name__}.score returned shape {arr.shape} for {len(episodes)} episodes; "
            f"it must return shape ({len(episodes)},)"
        )
    # One cheap reduction: the dot product is finite unless some score is NaN or inf (or it
    # overflows, which the elementwise check below tells apart).
    if not math.isfinite(arr.dot(arr)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            i = int(bad[0])
            ep = episodes[i]
            raise FeedbackError(
                f"{type(source).__name__}.score returned {arr[i]} for episode {i} "
                f"(prompt {ep.prompt!r}, completion {ep.completion!r}); scores must be finite"
                + (f" ({bad.size} non-finite scores in all)" if bad.size > 1 else "")
            )
    return arr.astype(np.float32)  # a copy: the caller owns the result


def score_episodes(model: FeedbackModel, episodes: Sequence[Episode]) -> np.ndarray:
    """Call ``model.score`` once on the batch and validate the answer (empty batch -> empty array)."""
    if not episodes:
        return np.zeros(0, dtype=np.float32)
    return validate_scores(model.score(episodes), episodes, model)
