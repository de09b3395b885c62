"""A simulated user who gives *implicit* feedback: clicks, dwell time, quick returns, abandonment.

Users of search engines and recommenders rarely rate anything; they look at a ranked list, click
some results, read them for a while (or come straight back), or leave. :class:`ClickUser` reacts
to one completion, or to a ranked list of ``k`` completions of the same prompt, in that way. Its
behaviour is driven by a hidden *gold utility* per completion (the caller supplies it; the env
``RLHF/ImplicitFeedback-v0`` uses the Sentiment task's VADER score, the gold of
``RLHF/Sentiment-v0`` and ``RLHF/SimulatedHuman-v0``). Per impression (positions ``0..k-1`` from
the top):

1. **Abandonment.** With probability ``abandonment`` the user leaves before looking at anything
   (a distracted user: no examination, no click, whatever the content). An impression with no
   click at all, for this or any other reason, is reported as ``abandoned``.
2. **Examination** (the position-based click model, PBM; Craswell et al. 2008, Joachims et al.
   2017). Position ``i`` is examined with probability ``examination[i]``, by default
   ``(1 / (i + 1)) ** position_bias``: ``position_bias=0`` switches position bias off (every
   position examined), 1 is the common ``1/rank`` curve. Whether a position is examined does not
   depend on what is shown elsewhere, so clicks at different positions are independent given
   their content: the property inverse propensity weighting relies on.
3. **Click.** An examined completion with utility ``u`` is clicked with probability
   ``click_floor + (click_ceiling - click_floor) * sigmoid((u - click_midpoint) / utility_scale)``
   (bad results still get the occasional click, good ones are sometimes skipped).
4. **Satisfaction and dwell time.** After a click the user is satisfied with probability
   ``s(u) = sigmoid((u - satisfaction_midpoint) / utility_scale)``. A satisfied user reads:
   dwell ~ LogNormal with mean ``dwell_satisfied`` seconds; an unsatisfied one (a bad click) comes
   back quickly: dwell ~ LogNormal with mean ``dwell_quick`` seconds (both with log-scale
   ``dwell_sigma``). So the mean dwell, ``(1 - s) * dwell_quick + s * dwell_satisfied``, grows with
   satisfaction, and quick returns mark bad clicks.

The user is seeded: :meth:`ClickUser.simulate_lists` draws from the user's own generator (or one
passed in), and :meth:`ClickUser.simulate_single` draws each impression's randomness from a 64-bit
key (``Episode.seed`` in the envs), so a reaction does not depend on how impressions were batched.
What a real system would log is ``clicked``, ``dwell`` and ``abandoned``; ``examined``,
``satisfied`` and ``left`` are the simulator's hidden state, returned for tests and diagnostics
only (the reward estimators of :mod:`rlhf_envs.feedback.implicit` never read them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rlhf_envs.errors import ConfigError, ConfigValueError
from rlhf_envs.seeding import mix64, uniforms

#: largest list the user scans (a page of results)
MAX_LIST_SIZE = 100
#: uniforms drawn per (impression, position): examine, click, satisfied, dwell (2 for Box-Muller)
_DRAWS = 5


def _number(name: str, value: object, low: float, high: float, low_open: bool = False) -> float:
    """A finite float in ``[low, high]`` (``(low, high]`` if ``low_open``) or a clear error naming it."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"ClickUserConfig.{name} must be a number, got {type(value).__name__} {value!r}")
    x = float(value)
    below = x <= low if low_open else x < low
    if not math.isfinite(x) or below or x > high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ConfigValueError(f"ClickUserConfig.{name} must be a finite number in {interval}, got {value!r}")
    return x


@dataclass(frozen=True)
class ClickUserConfig:
    """How the simulated user examines, clicks and dwells (see the module docstring).

    Attributes:
        list_size: positions on the result page, ``k`` (1 = a single completion), at most 100.
        position_bias: ``eta`` of the examination curve ``(1 / (i + 1)) ** eta`` (0 = none), in [0, 10].
        examination: explicit examination probabilities, one per position (overrides
            ``position_bias``); each in (0, 1].
        abandonment: probability of leaving without examining anything, in [0, 1).
        click_floor, click_ceiling: click probability of an examined result of very low / very high
            utility, ``0 <= floor <= ceiling <= 1``.
        click_midpoint: utility at which an examined result is clicked half-way between the two.
        satisfaction_midpoint: utility at which a click satisfies the user half of the time.
        utility_scale: width of both logistic curves in utility units (> 0).
        dwell_quick: mean dwell (seconds) of a quick return after an unsatisfying click (> 0).
        dwell_satisfied: mean dwell (seconds) after a satisfying click (>= ``dwell_quick``).
        dwell_sigma: log-scale spread of both dwell distributions, in [0, 5].
    """

    list_size: int = 5
    position_bias: float = 1.0
    examination: tuple[float, ...] | None = None
    abandonment: float = 0.1
    click_floor: float = 0.05
    click_ceiling: float = 0.9
    click_midpoint: float = 0.0
    satisfaction_midpoint: float = 0.25
    utility_scale: float = 0.25
    dwell_quick: float = 5.0
    dwell_satisfied: float = 60.0
    dwell_sigma: float = 0.6
    _curve: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        k = self.list_size
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise ConfigError(f"ClickUserConfig.list_size must be an int, got {type(k).__name__} {k!r}")
        if not 1 <= k <= MAX_LIST_SIZE:
            raise ConfigValueError(f"ClickUserConfig.list_size must be in [1, {MAX_LIST_SIZE}], got {k}")
        eta = _number("position_bias", self.position_bias, 0.0, 10.0)
        for name, lo, hi in (
            ("click_floor", 0.0, 1.0),
            ("click_ceiling", 0.0, 1.0),
            ("click_midpoint", -1e6, 1e6),
            ("satisfaction_midpoint", -1e6, 1e6),
            ("dwell_sigma", 0.0, 5.0),
        ):
            _number(name, getattr(self, name), lo, hi)
        _number("abandonment", self.abandonment, 0.0, 1.0)
        if self.abandonment >= 1.0:
            raise ConfigValueError(
                f"ClickUserConfig.abandonment must be below 1 (a user who always leaves gives no feedback), "
                f"got {self.abandonment!r}"
            )
        _number("utility_scale", self.utility_scale, 0.0, 1e6, low_open=True)
        _number("dwell_quick", self.dwell_quick, 0.0, 1e6, low_open=True)
        _number("dwell_satisfied", self.dwell_satisfied, 0.0, 1e6, low_open=True)
        if self.click_floor > self.click_ceiling:
            raise ConfigValueError(
                f"ClickUserConfig.click_floor={self.click_floor} must be at most click_ceiling={self.click_ceiling}"
            )
        if self.dwell_satisfied < self.dwell_quick:
            raise ConfigValueError(
                f"ClickUserConfig.dwell_satisfied={self.dwell_satisfied} must be at least "
                f"dwell_quick={self.dwell_quick} (satisfied users read longer)"
            )
        if self.examination is None:
            curve = (1.0 / np.arange(1, int(k) + 1, dtype=np.float64)) ** eta
        else:
            if isinstance(self.examination, str | bytes) or not isinstance(
                self.examination, Sequence | np.ndarray
            ):
                raise ConfigError(
                    f"ClickUserConfig.examination must be None or a sequence of {k} probabilities, "
                    f"got {self.examination!r}"
                )
            curve = np.array([_number("examination", p, 0.0, 1.0, low_open=True) for p in self.examination])
            if curve.shape != (k,):
                raise ConfigValueError(
                    f"ClickUserConfig.examination has {curve.size} probabilities; it needs one per position "
                    f"(list_size={k})"
                )
        curve.setflags(write=False)
        object.__setattr__(self, "_curve", curve)

    @property
    def examination_curve(self) -> np.ndarray:
        """Probability that each position is examined (given that the user did not abandon)."""
        return self._curve

    def click_probability(self, utility: np.ndarray) -> np.ndarray:
        """P(click | examined, utility)."""
        u = np.asarray(utility, dtype=np.float64)
        attract = _sigmoid((u - self.click_midpoint) / self.utility_scale)
        return self.click_floor + (self.click_ceiling - self.click_floor) * attract

    def satisfaction(self, utility: np.ndarray) -> np.ndarray:
        """P(satisfied | clicked, utility): the weight of the long-dwell component."""
        return _sigmoid(
            (np.asarray(utility, dtype=np.float64) - self.satisfaction_midpoint) / self.utility_scale
        )

    def mean_dwell(self, utility: np.ndarray) -> np.ndarray:
        """Expected dwell (seconds) after a click on a result of this utility."""
        s = self.satisfaction(utility)
        return (1.0 - s) * self.dwell_quick + s * self.dwell_satisfied


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


@dataclass
class Impressions:
    """What happened in ``N`` impressions of up to ``k`` results (arrays of shape ``(N, k)`` unless noted).

    Logged signals: ``positions`` (display position of each result, int64), ``clicked`` (bool),
    ``dwell`` (seconds, 0 where not clicked), ``abandoned`` (``(N,)`` bool: no click at all).
    Hidden state of the simulator (for tests and diagnostics, not for reward estimators):
    ``examined`` (bool), ``satisfied`` (bool, only where clicked), ``left`` (``(N,)`` bool: left
    before examining anything).
    """

    positions: np.ndarray
    clicked: np.ndarray
    dwell: np.ndarray
    abandoned: np.ndarray
    examined: np.ndarray
    satisfied: np.ndarray
    left: np.ndarray


class ClickUser:
    """The simulated user of the module docstring, seeded.

    Args:
        config: a :class:`ClickUserConfig` (``None`` = the defaults).
        seed: seeds the generator :meth:`simulate_lists` draws from when none is passed.
    """

    def __init__(self, config: ClickUserConfig | None = None, seed: int = 0) -> None:
        if config is None:
            config = ClickUserConfig()
        if not isinstance(config, ClickUserConfig):
            raise ConfigError(f"ClickUser: config must be a ClickUserConfig or None, got {config!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"ClickUser: seed must be an int >= 0, got {seed!r}")
        self.config = config
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    @property
    def list_size(self) -> int:
        return int(self.config.list_size)

    def simulate_lists(self, utilities: np.ndarray, rng: np.random.Generator | None = None) -> Impressions:
        """React to ``N`` ranked lists: ``utilities[n, i]`` is the gold utility of the result shown at
        position ``i`` of impression ``n`` (shape ``(N, k')`` with ``k' <= list_size``)."""
        u = self._check_utilities(utilities, ndim=2)
        n, k = u.shape
        if k > self.list_size:
            raise ConfigValueError(
                f"ClickUser: lists of {k} results, but the user's list_size is {self.list_size}"
            )
        rng = self.rng if rng is None else rng
        draws = rng.random((n, k, _DRAWS))
        leave = rng.random(n)
        positions = np.broadcast_to(np.arange(k, dtype=np.int64), (n, k)).copy()
        return self._react(u, positions, draws, leave)

    def simulate_single(self, utilities: np.ndarray, positions: np.ndarray, keys: np.ndarray) -> Impressions:
        """React to ``N`` single results: result ``n`` (utility ``utilities[n]``) is shown at position
        ``positions[n]`` of a page of ``list_size`` results, with randomness from the 64-bit
        ``keys[n]`` alone. Under the position-based model the other results on the page do not change
        how this one is examined, clicked or read, so they need not exist. Arrays of shape ``(N, 1)``."""
        u = self._check_utilities(utilities, ndim=1)
        pos = np.asarray(positions)
        if pos.shape != u.shape or not np.issubdtype(pos.dtype, np.integer):
            raise ConfigError(f"ClickUser: positions must be {u.shape[0]} ints, got {positions!r}"[:300])
        if pos.size and (pos.min() < 0 or pos.max() >= self.list_size):
            raise ConfigValueError(
                f"ClickUser: positions must be in [0, {self.list_size}), got {pos.tolist()}"[:300]
            )
        k64 = mix64(np.asarray(keys).astype(np.uint64) ^ np.uint64(0xC11C_5EED_1818))
        draws = uniforms(k64, _DRAWS + 1)
        return self._react(u[:, None], pos.astype(np.int64)[:, None], draws[:, None, 1:], draws[:, 0])

    def _check_utilities(self, utilities: np.ndarray, ndim: int) -> np.ndarray:
        try:
            u = np.asarray(utilities, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"ClickUser: utilities must be numbers, got {utilities!r}"[:300]) from None
        if u.ndim != ndim:
            raise ConfigError(f"ClickUser: utilities must have {ndim} dimension(s), got shape {u.shape}")
        if not np.all(np.isfinite(u)):
            raise ConfigValueError(
                "ClickUser: utilities must be finite (a NaN or inf gold utility was given)"
            )
        return u

    def _react(
        self, u: np.ndarray, positions: np.ndarray, draws: np.ndarray, leave: np.ndarray
    ) -> Impressions:
        cfg = self.config
        left = leave < cfg.abandonment
        examined = (draws[..., 0] < cfg.examination_curve[positions]) & ~left[:, None]
        clicked = examined & (draws[..., 1] < cfg.click_probability(u))
        satisfied = clicked & (draws[..., 2] < cfg.satisfaction(u))
        # Box-Muller: a standard normal from two uniforms (1 - u keeps the log finite)
        z = np.sqrt(-2.0 * np.log1p(-draws[..., 3])) * np.cos(2.0 * np.pi * draws[..., 4])
        mean = np.where(satisfied, cfg.dwell_satisfied, cfg.dwell_quick)
        sigma = cfg.dwell_sigma
        dwell = np.where(clicked, np.exp(np.log(mean) - 0.5 * sigma**2 + sigma * z), 0.0)
        return Impressions(
            positions=positions,
            clicked=clicked,
            dwell=dwell,
            abandoned=~clicked.any(axis=1),
            examined=examined,
            satisfied=satisfied,
            left=left,
        )
