"""Recorded raters: real people's ratings of real sentences, replayed as a rater pool.

:class:`RecordedRaters` answers the queries :class:`~rlhf_envs.feedback.simulated.SimulatedHuman`
answers (``compare``, ``rate``, ``score``, delayed ``request_*`` / ``collect``, a cost / time ledger
with a budget) and returns the same result objects (:class:`~rlhf_envs.feedback.simulated.Comparisons`
with ``labels`` and ``prob_a()``, :class:`~rlhf_envs.feedback.simulated.Ratings`), but every answer
comes from what the real raters of the Hutto & Gilbert (ICWSM 2014) data said
(:mod:`rlhf_envs.data.hutto2014`):

* a **rating** of a sentence is one of that sentence's real ratings (-4..+4, the data's 9-point
  scale), drawn at random;
* a **comparison** of two sentences draws one real rating for each and prefers the higher one.
  **Tie rule**: equal ratings (common: about one pair in three at small gaps, since most ratings
  are small integers) give a tie by default (``ties="tie"``: ``Label.TIE``, ``prob_a`` 0.5/0.5 like
  B-Pref's *equal* teacher); ``ties="skip"`` answers ``Label.SKIP`` (no label, ``prob_a`` None) and
  ``ties="coin"`` picks A or B with probability 1/2.

What a "rater" is. The data is anonymous: a sentence's ratings are a list without rater
identities, and the people who rated one sentence are not known to have rated another. So:

* ``pool=None`` (the default, "the crowd"): every query is answered by a fresh random member of the
  crowd: each rating is an independent draw (with replacement) from the sentence's ratings. The
  two ratings of a comparison are independent draws too; a real person comparing two sentences
  would share their own offset between the two, which the anonymous data cannot reproduce, so
  crowd comparisons are if anything noisier than one person's.
* ``pool=k``: ``k`` raters, each a fixed seeded stream. Rater ``j`` gives sentence ``s`` the rating
  at position ``perm_s[j mod n_s]`` of the sentence's ``n_s`` ratings, where ``perm_s`` is a
  permutation drawn from ``(seed, s)``. A rater is therefore consistent (asked twice about the same
  sentence, the same rater answers the same), and for ``k <= n_s`` the ``k`` raters give ``k``
  *different* real ratings of each sentence, as ``k`` of its real raters would. Each query goes to
  a rater drawn from ``(seed, query number)``, like the next free worker of a rating platform.

Either way, over seeds each single rating follows the sentence's empirical rating distribution
exactly.

Which sentence an episode is. An episode is looked up by ``metadata["sentence_id"]``
(``"domain/id"``, e.g. ``"movies/17"``) when present, else by its text (``prompt + completion``,
whitespace-normalised). A text that occurs under several ids (84 texts do, within a domain) pools
the ratings of all of them. An episode whose text is not a rated sentence is an error
(:class:`~rlhf_envs.errors.FeedbackError`): recorded raters cannot judge new text.

All draws are counter-based functions of ``seed`` and the query number (``compare``, ``rate``) or
of ``Episode.seed`` (``score``), so answers are reproducible and do not depend on batching.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlhf_envs.data.hutto2014 import RATING_MAX, RATING_MIN, RatedSentence, normalize_text
from rlhf_envs.errors import BudgetExhaustedError, ConfigError, FeedbackError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.simulated import Comparisons, Label, Ledger, Ratings
from rlhf_envs.seeding import episode_keys, mix64, uniforms

#: Episode metadata key holding a sentence's ``"domain/id"``.
METADATA_KEY = "sentence_id"
TIE_RULES = ("tie", "skip", "coin")
N_LEVELS = RATING_MAX - RATING_MIN + 1  # 9 rating levels, -4..+4

# stream tags: compare, rate, score never share random numbers
_COMPARE, _RATE, _SCORE = 11, 12, 13


def _stream(seed: int, tag: int) -> np.uint64:
    return mix64(np.array([(seed % 2**64) ^ (tag * 0x9E3779B97F4A7C15 % 2**64)], dtype=np.uint64))[0]


def _draw_uniforms(seed: int, tag: int, counters: np.ndarray, n: int) -> np.ndarray:
    counters = np.asarray(counters, dtype=np.int64).astype(np.uint64)
    streams = np.full(len(counters), _stream(seed, tag), dtype=np.uint64)
    return uniforms(episode_keys(streams, counters), n)


class RatedSentenceIndex:
    """Find the real ratings of episodes: by ``metadata["sentence_id"]`` or by exact text.

    A :class:`~rlhf_envs.feedback.base.FeedbackModel` needs one answer per episode, so lookups are
    batched: :meth:`items` maps episodes to item numbers, and :meth:`ratings`, :meth:`mean` and
    :meth:`distribution` describe an item. An item is one record (looked up by id) or all records
    sharing a text (looked up by text).
    """

    def __init__(self, records: Sequence[RatedSentence]) -> None:
        records = list(records)
        if not records:
            raise ConfigError("recorded raters need at least one rated sentence")
        for i, r in enumerate(records):
            if not isinstance(r, RatedSentence):
                raise ConfigError(f"records[{i}] is {type(r).__name__}, not a RatedSentence")
        self.records = records
        self._by_key = {r.key: i for i, r in enumerate(records)}
        by_text: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_text.setdefault(normalize_text(r.text), []).append(i)
        self._by_text = {t: tuple(v) for t, v in by_text.items()}
        self._items: list[tuple[int, ...]] = []
        self._item_of: dict[tuple[int, ...], int] = {}
        self._arrays: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.records)

    def _item(self, recs: tuple[int, ...]) -> int:
        j = self._item_of.get(recs)
        if j is None:
            j = len(self._items)
            self._items.append(recs)
            self._item_of[recs] = j
            self._arrays.append(
                np.concatenate([np.asarray(self.records[i].ratings, dtype=np.int8) for i in recs])
            )
        return j

    def items(self, episodes: Sequence[Episode], what: str = "RecordedRaters") -> np.ndarray:
        """Item numbers of ``episodes`` (int64). Raises ``FeedbackError`` for text without ratings."""
        out = np.empty(len(episodes), dtype=np.int64)
        for i, ep in enumerate(episodes):
            if not isinstance(ep, Episode):
                raise FeedbackError(f"{what}: item {i} is {type(ep).__name__}, not an Episode")
            key = ep.metadata.get(METADATA_KEY) if ep.metadata else None
            if key is not None:
                rec = self._by_key.get(str(key))
                if rec is None:
                    raise FeedbackError(
                        f"{what}: episode {i} has metadata[{METADATA_KEY!r}]={key!r}, which is not one of "
                        f"the {len(self.records)} rated sentences (ids look like 'movies/17', 'nyt/1_3')"
                    )
                out[i] = self._item((rec,))
                continue
            recs = self._by_text.get(normalize_text(ep.prompt + ep.completion))
            if recs is None:
                text = ep.prompt + ep.completion
                raise FeedbackError(
                    f"{what}: no real ratings for episode {i}: its text {text[:70]!r} is not one of the "
                    f"{len(self.records)} rated sentences and its metadata has no {METADATA_KEY!r}; "
                    "recorded raters only judge sentences from the data (give the exact text or "
                    f"metadata[{METADATA_KEY!r}] = 'domain/id')"
                )
            out[i] = self._item(recs)
        return out

    def ratings(self, item: int) -> np.ndarray:
        """The real ratings of an item (int8, -4..+4)."""
        return self._arrays[item]

    def key(self, item: int) -> str:
        """A stable name of the item (its records' keys joined)."""
        return "+".join(self.records[i].key for i in self._items[item])

    def mean(self, items: np.ndarray) -> np.ndarray:
        """The published mean rating of each item (for a pooled text: weighted by rating counts)."""
        out = np.empty(len(items), dtype=np.float64)
        for k, j in enumerate(items):
            recs = [self.records[i] for i in self._items[int(j)]]
            out[k] = sum(r.mean * len(r.ratings) for r in recs) / sum(len(r.ratings) for r in recs)
        return out

    def distribution(self, items: np.ndarray) -> np.ndarray:
        """Shape ``(len(items), 9)``: the share of each rating -4..+4 among the item's ratings."""
        out = np.zeros((len(items), N_LEVELS), dtype=np.float64)
        for k, j in enumerate(items):
            r = self._arrays[int(j)].astype(np.int64) - RATING_MIN
            out[k] = np.bincount(r, minlength=N_LEVELS) / len(r)
        return out


class CrowdMean:
    """The crowd's mean rating of each (real) sentence as a feedback model: ``score`` -> float32 means.

    The gold utility for studying simulated raters on real sentences
    (``SimulatedHuman(CrowdMean(records), preset("crowd-2014"), scale=4.0)``).
    """

    def __init__(self, records: Sequence[RatedSentence] | RatedSentenceIndex) -> None:
        self.index = records if isinstance(records, RatedSentenceIndex) else RatedSentenceIndex(records)

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        return self.index.mean(self.index.items(list(episodes), "CrowdMean")).astype(np.float32)


@dataclass
class _Pending:
    ready_query: int
    ready_step: int
    kind: str
    index: int
    answer: Any = field(repr=False)


class RecordedRaters:
    """Real raters replayed: answers drawn from real people's ratings of the same sentences.

    Args:
        records: the rated sentences (default: all of :func:`rlhf_envs.data.hutto2014.load`; pass a
            split, e.g. ``hutto2014.load(split="train")``, to keep held-out sentences out).
        pool: ``None`` (every query answered by a random member of the crowd) or the number ``k`` of
            fixed, consistent raters (see the module docstring).
        ties: what a comparison answers when the two drawn ratings are equal: ``"tie"`` (0.5/0.5),
            ``"skip"`` (no label) or ``"coin"`` (A or B at random).
        seed: every draw derives from it.
        cost_per_comparison, cost_per_rating, seconds_per_query, seconds_per_word, budget,
            max_queries, delay_queries, delay_steps: as for
            :class:`~rlhf_envs.feedback.simulated.SimulatedHuman`.
    """

    def __init__(
        self,
        records: Sequence[RatedSentence] | RatedSentenceIndex | None = None,
        *,
        pool: int | None = None,
        ties: str = "tie",
        seed: int = 0,
        cost_per_comparison: float = 0.0,
        cost_per_rating: float = 0.0,
        seconds_per_query: float = 0.0,
        seconds_per_word: float = 0.0,
        budget: float | None = None,
        max_queries: int | None = None,
        delay_queries: int = 0,
        delay_steps: int = 0,
    ) -> None:
        if records is None:
            from rlhf_envs.data.hutto2014 import load

            records = load()
        self.index = records if isinstance(records, RatedSentenceIndex) else RatedSentenceIndex(records)
        if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 1):
            raise ConfigError(f"pool must be None (the crowd) or an int >= 1, got {pool!r}")
        if ties not in TIE_RULES:
            raise ConfigError(f"ties must be one of {', '.join(map(repr, TIE_RULES))}, got {ties!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ConfigError(f"seed must be an int, got {seed!r}")
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
        self.pool, self.ties, self.seed = pool, ties, int(seed)
        self.cost_per_comparison, self.cost_per_rating = float(cost_per_comparison), float(cost_per_rating)
        self.seconds_per_query, self.seconds_per_word = float(seconds_per_query), float(seconds_per_word)
        self.budget, self.max_queries = budget, max_queries
        self.delay_queries, self.delay_steps = delay_queries, delay_steps
        self.ledger = Ledger()
        self.step_count = 0
        self._pending: list[_Pending] = []
        self._perms: dict[int, np.ndarray] = {}

    # -- the real ratings ---------------------------------------------------------------------------

    def crowd_mean(self, episodes: Sequence[Episode]) -> np.ndarray:
        """The published mean rating of each episode's sentence (float64); not charged."""
        return self.index.mean(self.index.items(list(episodes)))

    gold_utility = crowd_mean  # SimulatedHuman's name for "the truth behind the answers"

    def rating_distribution(self, episodes: Sequence[Episode]) -> np.ndarray:
        """``(B, 9)``: each sentence's share of real ratings -4..+4 (what a single draw follows)."""
        return self.index.distribution(self.index.items(list(episodes)))

    def _rater_rating(self, rater: int, item: int) -> int:
        perm = self._perms.get(item)
        if perm is None:
            h = hashlib.blake2b(
                self.index.key(item).encode(), digest_size=8, key=self.seed.to_bytes(8, "little", signed=True)
            ).digest()
            perm = np.random.default_rng(int.from_bytes(h, "little")).permutation(
                len(self.index.ratings(item))
            )
            self._perms[item] = perm
        return int(self.index.ratings(item)[perm[rater % len(perm)]])

    def _draw(self, items: np.ndarray, raters: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One real rating per item: a crowd draw from ``u`` or the pool rater's own rating."""
        out = np.empty(len(items), dtype=np.int8)
        for k, (j, r) in enumerate(zip(items, raters, strict=True)):
            if self.pool is None:
                rs = self.index.ratings(int(j))
                out[k] = rs[min(int(u[k] * len(rs)), len(rs) - 1)]
            else:
                out[k] = self._rater_rating(int(r), int(j))
        return out

    def _route(self, u: np.ndarray) -> np.ndarray:
        if self.pool is None:
            return np.full(len(u), -1, dtype=np.int64)
        return np.minimum((u * self.pool).astype(np.int64), self.pool - 1)

    # -- accounting ---------------------------------------------------------------------------------

    def _charge(self, kind: str, n: int, episodes: Sequence[Episode]) -> None:
        cost = (self.cost_per_comparison if kind == "comparison" else self.cost_per_rating) * n
        if self.max_queries is not None and self.ledger.queries + n > self.max_queries:
            raise BudgetExhaustedError(
                f"RecordedRaters refuses {n} {kind} queries: {self.ledger.queries} of max_queries="
                f"{self.max_queries} used, {self.max_queries - self.ledger.queries} left; nothing was charged"
            )
        if self.budget is not None and self.ledger.money + cost > self.budget + 1e-9:
            left = self.budget - self.ledger.money
            raise BudgetExhaustedError(
                f"RecordedRaters refuses {n} {kind} queries costing {cost:g}: {self.ledger.money:g} of the "
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

    @staticmethod
    def _check(episodes: Sequence[Episode], what: str) -> list[Episode]:
        eps = list(episodes)
        for i, ep in enumerate(eps):
            if not isinstance(ep, Episode):
                raise FeedbackError(f"{what}: item {i} is {type(ep).__name__}, not an Episode")
            if not ep.prompt and not ep.completion:
                raise FeedbackError(
                    f"{what}: episode {i} has an empty prompt and completion; nothing to judge"
                )
        return eps

    # -- queries ------------------------------------------------------------------------------------

    def compare(self, a: Sequence[Episode], b: Sequence[Episode]) -> Comparisons:
        """Answer "which is better, ``a[i]`` or ``b[i]``?" from one real rating of each sentence.

        Sentences are looked up before anything is charged, so an unknown text charges nothing.
        """
        a, b = self._check(a, "compare A"), self._check(b, "compare B")
        if len(a) != len(b):
            raise FeedbackError(f"compare: {len(a)} A episodes but {len(b)} B episodes; they must pair up")
        ia, ib = self.index.items(a, "compare A"), self.index.items(b, "compare B")
        n = len(a)
        self._charge("comparison", n, a + b)
        queries = np.arange(self.ledger.queries - n, self.ledger.queries, dtype=np.int64)
        u = _draw_uniforms(self.seed, _COMPARE, queries, 5)
        raters = self._route(u[:, 0])
        ra, rb = self._draw(ia, raters, u[:, 1]), self._draw(ib, raters, u[:, 2])
        labels = np.where(ra > rb, Label.A, np.where(ra < rb, Label.B, Label.TIE)).astype(np.int8)
        tie = labels == Label.TIE
        if self.ties == "skip":
            labels[tie] = Label.SKIP
        elif self.ties == "coin":
            labels[tie] = np.where(u[tie, 4] < 0.5, Label.A, Label.B)
        shown = (u[:, 3] < 0.5).astype(np.int8)
        return Comparisons(labels, raters, shown, queries)

    def rate(self, episodes: Sequence[Episode]) -> Ratings:
        """One real rating per episode, on the data's scale (int8, -4 = extremely negative .. +4)."""
        eps = self._check(episodes, "rate")
        items = self.index.items(eps, "rate")
        n = len(eps)
        self._charge("rating", n, eps)
        queries = np.arange(self.ledger.queries - n, self.ledger.queries, dtype=np.int64)
        u = _draw_uniforms(self.seed, _RATE, queries, 2)
        raters = self._route(u[:, 0])
        return Ratings(self._draw(items, raters, u[:, 1]), raters, queries)

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        """The env interface: one real rating per episode as float32, drawn from ``Episode.seed`` (so
        it does not depend on batching). Charged as ratings."""
        eps = self._check(episodes, "score")
        items = self.index.items(eps, "score")
        self._charge("rating", len(eps), eps)
        seeds = np.array([ep.seed for ep in eps], dtype=np.int64)
        u = _draw_uniforms(self.seed, _SCORE, seeds, 2)
        return self._draw(items, self._route(u[:, 0]), u[:, 1]).astype(np.float32)

    # -- delayed answers ----------------------------------------------------------------------------

    def request_comparisons(self, a: Sequence[Episode], b: Sequence[Episode]) -> np.ndarray:
        """Ask pairwise queries whose answers arrive ``delay_queries`` queries and ``delay_steps``
        steps later (decided now, so reproducible); returns the tickets (query numbers)."""
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
        """Answers that have arrived, oldest first, as ``(ticket, kind, answer)``; each returned once.
        ``answer`` is a :class:`~rlhf_envs.feedback.simulated.Label` or an int rating."""
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
        who = "crowd" if self.pool is None else f"pool={self.pool}"
        return f"RecordedRaters({len(self.index)} sentences, {who}, ties={self.ties!r}, seed={self.seed})"


def episode_for(record: RatedSentence) -> Episode:
    """An :class:`Episode` whose whole text is ``record``'s sentence, with its id in the metadata
    (what the calibration and the reward-model benchmarks ask recorded raters about)."""
    return Episode(
        prompt="",
        completion=record.text,
        prompt_ids=(),
        completion_ids=(),
        terminated=True,
        metadata={METADATA_KEY: record.key},
    )
