"""Toy tasks on a character vocabulary: the suite's fast unit of RL research.

All toy tasks share one 30-token vocabulary (``<pad>``, ``<eos>``, ``=``, ``+``, digits and the
letters a-p), so their observation and action spaces match and one policy can be trained on several.
Episodes are at most 16 tokens (prompt plus completion), prompts come from the env's seeded random
stream, and the feedback is :class:`~rlhf_envs.feedback.scripted.TargetMatch`: partial credit per
correct position, 1.0 only for the exact answer followed by EOS.

Prompts are drawn for a whole batch of episode keys at once (:meth:`Task.sample_prompts`) with a
few numpy operations, which is what lets the vector env step 64 sub-envs in microseconds.
"""

from __future__ import annotations

import numpy as np

from rlhf_envs.errors import PromptError
from rlhf_envs.feedback.base import EpisodeBatch
from rlhf_envs.feedback.scripted import TargetMatch
from rlhf_envs.seeding import stream_key, uniforms
from rlhf_envs.tasks.base import Prompt, PromptBatch, Task, check_int_range, check_order, register_task
from rlhf_envs.tokenization import CharTokenizer

LETTERS = "abcdefghijklmnop"
DIGITS = "0123456789"
TOY_TOKENIZER = CharTokenizer("=+" + DIGITS + LETTERS)
MAX_EPISODE_TOKENS = 16
_EQ = TOY_TOKENIZER.encode("=")[0]
_PLUS = TOY_TOKENIZER.encode("+")[0]
_DIGIT_IDS = np.array(TOY_TOKENIZER.encode(DIGITS), dtype=np.int64)


def pack(segments: list[tuple[np.ndarray, np.ndarray]], fill: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-row variable-length segments ``(ids (B, W), lengths (B,))`` left-aligned.

    Returns ``(ids (B, sum W), lengths (B,))`` with ``fill`` after each row's end.
    """
    rows = len(segments[0][1])
    out = np.full((rows, sum(s.shape[1] for s, _ in segments)), fill, dtype=np.int64)
    offset = np.zeros(rows, dtype=np.int64)
    for seg, n in segments:
        pos = np.arange(seg.shape[1])
        valid = pos < n[:, None]
        r, c = np.nonzero(valid)
        out[r, offset[r] + c] = seg[valid]
        offset = offset + n
    return out, offset


def _column(token: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((rows, 1), token, dtype=np.int64), np.ones(rows, dtype=np.int64)


class _TargetTask(Task):
    """A toy task whose answer is a deterministic function of the prompt."""

    alphabet: str
    info_keys = ("target",)
    prompt_prefetch = 128

    def __init__(self) -> None:
        self.tokenizer = TOY_TOKENIZER
        self.feedback = TargetMatch()

    def _batch(self, prompt_ids, prompt_lens, target_ids, target_lens) -> PromptBatch:
        tok = self.tokenizer
        # target_ids as wide as a completion (max_new_tokens), right-padded with -1
        width = target_ids.shape[1]
        target = np.full((len(target_lens), self.max_new_tokens), -1, dtype=np.int64)
        target[:, :width] = np.where(np.arange(width) < target_lens[:, None], target_ids, -1)
        metadata = {
            "target": tok.decode_batch(target_ids, target_lens),
            "target_ids": target,
            "target_lengths": np.asarray(target_lens, dtype=np.int64),  # read by TargetMatch
        }
        return PromptBatch(prompt_ids, prompt_lens, tok.decode_batch(prompt_ids, prompt_lens), metadata)

    def sample_prompt(self, rng: np.random.Generator) -> Prompt:
        return self.sample_prompts(np.array([stream_key(rng)], dtype=np.uint64))[0]

    def allowed_token_ids(self) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(self.alphabet))

    def episode_infos(self, batch: EpisodeBatch) -> dict[str, np.ndarray]:
        return {"success": (batch.completions == batch.metadata["target"]).astype(bool, copy=False)}

    def episode_info(self, episode) -> dict:
        return {"success": episode.completion == episode.metadata["target"]}


class _StringTask(_TargetTask):
    """Prompt ``s=`` for a random string ``s``; the answer is ``f(s)``."""

    source_symbols = LETTERS

    def __init__(self, min_length: int = 2, max_length: int = 6, n_symbols: int = 8) -> None:
        super().__init__()
        name = self.name
        self.n_symbols = check_int_range("n_symbols", n_symbols, 2, len(self.source_symbols), name)
        self.max_length = check_int_range("max_length", max_length, 1, 7, name)
        self.min_length = check_int_range("min_length", min_length, 1, 7, name)
        check_order("min_length", self.min_length, "max_length", self.max_length, name)
        self.alphabet = self.source_symbols[: self.n_symbols]
        self.max_prompt_tokens = self.max_length + 1
        self.max_new_tokens = self.max_length + 1
        self._symbol_ids = np.array(self.tokenizer.encode(self.alphabet), dtype=np.int64)

    def _targets(self, src: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Target ids ``(B, max_length)`` (entries past ``n`` are ignored)."""
        raise NotImplementedError

    def _from_sources(self, src: np.ndarray, n: np.ndarray) -> PromptBatch:
        rows, width = src.shape
        pad = self.tokenizer.pad_id
        prompt_ids = np.full((rows, width + 1), pad, dtype=np.int64)
        prompt_ids[:, :width] = np.where(np.arange(width) < n[:, None], src, pad)
        prompt_ids[np.arange(rows), n] = _EQ
        return self._batch(prompt_ids, n + 1, self._targets(src, n), n)

    def sample_prompts(self, keys: np.ndarray) -> PromptBatch:
        u = uniforms(keys, 1 + self.max_length)
        span = self.max_length - self.min_length + 1
        n = self.min_length + (u[:, 0] * span).astype(np.int64)
        src = self._symbol_ids.take((u[:, 1:] * self.n_symbols).astype(np.int64))
        return self._from_sources(src, n)

    def prompt_from_text(self, text: str) -> Prompt:
        source = text[:-1] if text.endswith("=") else text
        if set(source) - set(self.alphabet) or not self.min_length <= len(source) <= self.max_length:
            raise PromptError(
                f"{self.name}: prompt {text!r} must be {self.min_length}-{self.max_length} symbols "
                f"from {self.alphabet!r}, optionally followed by '='"
            )
        src = np.full((1, self.max_length), self.tokenizer.pad_id, dtype=np.int64)
        src[0, : len(source)] = self.tokenizer.encode(source)
        return self._from_sources(src, np.array([len(source)]))[0]


class CopyTask(_StringTask):
    """Repeat the string before ``=``: ``abc=`` -> ``abc``.

    Parameters: ``min_length`` (2), ``max_length`` (6, at most 7), ``n_symbols`` (8 letters, at most 16).
    """

    name = "copy"

    def _targets(self, src: np.ndarray, n: np.ndarray) -> np.ndarray:
        return src


class ReverseTask(_StringTask):
    """Write the string before ``=`` backwards: ``abc=`` -> ``cba``.

    Parameters: as for Copy.
    """

    name = "reverse"

    def _targets(self, src: np.ndarray, n: np.ndarray) -> np.ndarray:
        idx = np.clip(n[:, None] - 1 - np.arange(src.shape[1]), 0, None)
        return np.take_along_axis(src, idx, axis=1)


class SortTask(_StringTask):
    """Sort the digits before ``=``: ``3141=`` -> ``1134``.

    Parameters: ``min_length`` (2), ``max_length`` (6), ``n_symbols`` (10 digits).
    """

    name = "sort"
    source_symbols = DIGITS

    def __init__(self, min_length: int = 2, max_length: int = 6, n_symbols: int = 10) -> None:
        super().__init__(min_length, max_length, n_symbols)

    def _targets(self, src: np.ndarray, n: np.ndarray) -> np.ndarray:
        big = np.iinfo(np.int64).max
        ordered = np.sort(np.where(np.arange(src.shape[1]) < n[:, None], src, big), axis=1)
        return np.where(ordered == big, self.tokenizer.pad_id, ordered)


def _digits(x: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Decimal digit ids of non-negative ints, left-aligned in ``(B, width)``, and their counts."""
    n = np.ones(len(x), dtype=np.int64)
    for k in range(1, width):
        n += x >= 10**k
    power = np.clip(n[:, None] - 1 - np.arange(width), 0, None)
    return _DIGIT_IDS[(x[:, None] // 10**power) % 10], n


class AdditionTask(_TargetTask):
    """Add two non-negative integers: ``17+5=`` -> ``22``.

    Parameters: ``max_digits`` (2, at most 3) per operand.
    """

    name = "addition"

    def __init__(self, max_digits: int = 2) -> None:
        super().__init__()
        self.max_digits = check_int_range("max_digits", max_digits, 1, 3, self.name)
        self.alphabet = DIGITS
        self.max_prompt_tokens = 2 * self.max_digits + 2
        self.max_new_tokens = self.max_digits + 2  # the sum's digits, then EOS
        self._high = 10**self.max_digits

    def _from_operands(self, a: np.ndarray, b: np.ndarray) -> PromptBatch:
        rows = len(a)
        prompt_ids, prompt_lens = pack(
            [
                _digits(a, self.max_digits),
                _column(_PLUS, rows),
                _digits(b, self.max_digits),
                _column(_EQ, rows),
            ],
            self.tokenizer.pad_id,
        )
        target_ids, target_lens = _digits(a + b, self.max_digits + 1)
        return self._batch(prompt_ids, prompt_lens, target_ids, target_lens)

    def sample_prompts(self, keys: np.ndarray) -> PromptBatch:
        u = uniforms(keys, 2)
        ab = (u * self._high).astype(np.int64)
        return self._from_operands(ab[:, 0], ab[:, 1])

    def prompt_from_text(self, text: str) -> Prompt:
        source = text[:-1] if text.endswith("=") else text
        parts = source.split("+")
        if len(parts) != 2 or not all(p.isdigit() and len(p) <= self.max_digits for p in parts):
            raise PromptError(
                f"{self.name}: prompt {text!r} must look like '12+7=' with at most {self.max_digits} digits per number"
            )
        return self._from_operands(np.array([int(parts[0])]), np.array([int(parts[1])]))[0]


for _cls in (CopyTask, ReverseTask, SortTask, AdditionTask):
    register_task(_cls.name, _cls)
