"""Loading model directories safely (issue 15 items 4, 5 and 12).

Every reproduction of the issue, through each loader that takes a model directory:
``gym.make(id, model=DIR)``, ``PPO(env, policy="lm", model=DIR)`` and ``RewardModel(DIR)``. The
models are tiny GPT-2s and Llamas saved here (``tiny_causal_lm``) with the embedded model's
tokenizer; nothing comes from a model hub.
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import rlhf_envs  # noqa: F401
from agents import PPO
from rlhf_envs.errors import ConfigError, DataError, ModelFilesError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.learned import RewardModel
from rlhf_envs.lm.loading import DEFAULT_MODEL_DIR, load_causal_lm, load_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def default_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(DEFAULT_MODEL_DIR), local_files_only=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_causal_lm, default_tok):
    """``saved(kind)``: the directory of a tiny model of that kind with the default tokenizer."""
    dirs: dict[str, Path] = {}

    def get(kind: str = "gpt2") -> Path:
        if kind not in dirs:
            path = tmp_path_factory.mktemp(f"model_{kind}")
            tiny_causal_lm(kind, vocab=len(default_tok), width=16, layers=2, heads=2).save_pretrained(path)
            default_tok.save_pretrained(path)
            dirs[kind] = path
        return dirs[kind]

    return get


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_weights(path: Path, edit) -> None:  # noqa: ANN001
    tensors = load_file(str(path / WEIGHTS))
    edit(tensors)
    save_file(tensors, str(path / WEIGHTS), metadata={"format": "pt"})


def edit_config(path: Path, **changes) -> None:  # noqa: ANN003
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def load_with(loader: str, path: Path):  # noqa: ANN201
    if loader == "gym.make":
        return gym.make("RLHF/Sentiment-v0", model=str(path), max_new_tokens=4)
    if loader == "PPO":
        return PPO("RLHF/Sentiment-v0", policy="lm", model=str(path), n_envs=1)
    if loader == "TokenReward":  # the inverse-RL reward's backbone
        from rlhf_envs.feedback.inverse_rl import TokenReward

        return TokenReward(str(path))
    return RewardModel(path, seed=0)


def _set_nan(t: dict) -> None:
    t["transformer.h.1.mlp.c_fc.weight"][0, 0] = float("nan")


def _set_inf(t: dict) -> None:
    t["transformer.wte.weight"][3, 1] = float("-inf")


def _truncate(path: Path) -> None:
    data = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes(data[: len(data) // 2])


# (name, damage, words the message must contain)
DAMAGE = [
    (
        "missing tensor",
        lambda p: edit_weights(p, lambda t: t.pop("transformer.h.1.mlp.c_fc.weight")),
        ["missing", "transformer.h.1.mlp.c_fc.weight", WEIGHTS],
    ),
    (
        "extra tensor",
        lambda p: edit_weights(p, lambda t: t.__setitem__("transformer.h.0.attn.extra", torch.zeros(4))),
        ["no place", "transformer.h.0.attn.extra", WEIGHTS],
    ),
    (
        "wrong shape",
        lambda p: edit_weights(
            p, lambda t: t.__setitem__("transformer.h.1.mlp.c_fc.weight", torch.zeros(16, 63))
        ),
        ["wrong shape", "transformer.h.1.mlp.c_fc.weight", "[16, 63]"],
    ),
    (
        "more layers in config.json",
        lambda p: edit_config(p, n_layer=3),
        ["missing", "transformer.h.2.", "config.json"],
    ),
    ("NaN weight", lambda p: edit_weights(p, _set_nan), ["non-finite", "transformer.h.1.mlp.c_fc.weight"]),
    ("inf weight", lambda p: edit_weights(p, _set_inf), ["non-finite", "transformer.wte.weight"]),
    ("truncated file", _truncate, ["not a readable safetensors file", WEIGHTS]),
]


@pytest.mark.parametrize("loader", ["gym.make", "PPO", "RewardModel", "TokenReward"])
@pytest.mark.parametrize(("name", "damage", "words"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_weights_never_load(loader, name, damage, words, saved, tmp_path):
    path = copy_of(saved("gpt2"), tmp_path / "model")
    damage(path)
    with pytest.raises(ModelFilesError) as info:
        load_with(loader, path)
    message = str(info.value)
    assert str(path) in message
    for word in words:  # a body-only load (TokenReward) names the body's tensors, without "transformer."
        assert word in message or word.removeprefix("transformer.") in message, (word, message)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, DataError)


@pytest.mark.parametrize("loader", ["gym.make", "PPO", "RewardModel", "TokenReward"])
def test_good_directories_load_without_a_load_report(loader, saved, capsys, caplog):
    """The undamaged models load; transformers' LOAD REPORT (here: the reward model's new head, which
    our own check allows) is not printed."""
    with caplog.at_level(logging.WARNING):
        for kind in ("gpt2", "llama"):
            out = load_with(loader, saved(kind))
            if loader == "gym.make":
                out.reset(seed=0)
                out.close()
            elif loader == "PPO":
                out.env.close()
            elif loader == "TokenReward":
                episode = Episode("", "", prompt_ids=(5,), completion_ids=(6, 7), terminated=False)
                assert np.isfinite(out.score([episode])).all()
            else:
                assert np.isfinite(out.score_texts(["the rain fell."])).all()
    printed = capsys.readouterr()
    assert "LOAD REPORT" not in printed.err + printed.out + caplog.text


def test_llama_missing_tensor_is_named(saved, tmp_path):
    path = copy_of(saved("llama"), tmp_path / "llama")
    edit_weights(path, lambda t: t.pop("model.layers.1.self_attn.k_proj.weight"))
    with pytest.raises(ModelFilesError, match=r"model\.layers\.1\.self_attn\.k_proj\.weight"):
        load_causal_lm(path)


def test_sharded_checkpoints_load_and_a_missing_shard_is_named(tiny_causal_lm, default_tok, tmp_path):
    model = tiny_causal_lm("gpt2", vocab=len(default_tok), width=16, layers=2, heads=2)
    path = tmp_path / "sharded"
    model.save_pretrained(path, max_shard_size="60KB")
    default_tok.save_pretrained(path)
    shards = sorted(path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (path / "model.safetensors.index.json").is_file()
    lm = load_causal_lm(path, cache=False)
    for (k, a), b in zip(model.state_dict().items(), lm.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    bad = copy_of(path, tmp_path / "bad")
    (bad / shards[-1].name).unlink()
    with pytest.raises(ModelFilesError, match=f"lists shards that do not exist: {shards[-1].name}"):
        load_causal_lm(bad)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    key = sorted(index["weight_map"])[0]
    index["weight_map"][key] = next(s.name for s in shards if s.name != index["weight_map"][key])
    wrong = copy_of(path, tmp_path / "wrong")
    (wrong / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFilesError, match=f"does not match its shards.*{key}"):
        load_causal_lm(wrong)


def test_a_cached_model_is_not_reused_after_its_files_change(saved, tmp_path):
    path = copy_of(saved("gpt2"), tmp_path / "m")
    assert load_causal_lm(path) is load_causal_lm(path)
    edit_weights(path, _set_nan)
    with pytest.raises(ModelFilesError, match="non-finite"):
        load_causal_lm(path)


# -- config.json -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"n_layer": "2"}, "'n_layer' must be of type int"),
        ({"layer_norm_epsilon": "tiny"}, "'layer_norm_epsilon' must be of type float"),
        ({"tie_word_embeddings": 1}, "'tie_word_embeddings' must be of type bool"),
        ({"model_type": "no-such-model"}, "'model_type' must name an architecture"),
        ({"auto_map": {"AutoModelForCausalLM": "x.Y"}}, "custom model code"),
        ({"n_head": 0}, "does not describe a model .*can be built"),
    ],
)
def test_bad_config_entries_name_the_file_and_entry(changes, pattern, saved, tmp_path):
    path = copy_of(saved("gpt2"), tmp_path / "m")
    edit_config(path, **changes)
    for load in (lambda: gym.make("RLHF/Sentiment-v0", model=str(path)), lambda: RewardModel(path)):
        with pytest.raises(ModelFilesError, match=pattern) as info:
            load()
        assert str(path / "config.json") in str(info.value)


def test_config_json_that_is_not_an_object_is_named(saved, tmp_path):
    path = copy_of(saved("gpt2"), tmp_path / "m")
    (path / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelFilesError, match=r"config\.json' must hold a JSON object"):
        load_causal_lm(path)


# -- tokenizer and model belong together (item 5) ------------------------------------------------------


def _word_tokenizer_beside(src: Path, dst: Path, n_words: int = 12) -> Path:
    from rlhf_envs.feedback.review_fixtures import word_tokenizer

    path = copy_of(src, dst)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (path / name).unlink()
    word_tokenizer([" ".join(f"w{i}" for i in range(n_words))]).save_pretrained(path)
    return path


@pytest.mark.parametrize("loader", ["gym.make", "PPO", "RewardModel"])
def test_a_15_token_tokenizer_beside_the_default_weights_is_refused(loader, tmp_path):
    path = _word_tokenizer_beside(DEFAULT_MODEL_DIR, tmp_path / "m")
    assert len(load_tokenizer(path).hf) == 15
    with pytest.raises(ModelFilesError) as info:
        load_with(loader, path)
    message = str(info.value)
    assert "15 tokens" in message and "2288" in message
    assert str(path / "tokenizer.json") in message  # the tokenizer's side ...
    assert repr(str(path)) in message  # ... and the model's


def test_the_toy_vocabulary_with_the_default_model_is_refused():
    with pytest.raises(ModelFilesError) as info:
        PPO("RLHF/Copy-v0", policy="lm", model="default")
    message = str(info.value)
    assert "'default'" in message and "RLHF/Copy-v0" in message
    assert "CharTokenizer" in message and "2288 tokens" in message and "30 tokens" in message
    # the same model passed as an instance loaded from its directory
    with pytest.raises(ModelFilesError, match="use different tokenizers"):
        PPO("RLHF/Copy-v0", policy="lm", model=load_causal_lm(cache=False))


def test_set_env_refuses_an_env_with_another_tokenizer(tiny_causal_lm, tmp_path):
    """An env on a model with another tokenizer of the same size (same spaces) cannot be swapped in."""
    from rlhf_envs.feedback.review_fixtures import word_tokenizer

    tok = word_tokenizer([" ".join(f"w{i}" for i in range(2285))])
    assert len(tok) == 2288 and (tok.pad_token_id, tok.eos_token_id) == (1, 2)
    model = tiny_causal_lm("gpt2", vocab=2288, width=16, layers=1, heads=2)
    model.config.update({"pad_token_id": 1, "eos_token_id": 2, "bos_token_id": 2})
    model.save_pretrained(tmp_path / "words")
    tok.save_pretrained(tmp_path / "words")
    agent = PPO("RLHF/Sentiment-v0", policy="lm", model="default", n_envs=1)
    other = gym.make_vec("RLHF/Sentiment-v0", num_envs=1, model=str(tmp_path / "words"))
    assert other.single_observation_space == agent.observation_space
    with pytest.raises(ModelFilesError, match="use different tokenizers"):
        agent.set_env(other)
    assert agent.env is not other
    other.close()
    agent.env.close()


def test_padding_rows_within_the_allowance_are_accepted(tiny_causal_lm, default_tok, tmp_path):
    """Models padded to a round number of output rows load; the action space is the tokenizer's."""
    for spare, ok in ((64, True), (128, True), (129, False), (500, False)):
        path = tmp_path / f"spare{spare}"
        tiny_causal_lm("gpt2", vocab=len(default_tok) + spare, width=16, layers=1, heads=2).save_pretrained(
            path
        )
        default_tok.save_pretrained(path)
        if ok:
            env = gym.make("RLHF/Sentiment-v0", model=str(path), max_new_tokens=3)
            assert env.action_space.n == len(default_tok)
            env.reset(seed=0)
            env.close()
        else:
            with pytest.raises(ModelFilesError, match=f"{len(default_tok) + spare} output rows"):
                gym.make("RLHF/Sentiment-v0", model=str(path))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"eos_token_id": 5}, ["eos id is 1", "eos_token_id = 5"]),
        ({"pad_token_id": 7}, ["pad id is 0", "pad_token_id = 7"]),
        ({"eos_token_id": [3, 4]}, ["eos id is 1", "[3, 4]"]),
    ],
)
def test_special_ids_must_agree_with_the_config(changes, words, saved, tmp_path):
    path = copy_of(saved("gpt2"), tmp_path / "m")
    edit_config(path, **changes)
    for load in (lambda: gym.make("RLHF/Sentiment-v0", model=str(path)), lambda: RewardModel(path)):
        with pytest.raises(ModelFilesError) as info:
            load()
        assert all(w in str(info.value) for w in words), str(info.value)
    edit_config(path, eos_token_id=[1, 9], pad_token_id=0)  # a list naming the tokenizer's EOS is fine
    gym.make("RLHF/Sentiment-v0", model=str(path), max_new_tokens=3).close()


def test_reward_model_load_refuses_a_swapped_tokenizer(tmp_path):
    from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config, word_tokenizer

    tok = word_tokenizer()
    RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=16), tok, seed=0).save(tmp_path / "rm")
    bigger = word_tokenizer([*[f"extra{i}" for i in range(300)], "the food was good ."])
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "rm" / name).unlink()
    bigger.save_pretrained(tmp_path / "rm")
    with pytest.raises(DataError, match="tokenizer"):
        RewardModel.load(tmp_path / "rm")


# -- loading hygiene (item 12) --------------------------------------------------------------------------


def _pickle_only(src: Path, dst: Path) -> Path:
    path = copy_of(src, dst)
    torch.save(load_file(str(path / WEIGHTS)), str(path / "pytorch_model.bin"))
    (path / WEIGHTS).unlink()
    return path


def test_pickle_weights_are_refused_unless_allowed(saved, tmp_path):
    path = _pickle_only(saved("gpt2"), tmp_path / "pickled")
    for load in (
        lambda: load_causal_lm(path),
        lambda: gym.make("RLHF/Sentiment-v0", model=str(path)),
        lambda: PPO("RLHF/Sentiment-v0", policy="lm", model=str(path), n_envs=1),
        lambda: RewardModel(path),
    ):
        with pytest.raises(ModelFilesError, match="pickle weights .*allow_pickle=True"):
            load()
    lm = load_causal_lm(path, allow_pickle=True, cache=False)
    ref = load_causal_lm(saved("gpt2"), cache=False)
    for (k, a), b in zip(ref.state_dict().items(), lm.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert np.isfinite(RewardModel(path, allow_pickle=True).score_texts(["the rain fell."])).all()
    with pytest.raises(ConfigError, match="allow_pickle must be True or False"):
        load_causal_lm(path, allow_pickle="yes")
    # a damaged pickle checkpoint is checked like a safetensors one
    state = torch.load(str(path / "pytorch_model.bin"), weights_only=True)
    state.pop("transformer.h.0.ln_1.weight")
    torch.save(state, str(path / "pytorch_model.bin"))
    with pytest.raises(ModelFilesError, match=r"transformer\.h\.0\.ln_1\.weight"):
        load_causal_lm(path, allow_pickle=True)


def test_a_hub_name_missing_from_the_local_cache_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for load in (load_causal_lm, load_tokenizer):
        with pytest.raises(ConfigError, match="local Hugging Face cache"):
            load("someone/not-downloaded-model")


def _hf_calls() -> list[tuple[str, int, str, set[str]]]:
    """Every ``X.from_pretrained(...)`` call in the library, agents and benchmarks:
    (file, line, receiver, keyword names with the value True)."""
    out = []
    for folder in ("rlhf_envs", "agents", "benchmarks"):
        for file in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "from_pretrained":
                    receiver = ast.unparse(node.func.value)
                    true = {
                        k.arg
                        for k in node.keywords
                        if k.arg
                        and not (isinstance(k.value, ast.Constant) and k.value.value in (False, None))
                    }
                    out.append((str(file.relative_to(REPO)), node.lineno, receiver, true))
    return out


def test_every_hugging_face_load_is_local_and_safetensors_only():
    calls = _hf_calls()
    assert len(calls) >= 6, calls
    for file, line, receiver, keywords in calls:
        where = f"{file}:{line} {receiver}.from_pretrained"
        assert "local_files_only" in keywords, where
        assert "trust_remote_code" not in keywords, where
        if receiver.startswith("AutoModel"):
            assert "use_safetensors" in keywords, where


def test_setup_cfg_floors():
    import configparser

    from packaging.requirements import Requirement
    from packaging.version import Version

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    reqs = {
        r.name: r.specifier
        for r in map(Requirement, filter(None, cfg["options"]["install_requires"].split("\n")))
    }
    assert (
        Version("2.5.1") not in reqs["torch"] and Version("2.6.0") in reqs["torch"]
    )  # weights_only bypass fixed
    assert Version("5.23.0") not in reqs["transformers"] and Version("5.24.0") in reqs["transformers"]
    assert Version("6.0.0") not in reqs["transformers"]
    import transformers

    assert Version(torch.__version__.split("+")[0]) in reqs["torch"]
    assert Version(transformers.__version__) in reqs["transformers"]
