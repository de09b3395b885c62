"""The tokenizer layer: one small interface over two kinds of vocabulary.

* :class:`CharTokenizer` - a tiny character vocabulary for the toy tasks (one symbol, one token), so
  a policy can be an MLP and a run takes seconds.
* :class:`HFTokenizer` - any Hugging Face *fast* tokenizer (a ``tokenizer.json`` trained with the
  ``tokenizers`` library, or a directory saved by ``transformers``), for the language tasks.

Envs only rely on :class:`Tokenizer`: ``vocab_size``, ``pad_id``, ``eos_id``, ``encode`` and
``decode``. Padding side is the env's business (observations are right-padded with ``pad_id``); the
tokenizer never pads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from rlhf_envs.errors import ConfigError

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"


@runtime_checkable
class Tokenizer(Protocol):
    """What an env needs from a tokenizer."""

    vocab_size: int
    pad_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]:
        """Text -> token ids, with no special tokens added."""
        ...

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> text; special tokens (pad, EOS) are dropped."""
        ...


class CharTokenizer:
    """A character vocabulary: ``<pad>`` is id 0, ``<eos>`` id 1, then one id per symbol.

    Args:
        symbols: the characters, each a single character, no repeats.
    """

    def __init__(self, symbols: str | Sequence[str]) -> None:
        symbols = list(symbols)
        if not symbols or any(not isinstance(s, str) or len(s) != 1 for s in symbols):
            raise ConfigError(f"symbols must be single characters, got {symbols!r}")
        if len(set(symbols)) != len(symbols):
            raise ConfigError(f"symbols must not repeat, got {''.join(symbols)!r}")
        self.symbols = "".join(symbols)
        self.tokens = [PAD_TOKEN, EOS_TOKEN, *symbols]
        self.pad_id = 0
        self.eos_id = 1
        self.vocab_size = len(self.tokens)
        self._index = {s: i + 2 for i, s in enumerate(symbols)}
        # one character per id, NUL for pad and EOS: lets decode_batch work on whole arrays
        self._chars = np.array(["", "", *symbols], dtype="U1")

    def encode(self, text: str) -> list[int]:
        """Map each character to its id; a character outside the vocabulary is an error."""
        try:
            return [self._index[c] for c in text]
        except KeyError as exc:
            raise ValueError(
                f"character {exc.args[0]!r} in {text!r} is not in the vocabulary {self.symbols!r}"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Join the symbols of ``ids``, dropping pad and EOS."""
        tokens = self.tokens
        return "".join(tokens[i] for i in ids if i > 1)

    def decode_batch(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Decode rows ``ids[b, :lengths[b]]`` at once; returns an object array of str.

        Each id maps to a one-character numpy string (pad and EOS to NUL); viewing a row of those
        as one fixed-width string drops the trailing NULs, so a whole batch decodes in a few array
        operations. Rows with a pad id *inside* them (a policy may emit it) are decoded one by one.
        """
        ids = np.asarray(ids)
        rows, width = ids.shape
        if rows <= 4 or width == 0:  # a Python join beats the array path on a few rows
            out = np.empty(rows, dtype=object)
            for b in range(rows):
                out[b] = self.decode(ids[b, : lengths[b]].tolist())
            return out
        inside = np.arange(width) < np.asarray(lengths)[:, None]
        masked = np.where(inside, ids, self.pad_id)
        out = self._chars[masked].view(f"U{width}").ravel().astype(object)
        for b in np.flatnonzero(((masked == self.pad_id) & inside).any(axis=1)):
            out[b] = self.decode(ids[b, : lengths[b]].tolist())
        return out

    def token_ids(self, chars: str) -> list[int]:
        """Ids of the given characters (used to build action masks)."""
        return self.encode(chars)

    def __repr__(self) -> str:
        return f"CharTokenizer({self.symbols!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and other.symbols == self.symbols

    def __hash__(self) -> int:
        return hash(self.symbols)


class HFTokenizer:
    """A Hugging Face fast tokenizer behind the :class:`Tokenizer` interface.

    Pad and EOS must be distinct tokens: a pad that doubles as EOS makes "the policy chose to stop"
    indistinguishable from "this position is empty". Tokenizers that lack a pad token (GPT-2's, for
    example) get an error that says how to add one rather than a silent ``pad = eos``.

    Args:
        tokenizer: a ``transformers.PreTrainedTokenizerFast`` (or anything with ``convert_tokens_to_ids``,
            ``encode``/``decode``, ``pad_token_id``, ``eos_token_id`` and ``len()``).
    """

    def __init__(self, tokenizer) -> None:  # noqa: ANN001 - transformers type is optional at import time
        self.hf = tokenizer
        pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        if eos is None:
            raise ConfigError(
                f"tokenizer {name!r} has no EOS token; set eos_token (e.g. tokenizer.eos_token = '<eos>')"
            )
        if pad is None:
            raise ConfigError(
                f"tokenizer {name!r} has no pad token; add one with "
                "tokenizer.add_special_tokens({'pad_token': '<pad>'}) and resize the model's embeddings"
            )
        if pad == eos:
            raise ConfigError(
                f"tokenizer {name!r} uses the same id ({pad}) for pad and EOS; add a distinct pad token "
                "with tokenizer.add_special_tokens({'pad_token': '<pad>'})"
            )
        self.pad_id = int(pad)
        self.eos_id = int(eos)
        self.vocab_size = len(tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> HFTokenizer:
        """Load a fast tokenizer from a local directory (or a hub name already in the user's cache)."""
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(path), use_fast=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"could not load a tokenizer from {str(path)!r}: {exc}. Pass a directory that holds "
                "tokenizer.json (or tokenizer_config.json) saved by save_pretrained"
            ) from exc
        return cls(tok)

    def encode(self, text: str) -> list[int]:
        """Text -> ids, with no BOS/EOS added."""
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text with special tokens skipped."""
        return self.hf.decode(list(ids), skip_special_tokens=True)

    def decode_batch(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Decode rows ``ids[b, :lengths[b]]`` with one ``batch_decode`` call; object array of str."""
        rows = [r[:n].tolist() for r, n in zip(np.asarray(ids), lengths, strict=True)]
        out = np.empty(len(rows), dtype=object)
        out[:] = self.hf.batch_decode(rows, skip_special_tokens=True) if rows else []
        return out

    def __repr__(self) -> str:
        return f"HFTokenizer({getattr(self.hf, 'name_or_path', '')!r}, vocab_size={self.vocab_size})"


def decode_batch(tokenizer: Tokenizer, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Decode the rows ``ids[b, :lengths[b]]`` with the tokenizer's batched decoder if it has one."""
    fast = getattr(tokenizer, "decode_batch", None)
    if fast is not None:
        return fast(ids, lengths)
    out = np.empty(len(ids), dtype=object)
    for b, (row, n) in enumerate(zip(np.asarray(ids), lengths, strict=True)):
        out[b] = tokenizer.decode(row[:n].tolist())
    return out
