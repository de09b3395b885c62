"""The tokenizer layer: character vocabulary and Hugging Face fast tokenizers."""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_envs.errors import ConfigError
from rlhf_envs.tokenization import LARGE_DECODE_BATCH, CharTokenizer, HFTokenizer, Tokenizer, prefix_mask

CORPUS = ["the film was great and the acting was superb", "a dull, boring film with awful acting"] * 20


def test_char_tokenizer_round_trip() -> None:
    tok = CharTokenizer("abc=")
    assert isinstance(tok, Tokenizer)
    assert tok.vocab_size == 6 and tok.pad_id == 0 and tok.eos_id == 1
    ids = tok.encode("ab=c")
    assert ids == [2, 3, 5, 4]
    assert tok.decode(ids + [tok.eos_id, tok.pad_id]) == "ab=c"


def test_char_tokenizer_errors() -> None:
    with pytest.raises(ValueError, match="'z' in 'az' is not in the vocabulary 'abc'"):
        CharTokenizer("abc").encode("az")
    with pytest.raises(ConfigError, match="must not repeat"):
        CharTokenizer("aba")
    with pytest.raises(ConfigError, match="single characters"):
        CharTokenizer(["ab", "c"])


@pytest.mark.parametrize("rows", [1, 4, 5, 37, LARGE_DECODE_BATCH, LARGE_DECODE_BATCH + 1, 700])
def test_char_tokenizer_decode_batch_matches_decode(rows: int) -> None:
    """Every batch path (Python join, object table, fixed-width strings) agrees with decode(),
    including pad and EOS in the middle of a row, ids past the row's length and empty rows."""
    tok = CharTokenizer("=+0123456789abcdefghijklmnop")
    rng = np.random.default_rng(rows)
    for width in (1, 2, 7):
        ids = rng.integers(0, tok.vocab_size, size=(rows, width))
        ids[rng.random((rows, width)) < 0.3] = rng.integers(0, 2)  # many pads / EOS, some inside
        lengths = rng.integers(0, width + 1, size=rows)
        out = tok.decode_batch(ids, lengths)
        assert out.dtype == object and out.shape == (rows,)
        assert list(out) == [tok.decode(ids[b, : lengths[b]].tolist()) for b in range(rows)]
        assert all(type(text) is str for text in out)


def test_prefix_mask() -> None:
    mask = prefix_mask(np.array([0, 2, 3, 9, -1]), 3)
    assert mask.dtype == bool
    np.testing.assert_array_equal(
        mask, [[0, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1], [0, 0, 0]]
    )  # lengths outside [0, width] are clipped
    as_int = prefix_mask(np.array([1]), 2, np.int64)
    assert as_int.dtype == np.int64 and as_int.tolist() == [[1, 0]]
    as_int[0, 1] = 5  # a fresh array: the cached table is not touched
    assert prefix_mask(np.array([1]), 2, np.int64).tolist() == [[1, 0]]


def _train_fast_tokenizer(special: list[str]):
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=special))
    return PreTrainedTokenizerFast(tokenizer_object=raw)


def test_hf_tokenizer_round_trip_and_save_load(tmp_path) -> None:
    fast = _train_fast_tokenizer(["<pad>", "<eos>"])
    fast.pad_token, fast.eos_token = "<pad>", "<eos>"
    fast.save_pretrained(tmp_path)
    tok = HFTokenizer.from_pretrained(tmp_path)
    assert isinstance(tok, Tokenizer)
    assert (tok.pad_id, tok.eos_id) == (0, 1)
    text = "the acting was great"
    ids = tok.encode(text)
    assert ids and tok.pad_id not in ids
    assert tok.decode(ids + [tok.eos_id, tok.pad_id]) == text


def test_hf_tokenizer_requires_distinct_pad_and_eos() -> None:
    fast = _train_fast_tokenizer(["<eos>"])
    fast.eos_token = "<eos>"
    with pytest.raises(ConfigError, match="no pad token.*add_special_tokens"):
        HFTokenizer(fast)
    fast.pad_token = "<eos>"
    with pytest.raises(ConfigError, match="same id"):
        HFTokenizer(fast)


def test_hf_tokenizer_missing_directory(tmp_path) -> None:
    with pytest.raises(ConfigError, match="could not load a tokenizer from"):
        HFTokenizer.from_pretrained(tmp_path / "nowhere")
