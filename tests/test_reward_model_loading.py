"""A corrupt reward-model directory raises a DataError naming the file (issue 15, item 8).

Before, ``RewardModel.load`` raised ``KeyError: 'aggregate'``, ``SafetensorError`` or a bare
``JSONDecodeError``, and NaN weights or a config with custom code went through.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rlhf_envs.errors import ConfigError, DataError
from rlhf_envs.feedback.learned import RewardModel
from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config, word_tokenizer

WORDS = ["alpha", "bravo", "charlie", "delta", "the", "a", "good", "bad", "."]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    tok = word_tokenizer(WORDS)
    rm = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=16), tok, n_members=2, seed=1)
    rm.fit_preferences(["alpha"] * 8, ["delta"] * 8, ["A"] * 8, epochs=1, lr=1e-3)
    path = tmp_path_factory.mktemp("rm") / "model"
    rm.save(path)
    return path


@pytest.fixture
def copy(saved_model, tmp_path) -> Path:
    import shutil

    target = tmp_path / "rm"
    shutil.copytree(saved_model, target)
    return target


def _edit_json(name: str, change):
    def corrupt(d: Path) -> None:
        data = json.loads((d / name).read_text())
        change(data)
        (d / name).write_text(json.dumps(data))

    return corrupt


def _nan(d: Path) -> None:
    t = load_file(str(d / "member_1.safetensors"))
    key = sorted(k for k in t if t[k].is_floating_point())[0]
    t[key] = t[key].clone()
    t[key].view(-1)[0] = float("nan")
    save_file(t, str(d / "member_1.safetensors"))


def _drop(d: Path) -> None:
    t = load_file(str(d / "member_0.safetensors"))
    del t[sorted(t)[0]]
    save_file(t, str(d / "member_0.safetensors"))


def _truncate(d: Path) -> None:
    f = d / "member_0.safetensors"
    f.write_bytes(f.read_bytes()[:100])


CASES = {
    "settings not JSON": ("reward_model.json", lambda d: (d / "reward_model.json").write_text("{")),
    "settings a list": ("reward_model.json", lambda d: (d / "reward_model.json").write_text("[]")),
    "settings without aggregate": ("reward_model.json", _edit_json("reward_model.json", lambda s: s.pop("aggregate"))),
    "settings bad aggregate": ("aggregate", _edit_json("reward_model.json", lambda s: s.update(aggregate="median"))),
    "settings bad n_members": ("n_members", _edit_json("reward_model.json", lambda s: s.update(n_members=0))),
    "settings more members than files": (
        "member_2.safetensors", _edit_json("reward_model.json", lambda s: s.update(n_members=3))
    ),
    "settings wrong offsets": ("offsets", _edit_json("reward_model.json", lambda s: s.update(offsets=[0.0]))),
    "settings NaN scale": ("scales", _edit_json("reward_model.json", lambda s: s.update(scales=[1.0, "nan"]))),
    "settings bad last_fit": ("last_fit", _edit_json("reward_model.json", lambda s: s.update(last_fit={"x": 1}))),
    "weights truncated": ("member_0.safetensors", _truncate),
    "weights garbage": ("member_0.safetensors", lambda d: (d / "member_0.safetensors").write_bytes(os.urandom(64))),
    "weights missing a tensor": ("member_0.safetensors", _drop),
    "weights NaN": ("member_1.safetensors", _nan),
    "weights missing": ("member_1.safetensors", lambda d: (d / "member_1.safetensors").unlink()),
    "config not JSON": ("config.json", lambda d: (d / "config.json").write_text("nope")),
    "config more layers": ("member_0.safetensors", _edit_json("config.json", lambda c: c.update(n_layer=3))),
    "config custom code": ("auto_map", _edit_json("config.json", lambda c: c.update(auto_map={"AutoConfig": "x.Y"}))),
    "config unknown type": ("config.json", _edit_json("config.json", lambda c: c.update(model_type="nope"))),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_corrupt_reward_model_dir_is_a_data_error_naming_the_file(copy, case):
    expected, corrupt = CASES[case]
    corrupt(copy)
    with pytest.raises(DataError) as info:
        RewardModel.load(copy)
    assert str(copy) in str(info.value) and expected in str(info.value), str(info.value)


def test_a_saved_model_still_loads_and_scores_the_same(saved_model):
    rm = RewardModel.load(saved_model)
    again = RewardModel.load(saved_model)
    assert torch.equal(
        torch.as_tensor(rm.score_texts(["alpha", "delta"])),
        torch.as_tensor(again.score_texts(["alpha", "delta"])),
    )
    with pytest.raises(ConfigError, match="no saved RewardModel"):
        RewardModel.load(saved_model.parent)
