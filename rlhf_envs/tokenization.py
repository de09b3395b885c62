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

import functools
import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rlhf_envs.errors import ConfigError

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"
#: CharTokenizer.decode_batch switches to fixed-width numpy strings above this many rows
LARGE_DECODE_BATCH = 96


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
        # id -> text tables for decode_batch (pad and EOS -> ""), as objects and as numpy chars
        self._texts = np.array(["", "", *symbols], dtype=object)
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

        Pad and EOS decode to nothing wherever they are, as in :meth:`decode`. A batch costs a
        fixed handful of array operations whatever the rows contain: small batches look each id's
        text up in an object table and let numpy concatenate each row in one reduction; large
        ones (where per-string work dominates) build fixed-width numpy strings, moving pad and
        EOS to the end of the rows that have them inside (a stable sort) so that numpy drops them
        as trailing NULs.
        """
        ids = np.asarray(ids)
        rows, width = ids.shape
        if rows <= 4 or width == 0:  # a Python join beats the array path on a few rows
            out = np.empty(rows, dtype=object)
            for b in range(rows):
                out[b] = self.decode(ids[b, : lengths[b]].tolist())
            return out
        codes = ids * prefix_mask(lengths, width, np.int64)  # past a row's length -> pad (id 0)
        if rows <= LARGE_DECODE_BATCH:
            return np.add.reduce(self._texts.take(codes), axis=1)
        chars = self._chars.take(codes)
        symbol = codes > self.eos_id
        holes = (symbol[:, 1:] > symbol[:, :-1]).any(axis=1).nonzero()[0]  # a symbol after pad/EOS
        if holes.size:
            order = np.argsort(~symbol[holes], axis=1, kind="stable")  # symbols first, in order
            chars[holes] = np.take_along_axis(chars[holes], order, axis=1)
        return chars.view(f"U{width}").ravel().astype(object)

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
        """Load a fast tokenizer from a local directory (or a hub name already in the user's cache;
        nothing is downloaded, no code from the directory runs)."""
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(
                str(path), use_fast=True, local_files_only=True, trust_remote_code=False
            )
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


def same_tokenizer(a: Any, b: Any) -> bool:
    """Whether two tokenizers map text to the same ids: same size, pad and EOS ids, and token table
    (an :class:`HFTokenizer`'s vocabulary, a :class:`CharTokenizer`'s tokens)."""

    def table(tok: Any) -> tuple:
        hf = getattr(tok, "hf", None)
        vocab = hf.get_vocab() if hf is not None else getattr(tok, "tokens", None)
        return tok.vocab_size, tok.pad_id, tok.eos_id, vocab

    return a is b or table(a) == table(b)


@functools.lru_cache(maxsize=128)
def _prefix_table(width: int, dtype: np.dtype) -> np.ndarray:
    table = (np.arange(width) < np.arange(width + 1)[:, None]).astype(dtype)
    table.flags.writeable = False
    return table


def prefix_mask(lengths: np.ndarray, width: int, dtype: Any = bool) -> np.ndarray:
    """``(B, width)`` array of ``dtype``: 1 (True) where the position is below ``lengths[b]``, else 0.

    Rows are looked up in a cached table, which is cheaper than a broadcast comparison on the
    small batches a vector env finishes per step; lengths outside ``[0, width]`` are clipped.
    """
    return _prefix_table(int(width), np.dtype(dtype)).take(lengths, axis=0, mode="clip")


def decode_batch(tokenizer: Tokenizer, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Decode the rows ``ids[b, :lengths[b]]`` with the tokenizer's batched decoder if it has one."""
    fast = getattr(tokenizer, "decode_batch", None)
    if fast is not None:
        return fast(ids, lengths)
    out = np.empty(len(ids), dtype=object)
    for b, (row, n) in enumerate(zip(np.asarray(ids), lengths, strict=True)):
        out[b] = tokenizer.decode(row[:n].tolist())
    return out
