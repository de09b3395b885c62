"""Who answers the loop's queries: the :class:`Human` protocol and a person at the terminal.

The default human is a :class:`~rlhf_envs.feedback.simulated.SimulatedHuman` (a hidden gold utility
seen through a noisy rater); :class:`TerminalHuman` asks a real person the same questions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from agents.human.store import content_key
from agents.rlhf.answer_journal import AnswerJournal
from rlhf_envs.errors import BudgetExhaustedError, ConfigError
from rlhf_envs.feedback.base import Episode


class Human(Protocol):
    """What the loop needs from a (simulated or real) human: pairwise answers.

    ``compare(a, b)`` returns an object with ``prob_a()``: per pair 1.0 (A better), 0.0 (B better),
    0.5 (tie) or ``None`` (skipped), like :class:`~rlhf_envs.feedback.simulated.Comparisons`. It may
    raise :class:`~rlhf_envs.errors.BudgetExhaustedError` when it will answer no more. A loop with
    ``query_kind="rating"`` calls ``rate(episodes)`` instead (see :func:`rating_values`).
    """

    def compare(self, a: Sequence[Episode], b: Sequence[Episode]) -> Any: ...


def rating_values(answers: Any) -> list[float | None]:
    """Per episode the rating in a human's ``rate(episodes)`` answer: 1-5, or ``None`` when skipped.

    Reads the two shapes the loop's humans return: a ``mean()`` method (the web page's
    :class:`~agents.human.web_human.WebRatings`: mean over the raters, ``None`` when all skipped)
    or a ``ratings`` array (:class:`~rlhf_envs.feedback.simulated.Ratings`).
    """
    if callable(getattr(answers, "mean", None)):
        values = list(answers.mean())
    elif getattr(answers, "ratings", None) is not None:
        values = list(answers.ratings)
    else:
        raise ConfigError(f"a rate() answer must have mean() or ratings, got {type(answers).__name__}")
    return [None if v is None else float(v) for v in values]


@dataclass
class TerminalComparisons:
    """Answers typed at the terminal (``labels``: ``"A"``, ``"B"``, ``"tie"`` or ``"skip"``)."""

    labels: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def prob_a(self) -> list[float | None]:
        table = {"A": 1.0, "B": 0.0, "tie": 0.5, "skip": None}
        return [table[x] for x in self.labels]


class TerminalHuman:
    """A person answering pairwise queries at the terminal: the same ``compare`` as SimulatedHuman.

    Each query shows the prompt and the two completions (in a random order, to spread position
    bias) and reads ``1``/``2`` (the first/second shown is better), ``t`` (tie) or ``s`` (skip);
    :meth:`rate` shows one completion and reads a rating ``1``-``5`` or ``s``.
    ``max_queries`` caps the session (then :class:`~rlhf_envs.errors.BudgetExhaustedError`).

    ``journal`` (a file path; the RLHF loop sets ``<run_dir>/human_answers.jsonl`` through
    :meth:`attach_journal` when it saves its run) keeps every answer durable the moment it is given
    (:class:`~agents.rlhf.answer_journal.AnswerJournal`): after a crash, the resumed loop asks the
    same questions and their recorded answers are reused instead of asking the person again.
    """

    def __init__(
        self,
        max_queries: int | None = None,
        seed: int = 0,
        input_fn: Callable[[str], str] = input,
        print_fn: Callable[[str], None] = print,
        journal: str | os.PathLike | None = None,
    ) -> None:
        if max_queries is not None and (
            isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 0
        ):
            raise ConfigError(f"max_queries must be None or an int >= 0, got {max_queries!r}")
        self.max_queries, self.queries = max_queries, 0
        self.rng = np.random.default_rng(seed)
        self.input_fn, self.print_fn = input_fn, print_fn
        #: ``compare`` calls so far (part of each question's key; saved with the loop's state)
        self.calls = 0
        #: answers asked of the person in this session, and answers reused from the journal
        self.asked = 0
        self.reused = 0
        self.journal: AnswerJournal | None = None
        if journal is not None:
            self.attach_journal(journal)

    def attach_journal(self, path: str | os.PathLike) -> None:
        """Record answers in ``path`` (and reuse those already there), unless a journal is set."""
        if self.journal is None:
            self.journal = AnswerJournal(path)

    def state_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "rng": self.rng.bit_generator.state, "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queries = int(state["queries"])
        self.rng.bit_generator.state = state["rng"]
        self.calls = int(state.get("calls", 0))

    def rate(self, episodes: Sequence[Episode]) -> TerminalRatings:
        """Ask for a 1-5 rating of each episode (``s`` skips); journalled and reused like ``compare``."""
        episodes = list(episodes)
        if self.max_queries is not None and self.queries + len(episodes) > self.max_queries:
            raise BudgetExhaustedError(
                f"TerminalHuman: {len(episodes)} more queries would exceed max_queries={self.max_queries} "
                f"({self.queries} answered)"
            )
        call = self.calls
        keys = [rating_key(call, i, e) for i, e in enumerate(episodes)]
        known = sum(self.journal is not None and k in self.journal for k in keys)
        if known:
            self.print_fn(
                f"\n{known} of these {len(episodes)} ratings were given before an interruption; reusing them"
            )
        out: list[int | None] = []
        for i, e in enumerate(episodes):
            saved = self.journal.get(keys[i]) if self.journal is not None else None
            if saved is not None:
                out.append(saved["label"])
                self.reused += 1
                self.queries += 1
                continue
            self.print_fn(f"\n[{i + 1}/{len(episodes)}] prompt: {e.prompt!r}\n  completion: {e.completion!r}")
            while True:
                ans = self.input_fn("how good is it? [1 (bad) .. 5 (good) / s(kip)] ").strip().lower()
                if ans in ("1", "2", "3", "4", "5", "s"):
                    break
                self.print_fn("please type 1, 2, 3, 4, 5 or s")
            rating = None if ans == "s" else int(ans)
            if self.journal is not None:  # durable before the next question is shown
                self.journal.append(
                    keys[i], rating, call=call, index=i, prompt=e.prompt, completion=e.completion
                )
            out.append(rating)
            self.asked += 1
            self.queries += 1
        self.calls += 1
        return TerminalRatings(out)

    def compare(self, a: Sequence[Episode], b: Sequence[Episode]) -> TerminalComparisons:
        if len(a) != len(b):
            raise ConfigError(f"compare: {len(a)} A episodes but {len(b)} B episodes; they must pair up")
        if self.max_queries is not None and self.queries + len(a) > self.max_queries:
            raise BudgetExhaustedError(
                f"TerminalHuman: {len(a)} more queries would exceed max_queries={self.max_queries} "
                f"({self.queries} answered)"
            )
        call = self.calls
        keys = [question_key(call, i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True))]
        known = sum(self.journal is not None and k in self.journal for k in keys)
        if known:
            self.print_fn(
                f"\n{known} of these {len(a)} answers were given before an interruption; reusing them"
            )
        labels = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            swap = bool(self.rng.random() < 0.5)  # drawn for every query, asked or reused
            saved = self.journal.get(keys[i]) if self.journal is not None else None
            if saved is not None:
                labels.append(saved["label"])
                self.reused += 1
                self.queries += 1
                continue
            first, second = (y, x) if swap else (x, y)
            self.print_fn(
                f"\n[{i + 1}/{len(a)}] prompt: {x.prompt!r}\n  1: {first.completion!r}\n  2: {second.completion!r}"
            )
            while True:
                ans = self.input_fn("which is better? [1/2/t(ie)/s(kip)] ").strip().lower()
                if ans in ("1", "2", "t", "s"):
                    break
                self.print_fn("please type 1, 2, t or s")
            if ans in ("t", "s"):
                label = "tie" if ans == "t" else "skip"
            else:
                first_wins = ans == "1"
                label = "A" if first_wins != swap else "B"
            if self.journal is not None:  # durable before the next question is shown
                self.journal.append(
                    keys[i],
                    label,
                    call=call,
                    index=i,
                    swapped=swap,
                    prompt=x.prompt,
                    a=x.completion,
                    b=y.completion,
                )
            labels.append(label)
            self.asked += 1
            self.queries += 1
        self.calls += 1
        return TerminalComparisons(labels)


@dataclass
class TerminalRatings:
    """Likert ratings typed at the terminal: 1-5 per episode, ``None`` when skipped."""

    ratings: list[int | None]

    def __len__(self) -> int:
        return len(self.ratings)

    def mean(self) -> list[float | None]:
        """The ratings as floats (one rater: the mean is the rating), ``None`` for a skip."""
        return [None if r is None else float(r) for r in self.ratings]


def rating_key(call: int, index: int, e: Episode) -> str:
    """The key of rating question ``index`` of ``rate`` call ``call`` (content and position)."""
    return content_key("rating", call, index, _episode_key(e))


def question_key(call: int, index: int, a: Episode, b: Episode) -> str:
    """The key of pairwise question ``index`` of ``compare`` call ``call`` (content and position)."""
    return content_key("pairwise", call, index, _episode_key(a), _episode_key(b))


def _episode_key(e: Episode) -> list[Any]:
    return [
        e.prompt,
        e.completion,
        [int(t) for t in e.prompt_ids],
        [int(t) for t in e.completion_ids],
        bool(e.terminated),
    ]
