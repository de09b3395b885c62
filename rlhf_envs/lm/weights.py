"""Checking a model directory's files against the architecture its ``config.json`` describes.

``transformers``' ``from_pretrained`` fills whatever the weights lack with freshly initialised
tensors, ignores tensors it has no place for, and only prints a "LOAD REPORT": a safetensors file
missing a tensor, a ``config.json`` that asks for more layers than the weights hold, or NaN weights
all give a model that runs and is silently wrong. So every load in this package goes through
:func:`verify_checkpoint` first and :func:`check_finite` after:

* ``config.json`` must be a JSON object naming a known ``model_type`` and no custom code
  (``auto_map``), and each entry must have the type of the config class' default (an integer
  where the default is an integer, and so on); see :func:`read_config`;
* the weights are read without loading them (safetensors' ``safe_open``: names, shapes and dtypes
  only) from ``model.safetensors`` or the shards listed in ``model.safetensors.index.json``.
  Pickle weights (``pytorch_model.bin``) are refused unless the caller passes ``allow_pickle=True``
  (then they are read with ``torch.load(weights_only=True)``);
* the tensor names and shapes are compared with the ``state_dict`` of the model built from the
  config on the ``meta`` device (no memory, no random numbers). Tied copies (``lm_head.weight``
  when the embeddings are tied) may be absent; every other tensor must be present with its exact
  shape, and no tensor may be left over. Names are mapped as ``transformers`` maps them (its
  renamings of legacy names and the base-model prefix). Architectures whose checkpoints are
  *converted* on load (tensors fused or split, e.g. mixture-of-experts models) cannot be compared
  by name; for them the structured loading info of ``from_pretrained`` is checked instead
  (:func:`check_loading_info`);
* after the load, every floating-point tensor must be finite (:func:`check_finite`).

Every failure is a :class:`~rlhf_envs.errors.ModelFilesError` that names the file and the tensors.
This module imports nothing of the suite (it is part of ``rlhf_envs.lm``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf_envs.errors import ModelFilesError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"
#: how many tensor names an error message lists before "and N more"
SHOWN = 6
#: the loading message of transformers our own checks replace (see :func:`quiet_load_report`)
_REPORT_MARK = "LOAD REPORT"


def _names(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


# -- config.json ----------------------------------------------------------------------------------


def read_config(model_dir: Path) -> Any:
    """Load ``model_dir/config.json`` as a ``transformers`` config, checked first by hand.

    Raises :class:`ModelFilesError` naming ``config.json`` when it is not a JSON object, names no
    or an unknown ``model_type``, names custom code (``auto_map``), or has an entry whose type
    differs from the config class' default (e.g. ``"n_layer": "4"``; integers are accepted where
    the default is a float, ``*_token_id`` entries may be lists of ints).
    """
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    file = model_dir / "config.json"
    try:
        data = json.loads(file.read_bytes())
    except (OSError, ValueError) as exc:  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        raise ModelFilesError(f"model file {str(file)!r} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFilesError(f"model file {str(file)!r} must hold a JSON object, got {type(data).__name__}")
    if "auto_map" in data:
        raise ModelFilesError(
            f"model file {str(file)!r} names custom model code (auto_map); loading a model never runs "
            "code from its directory"
        )
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ModelFilesError(
            f"model file {str(file)!r}: 'model_type' must name an architecture transformers knows "
            f"(e.g. 'gpt2', 'llama'), got {model_type!r}"
        )
    _check_config_types(CONFIG_MAPPING[model_type], data, file)
    try:
        return AutoConfig.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds for a bad config
        raise ModelFilesError(
            f"model file {str(file)!r} is not a usable {model_type} config ({type(exc).__name__}: {exc})"
        ) from None


def _check_config_types(config_cls: type, data: dict, file: Path) -> None:
    try:
        defaults = config_cls().to_dict()
    except Exception:  # noqa: BLE001 - a config class without usable defaults: nothing to compare
        return
    for key, value in data.items():
        default = defaults.get(key)
        if default is None or value is None:
            continue
        if key.endswith("_token_id") and isinstance(value, list):
            ok = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            raise ModelFilesError(
                f"model file {str(file)!r}: {key!r} must be of type {type(default).__name__} (as the "
                f"{config_cls.__name__} default {default!r} is), got {value!r}"
            )


# -- the weight files -----------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """What the weight files of a model directory hold, read without loading the tensors.

    Attributes:
        files: the weight files (one, or the shards of an index).
        shapes: tensor name -> shape.
        dtypes: tensor name -> ``"float"`` or the name of a non-floating dtype.
        where: tensor name -> the file that holds it.
        pickle: True for ``pytorch_model.bin`` weights.
    """

    files: list[Path]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    where: dict[str, Path] = field(default_factory=dict)
    pickle: bool = False

    def describe(self) -> str:
        """The weight file, or the index and its shards, for messages."""
        if len(self.files) == 1:
            return repr(str(self.files[0]))
        return f"{str(self.files[0].parent)!r} ({', '.join(f.name for f in self.files)})"


def weight_files(model_dir: Path, allow_pickle: bool = False) -> tuple[list[Path], bool]:
    """The weight files of ``model_dir`` (safetensors first) and whether they are pickle files.

    Raises :class:`ModelFilesError` naming the directory when there are none, when only pickle
    weights exist and ``allow_pickle`` is False, or naming the index when it does not parse or
    lists a shard that is missing.
    """
    for single, index, is_pickle in ((SAFETENSORS, SAFETENSORS_INDEX, False), (PICKLE, PICKLE_INDEX, True)):
        if is_pickle and not allow_pickle:
            if (model_dir / single).is_file() or (model_dir / index).is_file():
                raise ModelFilesError(
                    f"model directory {str(model_dir)!r} holds only pickle weights ({PICKLE}); pickle files can "
                    "run code when loaded, so they are refused. Convert them once with "
                    "rlhf_envs.lm.loading.load_causal_lm(dir, allow_pickle=True).save_pretrained(dir) "
                    "(writes model.safetensors), or pass allow_pickle=True to load_causal_lm / RewardModel if "
                    "you trust the file"
                )
            continue
        if (model_dir / single).is_file():
            return [model_dir / single], is_pickle
        if (model_dir / index).is_file():
            return _shards(model_dir / index), is_pickle
    raise ModelFilesError(
        f"model directory {str(model_dir)!r} has no weights ({SAFETENSORS}); save them with "
        "model.save_pretrained(dir)"
    )


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_bytes())["weight_map"]
        names = sorted(set(weight_map.values()))
        if not names or not all(isinstance(n, str) and n and "/" not in n and "\\" not in n for n in names):
            raise ValueError("the weight_map must map tensor names to shard file names in the directory")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFilesError(f"model file {str(index)!r} is not a valid weights index ({exc})") from None
    files = [index.parent / n for n in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModelFilesError(f"model file {str(index)!r} lists shards that do not exist: {_names(missing)}")
    return [index, *files]


def read_checkpoint(model_dir: Path, allow_pickle: bool = False) -> Checkpoint:
    """Names, shapes and dtypes of every tensor in the weight files (:func:`weight_files`).

    A truncated or garbled file, a tensor stored twice, or a shard whose tensors disagree with
    its index is a :class:`ModelFilesError` naming the file.
    """
    files, is_pickle = weight_files(model_dir, allow_pickle)
    ck = Checkpoint(files=files, pickle=is_pickle)
    index_map = None
    data_files = files
    if files[0].name.endswith(".index.json"):
        index_map = json.loads(files[0].read_bytes())["weight_map"]
        data_files = files[1:]
    for file in data_files:
        for name, shape, dtype in _read_pickle(file) if is_pickle else _read_safetensors(file):
            if name in ck.where:
                raise ModelFilesError(
                    f"model file {str(file)!r}: tensor {name!r} is also stored in {str(ck.where[name])!r}"
                )
            ck.shapes[name], ck.dtypes[name], ck.where[name] = shape, dtype, file
    if index_map is not None:
        wrong = sorted(k for k, v in index_map.items() if ck.where.get(k, Path()).name != v)
        unlisted = sorted(set(ck.where) - set(index_map))
        if wrong or unlisted:
            raise ModelFilesError(
                f"model file {str(files[0])!r} does not match its shards: "
                + "; ".join(
                    part
                    for part in (
                        f"listed but not in the named shard: {_names(wrong)}" if wrong else "",
                        f"in a shard but not listed: {_names(unlisted)}" if unlisted else "",
                    )
                    if part
                )
            )
    return ck


def _read_safetensors(file: Path) -> Iterator[tuple[str, tuple[int, ...], str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            entries = []
            for name in f.keys():  # noqa: SIM118 - safe_open objects are not iterable
                sl = f.get_slice(name)
                dtype = sl.get_dtype()
                entries.append((name, tuple(int(d) for d in sl.get_shape()), _kind(dtype)))
    except Exception as exc:  # noqa: BLE001 - SafetensorError (truncated, garbage), OSError
        raise ModelFilesError(
            f"model file {str(file)!r} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
            "it may be truncated or damaged: save the model again with model.save_pretrained(dir)"
        ) from None
    return iter(entries)


def _kind(safetensors_dtype: str) -> str:
    return (
        "float"
        if safetensors_dtype.upper() in ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
        else safetensors_dtype
    )


def _read_pickle(file: Path) -> Iterator[tuple[str, tuple[int, ...], str]]:
    import torch

    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        raise ModelFilesError(
            f"model file {str(file)!r} is not a readable weights file ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFilesError(f"model file {str(file)!r} does not hold a state dict of tensors")
    return iter(
        (k, tuple(v.shape), "float" if v.is_floating_point() else str(v.dtype).removeprefix("torch."))
        for k, v in state.items()
    )


# -- comparing with the architecture ---------------------------------------------------------------


def skeleton(config: Any, auto_class: Any) -> Any:
    """The model ``auto_class.from_config(config)`` on the ``meta`` device: names and shapes only."""
    import torch

    with torch.device("meta"):
        return auto_class.from_config(config)


def _renamings(model: Any) -> tuple[list, bool] | None:
    """transformers' key renamings for ``model`` and whether it also *converts* tensors (fuses or
    splits them, so names cannot be compared); ``None`` when this transformers has no such API."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming
    except ImportError:
        return None
    try:
        mapping = get_model_conversion_mapping(model)
    except Exception:  # noqa: BLE001 - treat an unexpected failure as "cannot compare by name"
        return [], True
    renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
    return renamings, any(isinstance(m, WeightConverter) for m in mapping)


def _rename(keys: Iterable[str], model: Any, expected: dict) -> dict[str, str]:
    """file key -> model key, as ``from_pretrained`` maps them (renamings, base-model prefix)."""
    found = _renamings(model)
    renamings = found[0] if found else []
    if renamings:
        from transformers.core_model_loading import rename_source_key
    prefix = getattr(model, "base_model_prefix", "") or ""
    out = {}
    for key in keys:
        new = rename_source_key(key, renamings, [])[0] if renamings else key
        if prefix and new not in expected:
            if new.startswith(prefix + ".") and new[len(prefix) + 1 :] in expected:
                new = new[len(prefix) + 1 :]
            elif f"{prefix}.{new}" in expected:
                new = f"{prefix}.{new}"
        out[key] = new
    return out


def comparable(model: Any) -> bool:
    """Whether the file's tensors can be compared with ``model``'s by name (no tensor conversions)."""
    found = _renamings(model)
    return found is None or not found[1]


def verify_checkpoint(
    model_dir: Path,
    model: Any,
    *,
    allow_pickle: bool = False,
    may_lack: Iterable[str] = (),
    may_have: dict[str, tuple[int, ...]] | None = None,
) -> Checkpoint:
    """Check the weight files of ``model_dir`` against ``model`` (a :func:`skeleton`).

    Args:
        model_dir: the model directory.
        model: the model ``config.json`` describes, on the meta device.
        allow_pickle: accept ``pytorch_model.bin`` weights (read with ``weights_only=True``).
        may_lack: tensors the caller initialises itself (a reward model's new one-output head).
        may_have: tensors (name -> shape) the file may hold that ``model`` does not use (a causal
            LM's output layer when a reward model is built on its body).

    Raises :class:`ModelFilesError` naming the weight file and the tensors that are missing, left
    over, of the wrong shape, or not floating point where the model's are.
    """
    ck = read_checkpoint(model_dir, allow_pickle)
    if not comparable(model):
        return ck  # checked after the load, from transformers' loading info
    state = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    floating = {k for k, v in state.items() if v.is_floating_point()}
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    cls = type(model)
    ignore_missing = [re.compile(p) for p in (getattr(cls, "_keys_to_ignore_on_load_missing", None) or [])]
    ignore_unexpected = [
        re.compile(p) for p in (getattr(cls, "_keys_to_ignore_on_load_unexpected", None) or [])
    ]
    renamed = _rename(ck.shapes, model, expected)
    present = {renamed[k]: k for k in ck.shapes}
    optional = tied | set(may_lack)
    missing = [
        k
        for k in expected
        if k not in present and k not in optional and not any(p.search(k) for p in ignore_missing)
    ]
    may_have = may_have or {}
    unexpected, wrong_shape, wrong_dtype = [], [], []
    for new, old in present.items():
        if new not in expected:
            if may_have.get(new) == ck.shapes[old] or any(p.search(new) for p in ignore_unexpected):
                continue
            unexpected.append(old)
        elif ck.shapes[old] != expected[new]:
            wrong_shape.append(f"{old} {list(ck.shapes[old])} (the config needs {list(expected[new])})")
        elif new in floating and ck.dtypes[old] != "float":
            wrong_dtype.append(f"{old} ({ck.dtypes[old]})")
    problems = []
    config_file = str(model_dir / "config.json")
    if missing:
        problems.append(
            f"{len(missing)} tensor(s) that the architecture in {config_file!r} needs are missing: {_names(missing)}"
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} tensor(s) have no place in that architecture: {_names(unexpected)}"
        )
    if wrong_shape:
        problems.append(f"wrong shape: {_names(wrong_shape)}")
    if wrong_dtype:
        problems.append(f"not floating point: {_names(wrong_dtype)}")
    if problems:
        files = {ck.where[present[k]] for k in expected if k in present}
        files |= {ck.where[k] for k in unexpected}
        named = sorted(str(f) for f in files) or [str(f) for f in ck.files]
        raise ModelFilesError(
            f"model weights {', '.join(map(repr, named))} do not match {config_file!r}: "
            + "; ".join(problems)
            + ". A partial or edited checkpoint would load with random tensors; save the model again "
            "with model.save_pretrained(dir)"
        )
    return ck


def check_loading_info(info: dict, model_dir: Path, ck: Checkpoint, may_lack: Iterable[str] = ()) -> None:
    """For architectures not comparable by name: refuse what ``from_pretrained(...,
    output_loading_info=True)`` reports as missing, unexpected or mismatched."""
    missing = set(info.get("missing_keys") or ()) - set(may_lack)
    unexpected = set(info.get("unexpected_keys") or ())
    mismatched = {
        str(m[0]) if isinstance(m, tuple | list) else str(m) for m in info.get("mismatched_keys") or ()
    }
    problems = [
        f"{what}: {_names(keys)}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
        if keys
    ]
    if problems:
        raise ModelFilesError(
            f"model weights {ck.describe()} do not match {str(model_dir / 'config.json')!r}: "
            + "; ".join(problems)
        )


def check_finite(model: Any, ck: Checkpoint, model_dir: Path, skip: Iterable[str] = ()) -> None:
    """Every floating-point tensor the files gave ``model`` must be finite (no NaN or inf)."""
    import torch

    skip = set(skip)
    bad = [
        name
        for name, t in model.state_dict().items()
        if name not in skip and t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all())
    ]
    if bad:
        expected = {k: None for k in model.state_dict()}
        renamed = {v: k for k, v in _rename(ck.shapes, model, expected).items()} if comparable(model) else {}
        files = sorted({repr(str(ck.where[renamed[b]])) for b in bad if b in renamed}) or [ck.describe()]
        raise ModelFilesError(
            f"model weights {', '.join(files)} hold non-finite values (NaN or inf) in {_names(bad)}; "
            "a model that diverged in training or a damaged file: save a good model again"
        )


@contextlib.contextmanager
def quiet_load_report() -> Iterator[None]:
    """Drop transformers' "LOAD REPORT" warnings (and progress bars) while our own checks cover the same ground.

    (The report lists missing, unexpected and mismatched tensors; :func:`verify_checkpoint` has
    already refused all of those except the ones the caller declared, e.g. a reward model's new
    head, so the report would only repeat expected news.)
    """

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return _REPORT_MARK not in str(record.msg)

    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("transformers.modeling_utils")
    drop = _Drop()
    logger.addFilter(drop)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # ("Loading weights" bars for a few small tensors)
    try:
        yield
    finally:
        logger.removeFilter(drop)
        if bar:
            hf_logging.enable_progress_bar()
