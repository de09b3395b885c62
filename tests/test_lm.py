"""rlhf_envs.lm: the embedded model, loading any GPT-2-style directory, padding, pretraining."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import rlhf_envs  # noqa: F401
from rlhf_envs.errors import ConfigError
from rlhf_envs.lm.loading import (
    DEFAULT_MODEL_DIR,
    encode_batch,
    load_causal_lm,
    load_tokenizer,
    token_logprobs,
)


def test_embedded_model_meets_its_spec() -> None:
    info = json.loads((DEFAULT_MODEL_DIR / "training_info.json").read_text())
    tok, lm = load_tokenizer(), load_causal_lm()
    assert 2000 <= tok.vocab_size <= 8000
    assert tok.pad_id != tok.eos_id
    assert lm.config.model_type == "gpt2"
    n_params = sum(p.numel() for p in lm.parameters())
    assert 1_000_000 <= n_params <= 8_000_000 and n_params == info["n_parameters"]
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size <= 20 * 2**20
    assert info["corpus_sentences"] >= 100_000
    assert info["held_out_perplexity"] < 5


def test_corpus_is_seeded_and_varied() -> None:
    from rlhf_envs.lm.corpus import KEYWORDS, count_sentences, generate_corpus

    a, b = generate_corpus(500, seed=3), generate_corpus(500, seed=3)
    assert a == b and a != generate_corpus(500, seed=4)
    text = " ".join(a).lower()
    assert count_sentences(a) > 1200
    assert "wonderful" in text or "excellent" in text
    assert "terrible" in text or "awful" in text
    assert sum(k in text for k in KEYWORDS) > len(KEYWORDS) // 2


def test_left_and_right_padding_give_the_same_logprobs() -> None:
    tok, lm = load_tokenizer(), load_causal_lm()
    texts = ["The rain fell on the city.", "I loved the soup.", "We stayed at the hotel for a week, and"]
    right, rmask = encode_batch(tok, texts, side="right")
    left, lmask = encode_batch(tok, texts, side="left")
    assert (right[rmask == 0] == tok.pad_id).all() and (left[lmask == 0] == tok.pad_id).all()
    assert lmask[:, -1].all() and rmask[:, 0].all()
    lr = token_logprobs(lm, right, rmask).numpy()
    ll = token_logprobs(lm, left, lmask).numpy()
    for i, t in enumerate(texts):
        n = len(tok.encode(t))
        alone = token_logprobs(lm, np.asarray([tok.encode(t)])).numpy()[0]
        np.testing.assert_allclose(lr[i, :n], alone, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(ll[i, -n:], alone, atol=1e-5, rtol=1e-5)


def _save_tiny_gpt2(path, vocab_from=DEFAULT_MODEL_DIR, n_positions: int = 96) -> None:  # noqa: ANN001
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    hf_tok = AutoTokenizer.from_pretrained(str(vocab_from))
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(hf_tok),
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        eos_token_id=hf_tok.eos_token_id,
        bos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
    )
    GPT2LMHeadModel(cfg).save_pretrained(path)
    hf_tok.save_pretrained(path)


def test_user_saved_gpt2_runs_through_the_same_path(tmp_path) -> None:
    _save_tiny_gpt2(tmp_path)
    env = gym.make("RLHF/Sentiment-v0", model=str(tmp_path), max_new_tokens=6)
    task = env.unwrapped.task
    assert task.lm.config.n_embd == 32 and task.model_path == str(tmp_path.resolve())
    obs, info = env.reset(seed=0)
    done, steps = False, 0
    while not done:
        obs, r, term, trunc, info = env.step(5 + steps)
        full = token_logprobs(task.lm, obs["input_ids"][None], obs["attention_mask"][None]).numpy()[0]
        assert info["ref_logprob"] == pytest.approx(full[obs["attention_mask"].sum() - 1], abs=1e-5)
        done, steps = term or trunc, steps + 1
    assert steps == 6 and "completion" in info


def test_missing_model_directory_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gym.make("RLHF/Sentiment-v0", model=str(tmp_path / "nope"))


def test_malformed_model_directory_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="config.json"):
        gym.make("RLHF/Sentiment-v0", model=str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no weights"):
        gym.make("RLHF/Sentiment-v0", model=str(tmp_path))


def test_tokenizer_without_pad_token_is_a_clear_error(tmp_path) -> None:
    _save_tiny_gpt2(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    for name in ("special_tokens_map.json",):
        if (tmp_path / name).exists():
            m = json.loads((tmp_path / name).read_text())
            m.pop("pad_token", None)
            (tmp_path / name).write_text(json.dumps(m))
    with pytest.raises(ConfigError, match=r"no pad token.*add_special_tokens") as exc:
        gym.make("RLHF/Sentiment-v0", model=str(tmp_path))
    assert str(tmp_path) in str(exc.value)


def test_context_too_short_for_the_budget_is_a_clear_error(tmp_path) -> None:
    _save_tiny_gpt2(tmp_path, n_positions=40)
    with pytest.raises(ValueError, match="exceeds the model's context of 40"):
        gym.make("RLHF/Sentiment-v0", model=str(tmp_path))


def test_bad_device_and_dtype() -> None:
    with pytest.raises(ConfigError, match="dtype"):
        load_causal_lm(dtype="float8")
    with pytest.raises(ConfigError, match="device"):
        load_causal_lm(device="tpu")


def test_pretrain_is_seeded_and_reproducible(tmp_path) -> None:
    from safetensors.numpy import load_file

    from rlhf_envs.lm.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        n_documents=300,
        vocab_size=400,
        n_layer=1,
        n_embd=32,
        n_head=2,
        n_positions=64,
        block_size=64,
        batch_size=4,
        steps=3,
        warmup=1,
        threads=1,
    )
    a = pretrain(tmp_path / "a", cfg, log=False)
    b = pretrain(tmp_path / "b", cfg, log=False)
    assert a["held_out_perplexity"] == b["held_out_perplexity"]
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    tok = load_tokenizer(tmp_path / "a")  # loads through the same path as the embedded model
    assert tok.pad_id == 0 and tok.eos_id == 1


def test_other_architectures_use_the_generic_cached_decoder(tmp_path) -> None:
    """A Llama saved to a directory runs the env's reference pass through the generic (transformers
    cache) path of the one decoder, across episode ends and resets, equal to a full forward pass."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    hf_tok = AutoTokenizer.from_pretrained(str(DEFAULT_MODEL_DIR))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=96,
        eos_token_id=1,
        bos_token_id=1,
        pad_token_id=0,
    )
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    hf_tok.save_pretrained(tmp_path)
    vec = gym.make_vec("RLHF/Length-v0", num_envs=3, model=str(tmp_path), max_new_tokens=4)
    lm = vec.unwrapped.task.lm
    from rlhf_envs.lm.decoder import HFDecoder, fast_gpt2_supported

    assert lm.config.model_type == "llama" and not fast_gpt2_supported(lm)
    vec.reset(seed=0)
    checked = 0
    for t in range(12):  # max_new_tokens 4: episodes end (NextStep autoreset) and new ones start
        obs, _, term, trunc, info = vec.step(np.array([5, 6, 7]) + t % 4)
        if "ref_logprob" not in info:  # every sub-env was being reset in this step
            continue
        full = token_logprobs(lm, obs["input_ids"], obs["attention_mask"]).numpy()
        last = obs["attention_mask"].sum(1) - 1
        rows = np.flatnonzero(info.get("_ref_logprob", np.ones(3, dtype=bool)))
        np.testing.assert_allclose(info["ref_logprob"][rows], full[rows, last[rows]], atol=1e-5, rtol=1e-5)
        checked += len(rows)
    assert checked >= 24 and isinstance(vec.unwrapped.shaping[0]._prefix.decoder, HFDecoder)
