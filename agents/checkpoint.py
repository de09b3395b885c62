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

``config.json`` records the SHA-256 of both safetensors files and of its own other entries, so a
file changed or damaged after the save (a flipped byte in the weights included) is detected.
Reading never trusts the files: every file is checked and parsed, and anything missing, changed,
truncated or malformed raises :class:`CheckpointError` naming the file (a checksum stops accidents,
not an author who recomputes it, so the entries are checked as well); :func:`first_readable` then
falls back to ``<path>.bak`` if a complete copy is there (and warns). Which env a checkpoint may
rebuild, and with which keyword arguments, is checked by :func:`check_saved_env` before anything is
built: a checkpoint never imports a module or reads a file on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from rlhf_envs import atomic_io
from rlhf_envs.errors import DataError

T = TypeVar("T")

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
    _check_optimizer_state(opt, state)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _check_optimizer_state(opt: torch.optim.Optimizer, state: dict[int, dict[str, Any]]) -> None:
    """Raise ``ValueError`` unless ``state`` fits ``opt``'s parameters (torch checks none of this).

    Every parameter has state or none has (before the first step), all with the same entries, and
    each tensor entry that is not a scalar has its parameter's shape.
    """
    params = [p for g in opt.param_groups for p in g["params"]]
    if not state:
        return
    if set(state) != set(range(len(params))):
        raise ValueError(
            f"state for parameters {sorted(state)}, the optimiser has parameters 0..{len(params) - 1}"
        )
    keys = {frozenset(st) for st in state.values()}
    if len(keys) != 1:
        raise ValueError(f"parameters have different state entries: {sorted(map(sorted, keys))}")
    for pid, st in state.items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != params[pid].shape:
                raise ValueError(
                    f"state {key!r} of parameter {pid} has shape {tuple(value.shape)}, "
                    f"the parameter {tuple(params[pid].shape)}"
                )


def write_checkpoint(
    path: str, module: torch.nn.Module, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write ``module``'s weights, extra ``tensors`` and JSON ``meta`` to directory ``path`` atomically."""

    def build(tmp: Path) -> None:
        save_model(module, str(tmp / "model.safetensors"))
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
        record = json.loads(json.dumps({"format_version": FORMAT_VERSION, **meta}, default=_json_default))
        record[CHECKSUMS] = {
            "config": _meta_digest(record),
            **{name: _file_digest(tmp / name) for name in WEIGHT_FILES},
        }
        with open(tmp / "config.json", "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)

    atomic_io.write_directory(path, build)


#: the safetensors files of a checkpoint (their SHA-256 is recorded in ``config.json``)
WEIGHT_FILES = ("model.safetensors", "state.safetensors")
#: the ``config.json`` entry holding the checksums of the other entries and of :data:`WEIGHT_FILES`
CHECKSUMS = "checksums"


def _file_digest(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of ``config.json``'s entries other than the checksums, in a canonical form."""
    body = {k: v for k, v in meta.items() if k != CHECKSUMS}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check_checksums(directory: Path, meta: dict[str, Any]) -> None:
    """Compare the files with the checksums ``config.json`` records (checkpoints written before the
    checksums existed have none and are only parsed)."""
    sums = meta.get(CHECKSUMS)
    if sums is None:
        return
    config_file = directory / "config.json"
    if not isinstance(sums, dict):
        raise CheckpointError(f"checkpoint file {str(config_file)!r}: {CHECKSUMS!r} must be an object")
    if sums.get("config") != _meta_digest(meta):
        raise CheckpointError(
            f"checkpoint file {str(config_file)!r} was changed after it was saved (its checksum does not match); "
            "pass changed settings to load as overrides instead of editing the file"
        )
    for name in WEIGHT_FILES:
        file = directory / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {str(file)!r} is missing")
        if sums.get(name) != _file_digest(file):
            raise CheckpointError(
                f"checkpoint file {str(file)!r} was changed or damaged after it was saved "
                "(its SHA-256 differs from the one recorded in config.json)"
            )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, tuple | set):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


class CheckpointError(DataError):
    """A checkpoint directory that cannot be read: a file missing, truncated or not valid JSON or
    safetensors, a required entry missing, or weights that do not fit the policy. The message names
    the file; :meth:`~agents.base.OnPolicyAgent.load` then tries the ``<path>.bak`` copy if there is one."""


#: entries of ``config.json`` that every checkpoint has
REQUIRED_META = (
    "algorithm",
    "config",
    "seed",
    "env_id",
    "num_timesteps",
    "iteration",
    "total_timesteps",
    "np_rng",
    "optimizer",
)
#: tensors of ``state.safetensors`` that every checkpoint has (the agent's torch generators)
REQUIRED_TENSORS = ("rng.init", "rng.torch")


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint_dir` read from one checkpoint directory (files parsed and checked)."""

    directory: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    model_file: str

    def file(self, name: str) -> str:
        return str(self.directory / name)


def candidates(path: str | os.PathLike) -> list[Path]:
    """The directories a checkpoint at ``path`` may be read from: ``path``, then ``<path>.bak``.

    ``<path>.bak`` exists only when a save was interrupted between its two renames (see the
    module docstring). Stray temporaries of interrupted saves are removed on the way.
    """
    path = Path(path)
    atomic_io.clean_stray_temporaries(path)
    backup = path.with_name(path.name + atomic_io.BACKUP_SUFFIX)
    return [d for d in (path, backup) if d.is_dir()]


def resolve(path: str) -> str:
    """The directory holding the checkpoint (``<path>`` or, after a crash mid-swap, ``<path>.bak``)."""
    found = atomic_io.completed_directory(path, marker="config.json")
    if found is not None:
        return str(found)
    raise FileNotFoundError(f"no checkpoint at {path!r} (expected {path}/config.json and *.safetensors)")


def read_checkpoint_dir(directory: str | os.PathLike) -> Checkpoint:
    """Read and check the three files of the checkpoint in ``directory``.

    Raises :class:`CheckpointError` naming the file for anything missing or malformed: the JSON
    must parse and hold :data:`REQUIRED_META`, both safetensors files must parse, the state must
    hold :data:`REQUIRED_TENSORS`, and every weight must be finite.
    """
    directory = Path(directory)
    config_file = directory / "config.json"
    try:
        text = config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {str(config_file)!r} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint file {str(config_file)!r} cannot be read: {exc}") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint file {str(config_file)!r} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"checkpoint file {str(config_file)!r} must hold a JSON object, got {type(meta).__name__}"
        )
    _check_checksums(directory, meta)
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint file {str(config_file)!r} has format {meta.get('format_version')!r}; "
            f"this version reads format {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(
            f"checkpoint file {str(config_file)!r} lacks {', '.join(map(repr, missing))} "
            f"(a checkpoint's config.json holds {', '.join(REQUIRED_META)})"
        )
    if not isinstance(meta["config"], dict) or not isinstance(meta["optimizer"], dict):
        raise CheckpointError(
            f"checkpoint file {str(config_file)!r}: 'config' and 'optimizer' must be objects"
        )
    for key in ("seed", "num_timesteps", "iteration", "total_timesteps"):
        v = meta[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CheckpointError(
                f"checkpoint file {str(config_file)!r}: {key!r} must be an int >= 0, got {v!r}"
            )
    if meta["env_id"] is not None and not isinstance(meta["env_id"], str):
        raise CheckpointError(
            f"checkpoint file {str(config_file)!r}: 'env_id' must be an env id string or null, got {meta['env_id']!r}"
        )
    state_file = directory / "state.safetensors"
    tensors = _read_safetensors(state_file)
    missing = [k for k in REQUIRED_TENSORS if k not in tensors]
    if missing:
        raise CheckpointError(
            f"checkpoint file {str(state_file)!r} lacks tensor(s) {', '.join(map(repr, missing))}"
        )
    model_file = directory / "model.safetensors"
    for name, t in _read_safetensors(model_file).items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"checkpoint file {str(model_file)!r}: weight {name!r} is not finite (NaN or inf)"
            )
    return Checkpoint(directory, meta, tensors, str(model_file))


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {str(file)!r} is missing")
    try:
        return load_file(str(file))
    except Exception as exc:  # SafetensorError, OSError, ... on a truncated or garbage file
        raise CheckpointError(
            f"checkpoint file {str(file)!r} is not a readable safetensors file ({type(exc).__name__}: {exc})"
        ) from None


def read_checkpoint(path: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """``(meta, extra tensors, model weights file)`` of the checkpoint at ``path``.

    Reads ``path``; if that is missing or corrupt and ``<path>.bak`` is complete, reads that
    instead (with a warning). Raises ``FileNotFoundError`` when neither exists and
    :class:`CheckpointError` when neither can be read.
    """
    found = first_readable(path, read_checkpoint_dir)
    return found.meta, found.tensors, found.model_file


def first_readable(path: str | os.PathLike, read: Callable[[Path], T]) -> T:
    """``read(directory)`` for the first of :func:`candidates` it succeeds on.

    A :class:`CheckpointError` from ``path`` itself moves on to ``<path>.bak`` and, if that one
    reads, warns that the previous checkpoint was loaded instead. Other errors propagate at once.
    """
    dirs = candidates(path)
    if not dirs:
        raise FileNotFoundError(
            f"no checkpoint at {str(path)!r} (expected {path}/config.json and *.safetensors)"
        )
    errors: list[CheckpointError] = []
    if dirs[0] == Path(path):
        try:
            return read(dirs[0])
        except CheckpointError as exc:
            errors.append(exc)
        dirs = dirs[1:]
    else:
        errors.append(CheckpointError(f"checkpoint {str(path)!r} is missing (a save was interrupted)"))
    for backup in dirs:
        try:
            result = read(backup)
        except CheckpointError as exc:
            raise CheckpointError(f"{errors[0]}; the backup copy cannot be read either: {exc}") from None
        warnings.warn(
            f"{errors[0]}; loaded the previous checkpoint from {str(backup)!r} instead",
            RuntimeWarning,
            stacklevel=3,
        )
        return result
    raise errors[0]


def load_weights(module: torch.nn.Module, model_file: str) -> None:
    """Load weights saved by :func:`write_checkpoint` (strict: every key and shape must match)."""
    try:
        missing, unexpected = load_model(module, model_file, strict=False)
    except Exception as exc:  # shape mismatch (RuntimeError), unreadable file (SafetensorError)
        raise CheckpointError(
            f"checkpoint file {model_file!r} does not fit the policy (was it saved with another env, "
            f"env_kwargs or policy settings?): {exc}"
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint file {model_file!r} does not match the policy: missing {missing}, unexpected {unexpected}"
        )


def load_saved_state(agent: Any, ck: Checkpoint) -> None:
    """Restore the optimiser, generators and counters of ``agent`` from ``ck`` (weights excluded)."""
    meta, tensors = ck.meta, ck.tensors
    try:
        load_optimizer_state(agent.optimizer, tensors, meta["optimizer"])
    except Exception as exc:  # wrong parameter ids, shapes or a malformed param_groups entry
        raise CheckpointError(
            f"checkpoint files {ck.file('state.safetensors')!r} / {ck.file('config.json')!r}: the optimiser "
            f"state does not fit the policy ({type(exc).__name__}: {exc})"
        ) from None
    try:
        agent.init_rng.set_state(tensors["rng.init"])
        agent.torch_rng.set_state(tensors["rng.torch"].to(agent.torch_rng.device))
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint file {ck.file('state.safetensors')!r}: invalid generator state ({type(exc).__name__}: {exc})"
        ) from None
    try:
        agent.np_rng.bit_generator.state = meta["np_rng"]
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint file {ck.file('config.json')!r}: invalid 'np_rng' state ({type(exc).__name__}: {exc})"
        ) from None
    agent.num_timesteps = int(meta["num_timesteps"])
    agent.iteration = int(meta["iteration"])
    agent._total_timesteps = int(meta["total_timesteps"])
    collector = meta.get("collector", {})
    if hasattr(agent.collector, "load_state_dict"):
        try:
            agent.collector.load_state_dict(collector if isinstance(collector, dict) else {})
        except Exception as exc:
            raise CheckpointError(
                f"checkpoint file {ck.file('config.json')!r}: invalid 'collector' state ({type(exc).__name__}: {exc})"
            ) from None


def check_saved_env(
    config_file: str,
    env_id: Any,
    env_kwargs: Any,
    *,
    allow_import: bool = False,
    check_files: bool = True,
) -> None:
    """Refuse an env id or env keyword arguments of a checkpoint before anything is built.

    The rules (a checkpoint never imports a module or reads a file on its own):

    * ``env_id`` must be registered already (``rlhf_envs`` is imported to register its ids).
      Gymnasium's ``"module:Id"`` form, which imports ``module`` first, is refused unless the
      caller passes ``allow_import=True`` to ``load``.
    * ``env_kwargs`` must be arguments the id accepts (its task's parameters for rlhf ids).
    * With ``check_files``: arguments that name files (``prompts=``, ``model=``, ``proxy=``,
      ``reference=``: see :func:`agents.envs.env_parameters`) are refused; the caller passes
      ``env_kwargs=`` to ``load`` with values it trusts, which replace the checkpoint's.

    Raises :class:`~rlhf_envs.errors.ConfigError` naming ``config_file`` and what to pass instead.
    """
    from agents.envs import FILE_PARAMETERS, env_parameters, names_a_file
    from rlhf_envs.errors import ConfigError

    where = f"checkpoint {config_file!r}"
    if not isinstance(env_kwargs, dict):
        raise CheckpointError(f"{where}: config 'env_kwargs' must be an object, got {env_kwargs!r}")
    allowed: set[str] | None = None
    files: set[str] = set(FILE_PARAMETERS)
    if env_id is not None:
        if ":" in env_id:
            if not allow_import:
                module = env_id.split(":", 1)[0]
                raise ConfigError(
                    f"{where} names env {env_id!r}, whose 'module:' prefix would import {module!r}; "
                    "loading never imports a module on its own: pass allow_import=True to load if you "
                    "trust it, or env= with an env id or env of your own"
                )
            gym_make_imports(env_id)
            env_id = env_id.split(":", 1)[1]
        try:
            allowed, task_files = env_parameters(env_id)
        except ConfigError as exc:
            raise ConfigError(
                f"{where} names env {env_id!r}, which is not registered ({exc}); import the package "
                "that registers it first, or pass env= to load"
            ) from None
        files |= task_files
    if allowed is not None:
        unknown = sorted(set(env_kwargs) - allowed)
        if unknown:
            raise ConfigError(
                f"{where}: unknown env_kwargs {', '.join(map(repr, unknown))} for {env_id!r}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
    if check_files:
        named = {k: v for k, v in env_kwargs.items() if k in files and names_a_file(k, v)}
        if named:
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(named.items()))
            raise ConfigError(
                f"{where}: its env_kwargs name files ({shown}); loading never reads a file named only "
                "by a checkpoint: pass env_kwargs= to load with the values you trust (they replace "
                f"the checkpoint's), e.g. env_kwargs={named!r}"
            )


def gym_make_imports(env_id: str) -> None:
    """Import the module of a ``"module:Id"`` env id (what ``gym.make`` does), as the caller allowed."""
    import importlib

    importlib.import_module(env_id.split(":", 1)[0])


def rebuild_lm(config_file: str, policy_meta: Any, model_from_meta: Callable[[dict[str, Any]], Any]) -> Any:
    """The untrained LM of the architecture a checkpoint records (its weights load afterwards).

    The recorded ``lm_config`` must name a ``model_type`` that ``transformers`` ships; a config
    with an ``auto_map`` (code from a repository) is refused, so loading cannot run code.
    """
    lm_config = policy_meta.get("lm_config") if isinstance(policy_meta, dict) else None
    if not isinstance(lm_config, dict) or not isinstance(lm_config.get("model_type"), str):
        raise CheckpointError(
            f"checkpoint file {config_file!r}: 'policy.lm_config' with a 'model_type' is missing "
            "(an LM-policy checkpoint records its model's architecture there)"
        )
    if "auto_map" in lm_config:
        raise CheckpointError(
            f"checkpoint file {config_file!r}: 'policy.lm_config' has an 'auto_map' (custom model code); "
            "loading a checkpoint never runs code: pass model= to load with a model you built yourself"
        )
    try:
        return model_from_meta(policy_meta)
    except Exception as exc:  # unknown model_type, malformed fields
        raise CheckpointError(
            f"checkpoint file {config_file!r}: cannot rebuild the LM from 'policy.lm_config' "
            f"({type(exc).__name__}: {exc})"
        ) from None
