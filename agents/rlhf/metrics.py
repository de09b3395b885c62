"""What the loop measures besides rewards: how well the proxy reward orders episodes, how noisy the labels are.

The *proxy reward* is the learned reward model's score; the *gold reward* is the task's hidden
utility that the (simulated) human's answers are noisy views of.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def concordance(proxy: np.ndarray, gold: np.ndarray) -> float:
    """Share of episode pairs with different gold values that the ``proxy`` rewards order like ``gold``."""
    p, g = np.asarray(proxy, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    i, j = np.triu_indices(len(g), 1)
    keep = g[i] != g[j]
    if not keep.any():
        return float("nan")
    agree = np.sign(p[i] - p[j]) == np.sign(g[i] - g[j])
    return float(agree[keep].mean())


def label_agreement(rec: dict[str, Any]) -> float:
    """Share of the round's decisive answers that agree with the gold ordering (a noise check).

    For a round of ratings (``rec["kind"] == "rating"``): the :func:`concordance` of the ratings
    with the gold values of the rated episodes (skipped ratings left out).
    """
    if rec.get("kind") == "rating":
        kept = [(y, g) for y, g in zip(rec["labels"], rec["gold_a"], strict=True) if y is not None]
        if len(kept) < 2:
            return float("nan")
        ys, gs = zip(*kept, strict=True)
        return concordance(np.asarray(ys), np.asarray(gs))
    hits = []
    for p, ga, gb in zip(rec["labels"], rec["gold_a"], rec["gold_b"], strict=True):
        if p is None or p == 0.5 or ga == gb:
            continue
        hits.append((p > 0.5) == (ga > gb))
    return float(np.mean(hits)) if hits else float("nan")
