"""Exceptions raised by rlhf_envs.

Every error says what was wrong and what is allowed, so a user can fix the call without reading the
source. They subclass the built-in exception a Python user would expect (``ValueError`` for bad
values, ``TypeError`` for bad types) so generic ``except`` clauses keep working.
"""

from __future__ import annotations

import gymnasium as gym


class RLHFEnvsError(Exception):
    """Base class of every error this library raises on purpose (catch it to tell a bad input,
    reported with a message that says what is allowed, from a bug)."""


class InvalidActionError(RLHFEnvsError, ValueError):
    """An action that is not an integer token id in ``[0, vocab_size)``."""


class ActionTypeError(InvalidActionError, TypeError):
    """An action of the wrong kind altogether, e.g. a scalar given to a vector env (where
    Gymnasium's ``SyncVectorEnv`` raises ``TypeError``); also an :class:`InvalidActionError`."""


class EpisodeFinishedError(RLHFEnvsError, gym.error.ResetNeeded):
    """``step`` was called on an episode that already terminated or truncated."""


class FeedbackError(RLHFEnvsError, ValueError):
    """A feedback model returned something that is not one finite float per episode."""


class BudgetExhaustedError(FeedbackError):
    """A simulated (or real) rater refused queries because the feedback budget is spent.

    Raised before anything is answered or charged, so the caller can stop asking or raise the budget.
    """


class ConfigError(RLHFEnvsError, TypeError):
    """An unknown or ill-typed constructor argument, reset option or task parameter."""


class ConfigValueError(ConfigError, ValueError):
    """A setting of the right type whose value is outside its allowed range (NaN, inf, negative, too
    large). The message names the field and the range.

    It is a ``ValueError``, as Gymnasium users expect for bad values, and also a
    :class:`ConfigError`, so code that catches bad settings as ``ConfigError`` keeps working.
    """


class OptionValueError(RLHFEnvsError, ValueError):
    """A reset option with a bad value where Gymnasium's vector envs raise ``ValueError`` (a
    ``reset_mask`` of the wrong shape or with no True entry). Deliberately not a ``TypeError``."""


class PromptError(RLHFEnvsError, ValueError):
    """A prompt that cannot be used: special-token text such as ``<pad>``/``<eos>``, invalid
    Unicode (a lone surrogate), no tokens, too many tokens, or a bad record in a prompt file (the
    message names the file, the line and the allowed keys)."""


def check_known_keys(given: dict, allowed: set[str] | list[str], what: str) -> None:
    """Raise :class:`ConfigError` if ``given`` has keys outside ``allowed``.

    ``what`` names the thing being configured ("RLHF/Copy-v0 arguments", "reset options") so the
    message points at the right call.
    """
    unknown = sorted(set(given) - set(allowed), key=repr)  # (keys need not be str, nor comparable)
    if unknown:
        raise ConfigError(
            f"unknown {what}: {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(map(repr, sorted(allowed))) or '(none)'}"
        )


class DataError(RLHFEnvsError, ValueError):
    """A data file that does not parse or does not match its pinned checksum (the message names the
    file and line), or an unknown domain or split."""


class DataUnavailableError(RLHFEnvsError, RuntimeError):
    """A data set is not in the cache and could not be fetched; the message says what to run."""


class ModelFilesError(ConfigValueError, DataError):
    """A model directory whose files do not make the model they describe: weights missing a tensor
    or holding one the architecture has no place for, a tensor of the wrong shape, NaN or inf
    weights, a truncated or unreadable file, a ``config.json`` that does not parse or has the wrong
    types, pickle weights that were not allowed, or a tokenizer that does not belong to the model.
    The message names the file (or both sides, for a tokenizer) and what was wrong.

    It is a :class:`ConfigError` (the model was given as a setting) and a :class:`DataError` (a
    file is bad), so either ``except`` clause catches it.
    """
