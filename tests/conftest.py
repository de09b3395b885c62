"""Shared pytest fixtures."""

from __future__ import annotations

import os

import pytest

# Two cores: keep torch from oversubscribing when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread: small networks run fastest so, and two test workers share
    two cores. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_causal_lm():
    """A factory of small causal LMs with seeded random weights, built from a config (no files):
    ``build(kind, vocab=40, seed=0, width=32, layers=2, heads=4)`` with ``kind`` one of ``"gpt2"``
    (the decoder's fast path), ``"llama"`` (grouped-query attention) and ``"neox"`` (both on the
    decoder's generic transformers path); 64 positions."""
    import torch
    import transformers as tf

    def build(
        kind: str = "gpt2", vocab: int = 40, seed: int = 0, width: int = 32, layers: int = 2, heads: int = 4
    ):  # noqa: ANN202
        sizes = {
            "vocab_size": vocab,
            "hidden_size": width,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
        }
        ids = {"bos_token_id": 1, "eos_token_id": 1}
        if kind == "gpt2":
            cls = tf.GPT2LMHeadModel
            cfg = tf.GPT2Config(n_positions=64, pad_token_id=0, **sizes, **ids)  # GPT-2 maps these names
        elif kind in ("llama", "neox"):
            extra = {"num_key_value_heads": max(1, heads // 2), "pad_token_id": 0} if kind == "llama" else {}
            config_cls, cls = {
                "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
                "neox": (tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM),
            }[kind]
            cfg = config_cls(intermediate_size=2 * width, max_position_embeddings=64, **sizes, **ids, **extra)
        else:
            raise ValueError(f"kind must be 'gpt2', 'llama' or 'neox', got {kind!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(cfg).eval()

    return build
