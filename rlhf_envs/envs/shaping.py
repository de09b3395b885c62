"""Per-token shaping terms: small rewards paid on every step, reported separately from the task reward.

The task reward (the feedback model's score) lands on the final token. Shaping terms add a per-token
signal on top; each one appears in ``info`` under ``reward_<name>`` so nothing hides in the sum.
Terms are batched: the single env calls them with a batch of one, the vector env with all active
sub-envs at once.

A term is any object with a ``name`` and ``__call__(input_ids, lengths, actions) -> float32[B]``,
called after the action has been appended (``input_ids[b, lengths[b] - 1] == actions[b]``).
Stateful terms (a reference model's KV cache, for example) may also define
``reset(env_indices, input_ids, lengths)``, called when those sub-envs start a new episode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rlhf_envs.errors import ConfigError, ConfigValueError, FeedbackError

#: the largest built-in shaping coefficient (the task rewards are of order 1)
MAX_SHAPING_COEF = 1e6


@runtime_checkable
class ShapingTerm(Protocol):
    """A per-token reward term."""

    name: str

    def __call__(self, input_ids: np.ndarray, lengths: np.ndarray, actions: np.ndarray) -> np.ndarray: ...


def check_coef(name: str, coef: object) -> float:
    """A built-in term's coefficient: a finite number in ``[0, MAX_SHAPING_COEF]`` (a penalty; for a
    bonus write a :class:`ShapingTerm`). Raises :class:`ConfigError` / :class:`ConfigValueError`."""
    if isinstance(coef, bool | np.bool_) or not isinstance(coef, int | float | np.integer | np.floating):
        raise ConfigError(f"shaping coefficient for {name!r} must be a number, got {coef!r}")
    if not 0.0 <= float(coef) <= MAX_SHAPING_COEF:  # (False for NaN)
        raise ConfigValueError(
            f"shaping coefficient for {name!r} must be a finite number in [0, {MAX_SHAPING_COEF:g}] "
            f"(a penalty; write a ShapingTerm for a bonus), got {coef!r}"
        )
    return float(coef)


class StepPenalty:
    """``-coef`` for every generated token: a pressure towards short completions."""

    name = "step_penalty"

    def __init__(self, coef: float = 0.01) -> None:
        self.coef = check_coef(self.name, coef)

    def __call__(self, input_ids: np.ndarray, lengths: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return np.full(len(actions), -self.coef, dtype=np.float32)


class RepeatPenalty:
    """``-coef`` when the chosen token equals the token just before it (stutter)."""

    name = "repeat_penalty"

    def __init__(self, coef: float = 0.1) -> None:
        self.coef = check_coef(self.name, coef)

    def __call__(self, input_ids: np.ndarray, lengths: np.ndarray, actions: np.ndarray) -> np.ndarray:
        prev = input_ids[np.arange(len(actions)), lengths - 2]
        return np.where(prev == actions, -self.coef, 0.0).astype(np.float32)


BUILTIN_TERMS: dict[str, type] = {"step_penalty": StepPenalty, "repeat_penalty": RepeatPenalty}


def make_shaping(shaping: Any) -> list[ShapingTerm]:
    """Normalise the env's ``shaping`` argument.

    Accepts ``None``, a mapping ``{"step_penalty": 0.01, ...}`` of built-in term names to
    coefficients, or a sequence of :class:`ShapingTerm` objects.
    """
    if shaping is None:
        return []
    if isinstance(shaping, Mapping):
        terms = []
        for name, coef in shaping.items():
            if name not in BUILTIN_TERMS:
                raise ConfigError(
                    f"unknown shaping term {name!r}; built-in terms: {', '.join(BUILTIN_TERMS)} "
                    "(or pass ShapingTerm objects)"
                )
            terms.append(BUILTIN_TERMS[name](check_coef(name, coef)))
        return terms
    if isinstance(shaping, Sequence) and not isinstance(shaping, str):
        for t in shaping:
            if not isinstance(t, ShapingTerm):
                raise ConfigError(f"shaping entries must be ShapingTerm objects, got {t!r}")
            if not isinstance(t.name, str) or not t.name or t.name == "task":
                raise ConfigError(
                    f"shaping term {t!r}: name must be a non-empty str other than 'task' (it becomes the "
                    f"info key reward_<name>), got {t.name!r}"
                )
        names = [t.name for t in shaping]
        if len(set(names)) != len(names):
            raise ConfigError(f"shaping term names must be unique, got {names}")
        return list(shaping)
    raise ConfigError(
        f"shaping must be None, a dict of built-in term coefficients or a list of ShapingTerm, got {shaping!r}"
    )


def reset_terms(terms: Sequence[ShapingTerm], idx: np.ndarray, ids: np.ndarray, lengths: np.ndarray) -> None:
    """Tell stateful terms that sub-envs ``idx`` started new episodes."""
    for t in terms:
        reset = getattr(t, "reset", None)
        if reset is not None:
            reset(idx, ids, lengths)


def task_terms(task: object) -> list[ShapingTerm]:
    """Shaping terms a task brings: its own ``shaping_terms()`` plus the reference-model ``"kl"`` term.

    A task may define ``shaping_terms() -> list[ShapingTerm]`` and ``reference_model_spec() ->
    ReferenceModelSpec | None`` (language tasks do the latter). Both are called once per env, so
    stateful terms (KV caches) are never shared between envs. The env builds the
    :class:`~rlhf_envs.envs.reference.ReferenceKL` term here: tasks do not import envs.
    """
    make = getattr(task, "shaping_terms", None)
    terms = list(make()) if make is not None else []
    make_spec = getattr(task, "reference_model_spec", None)
    spec = make_spec() if make_spec is not None else None
    if spec is not None:
        from rlhf_envs.envs.reference import ReferenceKL

        terms.append(
            ReferenceKL(spec.lm, spec.max_length, spec.kl_coef, spec.temperature, loader=spec.loader)
        )
    return terms


def call_term(
    term: ShapingTerm,
    input_ids: np.ndarray,
    lengths: np.ndarray,
    actions: np.ndarray,
    env_indices: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Call ``term`` on the active rows; return its rewards and any extra per-row info.

    Two optional hooks: a term with ``needs_env_indices = True`` also gets ``env_indices=`` (which
    sub-env each row is, for per-env state such as a KV cache); a term with ``step_info()`` returns
    extra per-row arrays (e.g. ``{"ref_logprob": ...}``) that the env reports in ``info``.
    """
    if getattr(term, "needs_env_indices", False):
        r = term(input_ids, lengths, actions, env_indices=env_indices)
    else:
        r = term(input_ids, lengths, actions)
    if not isinstance(r, np.ndarray) or r.shape != (len(actions),) or not math.isfinite(float(r.dot(r))):
        _bad_term_output(term, r, len(actions))
    step_info = getattr(term, "step_info", None)
    return r, (step_info() if step_info is not None else {})


def _bad_term_output(term: ShapingTerm, r: Any, rows: int) -> None:
    """Raise :class:`FeedbackError` for a term output that is not ``rows`` finite numbers (a huge but
    finite output passes: only its dot product overflowed)."""
    try:
        arr = np.asarray(r, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (rows,):
        raise FeedbackError(
            f"shaping term {term.name!r} returned {type(r).__name__} "
            f"{getattr(r, 'shape', '')}; it must return a float array of shape ({rows},)"
        )
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise FeedbackError(
            f"shaping term {term.name!r} returned {arr[bad[0]]} for row {int(bad[0])}; rewards must be finite"
        )
