"""Loading a tokenizer and a causal language model with ``transformers``.

One code path for every model: the embedded default (``rlhf_envs/assets/default_lm``), a directory
the user saved with ``save_pretrained``, or a hub name already in the user's Hugging Face cache
(nothing is downloaded: loading runs with ``local_files_only=True``).

Padding, stated once for the whole package:

* envs keep sequences **right-padded** (prompt at position 0, ``<pad>`` after the last real token);
  for a causal LM right padding needs no attention mask and no position shift, because no real
  token ever attends to a later (pad) position;
* :func:`encode_batch` also offers **left** padding (what ``generate`` wants); then the attention
  mask hides the pads and :func:`position_ids` starts each row's positions at its first real token,
  so a left-padded row gives the same log-probs as the unpadded sequence (tested).

Pad and EOS must be distinct ids (see :class:`~rlhf_envs.tokenization.HFTokenizer`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigError
from rlhf_envs.tokenization import HFTokenizer

#: The embedded default model and tokenizer (built by ``rlhf-envs pretrain``).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default_lm"

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "float64": "float64",
}
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def resolve_model_path(model: str | os.PathLike | None) -> str:
    """``None`` or ``"default"`` -> the embedded model's directory; a path or hub name is kept.

    A value that looks like a path (it exists, is absolute, starts with ``.``/``~``, or has more
    than one ``/``) must be a directory holding ``config.json``, weights and a tokenizer; anything
    else (``"gpt2"``, ``"org/name"``) is a hub name that must already be in the local cache.
    """
    if model is None or (isinstance(model, str) and model == "default"):
        return str(DEFAULT_MODEL_DIR)
    if not isinstance(model, str | os.PathLike):
        raise ConfigError(f"model must be None, 'default', a directory or a hub name, got {model!r}")
    text = os.fspath(model)
    path = Path(text).expanduser()
    looks_like_path = (
        path.exists() or path.is_absolute() or text.startswith((".", "~")) or text.strip("/").count("/") > 1
    )
    if looks_like_path:
        _check_model_dir(path)
        return str(path.resolve())
    return text


def _check_model_dir(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(
            f"model directory {str(path)!r} does not exist; pass a directory written by "
            "model.save_pretrained(dir) and tokenizer.save_pretrained(dir), or model=None for the embedded model"
        )
    if not path.is_dir():
        raise ConfigError(f"model path {str(path)!r} is a file; pass the directory that holds config.json")
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"model directory {str(path)!r} has no config.json; save the model there with "
            "model.save_pretrained(dir)"
        )
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        raise ConfigError(
            f"model directory {str(path)!r} has no weights ({' or '.join(_WEIGHT_FILES[:1] + _WEIGHT_FILES[2:3])}); "
            "save them with model.save_pretrained(dir)"
        )
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise ConfigError(
            f"model directory {str(path)!r} has no tokenizer (tokenizer.json); save it next to the model "
            "with tokenizer.save_pretrained(dir)"
        )


def _torch_dtype(dtype: str | Any):  # noqa: ANN202
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(set(_DTYPES))} or a torch.dtype, got {dtype!r}")
    return getattr(torch, _DTYPES[dtype])


def _torch_device(device: str | Any):  # noqa: ANN202
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was requested but CUDA is not available; use device='cpu'")
    return dev


def load_tokenizer(model: str | os.PathLike | None = None) -> HFTokenizer:
    """Load the tokenizer stored with ``model`` (see :func:`resolve_model_path`).

    Raises a :class:`~rlhf_envs.errors.ConfigError` naming the directory when it has no tokenizer,
    or when the tokenizer lacks an EOS token or a pad token distinct from EOS.
    """
    path = resolve_model_path(model)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, use_fast=True, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"could not load a tokenizer from {path!r}: {exc}. Pass a directory holding tokenizer.json "
            "saved by tokenizer.save_pretrained(dir), or the name of a model already in the local cache"
        ) from exc
    try:
        return HFTokenizer(tok)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (tokenizer loaded from {path!r}; save it again after the fix)") from None


_MODEL_CACHE: dict[tuple[str, str, str], Any] = {}
_CACHE_LOCK = threading.Lock()


def load_causal_lm(
    model: str | os.PathLike | None = None,
    device: str = "cpu",
    dtype: str | Any = "float32",
    cache: bool = True,
):  # noqa: ANN201 - returns a transformers PreTrainedModel
    """Load a frozen causal LM (``AutoModelForCausalLM``) in eval mode with gradients off.

    Args:
        model: ``None``/``"default"`` for the embedded model, a directory, or a cached hub name.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
        dtype: ``"float32"`` (default; exact log-probs), ``"bfloat16"``, ``"float16"`` or ``"float64"``.
        cache: share one frozen copy per (path, device, dtype) in this process, so 64 envs or a
            policy and its reference do not each hold their own weights. Callers must not modify
            a shared model; pass ``cache=False`` for a private, trainable copy.
    """
    path = resolve_model_path(model)
    dev, dt = _torch_device(device), _torch_dtype(dtype)
    key = (path, str(dev), str(dt))
    if cache:
        with _CACHE_LOCK:
            if key in _MODEL_CACHE:
                return _MODEL_CACHE[key]
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=dt, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"could not load a causal language model from {path!r}: {exc}. Pass a directory written by "
            "AutoModelForCausalLM's save_pretrained(dir) (config.json + model.safetensors), or the name of "
            "a model already in the local Hugging Face cache"
        ) from exc
    lm.to(dev).eval()
    if cache:
        lm.requires_grad_(False)
        with _CACHE_LOCK:
            _MODEL_CACHE.setdefault(key, lm)
            lm = _MODEL_CACHE[key]
    return lm


def check_compatible(tokenizer: HFTokenizer, lm: Any, where: str) -> None:
    """The model must have an output row for every token id the tokenizer can produce."""
    n = lm.get_output_embeddings().weight.shape[0]
    if n < tokenizer.vocab_size:
        raise ConfigError(
            f"{where}: the tokenizer has {tokenizer.vocab_size} tokens but the model only {n} output rows; "
            "after adding tokens call model.resize_token_embeddings(len(tokenizer)) and save again"
        )


def context_length(lm: Any) -> int:
    """The model's maximum number of positions (``n_positions`` / ``max_position_embeddings``)."""
    cfg = lm.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


def encode_batch(
    tokenizer: HFTokenizer, texts: list[str], side: str = "right"
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise ``texts`` into a padded ``(B, T)`` id array and int8 attention mask.

    ``side="right"`` puts the pads after the text (the envs' layout); ``side="left"`` before it (the
    layout ``generate`` wants). Pads use the tokenizer's own pad id, never EOS.
    """
    if side not in ("left", "right"):
        raise ConfigError(f"side must be 'left' or 'right', got {side!r}")
    seqs = [tokenizer.encode(t) for t in texts]
    width = max((len(s) for s in seqs), default=0)
    ids = np.full((len(seqs), width), tokenizer.pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int8)
    for i, s in enumerate(seqs):
        if side == "right":
            ids[i, : len(s)], mask[i, : len(s)] = s, 1
        elif s:
            ids[i, -len(s) :], mask[i, -len(s) :] = s, 1
    return ids, mask


def position_ids(attention_mask: Any):  # noqa: ANN201 - torch tensor in, torch tensor out
    """Positions counted from each row's first real token (0 on pads): right and left padding agree."""
    import torch

    mask = torch.as_tensor(attention_mask).long()
    return (mask.cumsum(-1) - 1).clamp(min=0)


def token_logprobs(lm: Any, input_ids: Any, attention_mask: Any | None = None, temperature: float = 1.0):  # noqa: ANN201
    """Log-prob of every token given the ones before it, from one full forward pass.

    Returns a float32 tensor of shape ``(B, T)`` whose entry ``t`` is ``log p(x_t | x_<t)``;
    entry 0 (no context) and padded positions are 0. Works for right or left padding.
    """
    import torch

    ids = torch.as_tensor(np.asarray(input_ids) if not isinstance(input_ids, torch.Tensor) else input_ids)
    ids = ids.to(lm.device)
    if attention_mask is None:
        mask = torch.ones_like(ids)
    else:
        mask = (
            torch.as_tensor(
                np.asarray(attention_mask) if not isinstance(attention_mask, torch.Tensor) else attention_mask
            )
            .to(lm.device)
            .long()
        )
    with torch.no_grad():
        logits = lm(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask).to(lm.device)).logits
        logp = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
        out = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
        out[:, 1:] = logp.gather(-1, ids[:, 1:, None])[..., 0]
        out[:, 1:] *= (mask[:, 1:] * mask[:, :-1]).float()
    return out.cpu()
