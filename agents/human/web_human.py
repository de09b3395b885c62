"""People rating through the web page, as the RLHF loop's human: :class:`WebHuman`.

``WebHuman`` has the contract of :class:`agents.rlhf.TerminalHuman`: ``compare(a, b)`` over two
equally long episode lists returns an object with ``len()`` and ``prob_a()`` (per pair P(A better):
1, 0, 0.5 for a tie, None when nobody gave a decisive-or-tie answer), plus ``state_dict`` /
``load_state_dict``. Instead of reading the terminal it writes the queries to the SQLite label store
that ``rlhf-envs human serve --db ...`` serves, and waits (with a progress bar) until each query has
answers from ``raters_per_query`` distinct raters.

Aggregation: each rater's answer is 1 (A), 0 (B) or 0.5 (tie); skips are dropped; the soft preference
is the mean (None when every answer was a skip).

Durability and resuming: every answer is committed by the server before it is acknowledged. A query's
key is a hash of its content and of the ``compare`` call's index (saved in ``state_dict``, which the
loop commits with each round), so a loop killed while waiting and resumed from its last round asks the
*same* keys again: the store returns the existing queries with whatever answers they already have, and
only the missing answers are waited for. Nobody is asked the same question twice.

Time-out policy (``timeout`` seconds, ``None`` = wait forever), ``on_timeout``:

- ``"partial"``: use the answers that arrived (a query with none counts as skipped);
- ``"drop"``: a query without all its raters counts as skipped, even if some answered;
- ``"error"``: raise :class:`HumanTimeoutError` (nothing is lost; rerun to resume waiting).

With ``"partial"`` and ``"drop"`` the unfinished queries are withdrawn from the page.

Likert ratings and per-token marks: :meth:`WebHuman.rate` and :meth:`WebHuman.mark_tokens` ask for
them the same way; :func:`rating_targets` and :func:`token_targets` read every such answer in an
experiment back as episodes with targets, for ``RewardModel.fit_ratings`` (regression) and for dense
per-token targets; :func:`token_marks` reads the per-token answers as (query id, tokens, marks).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from agents.human.store import Answer, Completion, LabelStore, content_key
from rlhf_envs.errors import BudgetExhaustedError, ConfigError, FeedbackError
from rlhf_envs.feedback.base import Episode

TIMEOUT_POLICIES = ("partial", "drop", "error")
EOS_DISPLAY = "⏎[end]"


class HumanTimeoutError(FeedbackError):
    """The raters did not answer in time and the time-out policy is ``"error"``."""


def _mean_prob(answers: Sequence[Answer]) -> float | None:
    ps = [a.prob_a for a in answers if a.prob_a is not None]
    return float(np.mean(ps)) if ps else None


@dataclass
class WebComparisons:
    """Answers to one ``compare`` call: per query its id, key and the raters' answers."""

    query_ids: list[int]
    keys: list[str]
    answers: list[list[Answer]]
    complete: list[bool]

    def __len__(self) -> int:
        return len(self.query_ids)

    def prob_a(self) -> list[float | None]:
        """Soft preference for A per query: mean of 1 (A), 0 (B), 0.5 (tie); skips dropped; None if
        no usable answer (or the query was dropped by the time-out policy)."""
        return [_mean_prob(a) if ok else None for a, ok in zip(self.answers, self.complete, strict=True)]

    @property
    def labels(self) -> list[list[str]]:
        """The raw choices per query (``"A"``, ``"B"``, ``"tie"``, ``"skip"``), for inspection."""
        return [[a.choice or "" for a in ans] for ans in self.answers]


@dataclass
class WebRatings:
    """Answers to one ``rate`` call."""

    query_ids: list[int]
    answers: list[list[Answer]]
    complete: list[bool]

    def __len__(self) -> int:
        return len(self.query_ids)

    def mean(self) -> list[float | None]:
        """Mean Likert rating (1-5) per episode; None when no rating arrived (skips dropped)."""
        out: list[float | None] = []
        for ans, ok in zip(self.answers, self.complete, strict=True):
            rs = [a.rating for a in ans if a.rating is not None]
            out.append(float(np.mean(rs)) if ok and rs else None)
        return out


@dataclass
class WebTokenMarks:
    """Answers to one ``mark_tokens`` call."""

    query_ids: list[int]
    n_tokens: list[int]
    answers: list[list[Answer]]
    complete: list[bool]

    def __len__(self) -> int:
        return len(self.query_ids)

    def values(self) -> list[np.ndarray | None]:
        """Per episode a float array over its completion tokens: the mean mark (+1 good, -1 bad, 0
        unmarked) over the raters who did not skip; None when all skipped or none answered."""
        return [
            _token_mean(ans, n) if ok else None
            for ans, n, ok in zip(self.answers, self.n_tokens, self.complete, strict=True)
        ]


def _token_mean(answers: Sequence[Answer], n: int) -> np.ndarray | None:
    rows = []
    for a in answers:
        if a.choice == "skip":
            continue
        v = np.zeros(n, dtype=np.float32)
        for i, m in a.marks.items():
            if 0 <= i < n:
                v[i] = m
        rows.append(v)
    return np.mean(rows, axis=0).astype(np.float32) if rows else None


class WebHuman:
    """Real people answering through the rating page; the loop's human (see the module docstring).

    Args:
        db: the SQLite label database (the one ``rlhf-envs human serve --db`` serves), or a
            :class:`LabelStore`.
        experiment: the experiment the queries belong to (guidelines and export are per experiment).
        raters_per_query: distinct raters each query needs.
        timeout: seconds to wait for one call's answers (None: wait forever).
        on_timeout: ``"partial"``, ``"drop"`` or ``"error"`` (see the module docstring).
        guidelines_file: rating guidelines shown on the page (read now; stored with the experiment).
        max_queries: cap on queries asked in all (then :class:`BudgetExhaustedError`), as TerminalHuman.
        tokenizer: turns token ids into display strings (``decode([id])``, ``eos_id``); needed by
            :meth:`mark_tokens`; ``"default"`` loads the embedded model's tokenizer when first needed.
        poll_seconds: how often the database is read while waiting.
        progress: show a tqdm progress bar while waiting.
        url: the page's address, printed when waiting starts (a hint for the person running the loop).
        clock, sleep: injectable for tests.
    """

    def __init__(
        self,
        db: str | Path | LabelStore,
        experiment: str = "rlhf",
        raters_per_query: int = 1,
        timeout: float | None = None,
        on_timeout: str = "partial",
        guidelines_file: str | Path | None = None,
        max_queries: int | None = None,
        tokenizer: Any = "default",
        poll_seconds: float = 1.0,
        progress: bool = True,
        url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (
            not isinstance(raters_per_query, int)
            or isinstance(raters_per_query, bool)
            or raters_per_query < 1
        ):
            raise ConfigError(f"raters_per_query must be an integer >= 1, got {raters_per_query!r}")
        if timeout is not None and not (
            isinstance(timeout, int | float) and timeout >= 0 and math.isfinite(timeout)
        ):
            raise ConfigError(f"timeout must be None (wait forever) or a finite number >= 0, got {timeout!r}")
        if on_timeout not in TIMEOUT_POLICIES:
            raise ConfigError(f"on_timeout must be one of {', '.join(TIMEOUT_POLICIES)}, got {on_timeout!r}")
        if not (isinstance(poll_seconds, int | float) and 0 < poll_seconds < math.inf):
            raise ConfigError(f"poll_seconds must be a positive number, got {poll_seconds!r}")
        if max_queries is not None and (not isinstance(max_queries, int) or max_queries < 0):
            raise ConfigError(f"max_queries must be None or an integer >= 0, got {max_queries!r}")
        self.store = db if isinstance(db, LabelStore) else LabelStore(db)
        self.experiment = experiment
        self.raters_per_query = raters_per_query
        self.timeout, self.on_timeout = timeout, on_timeout
        self.max_queries = max_queries
        self.poll_seconds = float(poll_seconds)
        self.progress, self.url = progress, url
        self.clock, self.sleep = clock, sleep
        self._tokenizer = tokenizer
        self.calls = 0
        self.queries = 0
        self.store.ensure_experiment(
            experiment, guidelines_file=guidelines_file, raters_per_query=raters_per_query
        )

    # -- the Human contract ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "queries": self.queries}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = int(state["calls"])
        self.queries = int(state["queries"])

    def compare(self, a: Sequence[Episode], b: Sequence[Episode]) -> WebComparisons:
        """Ask which of ``a[i]`` and ``b[i]`` is better; wait for the answers (see the module docstring)."""
        if len(a) != len(b):
            raise ConfigError(f"compare: {len(a)} A episodes but {len(b)} B episodes; they must pair up")
        call = self._begin(len(a))
        items = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            key = content_key("pairwise", call, i, _episode_key(x), _episode_key(y))
            items.append(("pairwise", key, x.prompt, [self._completion(x), self._completion(y)], _meta(x, y)))
        ids, answers, complete = self._ask(items, "comparisons")
        return WebComparisons(ids, [it[1] for it in items], answers, complete)

    def rate(self, episodes: Sequence[Episode]) -> WebRatings:
        """Ask for a 1-5 Likert rating of each episode; wait for the answers."""
        call = self._begin(len(episodes))
        items = [
            (
                "rating",
                content_key("rating", call, i, _episode_key(e)),
                e.prompt,
                [self._completion(e)],
                _meta(e),
            )
            for i, e in enumerate(episodes)
        ]
        ids, answers, complete = self._ask(items, "ratings")
        return WebRatings(ids, answers, complete)

    def mark_tokens(self, episodes: Sequence[Episode]) -> WebTokenMarks:
        """Ask raters to mark each episode's completion token by token (good / bad); wait."""
        call = self._begin(len(episodes))
        items = [
            (
                "per_token",
                content_key("per_token", call, i, _episode_key(e)),
                e.prompt,
                [self._completion(e, tokens=True)],
                _meta(e),
            )
            for i, e in enumerate(episodes)
        ]
        ids, answers, complete = self._ask(items, "token marks")
        return WebTokenMarks(ids, [len(e.completion_ids) for e in episodes], answers, complete)

    # -- internals ------------------------------------------------------------------------------------

    def _begin(self, n: int) -> int:
        if self.max_queries is not None and self.queries + n > self.max_queries:
            raise BudgetExhaustedError(
                f"WebHuman: {n} more queries would exceed max_queries={self.max_queries} ({self.queries} asked)"
            )
        return self.calls

    def _tok(self) -> Any:
        if isinstance(self._tokenizer, str):
            from rlhf_envs.lm.loading import load_tokenizer

            self._tokenizer = load_tokenizer(None if self._tokenizer == "default" else self._tokenizer)
        return self._tokenizer

    def _completion(self, e: Episode, tokens: bool = False) -> Completion:
        ids = [int(t) for t in e.completion_ids]
        toks = None
        if tokens or self._tokenizer is not None:
            tok = self._tok()
            if tok is None:
                raise ConfigError(
                    "per-token queries need a tokenizer to show tokens (WebHuman(tokenizer=...))"
                )
            eos = getattr(tok, "eos_id", getattr(tok, "eos_token_id", None))
            toks = [EOS_DISPLAY if t == eos else tok.decode([t]) for t in ids]
        return Completion(e.completion, toks, ids, bool(e.terminated), len(ids))

    def _ask(self, items: list, what: str) -> tuple[list[int], list[list[Answer]], list[bool]]:
        ids = self.store.enqueue_many(self.experiment, items, raters=self.raters_per_query)
        status = self.store.query_status(ids)
        need = {q: status[q][1] for q in ids}
        total = sum(need.values())

        def have() -> dict[int, int]:
            st = self.store.query_status(ids)
            return {q: min(st[q][0], need[q]) for q in ids}

        got = have()
        bar = None
        if sum(got.values()) < total:
            if self.progress:
                from tqdm.auto import tqdm

                where = f" at {self.url}" if self.url else f" (rlhf-envs human serve --db {self.store.path})"
                print(
                    f"waiting for {total - sum(got.values())} answers to {len(ids)} {what}{where}", flush=True
                )
                bar = tqdm(total=total, initial=sum(got.values()), desc=f"human {what}", unit="answer")
            t0 = self.clock()
            try:
                while True:
                    done = sum(got.values())
                    if bar is not None and done > bar.n:
                        bar.update(done - bar.n)
                    if done >= total:
                        break
                    if self.timeout is not None and self.clock() - t0 >= self.timeout:
                        break
                    self.sleep(self.poll_seconds)
                    got = have()
            finally:
                if bar is not None:
                    bar.close()
        complete = [got[q] >= need[q] for q in ids]
        if not all(complete):
            missing = sum(need[q] - got[q] for q in ids)
            if self.on_timeout == "error":
                raise HumanTimeoutError(
                    f"WebHuman: {missing} answers to {sum(not c for c in complete)} {what} did not arrive within "
                    f"timeout={self.timeout} s; the queries stay open and a rerun resumes waiting"
                )
            self.store.close_queries([q for q, c in zip(ids, complete, strict=True) if not c])
            if self.on_timeout == "partial":
                complete = [True] * len(ids)
        by_q: dict[int, list[Answer]] = {q: [] for q in ids}
        for ans in self.store.answers(query_ids=ids):
            by_q[ans.query_id].append(ans)
        self.calls += 1
        self.queries += len(ids)
        return ids, [by_q[q] for q in ids], complete


def _episode_key(e: Episode) -> list[Any]:
    return [
        e.prompt,
        e.completion,
        [int(t) for t in e.prompt_ids],
        [int(t) for t in e.completion_ids],
        bool(e.terminated),
    ]


def _meta(*eps: Episode) -> dict[str, Any]:
    return {"prompt_ids": [int(t) for t in eps[0].prompt_ids], "seeds": [int(e.seed) for e in eps]}


def _episode_of(q: dict[str, Any], slot: int) -> Episode:
    c = q["completions"][slot]
    seeds = q["meta"].get("seeds") or [0, 0]
    return Episode(
        q["prompt"],
        c.text,
        tuple(q["meta"].get("prompt_ids") or ()),
        tuple(c.token_ids or ()),
        bool(c.terminated),
        {},
        int(seeds[min(slot, len(seeds) - 1)]),
    )


def rating_targets(store: LabelStore | str | Path, experiment: str) -> tuple[list[Episode], np.ndarray]:
    """Every rated episode of ``experiment`` with its mean Likert rating (skips dropped).

    The result goes straight into ``RewardModel.fit_ratings(episodes, ratings)``.
    """
    st = store if isinstance(store, LabelStore) else LabelStore(store)
    per: dict[int, list[int]] = {}
    for a in st.answers(experiment=experiment):
        if a.rating is not None:
            per.setdefault(a.query_id, []).append(a.rating)
    eps, ys = [], []
    for qid, rs in sorted(per.items()):
        q = st.query(qid)
        if q["kind"] != "rating":
            continue
        eps.append(_episode_of(q, 0))
        ys.append(float(np.mean(rs)))
    return eps, np.asarray(ys, dtype=np.float64)


def comparison_targets(
    store: LabelStore | str | Path, experiment: str
) -> tuple[list[Episode], list[Episode], list[float]]:
    """Every pairwise query of ``experiment`` with a decisive or tie answer, as ``(a, b, prob_a)``:
    the two episodes and the mean of the raters' answers (A = 1, B = 0, tie = 0.5; skips dropped).

    The result goes straight into ``RewardModel.fit_preferences(a, b, prob_a)`` or
    :meth:`agents.preference_data.PreferencePairs.from_comparisons` (DPO).
    """
    st = store if isinstance(store, LabelStore) else LabelStore(store)
    per: dict[int, list[Answer]] = {}
    for ans in st.answers(experiment=experiment):
        per.setdefault(ans.query_id, []).append(ans)
    a, b, p = [], [], []
    for qid, answers in sorted(per.items()):
        q = st.query(qid)
        prob = _mean_prob(answers)
        if q["kind"] != "pairwise" or prob is None or len(q["completions"]) != 2:
            continue
        a.append(_episode_of(q, 0))
        b.append(_episode_of(q, 1))
        p.append(prob)
    return a, b, p


class TokenMarks(NamedTuple):
    """One per-token query's answers: ``(query_id, tokens, marks)``.

    ``tokens`` are the completion's tokens as the raters saw them (display strings, ``"⏎[end]"`` for
    the end-of-sequence token); ``marks`` is a float32 array of the same length: per token the mean
    mark over the raters who did not skip (+1 good, -1 bad, 0 unmarked). The episode behind the
    query (prompt and completion token ids) is ``token_targets(...)``'s, or ``store.query(query_id)``.
    """

    query_id: int
    tokens: list[str]
    marks: np.ndarray


def token_marks(store: LabelStore | str | Path, experiment: str) -> list[TokenMarks]:
    """Every per-token query of ``experiment`` with a non-skipped answer, as (query id, tokens, marks),
    in query order: the dense per-token targets for a reward-model fit on per-token marks."""
    st = store if isinstance(store, LabelStore) else LabelStore(store)
    per: dict[int, list[Answer]] = {}
    for a in st.answers(experiment=experiment):
        per.setdefault(a.query_id, []).append(a)
    out = []
    for qid, ans in sorted(per.items()):
        q = st.query(qid)
        if q["kind"] != "per_token":
            continue
        c = q["completions"][0]
        v = _token_mean(ans, c.n_tokens)
        if v is not None:
            out.append(TokenMarks(qid, list(c.tokens or []), v))
    return out


def token_targets(store: LabelStore | str | Path, experiment: str) -> list[tuple[Episode, np.ndarray]]:
    """Every per-token query of ``experiment`` that has a non-skipped answer, with its dense target:
    per completion token the mean mark over raters (+1 good, -1 bad, 0 unmarked)."""
    st = store if isinstance(store, LabelStore) else LabelStore(store)
    per: dict[int, list[Answer]] = {}
    for a in st.answers(experiment=experiment):
        per.setdefault(a.query_id, []).append(a)
    out = []
    for qid, ans in sorted(per.items()):
        q = st.query(qid)
        if q["kind"] != "per_token":
            continue
        n = q["completions"][0].n_tokens
        v = _token_mean(ans, n)
        if v is not None:
            out.append((_episode_of(q, 0), v))
    return out
