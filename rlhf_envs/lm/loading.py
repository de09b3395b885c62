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

from rlhf_envs.errors import ConfigError, ModelFilesError
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

    Raises a :class:`~rlhf_envs.errors.ConfigError` naming the directory when it has no tokenizer
    or its files do not load (a :class:`~rlhf_envs.errors.ModelFilesError`, also for a bad
    ``config.json``), or when the tokenizer lacks an EOS token or a pad token distinct from EOS.
    """
    path = resolve_model_path(model)
    from transformers import AutoTokenizer

    from rlhf_envs.lm import weights

    local = local_model_dir(path)
    if (local / "config.json").is_file():  # transformers reads it too: check it first
        weights.read_config(local)
    try:
        tok = AutoTokenizer.from_pretrained(
            str(local), use_fast=True, local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, the tokenizers library's own errors
        raise ModelFilesError(
            f"could not load a tokenizer from {path!r} ({type(exc).__name__}: {exc}). Pass a directory holding "
            "tokenizer.json saved by tokenizer.save_pretrained(dir), or the name of a model already in the "
            "local cache"
        ) from None
    try:
        return HFTokenizer(tok)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (tokenizer loaded from {path!r}; save it again after the fix)") from None


_MODEL_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.Lock()

#: a model may have this many output rows more than its tokenizer has tokens (or
#: :data:`SPARE_ROWS_FRACTION` of its rows, if that is more); see :func:`check_tokenizer_fits`
SPARE_ROWS = 128
SPARE_ROWS_FRACTION = 0.02


def local_model_dir(path: str) -> Path:
    """The directory holding a resolved model (:func:`resolve_model_path`): the path itself, or the
    snapshot of a hub name in the local Hugging Face cache (never downloaded)."""
    if Path(path).is_dir():
        return Path(path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - LocalEntryNotFoundError, HFValidationError, ...
        raise ConfigError(
            f"model {path!r} is neither a directory nor a model in the local Hugging Face cache ({exc}); "
            "pass a directory written by save_pretrained(dir), or model=None for the embedded model"
        ) from None


def _signature(model_dir: Path) -> tuple:
    """Names, sizes and modification times of the directory's files: a cached model is reused only
    while its files are unchanged."""
    out = []
    for f in sorted(model_dir.iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin"):
            st = f.stat()
            out.append((f.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def load_causal_lm(
    model: str | os.PathLike | None = None,
    device: str = "cpu",
    dtype: str | Any = "float32",
    cache: bool = True,
    *,
    allow_pickle: bool = False,
):  # noqa: ANN201 - returns a transformers PreTrainedModel
    """Load a frozen causal LM (``AutoModelForCausalLM``) in eval mode with gradients off.

    The files are checked before and after the load (:mod:`rlhf_envs.lm.weights`): a weight file
    missing a tensor or holding an extra one, a tensor of the wrong shape, a ``config.json`` that
    asks for more layers than the weights hold, a truncated file and NaN/inf weights are each a
    :class:`~rlhf_envs.errors.ModelFilesError` naming the file, never a model with random parts.

    Args:
        model: ``None``/``"default"`` for the embedded model, a directory, or a cached hub name.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
        dtype: ``"float32"`` (default; exact log-probs), ``"bfloat16"``, ``"float16"`` or ``"float64"``.
        cache: share one frozen copy per (path, device, dtype) in this process, so 64 envs or a
            policy and its reference do not each hold their own weights. Callers must not modify
            a shared model; pass ``cache=False`` for a private, trainable copy. A cached copy is
            reused only while the directory's files are unchanged.
        allow_pickle: also accept pickle weights (``pytorch_model.bin``, read with
            ``weights_only=True``). Off by default: only safetensors files load. To convert a
            pickle checkpoint you trust once: ``load_causal_lm(dir, allow_pickle=True).save_pretrained(dir)``.
    """
    if not isinstance(allow_pickle, bool):
        raise ConfigError(f"allow_pickle must be True or False, got {allow_pickle!r}")
    path = resolve_model_path(model)
    dev, dt = _torch_device(device), _torch_dtype(dtype)
    local = local_model_dir(path)
    key = (path, str(dev), str(dt), allow_pickle, _signature(local))
    if cache:
        with _CACHE_LOCK:
            if key in _MODEL_CACHE:
                return _MODEL_CACHE[key]
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from rlhf_envs.lm import weights

    hf_logging.disable_progress_bar()
    config = weights.read_config(local)
    try:
        skeleton = weights.skeleton(config, AutoModelForCausalLM)
    except ValueError as exc:  # the config names an architecture that is not a causal LM
        raise ConfigError(
            f"could not load a causal language model from {path!r}: {exc}. Pass a directory written by "
            "AutoModelForCausalLM's save_pretrained(dir) (config.json + model.safetensors)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - sizes that do not build (n_head = 0, ...)
        raise ModelFilesError(
            f"model file {str(local / 'config.json')!r} does not describe a model that can be built "
            f"({type(exc).__name__}: {exc})"
        ) from None
    ck = weights.verify_checkpoint(local, skeleton, allow_pickle=allow_pickle)
    try:
        with weights.quiet_load_report():
            lm, info = AutoModelForCausalLM.from_pretrained(
                str(local),
                config=config,
                dtype=dt,
                local_files_only=True,
                use_safetensors=None if allow_pickle else True,
                trust_remote_code=False,
                output_loading_info=True,
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelFilesError(
            f"could not load a causal language model from {path!r}: {exc}. Pass a directory written by "
            "AutoModelForCausalLM's save_pretrained(dir) (config.json + model.safetensors), or the name of "
            "a model already in the local Hugging Face cache"
        ) from exc
    if not weights.comparable(lm):
        weights.check_loading_info(info, local, ck)
    weights.check_finite(lm, ck, local)
    lm.to(dev).eval()
    if cache:
        lm.requires_grad_(False)
        with _CACHE_LOCK:
            _MODEL_CACHE.setdefault(key, lm)
            lm = _MODEL_CACHE[key]
    return lm


def _token_id_names(config: Any, name: str) -> list[int] | None:
    value = getattr(config, f"{name}_token_id", None)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    return []  # malformed: agrees with nothing


def check_tokenizer_fits(
    tokenizer: Any, n_rows: int, config: Any, tokenizer_where: str, model_where: str
) -> None:
    """Raise :class:`~rlhf_envs.errors.ModelFilesError` unless the tokenizer belongs to the model.

    * Size: the model's output rows ``n_rows`` must be at least the tokenizer's ``len()`` and at
      most :data:`SPARE_ROWS` (or :data:`SPARE_ROWS_FRACTION` of the rows, if more) beyond it:
      models are often padded to a round number of rows (GPT-J 50400 rows for 50257 tokens,
      Qwen2.5 151936 for 151665, Phi-2 51200 for 50295), but a tokenizer far smaller than the
      model (a 15-token vocabulary beside a 2288-row model) is another model's tokenizer.
    * Special ids: the tokenizer's pad, EOS and BOS ids (where it has them) lie inside its
      vocabulary, and equal the ids ``config`` names for them (where it names them; a list of
      EOS ids must contain the tokenizer's).

    ``tokenizer`` is an :class:`~rlhf_envs.tokenization.HFTokenizer` or a ``transformers``
    tokenizer; ``tokenizer_where`` and ``model_where`` name the two sides in the message.
    """
    hf = getattr(tokenizer, "hf", tokenizer)
    size = len(hf)
    spare = max(SPARE_ROWS, int(SPARE_ROWS_FRACTION * n_rows))
    both = f"the tokenizer {tokenizer_where} and the model {model_where}"
    if n_rows < size:
        raise ModelFilesError(
            f"{both} do not belong together: the tokenizer has {size} tokens but the model only {n_rows} "
            "output rows; after adding tokens call model.resize_token_embeddings(len(tokenizer)) and save again"
        )
    if n_rows - size > spare:
        raise ModelFilesError(
            f"{both} do not belong together: the tokenizer has {size} tokens but the model {n_rows} output "
            f"rows (at most {spare} unused rows are allowed); save the tokenizer the model was trained with "
            "next to it (tokenizer.save_pretrained(dir))"
        )
    for name in ("pad", "eos", "bos"):
        tok_id = getattr(hf, f"{name}_token_id", None)
        if tok_id is None:
            continue
        if not 0 <= int(tok_id) < size:
            raise ModelFilesError(
                f"the tokenizer {tokenizer_where}: its {name} id {tok_id} is outside its {size} tokens"
            )
        named = _token_id_names(config, name) if config is not None else None
        if named is not None and int(tok_id) not in named:
            raise ModelFilesError(
                f"{both} do not belong together: the tokenizer's {name} id is {tok_id} but the model's "
                f"config.json says {name}_token_id = {getattr(config, f'{name}_token_id')!r}; "
                "save them together again (or fix config.json)"
            )


def check_compatible(tokenizer: HFTokenizer, lm: Any, where: str) -> None:
    """The tokenizer must belong to the model (:func:`check_tokenizer_fits`); ``where`` names the
    caller and the model in the message."""
    n = lm.get_output_embeddings().weight.shape[0]
    check_tokenizer_fits(tokenizer, int(n), getattr(lm, "config", None), tokenizer_source(tokenizer), where)


def tokenizer_source(tokenizer: Any) -> str:
    """Where a tokenizer came from, for messages: its ``tokenizer.json`` (or directory, or class)."""
    hf = getattr(tokenizer, "hf", tokenizer)
    name = getattr(hf, "name_or_path", "") or ""
    if name and (Path(name) / "tokenizer.json").is_file():
        return repr(str(Path(name) / "tokenizer.json"))
    return repr(name) if name else type(hf).__name__


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
