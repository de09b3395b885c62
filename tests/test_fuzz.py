"""Fuzzing every registered env id (single and vector), the prompt-file loader and the loaders of model
directories (``gym.make(id, model=DIR)``, ``PPO(policy="lm", model=DIR)``, ``RewardModel(DIR)``) with
hypothesis.

Each generated input is tagged *legal*, *illegal* or *either* (legal by every single rule, but the
combination may still be refused, e.g. ``min_length > max_length``) and every outcome is classified:

* ``legal, ok``: a legal (or either) input returned normally and the result passed the invariants
  (observation in its space, finite float reward, Python bool flags, no pad/EOS id inside a prompt);
* ``clear error``: an illegal (or either) input raised an :mod:`rlhf_envs.errors` class, a
  ``ValueError``/``TypeError`` or a file error whose message names the field (or file);
* ``unclear error``: any other exception, or a clear kind whose message names nothing;
* ``silently accepted``: an illegal input returned normally (or an *either* input returned a result
  that breaks an invariant);
* ``hang``: an input took longer than ``RLHF_FUZZ_TIMEOUT`` seconds (default 60);
* ``legal, broken``: a legal input raised, or returned a result that breaks an invariant.

Every test fails on the last four. The default run tries ``RLHF_FUZZ_EXAMPLES=25`` examples per
test (derandomised, no example database written); CI runs more with, e.g.,
``RLHF_FUZZ_EXAMPLES=300 python -m pytest -q -p no:xdist -m fuzz tests/test_fuzz.py``.
``python -m tests.fuzz_report`` runs this module and prints the table of outcomes per target.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rlhf_envs
from rlhf_envs.errors import RLHFEnvsError
from rlhf_envs.registration import TOY_IDS

pytestmark = [pytest.mark.fuzz, pytest.mark.usefixtures("one_torch_thread")]

EXAMPLES = int(os.environ.get("RLHF_FUZZ_EXAMPLES", "25"))
TIMEOUT = float(os.environ.get("RLHF_FUZZ_TIMEOUT", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
ENV_IDS = rlhf_envs.list_envs()
SIM_ID = "RLHF/SimulatedHuman-v0"
HUMAN_ID = "RLHF/HumanRatedReview-v0"
N_VEC = 3

LEGAL_OK, CLEAR, UNCLEAR, SILENT, HANG, BROKEN = (
    "legal, ok",
    "clear error",
    "unclear error",
    "silently accepted",
    "hang",
    "legal, broken",
)
OUTCOMES = (LEGAL_OK, CLEAR, UNCLEAR, SILENT, HANG, BROKEN)
#: (target, outcome) -> count, written to $RLHF_FUZZ_REPORT (JSON) when the module ends
COUNTS: collections.Counter = collections.Counter()


# -- running one input --------------------------------------------------------------------------------


class FuzzTimeout(BaseException):
    """Raised by the alarm inside a call that takes too long (a BaseException, so the code under
    test cannot swallow it in an ``except Exception``)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def alarm(signum, frame):  # noqa: ANN001
        raise FuzzTimeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def is_clear(exc: BaseException, names: tuple[str, ...]) -> bool:
    """A library error, ``ValueError``, ``TypeError`` or file error whose message names a field."""
    if not isinstance(exc, RLHFEnvsError | ValueError | TypeError | OSError):
        return False
    message = str(exc).lower()
    return any(n.lower() in message for n in names)


def attempt(
    target: str,
    legal: bool | None,
    call: Callable[[], Any],
    names: tuple[str, ...],
    check: Callable[[Any], str | None] | None = None,
    what: str = "",
) -> tuple[bool, Any]:
    """Run ``call`` under the time limit, classify and count the outcome, and fail on a bad one.

    ``legal``: True (must return and pass ``check``), False (must raise a clear error), None
    (either). ``names``: the fields (or file) a clear error message must name. Returns
    ``(returned_normally, result)``.
    """
    problem, result, raised = "", None, None
    try:
        with time_limit(TIMEOUT):
            result = call()
    except FuzzTimeout:
        outcome, problem = HANG, f"took more than {TIMEOUT:g} s"
    except Exception as exc:  # noqa: BLE001 - classifying every exception is the point
        raised = exc
        if legal is True:
            outcome = BROKEN
        else:
            outcome = CLEAR if is_clear(exc, names) else UNCLEAR
        problem = f"{type(exc).__name__}: {exc}"
    else:
        bad = check(result) if check is not None else None
        if legal is False:
            outcome, problem = SILENT, "returned normally"
        elif bad:
            outcome, problem = (BROKEN if legal else SILENT), bad
        else:
            outcome = LEGAL_OK
    COUNTS[(target, outcome)] += 1
    assert outcome in (LEGAL_OK, CLEAR), f"{target}: {outcome} for {what}: {problem}"[:3000]
    return raised is None and outcome == LEGAL_OK, result


@pytest.fixture(scope="module", autouse=True)
def _write_report() -> Iterator[None]:
    yield
    path = os.environ.get("RLHF_FUZZ_REPORT")
    if path:
        rows = [{"target": t, "outcome": o, "count": c} for (t, o), c in sorted(COUNTS.items())]
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rows) + "\n")


# -- invariants ----------------------------------------------------------------------------------------


def obs_problem(obs: Any, space: gym.spaces.Dict, prompt_len: Any = None, specials: tuple = ()) -> str | None:
    """What is wrong with a (single or batched) observation, or None."""
    if not isinstance(obs, dict) or set(obs) != {"input_ids", "attention_mask"}:
        return f"observation is not the Dict of input_ids/attention_mask: {type(obs)}"
    if not space.contains(obs):
        return "observation outside its space"
    mask = obs["attention_mask"].reshape(-1, obs["attention_mask"].shape[-1])
    ids = obs["input_ids"].reshape(mask.shape)
    n = mask.sum(1)
    if not np.array_equal(mask, (np.arange(mask.shape[1]) < n[:, None]).astype(mask.dtype)):
        return "attention_mask is not a prefix of ones"
    if prompt_len is not None:
        lens = np.broadcast_to(np.asarray(prompt_len), (len(ids),))
        for row, k in zip(ids, lens, strict=True):
            if any(s in row[:k] for s in specials):
                return f"a pad/EOS id inside the prompt (attention 1): {row[:k]}"
    return None


def step_problem(out: tuple, space: gym.spaces.Dict, vector: bool) -> str | None:
    obs, reward, term, trunc, info = out
    bad = obs_problem(obs, space)
    if bad:
        return bad
    if vector:
        if not (isinstance(reward, np.ndarray) and reward.shape == (N_VEC,) and np.all(np.isfinite(reward))):
            return f"rewards {reward!r} are not {N_VEC} finite numbers"
        if term.dtype != np.bool_ or trunc.dtype != np.bool_ or np.any(term & trunc):
            return "terminated/truncated are not exclusive bool arrays"
    else:
        if type(reward) is not float or not math.isfinite(reward):
            return f"reward {reward!r} is not a finite Python float"
        if type(term) is not bool or type(trunc) is not bool or (term and trunc):
            return "terminated/truncated are not exclusive Python bools"
    if not isinstance(info, dict):
        return "info is not a dict"
    return None


# -- the envs under test -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy_dir(tmp_path_factory) -> Path:
    """A small saved reward model, so RLHF/SimulatedHuman-v0 is fuzzed without a proxy fit."""
    from rlhf_envs.feedback.learned import RewardModel
    from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config, word_tokenizer

    tok = word_tokenizer()
    rm = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=16), tok, seed=0)
    rm.fit_preferences(["the food was great ."] * 8, ["the food was bad ."] * 8, ["A"] * 8, epochs=1)
    path = tmp_path_factory.mktemp("fuzz_proxy")
    rm.save(path)
    return path


def base_kwargs(env_id: str, proxy: Path) -> dict[str, Any]:
    """Small, fast settings for each id (language episodes of at most 6 tokens)."""
    if env_id in TOY_IDS:
        return {}
    kw: dict[str, Any] = {"max_new_tokens": 6}
    if env_id == SIM_ID:
        kw["proxy"] = str(proxy)
    if env_id == HUMAN_ID:
        kw["reward_model"] = str(proxy)
    return kw


@pytest.fixture(scope="module")
def envs(proxy_dir) -> dict:
    """One single env and one vector env per (id, autoreset mode), reused across examples."""
    cache: dict = {}

    def get(env_id: str, mode: AutoresetMode | None = None):
        key = (env_id, mode)
        if key not in cache:
            kw = base_kwargs(env_id, proxy_dir)
            if mode is None:
                cache[key] = gym.make(env_id, render_mode="ansi", **kw)
            else:
                cache[key] = gym.make_vec(env_id, num_envs=N_VEC, autoreset_mode=mode, **kw)
        return cache[key]

    return get


# -- strategies: actions, seeds, options ----------------------------------------------------------------

INT_DTYPES = [
    np.dtype(f"{order}{kind}{size}")
    for order in "<>"
    for kind in "iu"
    for size in (1, 2, 4, 8)
    if not (size == 1 and order == ">")
]


def _np_int(dtype: np.dtype, high: int) -> st.SearchStrategy:
    info = np.iinfo(dtype)
    small = st.integers(max(int(info.min), -3), min(int(info.max), high + 3))
    return (small | st.integers(int(info.min), int(info.max))).map(lambda v: np.array(v, dtype=dtype))


def single_actions(vocab: int) -> st.SearchStrategy:
    """(action, legal) for the single env: legal ids of every integer kind, and everything else."""

    def legal_int(v: Any) -> bool:
        return 0 <= int(v) < vocab

    legal_python = st.integers(0, vocab - 1).map(lambda v: (v, True))
    python_ints = st.integers(-(2**70), 2**70).map(lambda v: (v, legal_int(v)))
    numpy_scalars = (
        st.sampled_from(INT_DTYPES)
        .flatmap(lambda dt: _np_int(dt, vocab))
        .map(lambda a: (a[()], legal_int(a[()])))
    )
    zero_d = (
        st.sampled_from(INT_DTYPES).flatmap(lambda dt: _np_int(dt, vocab)).map(lambda a: (a, legal_int(a)))
    )
    illegal = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.text(max_size=4),
        st.lists(st.integers(0, vocab - 1), max_size=3),
        st.integers(0, vocab - 1).map(lambda v: np.array([v])),
        st.integers(0, vocab - 1).map(lambda v: np.float32(v)),
        st.integers(0, vocab - 1).map(lambda v: complex(v, 0)),
        st.integers(0, vocab - 1).map(lambda v: np.array(v, dtype=np.float64)),
        st.just(np.bool_(True)),
    ).map(lambda v: (v, False))
    return st.one_of(legal_python, legal_python, python_ints, numpy_scalars, zero_d, illegal)


def vector_actions(vocab: int, eos: int) -> st.SearchStrategy:
    """(actions, legal) for the vector env of N_VEC sub-envs."""

    def arrays(dt: np.dtype) -> st.SearchStrategy:
        info = np.iinfo(dt)
        hi = min(int(info.max), vocab - 1)
        legal_values = st.lists(st.integers(0, hi) | st.just(min(eos, hi)), min_size=N_VEC, max_size=N_VEC)
        any_values = st.lists(st.integers(int(info.min), int(info.max)), min_size=N_VEC, max_size=N_VEC)
        return (legal_values | any_values).map(lambda v: np.array(v, dtype=dt))

    def legal(a: np.ndarray) -> bool:
        return bool(np.all((a.astype(np.float64) >= 0) & (a.astype(np.float64) < vocab)))

    typed = st.sampled_from(INT_DTYPES).flatmap(arrays).map(lambda a: (a, legal(a)))
    lists = st.lists(st.integers(0, vocab - 1), min_size=N_VEC, max_size=N_VEC).map(lambda v: (v, True))
    illegal = st.one_of(
        st.lists(st.integers(0, vocab - 1), min_size=0, max_size=N_VEC - 1).map(np.array),
        st.lists(st.integers(0, vocab - 1), min_size=N_VEC + 1, max_size=N_VEC + 3).map(np.array),
        st.lists(st.floats(0, vocab - 1), min_size=N_VEC, max_size=N_VEC).map(np.array),
        st.lists(st.booleans(), min_size=N_VEC, max_size=N_VEC).map(np.array),
        st.integers(0, vocab - 1),
        st.integers(0, vocab - 1).map(np.int64),
        st.integers(0, vocab - 1).map(lambda v: np.full((N_VEC, 1), v)),
        st.just([[1], [2, 3], 4]),
        st.just(None),
        st.text(max_size=3),
        st.lists(st.integers(0, vocab - 1), min_size=N_VEC, max_size=N_VEC).map(
            lambda v: np.array(v, dtype=object)
        ),
        st.lists(st.integers(2**64, 2**70), min_size=N_VEC, max_size=N_VEC),
    ).map(lambda v: (v, False))
    return st.one_of(typed, typed, lists, illegal)


def seeds() -> st.SearchStrategy:
    """(seed, legal) for a single env."""
    legal = st.one_of(st.none(), st.integers(0, 2**128), st.integers(0, 2**31).map(np.int64)).map(
        lambda s: (s, True)
    )
    illegal = st.one_of(
        st.integers(-(2**70), -1),
        st.floats(allow_nan=True),
        st.booleans(),
        st.text(max_size=3),
        st.lists(st.integers(0, 9), max_size=2),
    ).map(lambda s: (s, False))
    return legal | illegal


def vector_seeds() -> st.SearchStrategy:
    element = st.none() | st.integers(0, 2**64)
    legal = st.one_of(
        st.none(), st.integers(0, 2**64), st.lists(element, min_size=N_VEC, max_size=N_VEC)
    ).map(lambda s: (s, True))
    illegal = st.one_of(
        st.integers(-(2**40), -1),
        st.floats(allow_nan=True),
        st.booleans(),
        st.text(max_size=3),
        st.lists(element, min_size=0, max_size=N_VEC - 1),
        st.lists(st.integers(-5, -1), min_size=N_VEC, max_size=N_VEC),
        st.lists(st.floats(0, 5), min_size=N_VEC, max_size=N_VEC),
    ).map(lambda s: (s, False))
    return legal | illegal


PROMPT_ALPHABET = st.characters(codec="utf-8") | st.sampled_from(
    ["<pad>", "<eos>", "=", "+", "a", "1", " ", "\ud800"]
)


def single_options() -> st.SearchStrategy:
    """(options, legal): a text prompt is *either* (the task decides); other shapes are illegal."""
    prompt_text = st.lists(PROMPT_ALPHABET, max_size=12).map("".join)
    either = st.one_of(st.none().map(lambda _: {}), prompt_text.map(lambda t: {"prompt": t})).map(
        lambda o: (o, None)
    )
    legal = st.just((None, True))
    illegal = st.one_of(
        st.one_of(
            st.integers(), st.none(), st.binary(max_size=4), st.lists(st.text(max_size=2), max_size=2)
        ).map(lambda v: {"prompt": v}),
        st.dictionaries(
            st.text(max_size=6).filter(lambda k: k != "prompt"), st.integers(), min_size=1, max_size=2
        ),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
        st.just({"reset_mask": np.ones(1, bool)}),
    ).map(lambda o: (o, False))
    return legal | either | illegal


def reset_masks() -> st.SearchStrategy:
    """(mask, legal) for a vector reset after the first one."""
    legal = st.lists(st.booleans(), min_size=N_VEC, max_size=N_VEC).filter(any)
    legal = st.one_of(legal.map(np.array), legal).map(lambda m: (m, True))
    illegal = st.one_of(
        st.just(np.zeros(N_VEC, dtype=bool)),
        st.lists(st.booleans(), min_size=0, max_size=N_VEC - 1).map(lambda v: np.array(v, dtype=bool)),
        st.lists(st.booleans(), min_size=N_VEC + 1, max_size=N_VEC + 2).map(
            lambda v: np.array(v, dtype=bool)
        ),
        st.lists(st.integers(0, 1), min_size=N_VEC, max_size=N_VEC).map(np.array),
        st.just(np.ones((N_VEC, 1), dtype=bool)),
        st.just(np.array(True)),
        st.just("all"),
        st.just(1),
    ).map(lambda m: (m, False))
    return legal | illegal


# -- the single env ------------------------------------------------------------------------------------


def _prompt_len(env: Any) -> int:
    return int(env.unwrapped._prompt_len)


@pytest.mark.parametrize("env_id", ENV_IDS)
@FUZZ
@given(data=st.data())
def test_fuzz_single_env(env_id: str, envs, data) -> None:
    env = envs(env_id)
    u = env.unwrapped
    space, specials = u.observation_space, (u.pad_id, u.eos_id)
    target = f"{env_id} single"
    seed, seed_legal = data.draw(seeds(), label="seed")
    options, opt_legal = data.draw(single_options(), label="options")
    legal = False if (seed_legal is False or opt_legal is False) else (None if opt_legal is None else True)

    def reset() -> Any:
        return env.reset(seed=seed, options=options)

    def check_reset(out: Any) -> str | None:
        obs, info = out
        if not isinstance(info.get("prompt"), str):
            return "info['prompt'] is not a str"
        return obs_problem(obs, space, _prompt_len(env), specials)

    names = ("seed", "option", "prompt", "reset_mask")
    ok, _ = attempt(target, legal, reset, names, check_reset, f"reset(seed={seed!r}, options={options!r})")
    if not ok:
        attempt(target, True, lambda: env.reset(seed=0), names, check_reset, "reset(seed=0) after an error")
    for action, action_legal in data.draw(
        st.lists(single_actions(u.vocab_size), max_size=10), label="actions"
    ):
        ok, out = attempt(
            target,
            action_legal,
            lambda a=action: env.step(a),
            ("action",),
            lambda o: step_problem(o, space, vector=False),
            f"step({action!r})",
        )
        if ok and (out[2] or out[3]):
            env.reset()


# -- the vector env ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(AutoresetMode), ids=lambda m: m.value)
@pytest.mark.parametrize("env_id", ENV_IDS)
@FUZZ
@given(data=st.data())
def test_fuzz_vector_env(env_id: str, mode: AutoresetMode, envs, data) -> None:
    vec = envs(env_id, mode)
    u = vec.unwrapped
    space = vec.observation_space
    target = f"{env_id} vector"
    seed, seed_legal = data.draw(vector_seeds(), label="seed")
    attempt(
        target,
        seed_legal,
        lambda: vec.reset(seed=seed),
        ("seed",),
        lambda out: obs_problem(out[0], space),
        f"reset(seed={seed!r})",
    )
    if not seed_legal:
        vec.reset(seed=0)
    done = np.zeros(N_VEC, dtype=bool)
    steps = data.draw(st.lists(vector_actions(u.vocab_size, u.eos_id), max_size=8), label="actions")
    for actions, legal in steps:
        if mode == AutoresetMode.DISABLED and done.any():
            mask, mask_legal = data.draw(reset_masks(), label="reset_mask")
            ok, _ = attempt(
                target,
                mask_legal,
                lambda m=mask: vec.reset(options={"reset_mask": m}),
                ("reset_mask",),
                lambda out: obs_problem(out[0], space),
                f"reset(options={{'reset_mask': {mask!r}}})",
            )
            if not ok or not np.asarray(mask)[done].all():
                vec.reset(options={"reset_mask": done})
            done[:] = False
        ok, out = attempt(
            target,
            legal,
            lambda a=actions: vec.step(a),
            ("action",),
            lambda o: step_problem(o, space, vector=True),
            f"step({actions!r})",
        )
        if ok:
            done = out[2] | out[3]


# -- constructor arguments -----------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-3, 40),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([True, False, None, "3", [1], 0.5, 1e-9, 1e9, np.float32(0.1), np.int64(4)]),
)


def _int_in(low: int, high: int) -> Callable[[Any], bool | None]:
    def rule(v: Any) -> bool:
        return not isinstance(v, bool | np.bool_) and isinstance(v, int | np.integer) and low <= v <= high

    return rule


def _float_in(low: float, high: float, low_open: bool = False) -> Callable[[Any], bool]:
    def rule(v: Any) -> bool:
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.integer | np.floating):
            return False
        x = float(v)
        return math.isfinite(x) and (x > low if low_open else x >= low) and x <= high

    return rule


def _or_none(rule: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """``None`` (the default) is legal too."""
    return lambda v: v is None or rule(v)


def _either_if(rule: Callable[[Any], bool]) -> Callable[[Any], bool | None]:
    """Legal by its own rule but maybe refused in combination: None (either) or False."""
    return lambda v: None if rule(v) else False


#: values of shaping={"potential": ...}: named scorers, dicts with options, and wrong values
POTENTIAL_SPECS = st.one_of(
    st.sampled_from(["scripted", "marks", "learned", "oracle", 3, None, "Scripted"]),
    st.fixed_dictionaries(
        {"scorer": st.sampled_from(["scripted", "marks", "x"])},
        optional={"gamma": NUMBERS, "scale": NUMBERS, "flip": NUMBERS, "span": NUMBERS, "seed": NUMBERS},
    ),
)
_MARKER_OPTIONS = {"flip": _float_in(0, 1), "span": _int_in(0, 1024), "seed": _int_in(0, 2**63 - 1)}


def _potential_rule(v: Any) -> bool | None:
    """Legal: "scripted" / "marks" or a dict of them with gamma in [0, 1], scale in [0, 1e6] and
    (marks only) the marker's options; "learned" needs a reward-model feedback (SimulatedHuman-v0)."""
    if isinstance(v, str):
        return True if v in ("scripted", "marks") else (None if v == "learned" else False)
    if not isinstance(v, dict) or v.get("scorer") not in ("scripted", "marks"):
        return False
    ok = _float_in(0, 1)(v.get("gamma", 1.0)) and _float_in(0, 1e6)(v.get("scale", 1.0))
    for key, rule in _MARKER_OPTIONS.items():
        if key in v:
            ok = ok and v["scorer"] == "marks" and rule(v[key])
    return ok


def _shaping_rule(v: Any) -> bool | None:
    if v is None:
        return True
    if not isinstance(v, dict):
        return False
    verdict: bool | None = True
    for k, c in v.items():
        if k == "potential":
            r = _potential_rule(c)
            if r is False:
                return False
            verdict = None if r is None else verdict
        elif not (k in ("step_penalty", "repeat_penalty") and _float_in(0, 1e6)(c)):
            return False
    return verdict


class _Feedback:
    def score(self, episodes):  # noqa: ANN001
        return np.zeros(len(episodes), dtype=np.float32)


COMMON_FIELDS: dict[str, tuple[st.SearchStrategy, Callable[[Any], bool | None]]] = {
    "render_mode": (
        # (only strings: gym.make itself calls render_mode.endswith() on a mode the env does not list)
        st.sampled_from([None, "ansi", "rgb_array", "human_", "", "ANSI"]),
        lambda v: v in (None, "ansi", "rgb_array"),
    ),
    "shaping": (
        st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(["step_penalty", "repeat_penalty", "kl", "x"]), NUMBERS, max_size=2
            ),
            st.sampled_from(["step_penalty", 0.1, [1]]),
            st.fixed_dictionaries({"potential": POTENTIAL_SPECS}, optional={"step_penalty": NUMBERS}),
        ),
        _shaping_rule,
    ),
    "feedback": (
        st.sampled_from([None, "vader", 3, "feedback-object"]),
        lambda v: v is None or v == "feedback-object",
    ),
}
STRING_FIELDS = {
    "min_length": (NUMBERS, _either_if(_int_in(1, 7))),
    "max_length": (NUMBERS, _either_if(_int_in(1, 7))),
    "n_symbols": (NUMBERS, _either_if(_int_in(2, 16))),
}
TOY_FIELDS = {
    "RLHF/Copy-v0": STRING_FIELDS,
    "RLHF/Reverse-v0": STRING_FIELDS,
    "RLHF/Sort-v0": {**STRING_FIELDS, "n_symbols": (NUMBERS, _either_if(_int_in(2, 10)))},
    "RLHF/Addition-v0": {"max_digits": (NUMBERS, _int_in(1, 3))},
}
PROMPT_LISTS = st.one_of(
    st.none(),
    st.lists(st.lists(PROMPT_ALPHABET, min_size=0, max_size=8).map("".join), min_size=0, max_size=3),
    st.sampled_from(["/nonexistent/prompts.txt", 3, b"x"]),
)
LANGUAGE_FIELDS = {
    "max_new_tokens": (NUMBERS, _either_if(_or_none(_int_in(1, 255)))),
    "max_prompt_tokens": (NUMBERS, _either_if(_or_none(_int_in(1, 1 << 20)))),
    "kl_coef": (NUMBERS, _float_in(0, 1e3)),
    "ref_temperature": (NUMBERS, _float_in(1e-3, 1e3)),
    "ref_logprobs": (st.sampled_from([True, False, 0, "no", None]), lambda v: isinstance(v, bool)),
    "device": (st.sampled_from(["cpu", "banana", 3, "cuda:99"]), lambda v: v == "cpu"),
    "dtype": (st.sampled_from(["float32", "fp32", "int8", "float13", 3]), lambda v: v in ("float32", "fp32")),
    "model": (
        st.sampled_from([None, "default", "/nonexistent/model", "./nope", "no-such-model-name"]),
        lambda v: v in (None, "default"),
    ),
    "prompts": (PROMPT_LISTS, lambda v: None if v is None or (isinstance(v, list) and v) else False),
}
LENGTH_FIELDS = {
    "min_words": (NUMBERS, _either_if(_int_in(1, 64))),
    "max_words": (NUMBERS, _either_if(_int_in(1, 64))),
}
SIM_FIELDS = {
    "rater": (
        st.sampled_from(["Mistake", "oracle", "Stoc", "nobody", 3]),
        lambda v: isinstance(v, str) and v.lower() in ("mistake", "oracle", "stoc"),
    ),
    "aggregate": (st.sampled_from([None, "mean", "min", "max", 3]), lambda v: v in (None, "mean", "min")),
    "gold": (
        st.sampled_from(["vader", "fluent_vader", "bleu", None]),
        lambda v: v in ("vader", "fluent_vader"),
    ),
    "fit_lr": (NUMBERS, _float_in(0, 1, low_open=True)),
    "n_members": (NUMBERS, _int_in(1, 64)),
    "proxy_seed": (NUMBERS, _int_in(0, 2**63 - 1)),
    "cache": (st.sampled_from([True, False, "yes", 1]), lambda v: isinstance(v, bool)),
}

IMPLICIT_ID = "RLHF/ImplicitFeedback-v0"
IMPLICIT_FIELDS = {
    "estimator": (
        st.sampled_from(["debiased", "raw", "satisfied", "debiased_satisfied", "clicks", 3, None]),
        lambda v: v in ("debiased", "raw", "satisfied", "debiased_satisfied"),
    ),
    "list_size": (NUMBERS, _either_if(_int_in(1, 100))),
    # legal alone, but an extreme value with few swap impressions may leave the swap experiment
    # without clicks: a clear error naming swap_impressions
    "position_bias": (NUMBERS, _either_if(_float_in(0, 10))),
    "abandonment": (NUMBERS, _either_if(lambda v: _float_in(0, 1)(v) and float(v) < 1)),
    "dwell_threshold": (NUMBERS, _float_in(0, 1e6, low_open=True)),
    "clip": (NUMBERS, _float_in(0, 1, low_open=True)),
    "swap_impressions": (NUMBERS, _either_if(_int_in(100, 10**6))),
    "calibration_prompts": (NUMBERS, _either_if(_int_in(1, 256))),
}


def fields_of(env_id: str) -> dict:
    if env_id in TOY_IDS:
        return {**COMMON_FIELDS, **TOY_FIELDS[env_id]}
    out = {**COMMON_FIELDS, **LANGUAGE_FIELDS}
    if env_id == "RLHF/Length-v0":
        out.update(LENGTH_FIELDS)
    if env_id == SIM_ID:
        out.update(SIM_FIELDS)
    if env_id == IMPLICIT_ID:
        out.update(IMPLICIT_FIELDS)
    return out


@st.composite
def constructor_kwargs(draw, env_id: str):  # noqa: ANN001, ANN201
    """(kwargs, legal, names): a few fields with values from the field's strategy, maybe an unknown
    name. ``legal``: False if any value breaks its field's rule, else None (either). ``names``: all
    the fields given (a clear error names one of them: the first check to fail may be about a
    field that is fine alone but not with the others)."""
    table = fields_of(env_id)
    chosen = draw(st.lists(st.sampled_from(sorted(table)), max_size=3, unique=True))
    kwargs, legal = {}, None
    for name in chosen:
        strategy, rule = table[name]
        value = draw(strategy)
        kwargs[name] = _Feedback() if value == "feedback-object" else value
        if rule(value) is False:
            legal = False
    if draw(st.booleans().map(lambda b: b and len(chosen) < 3)):
        name = draw(st.sampled_from(["max_lenght", "klcoef", "prompt", "seed", "num_env"]))
        kwargs[name], legal = 1, False
    return kwargs, legal, tuple(kwargs) or ("argument",)


def _works(env: Any, vector: bool) -> str | None:
    """Reset and run one short episode; what went wrong, or None."""
    space = env.observation_space
    obs, _ = env.reset(seed=0)
    bad = obs_problem(obs, space)
    if bad:
        return bad
    eos = env.unwrapped.eos_id
    out = env.step(np.full(N_VEC, eos) if vector else eos)
    return step_problem(out, space, vector) if not vector or env.num_envs == N_VEC else None


@pytest.mark.parametrize("env_id", ENV_IDS)
@FUZZ
@given(data=st.data())
def test_fuzz_constructor_kwargs(env_id: str, proxy_dir, data) -> None:
    kwargs, legal, names = data.draw(constructor_kwargs(env_id), label="kwargs")
    base = base_kwargs(env_id, proxy_dir)
    if "max_new_tokens" in kwargs or "max_prompt_tokens" in kwargs or "model" in kwargs:
        base.pop("max_new_tokens", None)
    full = {**base, **kwargs}
    vector = data.draw(st.booleans(), label="vector")
    if vector:
        n, n_legal = data.draw(
            st.one_of(
                st.just((N_VEC, True)),
                st.sampled_from([0, -1, 2**40, 2.0, "3", True]).map(lambda v: (v, False)),
            ),
            label="num_envs",
        )
        legal = False if n_legal is False else legal
        names = (*names, "num_envs") if not n_legal else names

        def make() -> Any:
            env = gym.make_vec(env_id, num_envs=n, **full)
            bad = _works(env, vector=True)
            env.close()
            return bad

    else:

        def make() -> Any:
            env = gym.make(env_id, **full)
            bad = _works(env, vector=False)
            env.close()
            return bad

    attempt(
        f"{env_id} constructor", legal, make, names, lambda bad: bad, f"kwargs={kwargs!r} vector={vector}"
    )


# -- prompt files with generated corruptions ------------------------------------------------------------

TEXT_TASKS = ["sentiment", "keywords", "length"]
GOOD_PROMPTS = ["I bought this phone.", "We ate here, twice.", 'She said "fine".', "Ünïcödé café ☕."]
BAD_KEYS = ["keyword", "target_word", "Prompt", "promt", "keywords_", "text"]
_counter = itertools.count()


def _record(task: str, prompt: str, words: list[str]) -> dict:
    if task == "keywords":
        return {"keywords": words, "prompt": prompt}
    if task == "length":
        return {"prompt": prompt, "target_words": len(words) + 3}
    return {"prompt": prompt}


def _render(fmt: str, task: str, records: list[dict]) -> str:
    """Write records as a file of format ``fmt`` (what a careful user would write)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if fmt == "json":
        return json.dumps(records, ensure_ascii=False)
    if fmt == "csv":
        import csv
        import io

        cols = list(dict.fromkeys(k for r in records for k in r)) or ["prompt"]
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(cols)
        for r in records:
            row = []
            for c in cols:
                v = r.get(c, "")
                row.append(", ".join(v) if isinstance(v, list) else str(v))
            writer.writerow(row)
        return buf.getvalue()
    lines = []
    for r in records:
        if task == "keywords":
            lines.append(f"Words: {', '.join(r['keywords'])}. {r['prompt']}")
        elif task == "length":
            lines.append(f"({r['target_words']} words) {r['prompt']}")
        else:
            lines.append(r["prompt"])
    return "\n".join(lines) + "\n"


@st.composite
def prompt_files(draw, task: str):  # noqa: ANN001, ANN201
    """(bytes, suffix, legal, injected): a well-formed file of the task's records, then maybe a
    known fault (illegal) or a random corruption (either)."""
    fmt = draw(st.sampled_from(["txt", "jsonl", "json", "csv"]))
    words = draw(
        st.lists(st.sampled_from(["rain", "bridge", "fox", "garden"]), min_size=1, max_size=3, unique=True)
    )
    prompts = draw(st.lists(st.sampled_from(GOOD_PROMPTS), min_size=1, max_size=4))
    records = [_record(task, p, words) for p in prompts]
    legal: bool | None = True
    fault = draw(
        st.sampled_from(
            ["none", "none", "special", "surrogate", "bad_key", "empty_prompt", "not_object", "empty_file"]
        )
    )
    if fault == "special":
        records[-1]["prompt"] += draw(st.sampled_from([" <pad>", "<eos>", " <pad><pad>"]))
        legal = False
    elif fault == "surrogate" and fmt in ("jsonl", "json"):
        records[0]["prompt"] = "broken \ud800 text"
        legal = False
    elif fault == "bad_key" and fmt in ("jsonl", "json"):
        records[0][draw(st.sampled_from(BAD_KEYS))] = records[0].pop(
            "keywords" if task == "keywords" else ("target_words" if task == "length" else "prompt")
        )
        legal = False
    elif fault == "empty_prompt" and fmt in ("jsonl", "json"):
        records[0]["prompt"] = draw(st.sampled_from(["", "   "]))
        legal = False
    elif fault == "not_object" and fmt in ("jsonl", "json"):
        text = (
            "[1, 2]\n" if fmt == "jsonl" else json.dumps([records[0], 7])
        )  # a line that is not an object / an item that is not a string or object
        return text.encode(), f".{fmt}", False, fault
    elif fault == "empty_file":
        return draw(st.sampled_from([b"", b"\n\n  \n", b"\xef\xbb\xbf"])), f".{fmt}", False, fault
    text = _render(fmt, task, records)
    if "\ud800" in text:
        raw = (
            text.encode("utf-8", "surrogatepass")
            if fmt not in ("jsonl", "json")
            else text.encode("utf-8", "backslashreplace")
        )
    else:
        raw = text.encode("utf-8")
    corruption = draw(
        st.sampled_from(
            ["none", "none", "bom8", "bom16", "utf16", "latin1", "bytes", "truncate", "nul", "suffix", "deep"]
        )
    )
    if corruption == "bom8":
        raw = b"\xef\xbb\xbf" + raw  # stays legal: the BOM is dropped
    elif corruption == "bom16":
        raw, legal = b"\xff\xfe" + raw, False
    elif corruption == "utf16":
        raw, legal = text.encode("utf-16", "surrogatepass"), False
    elif corruption == "latin1":
        raw = text.encode("latin-1", "replace")
        legal = None  # may replace a lone surrogate (the fault) with '?'
    elif corruption == "bytes":
        noise = draw(
            st.lists(
                st.tuples(st.integers(0, max(0, len(raw))), st.binary(min_size=1, max_size=3)), max_size=3
            )
        )
        for pos, blob in sorted(noise, reverse=True):
            raw = raw[:pos] + blob + raw[pos:]
        legal = None  # a random corruption may also remove the fault
    elif corruption == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
        legal = None  # a random corruption may also remove the fault
    elif corruption == "nul":
        raw = raw.replace(b" ", b"\x00", 1)
        legal = None  # a random corruption may also remove the fault
    elif corruption == "suffix":
        fmt = draw(st.sampled_from(["txt", "jsonl", "json", "csv", "tsv", "prompts"]))
        legal = None  # a random corruption may also remove the fault
    elif corruption == "deep" and fmt in ("json", "jsonl"):
        raw, legal = b"[" * 50_000 + b"]" * 50_000, False
    return raw, f".{fmt}", legal, f"{fault}/{corruption}"


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_prompts")


def _records_problem(task: Any) -> str | None:
    """Invariants of loaded prompts: plain Unicode text, no BOM, no pad/EOS id, no CSV header row."""
    from rlhf_envs.tasks.base import check_prompt_text

    tok = task.tokenizer
    for where, record in task.records:
        prompt = task.make_prompt(record, np.random.default_rng(0))
        try:
            check_prompt_text(prompt.text, where)
        except Exception as exc:  # noqa: BLE001
            return f"{where}: {exc}"
        if "\ufeff" in prompt.text:
            return f"{where}: a byte-order mark in the prompt {prompt.text!r}"
        if tok.pad_id in prompt.ids or tok.eos_id in prompt.ids:
            return f"{where}: pad/EOS id in the prompt {prompt.text!r}"
        if record.get("prompt") in ("prompt", "keywords,prompt", "prompt,target_words"):
            return f"{where}: the CSV header became a prompt"
    return None


@pytest.mark.parametrize("task_name", TEXT_TASKS)
@FUZZ
@given(data=st.data())
def test_fuzz_prompt_files(task_name: str, prompt_dir: Path, data) -> None:
    from rlhf_envs.tasks.base import make_task

    raw, suffix, legal, how = data.draw(prompt_files(task_name), label="file")
    path = prompt_dir / f"p{next(_counter)}{suffix}"
    path.write_bytes(raw)

    def load() -> Any:
        return make_task(task_name, prompts=str(path), ref_logprobs=False)

    attempt(
        "prompt files",
        legal,
        load,
        (path.name,),
        _records_problem,
        f"{task_name} task, {how}, {path.name}: {raw[:200]!r}",
    )


@pytest.mark.parametrize("task_name", TEXT_TASKS)
def test_fuzz_prompt_file_paths(task_name: str, prompt_dir: Path) -> None:
    """Paths that are not prompt files: a directory, a missing file, a device, odd names."""
    from rlhf_envs.tasks.base import make_task

    cases = [
        (str(prompt_dir), prompt_dir.name),
        (str(prompt_dir / "missing.txt"), "missing.txt"),
        ("/dev/null", "/dev/null"),
        (str(prompt_dir / ("x" * 300 + ".txt")), "x" * 40),
        ("bad\x00name.txt", "bad"),
        ("", "prompt"),
    ]
    for value, name in cases:
        attempt(
            "prompt files",
            False,
            lambda v=value: make_task(task_name, prompts=v, ref_logprobs=False),
            (name, "prompt"),
            what=f"prompts={value[:60]!r}",
        )


# -- model directories ------------------------------------------------------------------------------------
#
# A tiny GPT-2 or Llama saved with the embedded model's tokenizer, then damaged: tensors dropped, added,
# reshaped, retyped or made non-finite, config.json edited (layer count, entries dropped or given
# another type, garbage), files truncated, deleted or swapped (another tokenizer, pickle weights), and
# bytes flipped in the safetensors header. Each damaged directory goes to the three loaders that take
# a model directory. Damage that must break the model is *illegal* (a clear error naming the
# directory); damage that may leave the model intact (a dropped config entry equal to its default, a
# flipped header byte that only changes metadata) is *either*: a clear error, or a model that computes
# exactly what the undamaged one does. Byte flips inside the tensor data are left out: a safetensors
# file has no checksum, so such a flip is a different valid model.

MODEL_LOADERS = ["gym.make", "PPO", "RewardModel"]
LOADER_TARGET = {
    "gym.make": "model dirs: gym.make",
    "PPO": "model dirs: PPO(policy='lm')",
    "RewardModel": "model dirs: RewardModel",
}
_WEIGHTS = "model.safetensors"
_PROBE = [[5, 17, 230, 41, 9, 1000, 3]]
_dir_counter = itertools.count()


@pytest.fixture(scope="module")
def model_bases(tmp_path_factory, tiny_causal_lm) -> dict[str, Path]:
    """One saved tiny model per architecture, with the embedded model's tokenizer."""
    from transformers import AutoTokenizer

    from rlhf_envs.lm.loading import DEFAULT_MODEL_DIR

    tok = AutoTokenizer.from_pretrained(str(DEFAULT_MODEL_DIR), local_files_only=True)
    out = {}
    for kind in ("gpt2", "llama"):
        path = tmp_path_factory.mktemp(f"fuzz_model_{kind}")
        tiny_causal_lm(kind, vocab=len(tok), width=16, layers=2, heads=2).save_pretrained(path)
        tok.save_pretrained(path)
        out[kind] = path
    return out


@pytest.fixture(scope="module")
def model_reference(model_bases) -> dict:
    """What each undamaged model computes, per loader (the "same model" check of *either* inputs)."""
    return {}


def _logits(lm: Any) -> np.ndarray:
    import torch

    with torch.no_grad():
        return lm(input_ids=torch.tensor(_PROBE)).logits.float().numpy()


def _load_model_dir(loader: str, path: Path) -> Any:
    """Load ``path`` the way a user would; return what the loader computes on a fixed input."""
    if loader == "gym.make":
        env = gym.make("RLHF/Sentiment-v0", model=str(path), max_new_tokens=4)
        try:
            env.reset(seed=0)
            return _logits(env.unwrapped.task.lm)
        finally:
            env.close()
    if loader == "PPO":
        from agents import PPO

        agent = PPO("RLHF/Sentiment-v0", policy="lm", model=str(path), n_envs=1, seed=0)
        try:
            return _logits(agent.policy.lm)
        finally:
            agent.env.close()
    from rlhf_envs.feedback.learned import RewardModel

    return RewardModel(path, seed=0, batch_size=2).score_texts(["the rain fell.", "I loved the soup."])


@st.composite
def model_damage(draw):  # noqa: ANN001, ANN201
    """A list of (op, parameters) and whether the result is legal (True), illegal (False) or either."""
    ops = draw(
        st.lists(
            st.sampled_from(
                [
                    "none",
                    "reformat_config",
                    "drop_tensor",
                    "extra_tensor",
                    "reshape_tensor",
                    "retype_tensor",
                    "nonfinite",
                    "config_layers",
                    "config_drop",
                    "config_retype",
                    "config_token_id",
                    "tokenizer_swap",
                    "tokenizer_eos",
                    "truncate",
                    "header_flip",
                    "config_garbage",
                    "delete_file",
                    "pickle_only",
                ]
            ),
            min_size=1,
            max_size=2,
        )
    )
    steps = []
    for op in ops:
        params: dict[str, Any] = {"seed": draw(st.integers(0, 2**31 - 1))}
        legal: bool | None = True  # this step's own verdict; combined by _combined_legality
        if op in ("none", "reformat_config"):
            pass
        elif op in ("config_drop", "config_retype", "header_flip"):
            legal = None
            if op == "config_retype":
                params["value"] = draw(st.sampled_from(["x", "7", 7, 2.5, -1, 0, True, None, [1], {"a": 1}]))
        elif op == "delete_file":
            params["name"] = draw(
                st.sampled_from(["config.json", _WEIGHTS, "tokenizer.json", "tokenizer_config.json"])
            )
            legal = False if params["name"] in ("config.json", _WEIGHTS) else None
        else:
            legal = False if op != "config_token_id" else True
            if op == "config_layers":
                params["delta"] = draw(st.sampled_from([-2, -1, 1, 2, 5]))
            elif op == "nonfinite":
                params["value"] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
            elif op == "retype_tensor":
                params["dtype"] = draw(st.sampled_from(["int64", "int32", "uint8", "bool"]))
            elif op == "tokenizer_swap":
                params["words"] = draw(st.integers(3, 40))
            elif op == "config_token_id":  # (BOS: the tokenizer has none, so any in-vocabulary id is fine)
                params["name"] = draw(st.sampled_from(["eos_token_id", "pad_token_id", "bos_token_id"]))
                params["value"] = draw(st.sampled_from([2, 7, 2287, [3, 4]]))
                legal = None if params["name"] == "bos_token_id" else False
        params["legal"] = legal
        steps.append((op, params))
    # file-level damage last (it may replace the weights file)
    steps.sort(
        key=lambda s: s[0] in ("truncate", "header_flip", "config_garbage", "delete_file", "pickle_only")
    )
    return draw(st.sampled_from(["gpt2", "llama"])), steps, _combined_legality(steps)


def _combined_legality(steps: list) -> bool | None:
    """Illegal if any step is, "either" if any step may or may not be, else legal."""
    verdicts = [params["legal"] for _, params in steps]
    if False in verdicts:
        return False
    return None if None in verdicts else True


def _damage_model_dir(path: Path, steps: list, loader: str) -> bool | None:
    """Apply ``steps`` to the model dir at ``path``; return the legality of what was done for
    ``loader``: a step that had nothing to act on (the layer count after an earlier step removed or
    retyped it) or that another undoes (layers -2 then +2) is no damage, and a reward model does not
    read a causal LM's output layer, so damage to ``lm_head.*`` may be refused or ignored (then it
    must compute the same scores)."""
    import torch
    from safetensors.torch import load_file, save_file

    layer_counts: dict[str, int] = {}
    layer_steps: list[dict] = []
    for op, params in steps:
        rng = np.random.default_rng(params["seed"])
        weights = path / _WEIGHTS
        if op == "none":
            continue
        if op == "reformat_config":
            data = json.loads((path / "config.json").read_text())
            (path / "config.json").write_text(json.dumps(data, indent=4, sort_keys=True))
        elif op in ("drop_tensor", "extra_tensor", "reshape_tensor", "retype_tensor", "nonfinite"):
            if not weights.is_file():
                continue
            tensors = load_file(str(weights))
            keys = sorted(tensors)
            key = keys[int(rng.integers(len(keys)))]
            if loader == "RewardModel" and key.startswith("lm_head."):
                # a reward model does not read the output layer: damage to it may be refused (a
                # reshaped one no longer fits the file's layout) or ignored (same scores)
                params["legal"] = None
            if op == "drop_tensor":
                del tensors[key]
            elif op == "extra_tensor":
                name = ["lm_head.bias", f"{key}.extra", "junk", f"{key.rsplit('.', 2)[0]}.new.weight"]
                tensors[name[int(rng.integers(4))]] = torch.zeros(int(rng.integers(1, 5)))
            elif op == "reshape_tensor":
                shape = list(tensors[key].shape)
                shape[int(rng.integers(len(shape)))] += int(rng.choice([-1, 1, 3]))
                tensors[key] = torch.zeros([max(0, d) for d in shape])
            elif op == "retype_tensor":
                tensors[key] = tensors[key].to(getattr(torch, params["dtype"]))
            elif not tensors[key].is_floating_point() or tensors[key].numel() == 0:
                params["legal"] = True  # an earlier step made it an integer tensor: no NaN to put
                continue
            else:
                flat = tensors[key].reshape(-1).clone()
                flat[int(rng.integers(flat.numel()))] = params["value"]
                tensors[key] = flat.reshape(tensors[key].shape)
            save_file(tensors, str(weights), metadata={"format": "pt"})
        elif op in ("config_layers", "config_drop", "config_retype", "config_token_id"):
            cfg = json.loads((path / "config.json").read_text())
            if op == "config_layers":
                name = "n_layer" if "n_layer" in cfg else "num_hidden_layers"
                value = cfg.get(name)
                if isinstance(value, bool) or not isinstance(value, int):
                    params["legal"] = True  # an earlier step dropped or retyped it: nothing to change
                    continue
                cfg[name] = max(0, value + params["delta"])
                original = layer_counts.setdefault(name, value)
                layer_steps.append(params)
                for p in layer_steps:  # -2 then +2 is the original count again: no damage
                    p["legal"] = True if cfg[name] == original else False
            elif op == "config_token_id":
                cfg[params["name"]] = params["value"]
            else:
                name = sorted(cfg)[int(rng.integers(len(cfg)))]
                if op == "config_drop":
                    del cfg[name]
                else:
                    old, new = cfg[name], params["value"]
                    number = (int, float)
                    if type(old) is type(new) or (
                        isinstance(old, number)
                        and isinstance(new, number)
                        and not isinstance(old, bool)
                        and not isinstance(new, bool)
                    ):
                        # a well-typed new value of a hyperparameter (rms_norm_eps = 2.5): a legal
                        # config of another model, so what it computes may differ from the original
                        params["edits_model"] = True
                    cfg[name] = new
            (path / "config.json").write_text(json.dumps(cfg))
        elif op == "tokenizer_swap":
            from rlhf_envs.feedback.review_fixtures import word_tokenizer

            for name in ("tokenizer.json", "tokenizer_config.json"):
                (path / name).unlink(missing_ok=True)
            words = [f"w{i}" for i in range(params["words"])]
            word_tokenizer([" ".join(words)]).save_pretrained(path)
        elif op == "tokenizer_eos":
            tok_cfg = json.loads((path / "tokenizer_config.json").read_text())
            tok_cfg["eos_token"] = "the"
            (path / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
        elif op == "truncate" and weights.is_file():
            data = weights.read_bytes()
            weights.write_bytes(data[: int(rng.integers(len(data)))])
        elif op == "header_flip" and weights.is_file():
            data = bytearray(weights.read_bytes())
            end = 8 + int.from_bytes(data[:8], "little")
            i = int(rng.integers(min(end, len(data))))
            data[i] ^= int(rng.integers(1, 256))
            weights.write_bytes(bytes(data))
        elif op == "config_garbage":
            choice = int(rng.integers(4))
            blob = [b"", b"[1, 2]", b'"gpt2"', rng.bytes(int(rng.integers(1, 200)))][choice]
            (path / "config.json").write_bytes(blob)
        elif op == "delete_file":
            (path / params["name"]).unlink(missing_ok=True)
        elif op == "pickle_only" and weights.is_file():
            try:
                tensors = load_file(str(weights))
            except Exception:  # noqa: BLE001 - already damaged beyond reading: drop it
                tensors = {}
            torch.save(tensors, str(path / "pytorch_model.bin"))
            weights.unlink()
    return _combined_legality(steps)


@pytest.mark.parametrize("loader", MODEL_LOADERS)
@FUZZ
@given(data=st.data())
def test_fuzz_model_dirs(loader: str, model_bases, model_reference, tmp_path_factory, data) -> None:
    import shutil

    kind, steps, _ = data.draw(model_damage(), label="damage")
    steps = [(op, dict(params)) for op, params in steps]  # the damage may revise a step's verdict
    key = (loader, kind)
    if key not in model_reference:  # what the undamaged model computes
        model_reference[key] = _load_model_dir(loader, model_bases[kind])
    path = tmp_path_factory.getbasetemp() / f"fuzz_model_dir_{next(_dir_counter)}"
    shutil.copytree(model_bases[kind], path)
    legal = _damage_model_dir(path, steps, loader)

    def same(result: Any) -> str | None:
        if any(params.get("edits_model") for _, params in steps):
            return None  # a legal edit of the config: loading it is right, its outputs may differ
        ref = model_reference[key]
        if np.shape(result) != np.shape(ref) or not np.allclose(result, ref, rtol=1e-5, atol=1e-6):
            return "loaded a model that computes something else than the undamaged one"
        return None

    attempt(
        LOADER_TARGET[loader],
        legal,
        lambda: _load_model_dir(loader, path),
        (path.name,),
        same,
        f"{kind} dir damaged by {steps}",
    )
    shutil.rmtree(path, ignore_errors=True)


# -- the harness itself ----------------------------------------------------------------------------------


def test_harness_classifies_every_outcome(monkeypatch) -> None:
    """The classifier counts each kind of outcome and fails on the four bad ones."""
    import time

    from rlhf_envs.errors import ConfigValueError

    before = COUNTS.copy()

    def raise_(exc: BaseException) -> Any:
        raise exc

    assert attempt("harness", True, lambda: 1, ("x",)) == (True, 1)
    attempt("harness", False, lambda: raise_(ConfigValueError("x must be finite")), ("x",))
    attempt("harness", None, lambda: raise_(ValueError("bad x")), ("x",))
    with pytest.raises(AssertionError, match="unclear error"):
        attempt("harness", False, lambda: raise_(KeyError("x")), ("x",))
    with pytest.raises(AssertionError, match="unclear error"):
        attempt("harness", False, lambda: raise_(ValueError("bad value")), ("x",))  # names no field
    with pytest.raises(AssertionError, match="silently accepted"):
        attempt("harness", False, lambda: 1, ("x",))
    with pytest.raises(AssertionError, match="silently accepted"):
        attempt("harness", None, lambda: 1, ("x",), check=lambda r: "reward is NaN")
    with pytest.raises(AssertionError, match="legal, broken"):
        attempt("harness", True, lambda: raise_(ValueError("x")), ("x",))
    monkeypatch.setattr(sys.modules[__name__], "TIMEOUT", 0.2)
    with pytest.raises(AssertionError, match="hang"):
        attempt("harness", True, lambda: time.sleep(5), ("x",))
    got = {o: COUNTS[("harness", o)] - before[("harness", o)] for o in OUTCOMES}
    assert got == {LEGAL_OK: 1, CLEAR: 2, UNCLEAR: 2, SILENT: 2, HANG: 1, BROKEN: 1}
    for outcome in OUTCOMES:  # keep the harness's own inputs out of the report
        COUNTS.pop(("harness", outcome), None)
