"""Exceptions raised by rlhf_envs.

Every error says what was wrong and what is allowed, so a user can fix the call without reading the
source. They subclass the built-in exception a Python user would expect (``ValueError`` for bad
values, ``TypeError`` for bad types) so generic ``except`` clauses keep working.
"""

from __future__ import annotations

import gymnasium as gym


class InvalidActionError(ValueError):
    """An action that is not an integer token id in ``[0, vocab_size)``."""


class EpisodeFinishedError(gym.error.ResetNeeded):
    """``step`` was called on an episode that already terminated or truncated."""


class FeedbackError(ValueError):
    """A feedback model returned something that is not one finite float per episode."""


class BudgetExhaustedError(FeedbackError):
    """A simulated (or real) rater refused queries because the feedback budget is spent.

    Raised before anything is answered or charged, so the caller can stop asking or raise the budget.
    """


class ConfigError(TypeError):
    """An unknown or ill-typed constructor argument, reset option or task parameter."""


def check_known_keys(given: dict, allowed: set[str] | list[str], what: str) -> None:
    """Raise :class:`ConfigError` if ``given`` has keys outside ``allowed``.

    ``what`` names the thing being configured ("RLHF/Copy-v0 arguments", "reset options") so the
    message points at the right call.
    """
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown {what}: {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(map(repr, sorted(allowed))) or '(none)'}"
        )


class DataError(ValueError):
    """A data file that does not parse or does not match its pinned checksum (the message names the
    file and line), or an unknown domain or split."""


class DataUnavailableError(RuntimeError):
    """A data set is not in the cache and could not be fetched; the message says what to run."""
