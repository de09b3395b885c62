"""A task is what an env id stands for: a prompt source, a feedback model and limits.

The env classes (single and vector) are generic; everything specific to "copy a string" or "steer
sentiment" lives in a :class:`Task`. A task draws prompts from the RNG it is handed (the env's
``np_random`` or a sub-env's generator), so seeding stays with the env.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigError
from rlhf_envs.feedback.base import Episode, FeedbackModel
from rlhf_envs.tokenization import Tokenizer


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt drawn by a task: its text, token ids and the task data a feedback model needs."""

    text: str
    ids: tuple[int, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """Base class for tasks.

    Subclasses set ``tokenizer``, ``feedback``, ``max_prompt_tokens`` and ``max_new_tokens`` in
    ``__init__`` and implement :meth:`sample_prompt`. The observation length of the env is
    ``max_prompt_tokens + max_new_tokens``.
    """

    #: short name used in error messages and ``render``
    name: str = "task"
    tokenizer: Tokenizer
    feedback: FeedbackModel
    max_prompt_tokens: int
    max_new_tokens: int

    @abstractmethod
    def sample_prompt(self, rng: np.random.Generator) -> Prompt:
        """Draw one prompt using only ``rng``."""

    def prompt_from_text(self, text: str) -> Prompt:
        """Build the prompt for a user-given text (reset option ``{"prompt": text}``).

        The default tokenises the text with empty metadata; tasks whose feedback needs metadata
        (a target string, keywords) override this to derive it from the text.
        """
        return self._checked_prompt(Prompt(text, tuple(self.tokenizer.encode(text)), {}))

    def allowed_token_ids(self) -> np.ndarray | None:
        """Ids the task considers sensible outputs (for ``action_mask``); ``None`` = all but pad."""
        return None

    def episode_info(self, episode: Episode) -> dict[str, Any]:
        """Extra per-episode facts for the final step's ``info`` (e.g. ``success``)."""
        return {}

    # -- helpers shared by subclasses -------------------------------------------------------------

    def _checked_prompt(self, prompt: Prompt) -> Prompt:
        if not prompt.ids:
            raise ValueError(f"{self.name}: the prompt {prompt.text!r} encodes to no tokens")
        if len(prompt.ids) > self.max_prompt_tokens:
            raise ValueError(
                f"{self.name}: the prompt {prompt.text!r} has {len(prompt.ids)} tokens; "
                f"at most {self.max_prompt_tokens} are allowed"
            )
        return prompt

    def action_mask(self) -> np.ndarray:
        """The int8 mask over the vocabulary offered as ``info["action_mask"]`` (1 = sensible)."""
        if not hasattr(self, "_mask"):
            mask = np.zeros(self.tokenizer.vocab_size, dtype=np.int8)
            allowed = self.allowed_token_ids()
            if allowed is None:
                mask[:] = 1
                mask[self.tokenizer.pad_id] = 0
            else:
                mask[np.asarray(allowed)] = 1
            mask[self.tokenizer.eos_id] = 1
            self._mask = mask
        return self._mask


_TASKS: dict[str, type[Task]] = {}


def register_task(name: str, cls: type[Task]) -> None:
    """Make ``cls`` available to envs as ``task=name``."""
    _TASKS[name] = cls


def task_names() -> list[str]:
    """Names of the registered task classes."""
    return sorted(_TASKS)


def task_parameters(cls: type[Task]) -> list[str]:
    """The keyword arguments a task class accepts."""
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p != "self"]


def make_task(task: str | Task, **kwargs: Any) -> Task:
    """Build a task from its registered name (or pass a ready :class:`Task` through).

    Unknown parameters raise :class:`ConfigError` listing the ones the task accepts.
    """
    if isinstance(task, Task):
        if kwargs:
            raise ConfigError(
                f"task parameters {sorted(kwargs)} were given with a ready Task instance; "
                "set them on the task instead"
            )
        return task
    if not isinstance(task, str) or task not in _TASKS:
        raise ConfigError(f"unknown task {task!r}; known tasks: {', '.join(task_names())}")
    cls = _TASKS[task]
    allowed = task_parameters(cls)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown argument(s) {', '.join(map(repr, unknown))} for task {task!r}; "
            f"allowed: render_mode, shaping, {', '.join(allowed)}"
        )
    return cls(**kwargs)


def check_int_range(name: str, value: Any, low: int, high: int, task: str) -> int:
    """Validate an integer task parameter in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{task}: {name} must be an int, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{task}: {name} must be in [{low}, {high}], got {value}")
    return int(value)


def episodes_from_ids(
    prompts: Sequence[Prompt],
    completion_ids: Sequence[Sequence[int]],
    terminated: Sequence[bool],
    seeds: Sequence[int],
    tokenizer: Tokenizer,
) -> list[Episode]:
    """Assemble :class:`Episode` records for the feedback model (one decode per finished episode)."""
    return [
        Episode(
            prompt=p.text,
            completion=tokenizer.decode(c),
            prompt_ids=p.ids,
            completion_ids=tuple(c),
            terminated=bool(t),
            metadata=p.metadata,
            seed=int(s),
        )
        for p, c, t, s in zip(prompts, completion_ids, terminated, seeds, strict=True)
    ]
