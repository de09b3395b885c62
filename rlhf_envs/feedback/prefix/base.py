"""Prefix scorers: a potential ``Phi(s)`` for every state of a text episode, not just the last.

A state of the token MDP is a prefix: the prompt followed by the first ``t`` completion tokens
(``s_0`` is the prompt alone, ``s_T`` the whole episode). A *prefix scorer* gives each state a number.
The env turns those numbers into per-token rewards by potential-based shaping
(:class:`rlhf_envs.envs.shaping.PotentialShaping`): ``F_t = gamma * Phi(s_{t+1}) - Phi(s_t)``.

Every prefix scorer has two batched methods on an :class:`~rlhf_envs.feedback.EpisodeBatch`:

* ``score_states(batch) -> float32[B]``: ``Phi`` of each episode *as it stands* (its whole current
  prefix); what the env calls on every step;
* ``score_prefixes(batch) -> float32[B, C + 1]``: ``Phi(s_0), ..., Phi(s_T)`` of each episode
  (column ``t`` is the prefix with ``t`` completion tokens; columns past an episode's
  ``completion_lengths[b]`` are 0). Column ``completion_lengths[b]`` equals ``score_states`` of the
  whole episode.

Three kinds: :mod:`.scripted` (the task's own score of every prefix), :mod:`.learned` (a reward
model's head at every position, one causal forward pass per episode) and :mod:`.marks` (a simulated
person who marks tokens or spans good or bad, with seeded noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rlhf_envs.errors import FeedbackError
from rlhf_envs.feedback.base import Episode, EpisodeBatch
from rlhf_envs.tokenization import decode_batch


@runtime_checkable
class PrefixScorer(Protocol):
    """Anything that gives every prefix (state) of an episode a potential ``Phi``."""

    def score_states(self, episodes: EpisodeBatch) -> np.ndarray:
        """``Phi`` of each episode's whole current prefix: float32 ``(B,)``."""
        ...

    def score_prefixes(self, episodes: EpisodeBatch) -> np.ndarray:
        """``Phi`` of every prefix of each episode: float32 ``(B, C + 1)``."""
        ...


def as_batch(episodes: Sequence[Episode] | EpisodeBatch, pad_id: int) -> EpisodeBatch:
    """``episodes`` as an :class:`EpisodeBatch` (a list of :class:`Episode` is stacked; metadata values
    become object arrays unless they are plain numbers)."""
    if isinstance(episodes, EpisodeBatch):
        return episodes
    eps = list(episodes)
    n = len(eps)
    width_p = max((len(e.prompt_ids) for e in eps), default=0)
    width_c = max((len(e.completion_ids) for e in eps), default=0)
    p_ids = np.full((n, max(width_p, 1)), pad_id, dtype=np.int64)
    c_ids = np.full((n, max(width_c, 1)), pad_id, dtype=np.int64)
    for b, e in enumerate(eps):
        p_ids[b, : len(e.prompt_ids)] = e.prompt_ids
        c_ids[b, : len(e.completion_ids)] = e.completion_ids
    texts = np.empty(n, dtype=object)
    comps = np.empty(n, dtype=object)
    texts[:] = [e.prompt for e in eps]
    comps[:] = [e.completion for e in eps]
    metadata: dict[str, np.ndarray] = {}
    for key in eps[0].metadata if eps else ():
        values = [e.metadata.get(key) for e in eps]
        if all(isinstance(v, bool | int | float | np.number) for v in values):
            metadata[key] = np.asarray(values)
        elif all(isinstance(v, np.ndarray) and v.shape == values[0].shape for v in values):
            metadata[key] = np.stack(values)
        else:
            arr = np.empty(n, dtype=object)
            arr[:] = values
            metadata[key] = arr
    return EpisodeBatch(
        prompts=texts,
        completions=comps,
        prompt_ids=p_ids,
        prompt_lengths=np.array([len(e.prompt_ids) for e in eps], dtype=np.int64),
        completion_ids=c_ids,
        completion_lengths=np.array([len(e.completion_ids) for e in eps], dtype=np.int64),
        terminated=np.array([e.terminated for e in eps], dtype=bool),
        seeds=np.array([e.seed for e in eps], dtype=np.int64),
        metadata=metadata,
        pad_id=pad_id,
    )


def take_rows(batch: EpisodeBatch, rows: np.ndarray, lengths: np.ndarray, tokenizer: Any) -> EpisodeBatch:
    """Episode ``rows[j]`` of ``batch`` cut to its first ``lengths[j]`` completion tokens (so a row may
    appear several times with different cuts). Texts are decoded again with ``tokenizer``; a cut
    episode is terminated when its last kept token is the tokenizer's EOS."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    width = max(int(lengths.max(initial=0)), 1)
    src = batch.completion_ids[rows]
    if src.shape[1] < width:
        src = np.pad(src, ((0, 0), (0, width - src.shape[1])), constant_values=batch.pad_id)
    comp = np.where(np.arange(width) < lengths[:, None], src[:, :width], batch.pad_id)
    last = comp[np.arange(len(rows)), np.maximum(lengths - 1, 0)]
    return EpisodeBatch(
        prompts=batch.prompts[rows],
        completions=decode_batch(tokenizer, comp, lengths),
        prompt_ids=batch.prompt_ids[rows],
        prompt_lengths=batch.prompt_lengths[rows],
        completion_ids=comp,
        completion_lengths=lengths,
        terminated=(lengths > 0) & (last == tokenizer.eos_id),
        seeds=batch.seeds[rows],
        metadata={k: np.asarray(v)[rows] for k, v in batch.metadata.items()},
        pad_id=batch.pad_id,
    )


def all_prefixes(batch: EpisodeBatch, tokenizer: Any) -> tuple[EpisodeBatch, np.ndarray, np.ndarray]:
    """Every prefix of every episode as one batch: returns it with each row's episode and column
    (the number of completion tokens it keeps), ``sum(completion_lengths + 1)`` rows in all."""
    counts = np.asarray(batch.completion_lengths, dtype=np.int64) + 1
    rows = np.repeat(np.arange(len(batch)), counts)
    starts = np.cumsum(counts) - counts
    cols = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    return take_rows(batch, rows, cols, tokenizer), rows, cols


def scatter(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, batch: EpisodeBatch) -> np.ndarray:
    """Put per-prefix values into the ``(B, C + 1)`` table of :meth:`PrefixScorer.score_prefixes`."""
    width = int(np.asarray(batch.completion_lengths).max(initial=0)) + 1
    out = np.zeros((len(batch), width), dtype=np.float32)
    out[rows, cols] = values
    return out


def check_potentials(values: Any, n: int, source: object) -> np.ndarray:
    """``values`` as float32 ``(n,)``; :class:`FeedbackError` for a wrong shape or a NaN / inf."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise FeedbackError(f"{type(source).__name__} returned shape {arr.shape} potentials for {n} states")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise FeedbackError(
            f"{type(source).__name__} returned {arr[bad[0]]} as the potential of state {int(bad[0])}; "
            "potentials must be finite"
        )
    return arr.astype(np.float32)
