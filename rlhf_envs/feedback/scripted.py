"""Scripted (rule-based) feedback: exact, cheap, and fully reproducible.

Every class here is a :class:`~rlhf_envs.feedback.FeedbackModel`: ``score(episodes)`` returns one
float32 per episode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlhf_envs.feedback.base import Episode, EpisodeBatch
from rlhf_envs.tokenization import prefix_mask


class TargetMatch:
    """Partial credit for reproducing a target token sequence (the toy tasks' reward).

    score = (positions where completion and target agree) / max(len(target), len(completion)),
    with EOS excluded from the completion. It is 1.0 exactly when the completion equals the target,
    so extra, missing and wrong tokens all cost, and a random policy earns little.

    The target ids are read from ``episode.metadata["target_ids"]`` (an int array, right-padded
    with -1, or a tuple). On an :class:`EpisodeBatch` the score is computed on the arrays at once;
    there an optional ``metadata["target_lengths"]`` (the number of target ids per row) saves a
    reduction.
    """

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        if isinstance(episodes, EpisodeBatch):
            return self._score_batch(episodes)
        out = np.empty(len(episodes), dtype=np.float32)
        for i, ep in enumerate(episodes):
            target = np.asarray(ep.metadata["target_ids"])
            target = target[target >= 0]
            comp = np.asarray(ep.completion_ids[:-1] if ep.terminated else ep.completion_ids)
            n = min(len(target), len(comp))
            denom = max(len(target), len(comp))
            out[i] = (target[:n] == comp[:n]).sum() / denom if denom else 1.0
        return out

    @staticmethod
    def _score_batch(batch: EpisodeBatch) -> np.ndarray:
        meta = batch.metadata
        target = np.asarray(meta["target_ids"])
        comp = batch.completion_ids
        comp_len = batch.completion_lengths - batch.terminated
        width = min(target.shape[1], comp.shape[1])
        if comp.shape[1] == target.shape[1]:
            hits = comp == target  # (contiguous arrays compare fastest)
        else:
            hits = comp[:, :width] == target[:, :width]
        hits &= prefix_mask(comp_len, width)
        target_len = meta.get("target_lengths")  # optional: saves counting the ids >= 0
        if target_len is None:
            target_len = np.add.reduce(target >= 0, axis=1)
        denom = np.maximum(target_len, comp_len)
        matched = np.add.reduce(hits, axis=1)
        if denom[denom.argmin()] > 0:
            return (matched / denom).astype(np.float32)
        score = matched / np.maximum(denom, 1)
        score[denom == 0] = 1.0  # an empty target matched by an empty completion is perfect
        return score.astype(np.float32)


# The rule library lives in rules.py (one idea per file); it is part of this module's public surface.
from rlhf_envs.feedback.rules import (  # noqa: E402
    BLEU,
    ROUGE,
    Constraint,
    DistinctN,
    FunctionFeedback,
    HardConstraints,
    KeywordCoverage,
    RegexMatch,
    Sentiment,
    StopAtWordCount,
    TargetLength,
    WeightedSum,
)

__all__ = [
    "BLEU",
    "ROUGE",
    "Constraint",
    "DistinctN",
    "FunctionFeedback",
    "HardConstraints",
    "KeywordCoverage",
    "RegexMatch",
    "Sentiment",
    "StopAtWordCount",
    "TargetLength",
    "TargetMatch",
    "WeightedSum",
]
