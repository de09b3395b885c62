"""Checks of single settings, shared by the agents' configs (:mod:`agents.config`, the RLHF loop's).

Each check raises :class:`~rlhf_envs.errors.ConfigError` with a message that names the field, says
what is allowed and shows the value given, so ``PPO(max_grad_norm=-1)`` fails when the config is
built instead of silently turning gradient descent into ascent. Booleans are never accepted as
numbers (``True`` is an ``int`` in Python), and NaN or infinity never pass a range check.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigError


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def check_int(name: str, value: Any, low: int = 1, high: int | None = None, where: str = "") -> int:
    """``value`` as an int in ``[low, high]`` (``high=None``: no upper bound)."""
    bound = f">= {low}" if high is None else f"in [{low}, {high}]"
    if (
        not isinstance(value, int | np.integer)
        or isinstance(value, bool | np.bool_)
        or value < low
        or (high is not None and value > high)
    ):
        raise ConfigError(f"{where}{name} must be an int {bound}, got {value!r}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
    where: str = "",
) -> float | None:
    """``value`` as a finite float in the interval from ``low`` to ``high``.

    ``low_open`` / ``high_open`` exclude the bound itself (``low=0, low_open=True``: positive).
    ``allow_none`` lets ``None`` through (a setting that "disables" something).
    """
    if value is None and allow_none:
        return None
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    if low == -math.inf and high == math.inf:
        allowed = "a finite number"
    elif high == math.inf:
        allowed = f"a finite number {'>' if low_open else '>='} {low:g}"
    elif low == -math.inf:
        allowed = f"a finite number {'<' if high_open else '<='} {high:g}"
    else:
        allowed = f"a number in {lo}{low:g}, {high:g}{hi}"
    if allow_none:
        allowed += " or None"
    ok = _is_number(value) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        raise ConfigError(f"{where}{name} must be {allowed}, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any, *, allow_none: bool = False, where: str = "") -> bool | None:
    """``value`` as a bool (``True``/``False``; ``None`` too with ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, bool | np.bool_):
        allowed = "True, False or None" if allow_none else "True or False"
        raise ConfigError(f"{where}{name} must be {allowed}, got {value!r}")
    return bool(value)


def check_choice(name: str, value: Any, allowed: Iterable[Any], where: str = "") -> Any:
    """``value`` if it is one of ``allowed``."""
    allowed = tuple(allowed)
    if not any(value == a and type(value) is type(a) for a in allowed):
        raise ConfigError(f"{where}{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def check_path(name: str, value: Any, *, allow_none: bool = True, where: str = "") -> str | None:
    """``value`` as a path string (``str`` or ``os.PathLike``; ``None`` with ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        allowed = "a path (str or os.PathLike)" + (" or None" if allow_none else "")
        raise ConfigError(f"{where}{name} must be {allowed}, got {value!r}")
    return os.fspath(value)
