"""Loading an agent checkpoint is safe and its failures are clear (issue 15, items 1 and 8).

Safe: a checkpoint never imports a module or reads a file on its own (``module:Id`` env ids need
``allow_import=True``; ``env_kwargs`` are checked against the env's arguments; file-valued ones must
be passed again). Clear: a corrupt checkpoint raises :class:`CheckpointError` (an
``rlhf_envs.errors.DataError``) naming the file, after falling back to a complete ``.bak`` copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import rlhf_envs  # noqa: F401
from agents import PPO
from agents import checkpoint as ckpt
from agents.checkpoint import CheckpointError, check_saved_env
from rlhf_envs.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KW = dict(n_envs=2, n_steps=8, n_epochs=1, n_minibatches=1, hidden_sizes=(8,))


@pytest.fixture
def saved(tmp_path) -> Path:
    agent = PPO("RLHF/Copy-v0", seed=0, **KW)
    agent.learn(16, progress_bar=False)
    path = tmp_path / "ck"
    agent.save(str(path))
    agent.close()
    return path


def _resign(path: Path) -> None:
    """Recompute the checksums in config.json, as the author of a crafted checkpoint would."""
    meta = json.loads((path / "config.json").read_text())
    sums = {"config": ckpt._meta_digest(meta)}
    sums.update({n: ckpt._file_digest(path / n) for n in ckpt.WEIGHT_FILES if (path / n).is_file()})
    meta[ckpt.CHECKSUMS] = sums
    (path / "config.json").write_text(json.dumps(meta))


def _edit_config(path: Path, **changes) -> None:
    """Change config.json as a crafted checkpoint would (checksums recomputed)."""
    meta = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if key == "env_kwargs":
            meta["config"]["env_kwargs"] = value
        else:
            meta[key] = value
    (path / "config.json").write_text(json.dumps(meta))
    _resign(path)


# -- item 1: nothing is imported or read that the caller did not name -------------------------------

MARKER_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
"""


def test_module_prefixed_env_id_is_refused_without_importing_the_module(saved, tmp_path):
    """``somemodule:RLHF/Copy-v0`` in a checkpoint: refused; the module is neither in
    ``sys.modules`` nor run (its marker file is not written); ``allow_import=True`` opts in."""
    moddir = tmp_path / "mods"
    moddir.mkdir()
    marker = tmp_path / "marker.txt"
    (moddir / "ckpt_marker_mod.py").write_text(MARKER_MODULE.format(marker=str(marker)))
    _edit_config(saved, env_id="ckpt_marker_mod:RLHF/Copy-v0")
    code = textwrap.dedent(f"""
        import os, sys, warnings
        import torch
        torch.set_num_threads(1)
        from agents import PPO
        from rlhf_envs.errors import ConfigError
        try:
            PPO.load({str(saved)!r})
        except ConfigError as exc:
            assert "allow_import=True" in str(exc) and "ckpt_marker_mod" in str(exc), exc
        else:
            raise SystemExit("loaded without the opt-in")
        assert "ckpt_marker_mod" not in sys.modules
        assert not os.path.exists({str(marker)!r})
        agent = PPO.load({str(saved)!r}, allow_import=True)
        assert "ckpt_marker_mod" in sys.modules and os.path.exists({str(marker)!r})
        assert agent.env_id == "RLHF/Copy-v0" and agent.num_timesteps == 16
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(moddir), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    assert marker.exists()  # the opt-in really imported it (so the refusal above was not vacuous)


def test_unknown_env_kwargs_are_refused_before_anything_is_built(saved, monkeypatch):
    import agents.base

    built = []
    monkeypatch.setattr(agents.base, "make_vector_env", lambda *a, **k: built.append(a))
    _edit_config(saved, env_kwargs={"max_length": 4, "evil": 1})
    with pytest.raises(ConfigError, match=r"config\.json.*unknown env_kwargs 'evil' for 'RLHF/Copy-v0'"):
        PPO.load(str(saved))
    _edit_config(saved, env_kwargs={}, env_id="RLHF/Nope-v0")
    with pytest.raises(ConfigError, match=r"config\.json.*'RLHF/Nope-v0'.*not registered.*env="):
        PPO.load(str(saved))
    assert built == []


def test_file_valued_env_kwargs_must_be_passed_again(saved, monkeypatch):
    """``prompts="/etc/hostname"`` in a checkpoint is never read: the caller must pass env_kwargs=."""
    opened = []
    real_open = open

    def spy(file, *a, **k):
        opened.append(str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr("builtins.open", spy)
    _edit_config(saved, env_id="RLHF/Sentiment-v0", env_kwargs={"prompts": "/etc/hostname"})
    with pytest.raises(
        ConfigError, match=r"env_kwargs name files \(prompts='/etc/hostname'\).*pass env_kwargs="
    ):
        PPO.load(str(saved))
    assert "/etc/hostname" not in opened
    for kwargs in ({"model": "/tmp/x"}, {"reference": "./m"}, {"prompts": Path("p.txt")}):
        with pytest.raises(ConfigError, match="name files"):
            check_saved_env("c.json", "RLHF/Sentiment-v0", kwargs)
    with pytest.raises(ConfigError, match=r"name files \(proxy="):
        check_saved_env("c.json", "RLHF/SimulatedHuman-v0", {"proxy": "/some/dir"})
    # not files: the embedded model, inline prompts, no value; and the caller's own env_kwargs
    check_saved_env(
        "c.json", "RLHF/Sentiment-v0", {"model": "default", "prompts": ["a b"], "reference": None}
    )
    check_saved_env("c.json", "RLHF/Sentiment-v0", {"prompts": "/etc/hostname"}, check_files=False)


def test_env_kwargs_given_to_load_replace_the_checkpoints(saved):
    _edit_config(saved, env_kwargs={"n_symbols": 4})
    agent = PPO.load(str(saved))
    assert agent.config.env_kwargs == {"n_symbols": 4} and agent.env.task.n_symbols == 4
    agent = PPO.load(str(saved), env_kwargs={"n_symbols": 3})
    assert agent.config.env_kwargs == {"n_symbols": 3} and agent.env.task.n_symbols == 3
    # other observation shapes than the saved weights: a clear error that suggests the env
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*does not fit the policy.*another env"):
        PPO.load(str(saved), env_kwargs={"max_length": 4})
    with pytest.raises(ConfigError, match="unknown PPOConfig option"):
        PPO.load(str(saved), nonsense=1)
    with pytest.raises(ConfigError, match="allow_import"):
        PPO.load(str(saved), allow_import="yes")


# -- item 8: corrupt checkpoints raise CheckpointError naming the file, after trying the .bak copy --


def _truncate(f: Path) -> None:
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def _garbage(f: Path) -> None:
    f.write_bytes(os.urandom(300))


def _drop_tensor(name: str):
    def corrupt(f: Path) -> None:
        tensors = load_file(str(f))
        first = name or sorted(tensors)[0]
        del tensors[first]
        save_file(tensors, str(f))

    return corrupt


def _nan_weight(f: Path) -> None:
    tensors = load_file(str(f))
    key = sorted(k for k in tensors if tensors[k].is_floating_point())[0]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(f))


def _json(change):
    def corrupt(f: Path) -> None:
        meta = json.loads(f.read_text())
        change(meta)
        f.write_text(json.dumps(meta))

    return corrupt


CORRUPTIONS = {
    "model truncated": ("model.safetensors", _truncate),
    "model garbage": ("model.safetensors", _garbage),
    "model missing a tensor": ("model.safetensors", _drop_tensor("")),
    "model NaN weight": ("model.safetensors", _nan_weight),
    "model missing": ("model.safetensors", lambda f: f.unlink()),
    "state truncated": ("state.safetensors", _truncate),
    "state without rng.init": ("state.safetensors", _drop_tensor("rng.init")),
    "state without optimiser moments": (
        "state.safetensors",
        _drop_tensor("optim.0.exp_avg"),
    ),
    "config not JSON": ("config.json", lambda f: f.write_text('{"algorithm": "PPO", ')),
    "config a list": ("config.json", lambda f: f.write_text("[1, 2]")),
    "config without np_rng": ("config.json", _json(lambda m: m.pop("np_rng"))),
    "config bad np_rng": ("config.json", _json(lambda m: m.update(np_rng={"bit_generator": "Nope"}))),
    "config bad counter": ("config.json", _json(lambda m: m.update(num_timesteps="many"))),
    "config unknown field": ("config.json", _json(lambda m: m["config"].update(warp=9))),
    "config bad value": ("config.json", _json(lambda m: m["config"].update(max_grad_norm=-1))),
    "config wrong format": ("config.json", _json(lambda m: m.update(format_version=99))),
    "config missing": ("config.json", lambda f: f.unlink()),
    "config not UTF-8": ("config.json", lambda f: f.write_bytes(b"\xff\xfe\x00")),
}


#: corruptions after which the checksums cannot be recomputed (no JSON object to write them into)
UNSIGNABLE = {"config not JSON", "config a list", "config missing", "config not UTF-8"}


@pytest.mark.parametrize(
    "case,signed",
    [(c, False) for c in sorted(CORRUPTIONS)] + [(c, True) for c in sorted(set(CORRUPTIONS) - UNSIGNABLE)],
)
def test_corrupt_checkpoint_raises_a_clear_error_naming_the_file(saved, case, signed):
    """Unsigned: a damaged file, caught by its checksum. Signed: a crafted checkpoint whose checksums
    were recomputed, caught by the checks of its entries."""
    name, corrupt = CORRUPTIONS[case]
    corrupt(saved / name)
    if signed:
        _resign(saved)
    with pytest.raises(CheckpointError) as info:
        PPO.load(str(saved))
    assert isinstance(info.value, DataError)
    assert str(saved) in str(info.value)
    files = ["model.safetensors", "state.safetensors", "config.json"]
    assert name in str(info.value) or not any(f in str(info.value) for f in files), str(info.value)


@pytest.mark.parametrize("case", ["model truncated", "config without np_rng", "state without rng.init"])
def test_a_corrupt_checkpoint_falls_back_to_its_backup_copy_with_a_warning(saved, case):
    backup = saved.with_name(saved.name + ".bak")
    shutil.copytree(saved, backup)
    good = json.loads((saved / "config.json").read_text())["num_timesteps"]
    name, corrupt = CORRUPTIONS[case]
    corrupt(saved / name)
    with pytest.warns(RuntimeWarning, match=rf"{name}.*loaded the previous checkpoint from .*ck\.bak"):
        agent = PPO.load(str(saved))
    assert agent.num_timesteps == good
    corrupt(backup / name)  # both broken: the error names both
    with pytest.raises(CheckpointError, match=r"backup copy cannot be read either"):
        PPO.load(str(saved))


def test_lm_checkpoint_config_cannot_name_custom_code():
    from agents.checkpoint import rebuild_lm

    def never(meta):
        raise AssertionError("must not be called")

    with pytest.raises(CheckpointError, match="auto_map.*never runs code"):
        rebuild_lm("c.json", {"lm_config": {"model_type": "gpt2", "auto_map": {"AutoModel": "x.Y"}}}, never)
    with pytest.raises(CheckpointError, match="lm_config"):
        rebuild_lm("c.json", {}, never)

    def unknown(meta):
        raise ValueError("Unrecognized model type 'nope'")

    with pytest.raises(CheckpointError, match="cannot rebuild the LM.*nope"):
        rebuild_lm("c.json", {"lm_config": {"model_type": "nope"}}, unknown)


def test_loading_works_after_a_round_trip_of_every_file(saved):
    """The checks accept what save writes (and a reload after re-saving)."""
    agent = PPO.load(str(saved))
    assert agent.num_timesteps == 16
    agent.save(str(saved))
    again = PPO.load(str(saved))
    for a, b in zip(agent.policy.parameters(), again.policy.parameters(), strict=True):
        assert torch.equal(a, b)
