"""Scripted (rule-based) feedback: exact, cheap, and fully reproducible.

Every class here is a :class:`~rlhf_envs.feedback.FeedbackModel`: ``score(episodes)`` returns one
float32 per episode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlhf_envs.feedback.base import Episode


class TargetMatch:
    """Partial credit for reproducing a target token sequence (the toy tasks' reward).

    score = (positions where completion and target agree) / max(len(target), len(completion)),
    with EOS excluded from the completion. It is 1.0 exactly when the completion equals the target,
    so extra, missing and wrong tokens all cost, and a random policy earns little.

    The target ids are read from ``episode.metadata["target_ids"]``.
    """

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        out = np.empty(len(episodes), dtype=np.float32)
        for i, ep in enumerate(episodes):
            target = ep.metadata["target_ids"]
            comp = ep.completion_ids[:-1] if ep.terminated else ep.completion_ids
            denom = max(len(target), len(comp))
            hits = sum(a == b for a, b in zip(comp, target))
            out[i] = hits / denom if denom else 1.0
        return out
