"""Generated corruptions of the agents' loaders' files (issue 15, items 8 and the fuzz must-show).

Seeded random damage (a flipped byte, a cut, appended or replacing garbage, a deleted file, a
deleted or retyped JSON entry) to an agent checkpoint and to a reward-model directory. Every
outcome must be a clear error of the library's hierarchy naming the damaged directory, or a load of
the same model (unchanged content, e.g. whitespace in ``config.json``, or a dropped config entry
that equals its default); never another exception, never a silently different model. The tests
print the tally (inputs, clear errors, loads). Byte flips inside a reward model's weight data are
left out: ``RewardModel.save`` records no checksum, so such a flip is a different valid model.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import rlhf_envs  # noqa: F401
from agents import PPO
from agents.checkpoint import CheckpointError
from rlhf_envs.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPS = ("flip", "cut", "append", "replace", "delete", "json_drop", "json_retype")


def _damage(file: Path, op: str, rng: np.random.Generator) -> None:
    data = file.read_bytes()
    if op == "flip" and data:
        i = int(rng.integers(len(data)))
        data = data[:i] + bytes([data[i] ^ int(rng.integers(1, 256))]) + data[i + 1 :]
    elif op == "cut":
        data = data[: int(rng.integers(len(data)))]
    elif op == "append":
        data = data + rng.bytes(int(rng.integers(1, 64)))
    elif op == "replace":
        data = rng.bytes(int(rng.integers(0, 512)))
    elif op == "delete":
        file.unlink()
        return
    elif op in ("json_drop", "json_retype"):
        obj = json.loads(data)
        keys = sorted(obj) if isinstance(obj, dict) else []
        if keys:
            key = keys[int(rng.integers(len(keys)))]
            if op == "json_drop":
                del obj[key]
            else:
                obj[key] = [None, "x", -1, 1e308, {"a": 1}][int(rng.integers(5))]
        data = json.dumps(obj).encode()
    file.write_bytes(data)


def _same_json(a: Path, b: Path) -> bool:
    try:
        return json.loads(a.read_bytes()) == json.loads(b.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return False


def _fuzz(original: Path, work: Path, files: list[str], load, errors, n: int, seed: int) -> Counter:
    rng = np.random.default_rng(seed)
    tally: Counter = Counter()
    for k in range(n):
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(original, work)
        name = files[int(rng.integers(len(files)))]
        ops = OPS if name.endswith(".json") else OPS[:5]
        op = ops[int(rng.integers(len(ops)))]
        _damage(work / name, op, rng)
        case = f"case {k}: {op} {name}"
        try:
            load(work)
        except errors as exc:
            message = str(exc)
            assert str(work) in message, f"{case}: {message}"
            tally["clear error"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            pytest.fail(f"{case}: unclear error {type(exc).__name__}: {exc}")
        unchanged = (work / name).exists() and (
            (work / name).read_bytes() == (original / name).read_bytes()
            or (name.endswith(".json") and _same_json(work / name, original / name))
        )
        assert unchanged, f"{case}: a damaged file was loaded silently"
        tally["loaded unchanged content"] += 1
    tally["inputs"] = n
    return tally


def test_damaged_agent_checkpoints_fail_clearly(tmp_path, capsys):
    agent = PPO("RLHF/Copy-v0", seed=0, n_envs=2, n_steps=8, hidden_sizes=(8,))
    agent.learn(16, progress_bar=False)
    original = Path(agent.save(str(tmp_path / "original")))
    tally = _fuzz(
        original,
        tmp_path / "ck",
        ["config.json", "model.safetensors", "state.safetensors"],
        lambda p: PPO.load(str(p)).close(),
        (CheckpointError,),
        n=60,
        seed=0,
    )
    with capsys.disabled():
        print(f"\nagent checkpoints: {dict(tally)}")
    assert tally["clear error"] >= 50


def test_damaged_reward_model_dirs_fail_clearly(tmp_path, capsys):
    from rlhf_envs.feedback.learned import RewardModel
    from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config, word_tokenizer

    tok = word_tokenizer(["alpha", "bravo", "charlie", "delta", "good", "bad", "."])
    rm = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=16), tok, n_members=2, seed=1)
    original = tmp_path / "original"
    rm.save(original)
    # byte flips inside the weights' data are out of scope: RewardModel.save records no checksum
    files = ["reward_model.json", "config.json", "member_0.safetensors", "member_1.safetensors"]
    files += [p.name for p in original.iterdir() if p.name.startswith(("tokenizer", "special_tokens"))]
    texts = ["alpha good", "bad delta .", "charlie", "bravo bravo good"]
    expected = rm.score_texts(texts)
    rng = np.random.default_rng(1)
    tally: Counter = Counter()
    for k in range(40):
        work = tmp_path / "rm"
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(original, work)
        name = files[int(rng.integers(len(files)))]
        ops = OPS[1:] if name.endswith(".json") else OPS[1:5]
        op = ops[int(rng.integers(len(ops)))]
        _damage(work / name, op, rng)
        try:
            loaded = RewardModel.load(work)
        except (DataError, ConfigError) as exc:
            assert str(work) in str(exc), f"case {k}: {op} {name}: {exc}"
            tally["clear error"] += 1
            continue
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"case {k}: {op} {name}: unclear error {type(exc).__name__}: {exc}")
        # loaded: only if it is the same model (e.g. a config entry dropped that equals its default,
        # bytes appended after a safetensors file's data, which the format ignores)
        assert np.allclose(loaded.score_texts(texts), expected, atol=1e-6), (
            f"case {k}: {op} {name}: silently different"
        )
        tally["loaded the same model"] += 1
    tally["inputs"] = 40
    with capsys.disabled():
        print(f"\nreward-model dirs: {dict(tally)}")
    assert tally["clear error"] >= 25
