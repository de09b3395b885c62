"""The RLHF loop's settings (:class:`RLHFConfig`) and its per-round query schedule.

The field names are also the keys of the ``config`` saved in each run's ``state.json`` and in the
benchmarks' result files, so a renamed field would stop old runs from resuming: they stay as they
are (``rm_*`` fields configure the reward-model fit).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from agents.checks import check_choice, check_float, check_int
from agents.presets import get_preset
from rlhf_envs.errors import ConfigError

SCHEDULES = ("constant", "decaying")
SELECTIONS = ("random", "disagreement")
#: what the loop asks: which of two completions is better (Bradley-Terry fit), or a 1-5 Likert
#: rating of one completion (regression fit)
QUERY_KINDS = ("pairwise", "rating")
#: the PPO preset the loop trains with (:mod:`agents.presets`); ``n_envs``, ``learning_rate`` and
#: ``kl_coef`` below default to its values and are passed as overrides on top of it
PPO_PRESET = "lm-rlhf-loop"


def _from_ppo_preset(name: str) -> Any:
    return field(default_factory=lambda: get_preset(PPO_PRESET)[name])


@dataclass
class RLHFConfig:
    """Settings of the loop. The defaults run 6 rounds on the embedded model in a few minutes.

    Attributes:
        rounds: number of rounds.
        queries_per_round: queries asked in round 0 (and every round for ``"constant"``).
        schedule: ``"constant"`` or ``"decaying"`` (round ``r`` asks
            ``max(min_queries, round(queries_per_round * decay**r))``).
        decay, min_queries: the decaying schedule's rate and floor.
        budget: total queries allowed over the run (``None`` = no limit besides the human's own).
            A round asks at most what is left; once nothing is left the loop stops (or, with
            ``on_budget_exhausted="continue"``, keeps optimising against the last reward model).
        on_budget_exhausted: ``"stop"`` or ``"continue"``.
        query_kind: ``"pairwise"`` (the human compares two completions of a prompt; the reward model
            is fitted by Bradley-Terry) or ``"rating"`` (the human gives one completion a 1-5 Likert
            rating, ``human.rate(episodes)``; the reward model is fitted by regression on the ratings).
        selection: ``"random"`` or ``"disagreement"`` (for ratings: the ensemble's score spread).
        pool_factor: candidate pairs sampled per query asked (the pool the selection picks from).
        rater: the simulated human's rater (a preset name of
            :mod:`rlhf_envs.feedback.simulated`), used when no ``human`` is given to the loop.
        cost_per_comparison, seconds_per_query, seconds_per_word: the simulated human's ledger.
        n_members, aggregate: the reward-model ensemble.
        rm_epochs, rm_lr, rm_random_fraction: the reward model's Bradley-Terry fit (refitted from scratch on all
            feedback each round).
        ppo_tokens_per_round: generated tokens of PPO per round (whole iterations: a little more).
        n_envs, learning_rate, kl_coef: PPO's episodes per batch, learning rate, KL coefficient
            (default: those of the ``lm-rlhf-loop`` preset, :data:`PPO_PRESET`).
        ppo_kwargs: further :class:`~agents.config.PPOConfig` options.
        eval_episodes: fresh episodes on which proxy, gold and KL are measured each round.
        model: the policy's starting model (``"default"`` = the embedded model, or a directory).
        max_new_tokens: completion length limit (``None`` = the task's default).
        seed: seeds everything.
    """

    rounds: int = 6
    queries_per_round: int = 32
    schedule: str = "constant"
    decay: float = 0.7
    min_queries: int = 8
    budget: int | None = None
    on_budget_exhausted: str = "stop"
    selection: str = "disagreement"
    query_kind: str = "pairwise"
    pool_factor: int = 4
    rater: str = "Mistake"
    cost_per_comparison: float = 0.1
    seconds_per_query: float = 10.0
    seconds_per_word: float = 0.25
    n_members: int = 3
    aggregate: str = "mean"
    rm_epochs: int = 3
    rm_lr: float = 3e-4
    rm_random_fraction: float = 0.1
    ppo_tokens_per_round: int = 4000
    n_envs: int = _from_ppo_preset("n_envs")
    learning_rate: float = _from_ppo_preset("learning_rate")
    kl_coef: float = _from_ppo_preset("kl_coef")
    ppo_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_episodes: int = 64
    model: str = "default"
    max_new_tokens: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on settings that cannot work, naming the field and its range.

        Every field is checked, at construction (and again by the loop, in case a field was
        assigned afterwards).
        """
        for name in ("rounds", "queries_per_round", "pool_factor", "n_members", "rm_epochs"):
            check_int(name, getattr(self, name), 1)
        for name in ("ppo_tokens_per_round", "n_envs", "eval_episodes"):
            check_int(name, getattr(self, name), 1)
        check_int("min_queries", self.min_queries, 0)
        if self.eval_episodes < 2:
            raise ConfigError(f"eval_episodes must be >= 2 (pairs are compared), got {self.eval_episodes}")
        if self.budget is not None:
            check_int("budget", self.budget, 0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("selection", self.selection, SELECTIONS)
        check_choice("query_kind", self.query_kind, QUERY_KINDS)
        check_choice("on_budget_exhausted", self.on_budget_exhausted, ("stop", "continue"))
        check_float("decay", self.decay, 0.0, 1.0, low_open=True)
        if self.selection == "disagreement" and self.n_members < 2:
            raise ConfigError("selection='disagreement' needs an ensemble: n_members >= 2")
        for name in ("rm_lr", "learning_rate"):
            check_float(name, getattr(self, name), 0.0, 1.0, low_open=True, high_open=True)
        check_float("kl_coef", self.kl_coef, 0.0)
        check_float("rm_random_fraction", self.rm_random_fraction, 0.0, 1.0, high_open=True)
        for name in ("cost_per_comparison", "seconds_per_query", "seconds_per_word"):
            check_float(name, getattr(self, name), 0.0)
        from rlhf_envs.feedback.learned import AGGREGATES
        from rlhf_envs.feedback.simulated import PRESETS

        if not isinstance(self.rater, str) or self.rater.lower() not in {p.lower() for p in PRESETS}:
            raise ConfigError(
                f"rater must be a simulated rater preset, one of {', '.join(PRESETS)}; got {self.rater!r}"
            )
        check_choice("aggregate", self.aggregate, AGGREGATES)
        if not isinstance(self.ppo_kwargs, dict):
            raise ConfigError(f"ppo_kwargs must be a dict, got {type(self.ppo_kwargs).__name__}")
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model must be 'default' or a model directory, got {self.model!r}")
        if self.max_new_tokens is not None:
            check_int("max_new_tokens", self.max_new_tokens, 1)
        check_int("seed", self.seed, 0)

    def planned_queries(self, round_index: int) -> int:
        """Queries the schedule asks for in round ``round_index`` (before the budget cap)."""
        if self.schedule == "constant":
            return self.queries_per_round
        return max(self.min_queries, int(round(self.queries_per_round * self.decay**round_index)))

    def to_json_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def schedule_counts(config: RLHFConfig, rounds: int | None = None) -> list[int]:
    """Queries per round that the schedule and the loop's budget give (no human-side limits)."""
    left = math.inf if config.budget is None else config.budget
    out = []
    for r in range(config.rounds if rounds is None else rounds):
        n = int(min(config.planned_queries(r), left))
        out.append(n)
        left -= n
    return out
