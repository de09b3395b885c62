"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Two cores: keep torch from oversubscribing when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def rlhf_envs_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point ``$RLHF_ENVS_CACHE`` at a temporary directory for the whole session.

    Tests never read a proxy fitted by other code from the user's cache, nor write into it. The
    directory is shared by the pytest-xdist workers of one run (it sits next to their own temp
    dirs), so a proxy one worker fits is found by the other; the fitting code holds a lock, so they
    never fit the same proxy twice. The user's already-fetched *data sets* (checksum-pinned files,
    verified on every load) are copied in, so a run does not download them again; fitted proxies
    are never copied.
    """
    user_cache = Path(os.environ.get("RLHF_ENVS_CACHE", Path.home() / ".cache" / "rlhf_envs"))
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "rlhf_envs_cache"
    root.mkdir(parents=True, exist_ok=True)
    datasets = user_cache / "datasets"
    if datasets.is_dir() and not (root / "datasets").exists():
        tmp = root / f"datasets.copying-{os.getpid()}"
        try:
            shutil.copytree(datasets, tmp)
            os.rename(tmp, root / "datasets")
        except OSError:  # another worker finished first, or the copy failed: tests fetch instead
            shutil.rmtree(tmp, ignore_errors=True)
    old = os.environ.get("RLHF_ENVS_CACHE")
    os.environ["RLHF_ENVS_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("RLHF_ENVS_CACHE", None)
    else:
        os.environ["RLHF_ENVS_CACHE"] = old


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
