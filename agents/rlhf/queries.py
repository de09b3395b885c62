"""Which candidate pairs to ask the human about: a random subset, or where the ensemble disagrees most.

Christiano et al. (2017) ask about the pairs on which the members of a reward-model ensemble
disagree most about ``P(A > B)``; the loop's first round has no ensemble yet and asks at random.
"""

from __future__ import annotations

import numpy as np

from agents.rlhf.config import SELECTIONS
from rlhf_envs.errors import ConfigError


def select_pairs(
    n: int, pool: int, rule: str, rng: np.random.Generator, disagreement: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the ``n`` pairs to ask about among ``pool`` candidates.

    ``rule="random"``: a uniformly random subset (from ``rng``). ``rule="disagreement"``: the ``n``
    largest ``disagreement`` values (ties broken by the lower index), in decreasing order.
    """
    if rule not in SELECTIONS:
        raise ConfigError(f"selection must be one of {SELECTIONS}, got {rule!r}")
    if not 0 <= n <= pool:
        raise ConfigError(f"cannot select {n} pairs from a pool of {pool}")
    if rule == "random":
        return np.sort(rng.choice(pool, size=n, replace=False))
    if disagreement is None or len(disagreement) != pool:
        raise ConfigError("selection='disagreement' needs one disagreement value per candidate pair")
    d = np.asarray(disagreement, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ConfigError("disagreement values must be finite")
    return np.argsort(-d, kind="stable")[:n]
