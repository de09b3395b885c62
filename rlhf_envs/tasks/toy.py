"""Toy tasks on a character vocabulary: the suite's fast unit of RL research.

All toy tasks share one 30-token vocabulary (``<pad>``, ``<eos>``, ``=``, ``+``, digits and the
letters a-p), so their observation and action spaces match and one policy can be trained on several.
Episodes are at most 16 tokens (prompt plus completion), prompts come from the env's seeded RNG, and
the feedback is :class:`~rlhf_envs.feedback.scripted.TargetMatch`: partial credit per correct
position, 1.0 only for the exact answer followed by EOS (or the budget running out exactly after it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.scripted import TargetMatch
from rlhf_envs.tasks.base import Prompt, Task, check_int_range, register_task
from rlhf_envs.tokenization import CharTokenizer

LETTERS = "abcdefghijklmnop"
DIGITS = "0123456789"
TOY_TOKENIZER = CharTokenizer("=+" + DIGITS + LETTERS)
MAX_EPISODE_TOKENS = 16


class _TargetTask(Task):
    """A toy task whose answer is a deterministic function of the prompt string."""

    alphabet: str

    def _target(self, source: str) -> str:
        raise NotImplementedError

    def _make(self, source: str, prompt_text: str) -> Prompt:
        target = self._target(source)
        ids = tuple(self.tokenizer.encode(prompt_text))
        meta = {"target": target, "target_ids": tuple(self.tokenizer.encode(target))}
        return self._checked_prompt(Prompt(prompt_text, ids, meta))

    def allowed_token_ids(self) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(self.alphabet))

    def episode_info(self, episode: Episode) -> dict[str, Any]:
        return {"success": episode.completion == episode.metadata["target"]}


class _StringTask(_TargetTask):
    """Prompt ``s=`` for a random string ``s``; the answer is ``f(s)``."""

    def __init__(self, min_length: int = 2, max_length: int = 6, n_symbols: int = 8) -> None:
        name = self.name
        self.n_symbols = check_int_range("n_symbols", n_symbols, 2, len(self.source_symbols), name)
        self.max_length = check_int_range("max_length", max_length, 1, 7, name)
        self.min_length = check_int_range("min_length", min_length, 1, self.max_length, name)
        self.alphabet = self.source_symbols[: self.n_symbols]
        self.tokenizer = TOY_TOKENIZER
        self.feedback = TargetMatch()
        self.max_prompt_tokens = self.max_length + 1
        self.max_new_tokens = self.max_length + 1
        self._symbol_ids = np.frombuffer(self.alphabet.encode(), dtype=np.uint8)

    source_symbols = LETTERS

    def sample_prompt(self, rng: np.random.Generator) -> Prompt:
        n = int(rng.integers(self.min_length, self.max_length + 1))
        s = self._symbol_ids[rng.integers(0, self.n_symbols, size=n)].tobytes().decode()
        return self._make(s, s + "=")

    def prompt_from_text(self, text: str) -> Prompt:
        source = text[:-1] if text.endswith("=") else text
        bad = set(source) - set(self.alphabet)
        if bad or not self.min_length <= len(source) <= self.max_length:
            raise ValueError(
                f"{self.name}: prompt {text!r} must be {self.min_length}-{self.max_length} symbols "
                f"from {self.alphabet!r}, optionally followed by '='"
            )
        return self._make(source, source + "=")


class CopyTask(_StringTask):
    """Repeat the string before ``=``: ``abc=`` -> ``abc``."""

    name = "copy"

    def _target(self, source: str) -> str:
        return source


class ReverseTask(_StringTask):
    """Write the string before ``=`` backwards: ``abc=`` -> ``cba``."""

    name = "reverse"

    def _target(self, source: str) -> str:
        return source[::-1]


class SortTask(_StringTask):
    """Sort the digits before ``=``: ``3141=`` -> ``1134``."""

    name = "sort"
    source_symbols = DIGITS

    def __init__(self, min_length: int = 2, max_length: int = 6, n_symbols: int = 10) -> None:
        super().__init__(min_length, max_length, n_symbols)

    def _target(self, source: str) -> str:
        return "".join(sorted(source))


class AdditionTask(_TargetTask):
    """Add two non-negative integers: ``17+5=`` -> ``22``."""

    name = "addition"

    def __init__(self, max_digits: int = 2) -> None:
        self.max_digits = check_int_range("max_digits", max_digits, 1, 3, self.name)
        self.alphabet = DIGITS
        self.tokenizer = TOY_TOKENIZER
        self.feedback = TargetMatch()
        self.max_prompt_tokens = 2 * self.max_digits + 2
        self.max_new_tokens = self.max_digits + 2  # the sum's digits, then EOS
        self._high = 10**self.max_digits

    def _target(self, source: str) -> str:
        a, b = source.split("+")
        return str(int(a) + int(b))

    def sample_prompt(self, rng: np.random.Generator) -> Prompt:
        a, b = (int(x) for x in rng.integers(0, self._high, size=2))
        return self._make(f"{a}+{b}", f"{a}+{b}=")

    def prompt_from_text(self, text: str) -> Prompt:
        source = text[:-1] if text.endswith("=") else text
        parts = source.split("+")
        if len(parts) != 2 or not all(p.isdigit() and len(p) <= self.max_digits for p in parts):
            raise ValueError(
                f"{self.name}: prompt {text!r} must look like '12+7=' with at most "
                f"{self.max_digits} digits per number"
            )
        a, b = (int(p) for p in parts)
        return self._make(f"{a}+{b}", f"{a}+{b}=")


for _cls in (CopyTask, ReverseTask, SortTask, AdditionTask):
    register_task(_cls.name, _cls)
