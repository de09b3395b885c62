"""A simulated human: a hidden gold utility seen through a configurable, imperfect rater.

Real preference data is noisy in known ways. :class:`SimulatedHuman` reproduces them on top of any
feedback model used as the *gold utility* ``U`` (a scripted rule, a reward model, a composite), so
RLHF algorithms can be studied where the truth is known.

Pairwise answers (:meth:`SimulatedHuman.compare`) pass through, in this order:

1. B-Pref's teacher (Lee et al. 2021), in B-Pref's order:
   *skip* (both utilities below ``skip * scale``: no label), *equal* (``|U_A - U_B| < equal * scale``:
   a tie, applied last so nothing overrides it), *myopia* (token ``t`` of an ``H``-token completion
   weighted ``myopia_discount**(H-1-t)``; per-token rewards are the gold's increments over word
   prefixes), *Boltzmann choice* (``P(A) = sigmoid(rationality * (U_A - U_B) / scale)``, logit
   clipped at 50; ``rationality=None`` is a perfectly rational oracle, which answers an exact tie
   with "tie"), *mistake* (flip with probability ``mistake_rate``);
2. a *length bias*: with probability ``length_bias`` the longer text (in words) wins, whatever
   its utility (AlpacaFarm's humans preferred the longer output 63.6% of the time);
3. a *position bias*: the two texts are shown in a random order (recorded in ``shown_first``) and
   with probability ``position_bias`` the rater picks the one shown first;
4. AlpacaFarm-style *label replacement*: with probability ``2 * label_noise`` the label is replaced
   by a uniformly random one (so ``label_noise`` is the share of labels that end up flipped).

A *keyword (flattery) bias* adds ``keyword_bias`` to the rater's utility per occurrence of a
flattery word, before step 1. Likert ratings (:meth:`SimulatedHuman.rate`, 1 to 5) use the same
utility with an ordered-logit version of the Boltzmann choice, then mistakes and label replacement
(as uniformly random ratings).

A *pool* of raters (each a :class:`RaterConfig`, optionally with its own gold utility) answers
queries routed by a seeded hash of the query's content, as in AlpacaFarm's 13-annotator pool.

Every random draw is a counter-based function of ``seed`` and the query number (for ``compare`` and
``rate``) or of ``Episode.seed`` (for ``score``, the env interface), so answers are reproducible from
the seed and do not depend on how queries were batched. A ledger counts queries, money and rater
time; a ``budget`` or ``max_queries`` refuses queries once spent (raising
:class:`~rlhf_envs.errors.BudgetExhaustedError`, charging nothing). Delayed labels are available
through :meth:`SimulatedHuman.request_comparisons` / :meth:`SimulatedHuman.collect`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from rlhf_envs.errors import BudgetExhaustedError, ConfigError, FeedbackError
from rlhf_envs.feedback.base import Episode, FeedbackModel, score_episodes

DEFAULT_FLATTERY = ("thanks", "thank", "please", "friend", "kindly", "great question", "wonderful question")
LOGIT_CLIP = 50.0


class Label(IntEnum):
    """A pairwise answer."""

    A = 0
    B = 1
    TIE = 2
    SKIP = 3


@dataclass(frozen=True)
class RaterConfig:
    """How one rater turns utilities into answers (all fields default to a perfect oracle).

    Attributes:
        rationality: Boltzmann rationality (B-Pref's beta, an inverse temperature) on utilities
            divided by the human's ``scale``; ``None`` = deterministic (perfectly rational).
        myopia_discount: B-Pref's gamma: token ``t`` of ``H`` counts ``myopia_discount**(H-1-t)``
            (1 = no myopia).
        mistake_rate: B-Pref's epsilon: probability of a mistake (the label is flipped).
        skip: skip a query when both utilities are below ``skip * scale`` (``None`` = never).
        equal: answer "tie" when ``|U_A - U_B| < equal * scale``.
        length_bias: probability the longer text wins regardless of utility.
        position_bias: probability the text shown first wins regardless of utility.
        label_noise: AlpacaFarm's ``p``: with probability ``2p`` the label becomes uniformly random.
        keyword_bias: utility added per occurrence of a flattery keyword.
        keywords: the flattery keywords (whole words or phrases, case-insensitive).
        likert_cuts: the four utility cut points (in units of ``scale``) between ratings 1..5.
        gold: this rater's own utility (``None`` = the human's shared gold utility).
        name: shown in reports.

    The first three fields were called ``beta``, ``gamma`` and ``epsilon`` (B-Pref's symbols) up to
    version 0.1.0, names that clash with the RL discount and the KL coefficient. The old keywords
    and attributes still work and warn (:data:`FORMER_FIELD_NAMES`); cache keys are computed from
    :meth:`cache_repr`, which keeps the old names, so cached proxies stay valid.
    """

    rationality: float | None = None
    myopia_discount: float = 1.0
    mistake_rate: float = 0.0
    skip: float | None = None
    equal: float = 0.0
    length_bias: float = 0.0
    position_bias: float = 0.0
    label_noise: float = 0.0
    keyword_bias: float = 0.0
    keywords: tuple[str, ...] = DEFAULT_FLATTERY
    likert_cuts: tuple[float, float, float, float] = (-0.6, -0.2, 0.2, 0.6)
    gold: Any = None
    name: str = "rater"

    def __post_init__(self) -> None:
        def prob(n: str, v: float, hi: float = 1.0) -> None:
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= hi:
                raise ConfigError(f"RaterConfig.{n} must be a number in [0, {hi}], got {v!r}")

        r = self.rationality
        if r is not None and (
            isinstance(r, bool) or not isinstance(r, int | float) or not (r > 0 and math.isfinite(r))
        ):
            raise ConfigError(
                f"RaterConfig.rationality must be None (oracle) or a finite number > 0, got {r!r}"
            )
        if not (isinstance(self.myopia_discount, int | float) and 0.0 < self.myopia_discount <= 1.0):
            raise ConfigError(f"RaterConfig.myopia_discount must be in (0, 1], got {self.myopia_discount!r}")
        prob("mistake_rate", self.mistake_rate)
        prob("length_bias", self.length_bias)
        prob("position_bias", self.position_bias)
        prob("label_noise", self.label_noise, 0.5)
        if self.skip is not None and not (isinstance(self.skip, int | float) and math.isfinite(self.skip)):
            raise ConfigError(f"RaterConfig.skip must be None or a finite number, got {self.skip!r}")
        if isinstance(self.equal, bool) or not (
            isinstance(self.equal, int | float) and self.equal >= 0 and math.isfinite(self.equal)
        ):
            raise ConfigError(f"RaterConfig.equal must be a finite number >= 0, got {self.equal!r}")
        if not (isinstance(self.keyword_bias, int | float) and math.isfinite(self.keyword_bias)):
            raise ConfigError(f"RaterConfig.keyword_bias must be a finite number, got {self.keyword_bias!r}")
        try:
            cuts = tuple(float(c) for c in self.likert_cuts)
        except (TypeError, ValueError):
            cuts = ()
        if (
            len(cuts) != 4
            or not all(math.isfinite(c) for c in cuts)
            or any(b <= a for a, b in zip(cuts, cuts[1:], strict=False))
        ):
            raise ConfigError(
                f"RaterConfig.likert_cuts must be 4 increasing finite numbers, got {self.likert_cuts!r}"
            )
        if self.gold is not None and not hasattr(self.gold, "score"):
            raise ConfigError(f"RaterConfig.gold must be a feedback model or None, got {self.gold!r}")

    def cache_repr(self) -> str:
        """The dataclass repr under the field names of version 0.1.0 (``beta``, ``gamma``,
        ``epsilon``): what cache keys hash, so renaming the fields invalidated no cached proxy."""
        former = {new: old for old, new in FORMER_FIELD_NAMES.items()}
        body = ", ".join(
            f"{former.get(f.name, f.name)}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.repr
        )
        return f"{type(self).__qualname__}({body})"

    @property
    def beta(self) -> float | None:
        """Deprecated: :attr:`rationality`."""
        _warn_former_name("beta")
        return self.rationality

    @property
    def gamma(self) -> float:
        """Deprecated: :attr:`myopia_discount`."""
        _warn_former_name("gamma")
        return self.myopia_discount

    @property
    def epsilon(self) -> float:
        """Deprecated: :attr:`mistake_rate`."""
        _warn_former_name("epsilon")
        return self.mistake_rate


#: RaterConfig fields renamed after version 0.1.0: former name -> current name
FORMER_FIELD_NAMES: dict[str, str] = {
    "beta": "rationality",
    "gamma": "myopia_discount",
    "epsilon": "mistake_rate",
}


def _warn_former_name(old: str, stacklevel: int = 3) -> None:
    warnings.warn(
        f"RaterConfig.{old} is now RaterConfig.{FORMER_FIELD_NAMES[old]} (B-Pref's symbols clashed with the RL "
        "discount and the KL coefficient); the old name will be removed",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def _accept_former_names(init: Any) -> Any:
    """Wrap the dataclass ``__init__`` so the former keywords map to the new fields, with a warning."""

    @functools.wraps(init)
    def __init__(self: RaterConfig, *args: Any, **kwargs: Any) -> None:
        for old, new in FORMER_FIELD_NAMES.items():
            if old in kwargs:
                if new in kwargs:
                    raise ConfigError(f"RaterConfig: {old}= is the former name of {new}=; give only {new}=")
                _warn_former_name(old)
                kwargs[new] = kwargs.pop(old)
        init(self, *args, **kwargs)

    return __init__


RaterConfig.__init__ = _accept_former_names(RaterConfig.__init__)  # type: ignore[method-assign]


#: B-Pref's teachers (Lee et al. 2021), with its parameter values, and ``crowd-2014``: a rater fitted
#: to real people (Hutto & Gilbert 2014 ratings, ``benchmarks/human_calibration.py``): with the gold's
#: range mapped onto [-1, 1] (``scale=4`` for the -4..+4 mean rating), its expected label matches one
#: real rater's P(agree) + P(tie)/2 to 0.002 RMS over gap bins. Real raters also tie (18% of pairs);
#: this rater never does, with the same expected label.
PRESETS: dict[str, RaterConfig] = {
    "Oracle": RaterConfig(name="Oracle"),
    "Stoc": RaterConfig(rationality=1.0, name="Stoc"),
    "Mistake": RaterConfig(mistake_rate=0.1, name="Mistake"),
    "Skip": RaterConfig(skip=0.1, name="Skip"),
    "Myopic": RaterConfig(myopia_discount=0.9, name="Myopic"),
    "Equal": RaterConfig(equal=0.1, name="Equal"),
    "crowd-2014": RaterConfig(rationality=5.625, mistake_rate=0.0028, name="crowd-2014"),
}


def preset(name: str, **overrides: Any) -> RaterConfig:
    """A rater preset by name (B-Pref's ``Oracle``, ``Stoc``, ``Mistake``, ``Skip``, ``Myopic``,
    ``Equal``, or ``crowd-2014`` fitted to real raters; case-insensitive), optionally with fields
    overridden."""
    lookup = {k.lower(): v for k, v in PRESETS.items()}
    if not isinstance(name, str) or name.lower() not in lookup:
        raise ConfigError(f"unknown rater preset {name!r}; known presets: {', '.join(PRESETS)}")
    for old in set(overrides) & set(FORMER_FIELD_NAMES):
        new = FORMER_FIELD_NAMES[old]
        if new in overrides:
            raise ConfigError(f"preset: {old}= is the former name of {new}=; give only {new}=")
        _warn_former_name(old, stacklevel=2)
        overrides[new] = overrides.pop(old)
    return dataclasses.replace(lookup[name.lower()], **overrides)


def alpacafarm_pool(n: int = 13, label_noise: float = 0.25, seed: int = 0) -> list[RaterConfig]:
    """A pool of ``n`` raters that disagree, in the spirit of AlpacaFarm's simulated annotators.

    Each rater gets its own rationality (log-uniform in [1, 20]), length bias (uniform in
    [0, 0.3]) and position bias (uniform in [0, 0.15]); all share AlpacaFarm's label replacement
    ``p`` (0.25 by default).
    """
    rng = np.random.default_rng([seed, 13])
    return [
        RaterConfig(
            rationality=float(np.exp(rng.uniform(0.0, np.log(20.0)))),
            length_bias=float(rng.uniform(0.0, 0.3)),
            position_bias=float(rng.uniform(0.0, 0.15)),
            label_noise=label_noise,
            name=f"annotator{i}",
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------------
# Counter-based randomness (SplitMix64): uniforms as a pure function of a 64-bit key
# ---------------------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise (uint64 arithmetic wraps, as it should)."""
    x = np.atleast_1d(np.asarray(x, dtype=np.uint64))
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


#: domain tags of the three random streams (their values are part of every recorded answer)
STREAM_COMPARE, STREAM_RATE, STREAM_SCORE = 1, 2, 3


def _keys(seed: int, values: np.ndarray, domain: int) -> np.ndarray:
    """One 64-bit key per value, from the seed and a domain tag (so streams never collide)."""
    with np.errstate(over="ignore"):
        base = _mix(np.uint64(seed % 2**64) + np.uint64(domain) * _GOLDEN)
        return _mix(base ^ _mix(np.asarray(values).astype(np.uint64) + _GOLDEN))


def _uniforms(keys: np.ndarray, n: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        steps = (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        bits = _mix(np.asarray(keys, dtype=np.uint64)[:, None] + steps)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


# ---------------------------------------------------------------------------------------------------
# Answers and accounting
# ---------------------------------------------------------------------------------------------------


@dataclass
class Comparisons:
    """Answers to a batch of pairwise queries.

    Attributes:
        labels: int8 codes of :class:`Label` (0 = A, 1 = B, 2 = tie, 3 = skip).
        raters: index of the rater in the pool who answered each query.
        shown_first: 0 if A was shown first, 1 if B was.
        queries: global query numbers (tickets).
    """

    labels: np.ndarray
    raters: np.ndarray
    shown_first: np.ndarray
    queries: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def prob_a(self) -> list[float | None]:
        """Per query, the probability that A is preferred (1, 0, 0.5) or ``None`` for a skip: the
        ``labels`` argument :meth:`RewardModel.fit_preferences` takes."""
        table = {0: 1.0, 1: 0.0, 2: 0.5, 3: None}
        return [table[int(x)] for x in self.labels]


@dataclass
class Ratings:
    """Answers to a batch of rating queries: ``ratings`` (int8, 1..5), ``raters``, ``queries``."""

    ratings: np.ndarray
    raters: np.ndarray
    queries: np.ndarray

    def __len__(self) -> int:
        return len(self.ratings)


@dataclass
class Ledger:
    """What the feedback has cost so far."""

    queries: int = 0
    comparisons: int = 0
    ratings: int = 0
    money: float = 0.0
    rater_seconds: float = 0.0


@dataclass
class _Pending:
    ready_query: int
    ready_step: int
    kind: str
    index: int
    answer: Any = field(repr=False)


# ---------------------------------------------------------------------------------------------------
# The simulated human
# ---------------------------------------------------------------------------------------------------


class SimulatedHuman:
    """A hidden gold utility seen through one rater or a pool of raters.

    Args:
        gold: the gold utility (any feedback model; higher is better).
        rater: a preset name, a :class:`RaterConfig`, or a list of them (a pool; each query goes to
            the rater chosen by a seeded hash of its content).
        seed: the seed every random draw derives from.
        scale: the utility unit: thresholds (``skip``, ``equal``, ``likert_cuts``) are multiples of
            it and ``rationality`` acts on utility differences divided by it. Set it to the gold's typical
            spread (1.0 suits VADER's [-1, 1]).
        cost_per_comparison, cost_per_rating: money per query.
        seconds_per_query, seconds_per_word: rater time per query, plus reading time per word shown.
        budget: money available (``None`` = unlimited); ``max_queries``: query cap.
        delay_queries, delay_steps: answers requested with :meth:`request_comparisons` /
            :meth:`request_ratings` become available this many queries / :meth:`advance` steps later.
    """

    def __init__(
        self,
        gold: FeedbackModel,
        rater: str | RaterConfig | Sequence[str | RaterConfig] = "Oracle",
        *,
        seed: int = 0,
        scale: float = 1.0,
        cost_per_comparison: float = 0.0,
        cost_per_rating: float = 0.0,
        seconds_per_query: float = 0.0,
        seconds_per_word: float = 0.0,
        budget: float | None = None,
        max_queries: int | None = None,
        delay_queries: int = 0,
        delay_steps: int = 0,
    ) -> None:
        if not hasattr(gold, "score"):
            raise ConfigError(f"gold must be a feedback model with score(episodes), got {gold!r}")
        raters = [rater] if isinstance(rater, str | RaterConfig) else list(rater)
        if not raters:
            raise ConfigError("rater pool must not be empty")
        self.raters: list[RaterConfig] = []
        for r in raters:
            if isinstance(r, str):
                r = preset(r)
            if not isinstance(r, RaterConfig):
                raise ConfigError(f"raters must be preset names or RaterConfig, got {r!r}")
            self.raters.append(r)
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise ConfigError(f"scale must be a finite number > 0, got {scale!r}")
        for n, v in (
            ("cost_per_comparison", cost_per_comparison),
            ("cost_per_rating", cost_per_rating),
            ("seconds_per_query", seconds_per_query),
            ("seconds_per_word", seconds_per_word),
        ):
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"{n} must be a finite number >= 0, got {v!r}")
        if budget is not None and not (isinstance(budget, int | float) and budget >= 0):
            raise ConfigError(f"budget must be None or a number >= 0, got {budget!r}")
        for n, v in (
            ("max_queries", max_queries),
            ("delay_queries", delay_queries),
            ("delay_steps", delay_steps),
        ):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(f"{n} must be a non-negative int, got {v!r}")
        self.gold, self.seed, self.scale = gold, int(seed), float(scale)
        self.cost_per_comparison, self.cost_per_rating = float(cost_per_comparison), float(cost_per_rating)
        self.seconds_per_query, self.seconds_per_word = float(seconds_per_query), float(seconds_per_word)
        self.budget, self.max_queries = budget, max_queries
        self.delay_queries, self.delay_steps = delay_queries, delay_steps
        self.ledger = Ledger()
        self.step_count = 0
        self._pending: list[_Pending] = []
        self._kw_patterns = [
            re.compile("|".join(r"(?<!\w)" + re.escape(k) + r"(?!\w)" for k in r.keywords), re.IGNORECASE)
            if r.keywords
            else None
            for r in self.raters
        ]

    # -- utilities --------------------------------------------------------------------------------

    def gold_utility(self, episodes: Sequence[Episode]) -> np.ndarray:
        """The shared gold utility (float64), checked: a NaN from the gold is an error naming the episode."""
        return score_episodes(self.gold, list(episodes)).astype(np.float64)

    def _rater_utility(self, r: int, episodes: list[Episode], myopic: bool) -> np.ndarray:
        """Rater ``r``'s utility: its gold (+ flattery bonus), myopically discounted if asked."""
        cfg = self.raters[r]
        gold = cfg.gold if cfg.gold is not None else self.gold
        if myopic and cfg.myopia_discount < 1.0:
            u = np.array([self._myopic(gold, ep, cfg.myopia_discount) for ep in episodes])
        else:
            u = score_episodes(gold, episodes).astype(np.float64)
        if cfg.keyword_bias and self._kw_patterns[r] is not None:
            counts = np.array([len(self._kw_patterns[r].findall(ep.completion)) for ep in episodes])
            u = u + cfg.keyword_bias * counts
        return u

    @staticmethod
    def _myopic(gold: FeedbackModel, ep: Episode, discount: float) -> float:
        """sum_t discount**(H-1-t) * r_t with r_t = U(first t+1 words) - U(first t words)."""
        ends = [m.end() for m in re.finditer(r"\S+", ep.completion)]
        if not ends:
            return float(score_episodes(gold, [ep])[0])
        prefixes = [dataclasses.replace(ep, completion=ep.completion[:e]) for e in [0, *ends]]
        u = score_episodes(gold, prefixes).astype(np.float64)
        r = np.diff(u)
        h = len(r)
        return float(u[0] + np.sum(discount ** (h - 1 - np.arange(h)) * r))

    def _route(self, contents: list[str]) -> np.ndarray:
        if len(self.raters) == 1:
            return np.zeros(len(contents), dtype=np.int64)
        out = np.empty(len(contents), dtype=np.int64)
        salt = self.seed.to_bytes(8, "little", signed=True)
        for i, c in enumerate(contents):
            h = hashlib.blake2b(c.encode(), digest_size=8, key=salt).digest()
            out[i] = int.from_bytes(h, "little") % len(self.raters)
        return out

    # -- accounting -------------------------------------------------------------------------------

    def _charge(self, kind: str, n: int, episodes: Sequence[Episode]) -> None:
        cost = (self.cost_per_comparison if kind == "comparison" else self.cost_per_rating) * n
        if self.max_queries is not None and self.ledger.queries + n > self.max_queries:
            raise BudgetExhaustedError(
                f"SimulatedHuman refuses {n} {kind} queries: {self.ledger.queries} of max_queries="
                f"{self.max_queries} used, {self.max_queries - self.ledger.queries} left; nothing was charged"
            )
        if self.budget is not None and self.ledger.money + cost > self.budget + 1e-9:
            left = self.budget - self.ledger.money
            raise BudgetExhaustedError(
                f"SimulatedHuman refuses {n} {kind} queries costing {cost:g}: {self.ledger.money:g} of the "
                f"budget {self.budget:g} spent, {left:g} left; nothing was charged"
            )
        words = sum(len(ep.completion.split()) + len(ep.prompt.split()) for ep in episodes)
        self.ledger.queries += n
        self.ledger.money += cost
        self.ledger.rater_seconds += self.seconds_per_query * n + self.seconds_per_word * words
        if kind == "comparison":
            self.ledger.comparisons += n
        else:
            self.ledger.ratings += n

    def remaining_budget(self) -> float:
        """Money left (``inf`` without a budget)."""
        return math.inf if self.budget is None else self.budget - self.ledger.money

    # -- pairwise ---------------------------------------------------------------------------------

    @staticmethod
    def _check_pair(a: Sequence[Episode], b: Sequence[Episode]) -> tuple[list[Episode], list[Episode]]:
        a, b = list(a), list(b)
        if len(a) != len(b):
            raise FeedbackError(f"compare: {len(a)} A episodes but {len(b)} B episodes; they must pair up")
        for side, eps in (("A", a), ("B", b)):
            for i, ep in enumerate(eps):
                if not isinstance(ep, Episode):
                    raise FeedbackError(f"compare: {side}[{i}] is {type(ep).__name__}, not an Episode")
                if not ep.prompt and not ep.completion:
                    raise FeedbackError(
                        f"compare: {side}[{i}] has an empty prompt and completion; nothing to judge"
                    )
        return a, b

    def compare(self, a: Sequence[Episode], b: Sequence[Episode]) -> Comparisons:
        """Answer pairwise queries "which is better, ``a[i]`` or ``b[i]``?" at once.

        Returns a :class:`Comparisons`. Raises :class:`~rlhf_envs.errors.BudgetExhaustedError` (and
        charges nothing) if the batch does not fit in the budget.
        """
        a, b = self._check_pair(a, b)
        n = len(a)
        self._charge("comparison", n, a + b)
        queries = np.arange(self.ledger.queries - n, self.ledger.queries, dtype=np.int64)
        return self._answer_pairs(a, b, queries)

    def _answer_pairs(self, a: list[Episode], b: list[Episode], queries: np.ndarray) -> Comparisons:
        n = len(a)
        contents = [
            "\x1f".join(sorted((x.prompt + x.completion, y.prompt + y.completion)))
            for x, y in zip(a, b, strict=True)
        ]
        raters = self._route(contents)
        u = _uniforms(_keys(self.seed, queries, STREAM_COMPARE), 7)
        labels = np.empty(n, dtype=np.int8)
        shown = (u[:, 5] < 0.5).astype(np.int8)
        for r in np.unique(raters):
            idx = np.flatnonzero(raters == r)
            labels[idx] = self._label(int(r), [a[i] for i in idx], [b[i] for i in idx], u[idx], shown[idx])
        return Comparisons(labels, raters, shown, queries)

    def _label(
        self, r: int, a: list[Episode], b: list[Episode], u: np.ndarray, shown: np.ndarray
    ) -> np.ndarray:
        cfg, s = self.raters[r], self.scale
        ua = self._rater_utility(r, a, myopic=False)
        ub = self._rater_utility(r, b, myopic=False)
        # 1. skip: both below the threshold
        skip = np.zeros(len(a), bool) if cfg.skip is None else np.maximum(ua, ub) < cfg.skip * s
        # 2. equal (decided on the true utilities, applied last)
        equal = np.abs(ua - ub) < cfg.equal * s
        # 3. myopia
        if cfg.myopia_discount < 1.0:
            ua = self._rater_utility(r, a, myopic=True)
            ub = self._rater_utility(r, b, myopic=True)
        # 4. choice
        if cfg.rationality is None:
            lab = np.where(ua > ub, Label.A, np.where(ua < ub, Label.B, Label.TIE)).astype(np.int8)
        else:
            logit = np.clip(cfg.rationality * (ua - ub) / s, -LOGIT_CLIP, LOGIT_CLIP)
            lab = np.where(u[:, 0] < 1.0 / (1.0 + np.exp(-logit)), Label.A, Label.B).astype(np.int8)
        # 5. mistake
        flip = (u[:, 1] < cfg.mistake_rate) & (lab != Label.TIE)
        lab[flip] = 1 - lab[flip]
        lab[equal] = Label.TIE
        # length bias: the longer text wins
        if cfg.length_bias:
            la = np.array([len(x.completion.split()) for x in a])
            lb = np.array([len(x.completion.split()) for x in b])
            hit = (u[:, 2] < cfg.length_bias) & (la != lb)
            lab[hit] = np.where(la[hit] > lb[hit], Label.A, Label.B)
        # position bias: the text shown first wins
        if cfg.position_bias:
            hit = u[:, 3] < cfg.position_bias
            lab[hit] = shown[hit]
        # AlpacaFarm label replacement: with probability 2p a uniformly random label
        if cfg.label_noise:
            hit = u[:, 4] < 2 * cfg.label_noise
            lab[hit] = (u[hit, 6] < 0.5).astype(np.int8)
        lab[skip] = Label.SKIP
        return lab

    # -- ratings ----------------------------------------------------------------------------------

    def rate(self, episodes: Sequence[Episode]) -> Ratings:
        """Likert ratings 1 (worst) to 5 (best), one per episode; charged like comparisons."""
        eps = self._check_single(episodes, "rate")
        n = len(eps)
        self._charge("rating", n, eps)
        queries = np.arange(self.ledger.queries - n, self.ledger.queries, dtype=np.int64)
        return self._answer_ratings(eps, _keys(self.seed, queries, STREAM_RATE), queries)

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        """The env interface: each episode's Likert rating as float32, its noise drawn from
        ``Episode.seed`` (so a score does not depend on batching). Charged as ratings."""
        eps = self._check_single(episodes, "score")
        self._charge("rating", len(eps), eps)
        seeds = np.array([ep.seed for ep in eps], dtype=np.int64).astype(np.uint64)
        return self._answer_ratings(
            eps, _keys(self.seed, seeds, STREAM_SCORE), np.full(len(eps), -1)
        ).ratings.astype(np.float32)

    @staticmethod
    def _check_single(episodes: Sequence[Episode], what: str) -> list[Episode]:
        eps = list(episodes)
        for i, ep in enumerate(eps):
            if not isinstance(ep, Episode):
                raise FeedbackError(f"{what}: item {i} is {type(ep).__name__}, not an Episode")
            if not ep.prompt and not ep.completion:
                raise FeedbackError(
                    f"{what}: episode {i} has an empty prompt and completion; nothing to judge"
                )
        return eps

    def _answer_ratings(self, eps: list[Episode], keys: np.ndarray, queries: np.ndarray) -> Ratings:
        raters = self._route([ep.prompt + ep.completion for ep in eps])
        u = _uniforms(keys, 5)
        out = np.empty(len(eps), dtype=np.int8)
        for r in np.unique(raters):
            idx = np.flatnonzero(raters == r)
            cfg = self.raters[int(r)]
            util = self._rater_utility(int(r), [eps[i] for i in idx], myopic=True) / self.scale
            cuts = np.asarray(cfg.likert_cuts)
            if cfg.rationality is None:
                rating = 1 + (util[:, None] > cuts[None, :]).sum(1)
            else:  # ordered logit: P(rating > k) = sigmoid(rationality * (u - c_k)), decreasing in k
                p_above = 1.0 / (
                    1.0
                    + np.exp(
                        -np.clip(cfg.rationality * (util[:, None] - cuts[None, :]), -LOGIT_CLIP, LOGIT_CLIP)
                    )
                )
                rating = 1 + (u[idx, 0:1] < p_above).sum(1)
            uniform_rating = 1 + np.minimum((u[idx, 3] * 5).astype(np.int64), 4)
            wrong = (u[idx, 1] < cfg.mistake_rate) | (u[idx, 2] < 2 * cfg.label_noise)
            out[idx] = np.where(wrong, uniform_rating, rating)
        return Ratings(out, raters, queries)

    # -- delayed answers --------------------------------------------------------------------------

    def request_comparisons(self, a: Sequence[Episode], b: Sequence[Episode]) -> np.ndarray:
        """Ask pairwise queries whose answers arrive later (see ``delay_queries``, ``delay_steps``).

        Returns the query numbers (tickets); the answers are decided now (so reproducible) but
        released by :meth:`collect` only once ``delay_queries`` more queries have been asked and
        ``delay_steps`` steps have passed (:meth:`advance`).
        """
        res = self.compare(a, b)
        for j, q in enumerate(res.queries):
            one = Comparisons(
                res.labels[j : j + 1],
                res.raters[j : j + 1],
                res.shown_first[j : j + 1],
                res.queries[j : j + 1],
            )
            self._pending.append(
                _Pending(
                    int(q) + 1 + self.delay_queries,
                    self.step_count + self.delay_steps,
                    "comparison",
                    int(q),
                    one,
                )
            )
        return res.queries

    def request_ratings(self, episodes: Sequence[Episode]) -> np.ndarray:
        """Delayed version of :meth:`rate`; returns tickets."""
        res = self.rate(episodes)
        for j, q in enumerate(res.queries):
            one = Ratings(res.ratings[j : j + 1], res.raters[j : j + 1], res.queries[j : j + 1])
            self._pending.append(
                _Pending(
                    int(q) + 1 + self.delay_queries, self.step_count + self.delay_steps, "rating", int(q), one
                )
            )
        return res.queries

    def advance(self, steps: int = 1) -> None:
        """Let ``steps`` time steps pass (for ``delay_steps``)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ConfigError(f"steps must be a non-negative int, got {steps!r}")
        self.step_count += steps

    def collect(self) -> list[tuple[int, str, Any]]:
        """Answers that have arrived, oldest first, as ``(ticket, kind, answer)``; each is returned once.

        ``answer`` is a :class:`Label` for comparisons and an int rating for ratings.
        """
        ready = [
            p
            for p in self._pending
            if p.ready_query <= self.ledger.queries and p.ready_step <= self.step_count
        ]
        done = {id(p) for p in ready}
        self._pending = [p for p in self._pending if id(p) not in done]
        out = []
        for p in sorted(ready, key=lambda p: p.index):
            ans = Label(int(p.answer.labels[0])) if p.kind == "comparison" else int(p.answer.ratings[0])
            out.append((p.index, p.kind, ans))
        return out

    @property
    def pending(self) -> int:
        """Number of answers not yet released."""
        return len(self._pending)

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.raters[:3]) + (", ..." if len(self.raters) > 3 else "")
        return f"SimulatedHuman(gold={type(self.gold).__name__}, raters=[{names}], seed={self.seed})"
