"""Checkpoints: safetensors for every tensor, JSON for everything else, written atomically.

A checkpoint is a directory::

    model.safetensors   policy (and frozen reference model) weights
    state.safetensors   optimiser moments and the agent's torch.Generator state
    config.json         algorithm, config, seed, counters, numpy Generator state, optimiser hyper-
                        parameters, the LM's architecture config

Nothing is pickled, so loading a checkpoint cannot run code. The directory is built under a
temporary name next to the target and swapped in with two renames
(:func:`rlhf_envs.atomic_io.write_directory`): the previous checkpoint is moved to ``<path>.bak``
first and removed only after the new one is in place, so a crash at any moment leaves a complete
checkpoint at ``<path>`` or ``<path>.bak`` (``read_checkpoint`` falls back to it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from rlhf_envs import atomic_io

FORMAT_VERSION = 1


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser's state dict into tensors (``optim.<param>.<key>``) and JSON."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().clone().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, st in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def write_checkpoint(
    path: str, module: torch.nn.Module, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write ``module``'s weights, extra ``tensors`` and JSON ``meta`` to directory ``path`` atomically."""

    def build(tmp: Path) -> None:
        save_model(module, str(tmp / "model.safetensors"))
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
        with open(tmp / "config.json", "w") as f:
            json.dump(
                {"format_version": FORMAT_VERSION, **meta}, f, indent=1, sort_keys=True, default=_json_default
            )

    atomic_io.write_directory(path, build)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, tuple | set):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def resolve(path: str) -> str:
    """The directory holding the checkpoint (``<path>`` or, after a crash mid-swap, ``<path>.bak``)."""
    found = atomic_io.completed_directory(path, marker="config.json")
    if found is not None:
        return str(found)
    raise FileNotFoundError(f"no checkpoint at {path!r} (expected {path}/config.json and *.safetensors)")


def read_checkpoint(path: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """``(meta, extra tensors, model weights file)`` of the checkpoint at ``path``."""
    path = resolve(path)
    with open(os.path.join(path, "config.json")) as f:
        meta = json.load(f)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path!r} has format {meta.get('format_version')}, expected {FORMAT_VERSION}"
        )
    return meta, load_file(os.path.join(path, "state.safetensors")), os.path.join(path, "model.safetensors")


def load_weights(module: torch.nn.Module, model_file: str) -> None:
    """Load weights saved by :func:`write_checkpoint` (strict: every key must match)."""
    missing, unexpected = load_model(module, model_file, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint weights do not match the policy: missing {missing}, unexpected {unexpected}"
        )
