"""A task is what an env id stands for: a prompt source, a feedback model and limits.

The env classes (single and vector) are generic; everything specific to "copy a string" or "steer
sentiment" lives in a :class:`Task`. Prompts are drawn from 64-bit episode keys (see
:mod:`rlhf_envs.seeding`), so the env owns all randomness and the vector env can draw the prompts
of every sub-env that resets in a step in one batched call.

A task implements either

* :meth:`Task.sample_prompt` - one prompt from a numpy ``Generator`` (simple; the default
  :meth:`Task.sample_prompts` seeds one generator per episode key and calls it), or
* :meth:`Task.sample_prompts` - a whole :class:`PromptBatch` from an array of keys (fast; the toy
  tasks do this with :func:`rlhf_envs.seeding.uniforms`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigError, ConfigValueError, PromptError
from rlhf_envs.feedback.base import Episode, EpisodeBatch, FeedbackModel
from rlhf_envs.seeding import key_to_seed
from rlhf_envs.tokenization import Tokenizer


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt: its text, token ids and the task data a feedback model needs."""

    text: str
    ids: tuple[int, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PromptBatch:
    """Prompts as arrays: ids ``(B, P)`` right-padded, lengths ``(B,)``, texts and metadata ``(B, ...)``."""

    ids: np.ndarray
    lengths: np.ndarray
    texts: np.ndarray
    metadata: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> Prompt:
        return Prompt(
            self.texts[i],
            tuple(self.ids[i, : self.lengths[i]].tolist()),
            {k: v[i] for k, v in self.metadata.items()},
        )

    @classmethod
    def from_prompts(cls, prompts: list[Prompt], pad_id: int) -> PromptBatch:
        """Stack single prompts (metadata keys must agree)."""
        width = max(len(p.ids) for p in prompts)
        ids = np.full((len(prompts), width), pad_id, dtype=np.int64)
        for b, p in enumerate(prompts):
            ids[b, : len(p.ids)] = p.ids
        texts = np.empty(len(prompts), dtype=object)
        texts[:] = [p.text for p in prompts]
        metadata = {}
        for key in prompts[0].metadata:
            values = [p.metadata[key] for p in prompts]
            if all(isinstance(v, bool | int | float | np.number) for v in values):
                metadata[key] = np.asarray(values)
            elif all(isinstance(v, np.ndarray) and v.shape == values[0].shape for v in values):
                metadata[key] = np.stack(values)
            else:
                arr = np.empty(len(values), dtype=object)
                arr[:] = values
                metadata[key] = arr
        return cls(ids, np.array([len(p.ids) for p in prompts], dtype=np.int64), texts, metadata)


@dataclass(frozen=True)
class ReferenceModelSpec:
    """The frozen reference model a task asks its env to score taken tokens with.

    The env (not the task) turns this into its ``"kl"`` shaping term
    (:class:`rlhf_envs.envs.reference.ReferenceKL`), one per env, so an env runs a task and a task
    never imports the env package.

    Attributes:
        lm: the frozen causal LM (shared; never modified).
        max_length: longest prefix (prompt + completion) an env holds.
        kl_coef: coefficient of ``reward_kl = kl_coef * ref_logprob`` (>= 0).
        temperature: the reference's sampling temperature.
        loader: picklable zero-argument callable that returns ``lm`` again (a pickled env drops the
            weights and reloads them through it), or ``None``.
    """

    lm: Any
    max_length: int
    kl_coef: float = 0.0
    temperature: float = 1.0
    loader: Callable[[], Any] | None = None


class Task:
    """Base class for tasks.

    Subclasses set ``tokenizer``, ``feedback``, ``max_prompt_tokens`` and ``max_new_tokens`` in
    ``__init__`` and implement :meth:`sample_prompt` or :meth:`sample_prompts`. The observation
    length of the env is ``max_prompt_tokens + max_new_tokens``.
    """

    #: short name used in error messages
    name: str = "task"
    #: metadata keys copied into the reset ``info`` (``None`` = all of them)
    info_keys: tuple[str, ...] | None = None
    #: prompts the vector env draws ahead per sub-env (1 = one at a time). Worth raising when
    #: :meth:`sample_prompts` is batched and cheap per prompt, so that one call serves many resets;
    #: the episodes are the same either way, since each prompt depends only on its episode key.
    prompt_prefetch: int = 1
    tokenizer: Tokenizer
    feedback: FeedbackModel
    max_prompt_tokens: int
    max_new_tokens: int

    def sample_prompt(self, rng: np.random.Generator) -> Prompt:
        """Draw one prompt using only ``rng``."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample_prompt or sample_prompts")

    def sample_prompts(self, keys: np.ndarray) -> PromptBatch:
        """One prompt per 64-bit episode key; the same key must always give the same prompt."""
        prompts = [
            self._checked_prompt(self.sample_prompt(np.random.default_rng(int(s)))) for s in key_to_seed(keys)
        ]
        return PromptBatch.from_prompts(prompts, self.tokenizer.pad_id)

    def prompt_from_text(self, text: str) -> Prompt:
        """Build the prompt for a user-given text (reset option ``{"prompt": text}``).

        The default tokenises the text with empty metadata; tasks whose feedback needs metadata
        (a target string, keywords) override this to derive it from the text. ``text`` must be a
        ``str`` of valid Unicode (:func:`check_prompt_text`).
        """
        text = check_prompt_text(text, f"{self.name}: reset option 'prompt'")
        return self._checked_prompt(Prompt(text, tuple(self.tokenizer.encode(text)), {}))

    def reference_model_spec(self) -> ReferenceModelSpec | None:
        """The frozen reference model the env should report ``ref_logprob`` with (``None``: none)."""
        return None

    def allowed_token_ids(self) -> np.ndarray | None:
        """Ids the task considers sensible outputs (for ``action_mask``); ``None`` = all but pad."""
        return None

    def episode_info(self, episode: Episode) -> dict[str, Any]:
        """Extra per-episode facts for the final step's ``info`` (e.g. ``success``)."""
        return {}

    def episode_infos(self, batch: EpisodeBatch) -> dict[str, np.ndarray]:
        """:meth:`episode_info` for a whole batch, as arrays (override to vectorise)."""
        rows = [self.episode_info(ep) for ep in batch]
        if not rows or not rows[0]:
            return {}
        return {key: np.asarray([r[key] for r in rows]) for key in rows[0]}

    def action_mask(self) -> np.ndarray:
        """The int8 mask over the vocabulary offered as ``info["action_mask"]`` (1 = sensible)."""
        mask = getattr(self, "_mask", None)
        if mask is None:
            mask = np.zeros(self.tokenizer.vocab_size, dtype=np.int8)
            allowed = self.allowed_token_ids()
            if allowed is None:
                mask[:] = 1
                mask[self.tokenizer.pad_id] = 0
            else:
                mask[np.asarray(allowed)] = 1
            mask[self.tokenizer.eos_id] = 1
            self._mask = mask
        return mask

    def _checked_prompt(self, prompt: Prompt, where: str | None = None) -> Prompt:
        """Raise :class:`PromptError` for a prompt with no tokens, too many tokens, or a pad/EOS id.

        A pad or EOS id inside a prompt (from special-token text such as ``"<pad>"`` or ``"<eos>"``
        that a Hugging Face tokenizer maps to the special id) would sit in the observation with
        attention 1, where no pad may be, and an EOS would read as a finished text. Such prompts are
        rejected rather than encoded as literal text: the error names the token so the user can
        remove it.
        """
        where = where or self.name
        if not prompt.ids:
            raise PromptError(f"{where}: the prompt {prompt.text!r} encodes to no tokens")
        if len(prompt.ids) > self.max_prompt_tokens:
            raise PromptError(
                f"{where}: the prompt {prompt.text!r} has {len(prompt.ids)} tokens; "
                f"at most max_prompt_tokens={self.max_prompt_tokens} are allowed"
            )
        tok = self.tokenizer
        for special, what in ((tok.pad_id, "pad"), (tok.eos_id, "EOS")):
            if special in prompt.ids:
                raise PromptError(
                    f"{where}: the prompt {prompt.text!r} contains the {what} token "
                    f"({_token_text(tok, special)!r}, id {special}); special-token text is not allowed "
                    "in prompts (it would become a real pad/EOS id with attention 1): remove it"
                )
        return prompt


_TASKS: dict[str, type[Task]] = {}


def register_task(name: str, cls: type[Task]) -> None:
    """Make ``cls`` available to envs as ``task=name``."""
    _TASKS[name] = cls


def task_class(name: str) -> type[Task] | None:
    """The task class registered as ``name``, or ``None`` if no task has that name."""
    return _TASKS.get(name) if isinstance(name, str) else None


def task_names() -> list[str]:
    """Names of the registered task classes."""
    return sorted(_TASKS)


def task_parameters(cls: type[Task]) -> list[str]:
    """The keyword arguments a task class accepts."""
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p not in ("self", "args", "kwargs")]


def make_task(task: str | Task, **kwargs: Any) -> Task:
    """Build a task from its registered name (or pass a ready :class:`Task` through).

    Unknown parameters raise :class:`ConfigError` listing the ones the task accepts.
    """
    if isinstance(task, Task):
        if kwargs:
            raise ConfigError(
                f"task parameters {sorted(kwargs)} were given with a ready Task instance; set them on the task instead"
            )
        return task
    cls = task_class(task)
    if cls is None:
        raise ConfigError(f"unknown task {task!r}; known tasks: {', '.join(task_names())}")
    allowed = task_parameters(cls)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown argument(s) {', '.join(map(repr, unknown))} for task {task!r}; "
            f"allowed: render_mode, shaping, feedback, {', '.join(allowed)}"
        )
    return cls(**kwargs)


def check_int_range(name: str, value: Any, low: int, high: int, task: str) -> int:
    """Validate an integer task parameter in ``[low, high]``.

    Raises :class:`ConfigError` (a ``TypeError``) for a non-int and :class:`ConfigValueError` (a
    ``ValueError``) for an int outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{task}: {name} must be an int, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ConfigValueError(f"{task}: {name} must be in [{low}, {high}], got {value}")
    return int(value)


def check_order(low_name: str, low: int, high_name: str, high: int, task: str) -> None:
    """Raise :class:`ConfigValueError` naming both fields unless ``low <= high`` (e.g. min/max length,
    where one of them may be a default the user did not pass)."""
    if low > high:
        raise ConfigValueError(
            f"{task}: {low_name}={low} must be at most {high_name}={high}; change one of them"
        )


def check_float_range(
    name: str,
    value: Any,
    task: str,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Validate a real-valued parameter: a finite number in the interval from ``low`` to ``high``.

    ``low_open``/``high_open`` exclude the ends. NaN and +-inf are always rejected. Raises
    :class:`ConfigError` for a non-number (bools included) and :class:`ConfigValueError` for a
    number outside the range; both messages name the field and the allowed range.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{task}: {name} must be a number, got {type(value).__name__} {value!r}")
    x = float(value)
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    below = x <= low if low_open else x < low
    above = x >= high if high_open else x > high
    if not math.isfinite(x) or below or above:
        raise ConfigValueError(f"{task}: {name} must be a finite number in {interval}, got {value!r}")
    return x


def check_prompt_text(text: Any, where: str) -> str:
    """Return ``text`` if it is a ``str`` of valid Unicode; raise a clear error otherwise.

    A non-string raises :class:`ConfigError` (a ``TypeError``); a string with a lone surrogate
    (``"\\ud800"``, which no UTF-8 text can hold and tokenizers reject with their own errors) raises
    :class:`PromptError`, naming the position.
    """
    if not isinstance(text, str):
        raise ConfigError(f"{where or 'a prompt'} must be a str, got {type(text).__name__} {text!r}"[:400])
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PromptError(
            f"{where}{': ' if where else ''}the prompt {text!r} holds a lone surrogate ({text[exc.start]!r} at position "
            f"{exc.start}), which is not valid Unicode text; fix the text (decode it as UTF-8)"
        ) from None
    return text


def _token_text(tokenizer: Any, token_id: int) -> str:
    """The text of a special token for messages (``<pad>``), or ``"#id"`` if unknown."""
    tokens = getattr(tokenizer, "tokens", None)  # CharTokenizer
    if tokens is not None:
        return tokens[token_id]
    hf = getattr(tokenizer, "hf", None)  # HFTokenizer
    if hf is not None:
        return str(hf.convert_ids_to_tokens(token_id))
    return f"#{token_id}"
