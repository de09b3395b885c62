"""Per-token shaping terms: small rewards paid on every step, reported separately from the task reward.

The task reward (the feedback model's score) lands on the final token. Shaping terms add a per-token
signal on top; each one appears in ``info`` under ``reward_<name>`` so nothing hides in the sum.
Terms are batched: the single env calls them with a batch of one, the vector env with all active
sub-envs at once.

A term is any object with a ``name`` and ``__call__(input_ids, lengths, actions) -> float32[B]``,
called after the action has been appended (``input_ids[b, lengths[b] - 1] == actions[b]``).
Stateful terms (a reference model's KV cache, for example) may also define
``reset(env_indices, input_ids, lengths)``, called when those sub-envs start a new episode.

Potential-based shaping (Ng, Harada and Russell 1999) is the term :class:`PotentialShaping`:
``F_t = scale * (gamma * Phi(s_{t+1}) - Phi(s_t))`` for a prefix scorer ``Phi``
(:mod:`rlhf_envs.feedback.prefix`), turned on with ``shaping={"potential": "scripted"}`` (see
:func:`make_shaping`). Summed with discount ``gamma`` over an episode of ``T`` steps it telescopes:
``sum_t gamma^t F_t = scale * (gamma^T Phi(s_T) - Phi(s_0))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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
#: the mapping key of potential-based shaping (its value is not a coefficient: see make_shaping)
POTENTIAL = "potential"


def make_shaping(shaping: Any, task: Any = None) -> list[ShapingTerm]:
    """Normalise the env's ``shaping`` argument.

    Accepts ``None``, a mapping ``{"step_penalty": 0.01, ...}`` of built-in term names to
    coefficients, or a sequence of :class:`ShapingTerm` objects. The mapping's key ``"potential"``
    adds :class:`PotentialShaping`; its value is a scorer (see :func:`potential_term`: ``"scripted"``,
    ``"marks"``, ``"learned"``, a prefix scorer or a reward model) or a dict
    ``{"scorer": ..., "gamma": 1.0, "scale": 1.0}`` plus, for ``"marks"``, the marker's options.
    """
    if shaping is None:
        return []
    if isinstance(shaping, Mapping):
        terms = []
        for name, coef in shaping.items():
            if name == POTENTIAL:
                terms.append(potential_term(coef, task))
                continue
            if name not in BUILTIN_TERMS:
                raise ConfigError(
                    f"unknown shaping term {name!r}; built-in terms: {', '.join([*BUILTIN_TERMS, POTENTIAL])} "
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


def bind_tokenizer(terms: list[ShapingTerm], tokenizer: Any) -> list[ShapingTerm]:
    """Give terms that take ``episodes`` (and have no tokenizer yet) the env's tokenizer, which
    decodes the prefixes they cut."""
    for t in terms:
        if getattr(t, "needs_episodes", False) and getattr(t, "tokenizer", None) is None:
            t.tokenizer = tokenizer
    return terms


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
    episodes: Callable[[], Any] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Call ``term`` on the active rows; return its rewards and any extra per-row info.

    Three optional hooks: a term with ``needs_env_indices = True`` also gets ``env_indices=`` (which
    sub-env each row is, for per-env state such as a KV cache); a term with ``needs_episodes =
    True`` also gets ``episodes=``, the rows' current prefixes as an
    :class:`~rlhf_envs.feedback.EpisodeBatch` (prompt text, metadata and feedback seed included;
    ``episodes`` is the env's zero-argument builder of it, called only then); a term with
    ``step_info()`` returns extra per-row arrays (e.g. ``{"ref_logprob": ...}``) that the env
    reports in ``info``.
    """
    kw: dict[str, Any] = {}
    if getattr(term, "needs_env_indices", False):
        kw["env_indices"] = env_indices
    if getattr(term, "needs_episodes", False):
        if episodes is None:
            raise ConfigError(f"shaping term {term.name!r} needs episodes, which this caller does not give")
        kw["episodes"] = episodes()
    r = term(input_ids, lengths, actions, **kw)
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


# ---------------------------------------------------------------------------------------------------
# Potential-based shaping
# ---------------------------------------------------------------------------------------------------


def check_gamma(gamma: object) -> float:
    """The shaping discount: a number in ``[0, 1]`` (:class:`ConfigError` / :class:`ConfigValueError`)."""
    if isinstance(gamma, bool | np.bool_) or not isinstance(gamma, int | float | np.integer | np.floating):
        raise ConfigError(f"potential shaping: gamma must be a number in [0, 1], got {gamma!r}")
    if not 0.0 <= float(gamma) <= 1.0:
        raise ConfigValueError(f"potential shaping: gamma must be a number in [0, 1], got {gamma!r}")
    return float(gamma)


class PotentialShaping:
    """Shaping term ``"potential"``: ``F_t = scale * (gamma * Phi(s_{t+1}) - Phi(s_t))``.

    ``Phi`` is a prefix scorer (:mod:`rlhf_envs.feedback.prefix`); ``s_t`` is the prefix before the
    step's token and ``s_{t+1}`` the prefix after it, so ``s_0`` is the prompt and ``s_T`` the whole
    episode. Potentials are computed once per state: the term keeps each sub-env's last ``Phi`` and
    scores only the new prefix on each step (one batched scorer call over the active sub-envs; at
    the first step of an episode one more call scores the prompt).

    Discounting convention: ``gamma`` must be the discount of the learner's return. With
    ``G = sum_{t=0}^{T-1} gamma^t r_t`` (the reward of the ``t``-th step weighted by ``gamma^t``)
    the shaped return is the unshaped one plus ``scale * (gamma^T Phi(s_T) - Phi(s_0))``, with
    ``Phi(s_T)`` kept as it is (no special terminal value). ``gamma = 1`` (the default, and the
    usual discount for language-model PPO) gives ``scale * (Phi(s_T) - Phi(s_0))``. Since
    ``Phi(s_0)`` depends only on the prompt, no policy can change it.

    Each step's ``info`` reports ``reward_<name>`` (``F_t``), ``<name>_prev`` (``Phi(s_t)``) and
    ``<name>_next`` (``Phi(s_{t+1})``), so the telescoping can be checked on any episode.

    Args:
        scorer: a prefix scorer (``score_states(episodes) -> float32[B]``).
        gamma: the discount in ``[0, 1]``.
        scale: multiplies ``Phi`` (a finite number in ``[0, 1e6]``).
        name: the term's name (info keys).
    """

    needs_env_indices = True
    needs_episodes = True

    def __init__(self, scorer: Any, gamma: float = 1.0, scale: float = 1.0, name: str = POTENTIAL) -> None:
        if not callable(getattr(scorer, "score_states", None)):
            raise ConfigError(
                f"potential shaping: scorer must be a prefix scorer (with score_states), got {type(scorer).__name__}"
            )
        self.scorer = scorer
        self.gamma = check_gamma(gamma)
        self.scale = check_coef(f"{name} scale", scale)
        self.name = name
        self.tokenizer: Any = None  # the env's (set by the env): decodes the prompt-only state
        self._phi = np.zeros(0, dtype=np.float64)  # Phi of each sub-env's current state
        self._known = np.zeros(0, dtype=bool)  # whether _phi holds it (False after a reset)
        self._last: dict[str, np.ndarray] = {}

    def _grow(self, size: int) -> None:
        if size > len(self._phi):
            self._phi = np.concatenate([self._phi, np.zeros(size - len(self._phi))])
            self._known = np.concatenate([self._known, np.zeros(size - len(self._known), dtype=bool)])

    def reset(self, env_indices: np.ndarray, input_ids: np.ndarray, lengths: np.ndarray) -> None:
        """Sub-envs ``env_indices`` start new episodes: their prompt's ``Phi`` is scored at their next step."""
        idx = np.asarray(env_indices, dtype=np.int64)
        self._grow(int(idx.max(initial=-1)) + 1)
        self._known[idx] = False

    def _potentials(self, episodes: Any) -> np.ndarray:
        phi = np.asarray(self.scorer.score_states(episodes), dtype=np.float64)
        if phi.shape != (len(episodes),) or not np.all(np.isfinite(phi)):
            raise FeedbackError(
                f"shaping term {self.name!r}: {type(self.scorer).__name__}.score_states returned {phi!r}"[
                    :300
                ]
                + f"; it must return {len(episodes)} finite potentials"
            )
        return phi

    def __call__(
        self,
        input_ids: np.ndarray,
        lengths: np.ndarray,
        actions: np.ndarray,
        env_indices: np.ndarray | None = None,
        episodes: Any = None,
    ) -> np.ndarray:
        """``F_t`` of each row; ``episodes`` are the rows' prefixes after this step's token."""
        n = len(actions)
        if episodes is None:
            raise ConfigError(f"shaping term {self.name!r} needs episodes= (the env passes them)")
        idx = np.arange(n) if env_indices is None else np.asarray(env_indices, dtype=np.int64)
        self._grow(int(idx.max(initial=-1)) + 1)
        if not n:
            self._last = {f"{self.name}_prev": np.zeros(0), f"{self.name}_next": np.zeros(0)}
            return np.zeros(0, dtype=np.float32)
        stale = np.flatnonzero(~self._known[idx])
        if stale.size:  # first step of an episode: score the prompt (the state before this token)
            from rlhf_envs.feedback.prefix.base import take_rows

            cut = np.asarray(episodes.completion_lengths)[stale] - 1
            prev_batch = take_rows(episodes, stale, np.maximum(cut, 0), self._tokenizer())
            self._phi[idx[stale]] = self._potentials(prev_batch)
            self._known[idx[stale]] = True
        prev = self._phi[idx].copy()
        nxt = self._potentials(episodes)
        self._phi[idx] = nxt
        self._last = {f"{self.name}_prev": self.scale * prev, f"{self.name}_next": self.scale * nxt}
        return (self.scale * (self.gamma * nxt - prev)).astype(np.float32)

    def _tokenizer(self) -> Any:
        """The tokenizer that decodes cut prefixes (the env's, or else the scorer's)."""
        tok = self.tokenizer or getattr(self.scorer, "tokenizer", None)
        if tok is None or not hasattr(tok, "eos_id"):
            raise ConfigError(f"shaping term {self.name!r}: no env tokenizer to decode prefixes with")
        return tok

    def step_info(self) -> dict[str, np.ndarray]:
        """``{"<name>_prev": scale * Phi(s_t), "<name>_next": scale * Phi(s_{t+1})}`` of the last call."""
        return {k: v.copy() for k, v in self._last.items()}

    def __repr__(self) -> str:
        return f"PotentialShaping({self.scorer!r}, gamma={self.gamma}, scale={self.scale})"


#: named scorers of ``shaping={"potential": name}``
POTENTIAL_SCORERS = ("scripted", "marks", "learned")


def potential_term(spec: Any, task: Any) -> PotentialShaping:
    """Build :class:`PotentialShaping` from the value of ``shaping={"potential": spec}``.

    ``spec`` is a scorer or ``{"scorer": scorer, "gamma": 1.0, "scale": 1.0, **marker_options}``.
    A scorer is

    * ``"scripted"``: the task's own feedback model scoring every prefix as if finished
      (:class:`~rlhf_envs.feedback.prefix.ScriptedPrefixScorer`);
    * ``"marks"``: a :class:`~rlhf_envs.feedback.prefix.SimulatedTokenMarker` whose gold is the
      task's ``gold`` if it has one (``RLHF/SimulatedHuman-v0``) or else its feedback model; the
      dict form passes ``threshold``, ``miss``, ``flip``, ``span`` and ``seed`` on;
    * ``"learned"``: the task's feedback must be a reward model; its head at every prefix
      (:class:`~rlhf_envs.feedback.prefix.LearnedPrefixScorer`);
    * a prefix scorer object (``score_states`` / ``score_prefixes``), or a reward model (anything
      with ``score_prefixes`` and ``members``), which gets wrapped in ``LearnedPrefixScorer``.
    """
    from rlhf_envs.feedback.prefix import LearnedPrefixScorer, ScriptedPrefixScorer, SimulatedTokenMarker

    options: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        allowed = {"scorer", "gamma", "scale", "threshold", "miss", "flip", "span", "seed"}
        unknown = sorted(map(str, set(spec) - allowed))
        if unknown or "scorer" not in spec:
            raise ConfigError(
                f"shaping['potential'] must be a scorer or a dict with 'scorer' and optional "
                f"{', '.join(sorted(allowed - {'scorer'}))}; got keys {sorted(map(str, spec))}"
            )
        options = {k: v for k, v in spec.items() if k != "scorer"}
        spec = spec["scorer"]
    gamma = options.pop("gamma", 1.0)
    scale = options.pop("scale", 1.0)
    tok = getattr(task, "tokenizer", None)
    if options and not (isinstance(spec, str) and spec == "marks"):
        raise ConfigError(
            f"shaping['potential']: {', '.join(sorted(options))} apply only to the 'marks' scorer, not {spec!r}"[
                :300
            ]
        )
    if isinstance(spec, str):
        if spec not in POTENTIAL_SCORERS:
            raise ConfigError(
                f"shaping['potential']: unknown scorer {spec!r}; named scorers: {', '.join(POTENTIAL_SCORERS)} "
                "(or pass a prefix scorer / reward model object)"
            )
        if task is None:
            raise ConfigError(f"shaping['potential']: the named scorer {spec!r} needs the env's task")
        if spec == "scripted":
            scorer: Any = ScriptedPrefixScorer(task.feedback, tok)
        elif spec == "marks":
            try:
                scorer = SimulatedTokenMarker(getattr(task, "gold", task.feedback), tok, **options)
            except ConfigError as exc:
                raise type(exc)(f"shaping['potential']: {exc}") from None
        else:
            if not callable(getattr(task.feedback, "score_prefixes", None)):
                raise ConfigError(
                    f"shaping['potential']: 'learned' needs a reward model as the task's feedback; "
                    f"{getattr(task, 'name', 'this task')!r} scores with {type(task.feedback).__name__} "
                    "(pass feedback=<RewardModel> or use 'scripted')"
                )
            scorer = LearnedPrefixScorer(task.feedback, tok)
    elif callable(getattr(spec, "score_states", None)):
        scorer = spec
    elif callable(getattr(spec, "score_prefixes", None)) and hasattr(spec, "members"):
        scorer = LearnedPrefixScorer(spec, tok)
    else:
        raise ConfigError(
            f"shaping['potential'] must be one of {', '.join(POTENTIAL_SCORERS)}, a prefix scorer, a reward "
            f"model or a dict with 'scorer'; got {type(spec).__name__} {spec!r}"[:300]
        )
    term = PotentialShaping(scorer, gamma, scale)
    term.tokenizer = tok
    return term
