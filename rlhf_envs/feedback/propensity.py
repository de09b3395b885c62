"""Examination propensities estimated from randomised swaps (Joachims, Swaminathan, Schnabel 2017).

Inverse propensity weighting needs ``P(position i is examined)``, which no log records. The
swap intervention measures it without knowing anything about the results: on a random subset of
impressions, the result the system would show at the top is swapped with the one at a uniformly
random position ``j``; on the others (the controls) nothing changes. Because which impressions are
swapped is random, the logged top results of the swapped and the control impressions are equally
good on average, so::

    CTR(logged top result | shown at j) / CTR(logged top result | shown at the top) = p_j / p_0

(under the position-based model, where a click needs examination and examination depends only on
the position). :func:`swap_positions` draws the interventions, :func:`apply_swaps` applies them
to ranked lists, and :func:`estimate_examination` turns the logged clicks into relative
propensities ``p_j / p_0`` (so ``p_0 = 1``) with delta-method standard errors. Only clicks and the
displayed positions are read; the simulator's examination curve never is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf_envs.errors import ConfigError, ConfigValueError


def swap_positions(
    n_impressions: int, list_size: int, swap_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """For each impression, the position the logged top result is moved to (0 = not swapped).

    With probability ``swap_fraction`` an impression is an intervention, and its partner position
    is uniform over ``1..list_size-1``. ``swap_fraction = (k - 1) / k`` makes every position,
    the top included, equally likely (the fastest calibration); a live system keeps it small.
    """
    if (
        isinstance(n_impressions, bool)
        or not isinstance(n_impressions, int | np.integer)
        or n_impressions < 0
    ):
        raise ConfigError(f"swap_positions: n_impressions must be an int >= 0, got {n_impressions!r}")
    if isinstance(list_size, bool) or not isinstance(list_size, int | np.integer) or list_size < 2:
        raise ConfigValueError(
            f"swap_positions: list_size must be an int >= 2 (swaps need two positions), got {list_size!r}"
        )
    if (
        isinstance(swap_fraction, bool)
        or not isinstance(swap_fraction, int | float)
        or not 0 < swap_fraction < 1
    ):
        raise ConfigValueError(
            f"swap_positions: swap_fraction must be a number in (0, 1), got {swap_fraction!r}"
        )
    swapped = rng.random(n_impressions) < swap_fraction
    partner = rng.integers(1, list_size, size=n_impressions)
    return np.where(swapped, partner, 0).astype(np.int64)


def apply_swaps(ranked: np.ndarray, swap_to: np.ndarray) -> np.ndarray:
    """The displayed lists: row ``n`` of ``ranked`` (any values, e.g. item ids or utilities, in logged
    order) with its entries 0 and ``swap_to[n]`` exchanged."""
    ranked = np.asarray(ranked)
    shown = ranked.copy()
    rows = np.arange(len(ranked))
    shown[rows, 0] = ranked[rows, swap_to]
    shown[rows, swap_to] = ranked[rows, 0]
    return shown


@dataclass(frozen=True)
class PropensityEstimate:
    """Relative examination propensities ``p_j / p_0`` per position (``relative[0] == 1``).

    ``stderr``: delta-method standard error of each ratio (0 at the top); ``n_impressions``: how
    many impressions put the logged top result at each position; ``top_ctr``: its click rate there.
    """

    relative: np.ndarray
    stderr: np.ndarray
    n_impressions: np.ndarray
    top_ctr: np.ndarray


def estimate_examination(swap_to: np.ndarray, top_clicked: np.ndarray, list_size: int) -> PropensityEstimate:
    """Estimate ``p_j / p_0`` from swap interventions.

    Args:
        swap_to: ``(N,)`` where the logged top result was shown (0 = control impression).
        top_clicked: ``(N,)`` whether the logged top result was clicked.
        list_size: number of positions ``k``.

    Raises:
        ConfigValueError: a position with no impressions, or no click on the top result in the
            controls (no ratio can be formed): log more impressions.
    """
    swap_to = np.asarray(swap_to, dtype=np.int64)
    clicks = np.asarray(top_clicked, dtype=np.float64)
    if swap_to.shape != clicks.shape or swap_to.ndim != 1:
        raise ConfigError(
            f"estimate_examination: swap_to and top_clicked must be 1-d arrays of one length, got shapes "
            f"{swap_to.shape} and {clicks.shape}"
        )
    if swap_to.size and (swap_to.min() < 0 or swap_to.max() >= list_size):
        raise ConfigValueError(f"estimate_examination: swap_to must be in [0, {list_size})")
    n = np.bincount(swap_to, minlength=list_size).astype(np.float64)
    c = np.bincount(swap_to, weights=clicks, minlength=list_size)
    if (n == 0).any():
        empty = np.flatnonzero(n == 0).tolist()
        raise ConfigValueError(
            f"estimate_examination: no impression put the top result at position(s) {empty}; log more swaps"
        )
    ctr = c / n
    if ctr[0] == 0:
        raise ConfigValueError(
            "estimate_examination: the top result was never clicked in the control impressions; "
            "log more impressions"
        )
    rel = ctr / ctr[0]
    # delta method for a ratio of independent binomial proportions
    var_rel = rel**2 * ((1 - ctr) / np.maximum(c, 1.0) + (1 - ctr[0]) / c[0])
    var_rel[0] = 0.0
    return PropensityEstimate(rel, np.sqrt(var_rel), n.astype(np.int64), ctr)
