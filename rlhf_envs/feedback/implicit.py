"""Rewards from implicit feedback: clicks, satisfied clicks, and clicks debiased for position.

A :class:`~rlhf_envs.feedback.click_user.ClickUser` logs clicks, dwell times and positions. Four
estimators turn one logged (result, impression) into a reward:

* ``"raw"``: the click itself (1 or 0). Confounded with position: a result shown low is examined
  less and so clicked less, however good it is.
* ``"satisfied"``: a click followed by a dwell of at least ``dwell_threshold`` seconds (quick
  returns after bad clicks do not count).
* ``"debiased"``: inverse propensity weighting (IPW), ``click / p(position)``, with ``p`` the
  *estimated* relative examination propensities of
  :func:`~rlhf_envs.feedback.propensity.estimate_examination` (from randomised swaps), floored at
  ``clip`` to bound the variance (Joachims et al. 2017; Strehl et al. 2010's clipping). Its
  expectation no longer depends on the position.
* ``"debiased_satisfied"``: the same weighting applied to satisfied clicks.

:class:`ImplicitFeedback` is the feedback model of ``RLHF/ImplicitFeedback-v0``: it shows each
finished episode's completion to the simulated user at a random position of a result page (the
position and the user's randomness come from ``Episode.seed``) and pays the chosen estimator's
reward. The gold utility is the wrapped ``gold`` feedback model's score; it drives the user and is
reported by :meth:`ImplicitFeedback.signals`, never paid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rlhf_envs.errors import ConfigError, ConfigValueError
from rlhf_envs.feedback.base import Episode, FeedbackModel, score_episodes
from rlhf_envs.feedback.click_user import ClickUser
from rlhf_envs.seeding import mix64, uniforms

ESTIMATORS = ("raw", "satisfied", "debiased", "debiased_satisfied")


def check_propensities(propensities: object, list_size: int, where: str) -> np.ndarray:
    """``propensities`` as a read-only float64 array of ``list_size`` finite values >= 0.

    A 0 (a position where the swap experiment saw no click) is allowed: the IPW weight floors every
    propensity at ``clip``."""
    try:
        p = np.array(propensities, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: propensities must be {list_size} numbers, got {propensities!r}"[:300]
        ) from None
    if p.shape != (list_size,):
        raise ConfigValueError(
            f"{where}: propensities must hold one value per position ({list_size}), got shape {p.shape}"
        )
    if not np.all(np.isfinite(p)) or not np.all(p >= 0) or not p.any():
        raise ConfigValueError(f"{where}: propensities must be finite, >= 0 and not all 0, got {p.tolist()}")
    p.setflags(write=False)
    return p


def implicit_rewards(
    estimator: str,
    clicked: np.ndarray,
    dwell: np.ndarray,
    positions: np.ndarray,
    propensities: np.ndarray | None = None,
    dwell_threshold: float = 20.0,
    clip: float = 0.05,
) -> np.ndarray:
    """Per-result rewards (float64, the shape of ``clicked``) from logged signals (see module doc).

    ``propensities`` (needed by the debiased estimators) are relative examination probabilities
    per position (top = 1), e.g. :attr:`PropensityEstimate.relative`.
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    clicked = np.asarray(clicked, dtype=bool)
    if estimator == "raw":
        return clicked.astype(np.float64)
    satisfied = clicked & (np.asarray(dwell, dtype=np.float64) >= dwell_threshold)
    if estimator == "satisfied":
        return satisfied.astype(np.float64)
    if propensities is None:
        raise ConfigError(f"estimator {estimator!r} needs propensities (estimate them from swaps)")
    signal = clicked if estimator == "debiased" else satisfied
    p = np.maximum(np.asarray(propensities, dtype=np.float64)[np.asarray(positions)], clip)
    return signal / p


class ImplicitFeedback:
    """Score episodes by showing them to a simulated user and estimating reward from the reaction.

    Args:
        gold: the feedback model whose score is the user's hidden gold utility.
        user: the :class:`ClickUser` (its ``list_size`` is the page size).
        estimator: one of :data:`ESTIMATORS`.
        propensities: relative examination propensities per position (needed by the debiased
            estimators; estimated from swaps by whoever builds this, never read from ``user``).
        dwell_threshold: seconds of dwell that make a click "satisfied" (> 0).
        clip: floor on the propensities in the IPW weight, in (0, 1].
    """

    def __init__(
        self,
        gold: FeedbackModel,
        user: ClickUser,
        estimator: str = "debiased",
        propensities: Sequence[float] | np.ndarray | None = None,
        dwell_threshold: float = 20.0,
        clip: float = 0.05,
    ) -> None:
        if not callable(getattr(gold, "score", None)):
            raise ConfigError(f"ImplicitFeedback: gold must have a score(episodes) method, got {gold!r}")
        if not isinstance(user, ClickUser):
            raise ConfigError(f"ImplicitFeedback: user must be a ClickUser, got {user!r}")
        if estimator not in ESTIMATORS:
            raise ConfigError(f"ImplicitFeedback: estimator must be one of {ESTIMATORS}, got {estimator!r}")
        for name, value, hi in (("dwell_threshold", dwell_threshold, 1e6), ("clip", clip, 1.0)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0 < value <= hi and math.isfinite(value))
            ):
                raise ConfigValueError(
                    f"ImplicitFeedback: {name} must be a finite number in (0, {hi:g}], got {value!r}"
                )
        if estimator.startswith("debiased") and propensities is None:
            raise ConfigError(
                f"ImplicitFeedback: estimator {estimator!r} needs propensities (estimate them from swaps "
                "with rlhf_envs.feedback.propensity.estimate_examination)"
            )
        self.gold, self.user, self.estimator = gold, user, estimator
        self.propensities = (
            None
            if propensities is None
            else check_propensities(propensities, user.list_size, "ImplicitFeedback")
        )
        self.dwell_threshold, self.clip = float(dwell_threshold), float(clip)

    def signals(self, episodes: Sequence[Episode]) -> dict[str, np.ndarray]:
        """The user's reaction to each episode: ``position``, ``click``, ``dwell``, the ``reward``
        the estimator pays and the hidden ``reward_gold`` (arrays of length ``len(episodes)``)."""
        gold = score_episodes(self.gold, episodes).astype(np.float64)
        seeds = getattr(episodes, "seeds", None)  # an EpisodeBatch holds them as an array
        if seeds is None:
            seeds = [e.seed for e in episodes]
        keys = np.asarray(seeds, dtype=np.int64).astype(np.uint64)
        # the page position: uniform over the page, from the episode's key (a draw of its own)
        k = self.user.list_size
        u = uniforms(mix64(keys ^ np.uint64(0x9051_7104)), 1)[:, 0]
        positions = np.minimum((u * k).astype(np.int64), k - 1)
        imp = self.user.simulate_single(gold, positions, keys)
        clicked, dwell = imp.clicked[:, 0], imp.dwell[:, 0]
        reward = implicit_rewards(
            self.estimator, clicked, dwell, positions, self.propensities, self.dwell_threshold, self.clip
        )
        return {
            "position": positions,
            "click": clicked,
            "dwell": dwell,
            "reward": reward,
            "reward_gold": gold,
        }

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        """The estimator's reward for each episode (float32)."""
        return self.signals(episodes)["reward"].astype(np.float32)
