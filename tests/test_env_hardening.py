"""Regression tests for the suite side of issue 15: every bad input found there is now a clear error
(or works), from prompt text and prompt files to settings, vector-env edge cases and API traps."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import SyncVectorEnv

import rlhf_envs
from rlhf_envs.errors import (
    ActionTypeError,
    ConfigError,
    ConfigValueError,
    FeedbackError,
    InvalidActionError,
    OptionValueError,
    PromptError,
    RLHFEnvsError,
)
from rlhf_envs.registration import TOY_IDS

LANG = {"ref_logprobs": False}  # language envs without the reference model: faster, same prompts


def _kw(env_id: str) -> dict:
    return {} if env_id in TOY_IDS else dict(LANG)


# -- item 6: prompt text ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["<pad><pad>", "<eos>", "I liked it.<eos>", "a <pad> b"])
def test_special_token_text_in_a_prompt_is_rejected(text: str, tmp_path: Path) -> None:
    """ "<pad>"/"<eos>" would become the pad/EOS id with attention 1: option, list and file all refuse."""
    env = gym.make("RLHF/Sentiment-v0", **LANG)
    with pytest.raises(PromptError, match=r"contains the (pad|EOS) token .*not allowed in prompts"):
        env.reset(seed=0, options={"prompt": text})
    with pytest.raises(PromptError, match=r"prompts\[1\].*special-token text"):
        gym.make("RLHF/Sentiment-v0", prompts=["Fine.", text], **LANG)
    path = tmp_path / "p.txt"
    path.write_text(f"Fine.\n{text}\n")
    with pytest.raises(PromptError, match=r"p\.txt', line 2: the prompt .* contains the"):
        gym.make("RLHF/Sentiment-v0", prompts=str(path), **LANG)


def test_plain_text_prompt_has_no_pad_or_eos_ids() -> None:
    env = gym.make("RLHF/Sentiment-v0", **LANG)
    obs, _ = env.reset(seed=0, options={"prompt": "I like < and > and pad and eos."})
    ids = obs["input_ids"][obs["attention_mask"] == 1]
    tok = env.unwrapped.task.tokenizer
    assert tok.pad_id not in ids and tok.eos_id not in ids


# (RLHF/SimulatedHuman-v0 runs the same code after fitting a proxy: the fuzz suite covers it)
@pytest.mark.parametrize("env_id", [e for e in rlhf_envs.list_envs() if e != "RLHF/SimulatedHuman-v0"])
@pytest.mark.parametrize("bad", [123, None, b"ab=", ["ab="], 1.5])
def test_non_string_prompt_option_is_a_clear_error(env_id: str, bad) -> None:
    env = gym.make(env_id, **_kw(env_id))
    with pytest.raises(ConfigError, match="reset option 'prompt' must be a str"):
        env.reset(options={"prompt": bad})


@pytest.mark.parametrize(
    "env_id", ["RLHF/Copy-v0", "RLHF/Addition-v0", "RLHF/Sentiment-v0", "RLHF/Keywords-v0"]
)
def test_lone_surrogate_prompt_is_a_clear_error(env_id: str) -> None:
    env = gym.make(env_id, **_kw(env_id))
    with pytest.raises(PromptError, match=r"lone surrogate .*position 2"):
        env.reset(options={"prompt": "ab\ud800="})


def test_reset_options_must_be_a_dict_with_known_keys() -> None:
    env = gym.make("RLHF/Copy-v0")
    with pytest.raises(ConfigError, match="reset options must be None or a dict"):
        env.reset(options="prompt")
    with pytest.raises(ConfigError, match="unknown reset options: 'a', 1; allowed: 'prompt'"):
        env.reset(options={1: 2, "a": 3})  # keys that do not even sort together


# -- item 6: prompt files ---------------------------------------------------------------------------


def _records(env_id: str, prompts, **kw) -> list[dict]:
    env = gym.make(env_id, prompts=prompts, **LANG, **kw)
    return [r for _, r in env.unwrapped.task.records]


def test_json_prompt_file_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(["I bought this.", {"prompt": "We ate here."}]))
    assert _records("RLHF/Sentiment-v0", str(path)) == [
        {"prompt": "I bought this."},
        {"prompt": "We ate here."},
    ]
    path.write_text(json.dumps([{"keywords": ["rain"], "prompt": "The river"}, "garden, fox"]))
    assert _records("RLHF/Keywords-v0", str(path)) == [
        {"keywords": ["rain"], "prompt": "The river"},
        {"keywords": ["garden", "fox"]},
    ]
    path.write_text(json.dumps({"prompt": "x"}))
    with pytest.raises(PromptError, match=r"p\.json.*must hold a list of strings or objects, got a dict"):
        _records("RLHF/Sentiment-v0", str(path))
    path.write_text(json.dumps(["fine", 3]))
    with pytest.raises(PromptError, match=r"p\.json', item 1: expected a string or an object, got int"):
        _records("RLHF/Sentiment-v0", str(path))
    path.write_text('["fine",\n "broken]')
    with pytest.raises(PromptError, match=r"p\.json', line 2, column 2: not valid JSON"):
        _records("RLHF/Sentiment-v0", str(path))


def test_csv_prompt_file_needs_a_header_and_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text('prompt\nI bought this phone.\n"We ate here, twice."\n\n')
    assert _records("RLHF/Sentiment-v0", str(path)) == [
        {"prompt": "I bought this phone."},
        {"prompt": "We ate here, twice."},
    ]  # the header is not a prompt, the quoted comma is kept
    path.write_text("I bought this phone.\nWe ate here.\n")
    with pytest.raises(PromptError, match=r"p\.csv', line 1: the first line .* must be a header .*'prompt'"):
        _records("RLHF/Sentiment-v0", str(path))
    path.write_text('keywords,prompt\n"rain, bridge",The river\nfox,\n')
    assert _records("RLHF/Keywords-v0", str(path)) == [
        {"keywords": ["rain", "bridge"], "prompt": "The river"},
        {"keywords": ["fox"]},
    ]
    path.write_text("prompt,target_words\nI read it.,4\nWe saw it.,\n")
    assert _records("RLHF/Length-v0", str(path)) == [
        {"prompt": "I read it.", "target_words": 4},
        {"prompt": "We saw it."},
    ]
    path.write_text("prompt,target_words\nI read it.,four\n")
    with pytest.raises(PromptError, match=r"p\.csv', line 2: .*'target_words' must be a positive int"):
        _records("RLHF/Length-v0", str(path))
    path.write_text("prompt,target_words\nI read it.,4,extra\n")
    with pytest.raises(PromptError, match=r"p\.csv', line 2: 3 cells for the 2 columns"):
        _records("RLHF/Length-v0", str(path))


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".json"])
def test_utf8_bom_is_stripped(suffix: str, tmp_path: Path) -> None:
    body = {
        ".txt": "I bought this.\n",
        ".jsonl": '{"prompt": "I bought this."}\n',
        ".csv": "prompt\nI bought this.\n",
        ".json": '["I bought this."]',
    }[suffix]
    path = tmp_path / f"p{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert _records("RLHF/Sentiment-v0", str(path)) == [{"prompt": "I bought this."}]


@pytest.mark.parametrize(
    "env_id, record, key",
    [
        ("RLHF/Keywords-v0", {"keyword": ["rain"], "prompt": "The river"}, "'keyword'"),
        ("RLHF/Length-v0", {"prompt": "I read it.", "target_word": 4}, "'target_word'"),
        ("RLHF/Sentiment-v0", {"prompt": "I read it.", "keywords": ["rain"]}, "'keywords'"),
    ],
)
def test_jsonl_misspelled_key_names_file_line_and_allowed_keys(env_id, record, key, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    good = {
        "Keywords": {"keywords": ["fox"]},
        "Length": {"prompt": "Fine."},
        "Sentiment": {"prompt": "Fine."},
    }
    first = next(v for k, v in good.items() if k in env_id)
    path.write_text(json.dumps(first) + "\n\n" + json.dumps(record) + "\n")
    with pytest.raises(PromptError, match=rf"p\.jsonl', line 3: unknown key\(s\) {key}; allowed keys: "):
        _records(env_id, str(path))


@pytest.mark.parametrize(
    "env_id, record, match",
    [
        ("RLHF/Sentiment-v0", {"prompt": ""}, "'prompt' must be a non-empty string"),
        ("RLHF/Length-v0", {"prompt": "  "}, "'prompt' must be a non-empty string"),
        ("RLHF/Keywords-v0", {"keywords": ["fox"], "prompt": ""}, "'prompt' must be a non-empty string"),
        ("RLHF/Keywords-v0", {"prompt": "The river"}, r"missing key\(s\) 'keywords'"),
        ("RLHF/Keywords-v0", {"keywords": None}, r"missing key\(s\) 'keywords'"),
        ("RLHF/Sentiment-v0", {}, r"missing key\(s\) 'prompt'"),
    ],
)
def test_jsonl_empty_or_missing_values_are_errors(env_id, record, match, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(PromptError, match=rf"p\.jsonl', line 1: .*{match}"):
        _records(env_id, str(path))


def test_prompt_file_problems_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match=r"is a directory"):
        gym.make("RLHF/Sentiment-v0", prompts=str(tmp_path), **LANG)
    with pytest.raises(FileNotFoundError, match=r"nope\.txt' does not exist"):
        gym.make("RLHF/Sentiment-v0", prompts=str(tmp_path / "nope.txt"), **LANG)
    u16 = tmp_path / "u16.txt"
    u16.write_bytes("I bought this.\n".encode("utf-16"))
    with pytest.raises(PromptError, match=r"u16\.txt' is UTF-16 .*save it as UTF-8"):
        gym.make("RLHF/Sentiment-v0", prompts=str(u16), **LANG)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Fine.\nClichés.\n".encode("latin-1"))
    with pytest.raises(PromptError, match=r"latin\.txt', line 2: not UTF-8 text \(byte 0xe9"):
        gym.make("RLHF/Sentiment-v0", prompts=str(latin), **LANG)
    surrogate = tmp_path / "s.jsonl"
    surrogate.write_text('{"prompt": "I \\ud800 it."}\n')
    with pytest.raises(PromptError, match=r"s\.jsonl', line 1: the prompt .* lone surrogate"):
        gym.make("RLHF/Sentiment-v0", prompts=str(surrogate), **LANG)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PromptError, match=r"deep\.json"):
        gym.make("RLHF/Sentiment-v0", prompts=str(deep), **LANG)


# -- item 7: settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("coef", [math.nan, math.inf, -math.inf, -0.5, 1e7])
@pytest.mark.parametrize("term", ["step_penalty", "repeat_penalty"])
def test_bad_shaping_coefficients_name_the_field_and_range(term: str, coef: float) -> None:
    for make in (lambda: gym.make("RLHF/Copy-v0", shaping={term: coef}),
                 lambda: gym.make_vec("RLHF/Copy-v0", num_envs=2, shaping={term: coef})):  # fmt: skip
        with pytest.raises(ConfigValueError, match=rf"'{term}' must be a finite number in \[0, 1e\+06\]"):
            make()
    assert issubclass(ConfigValueError, ValueError) and issubclass(ConfigValueError, ConfigError)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kl_coef": math.inf}, r"kl_coef must be a finite number in \[0, 1000\], got inf"),
        ({"kl_coef": -1.0}, r"kl_coef must be a finite number in \[0, 1000\]"),
        ({"kl_coef": math.nan}, r"kl_coef must be a finite number"),
        ({"ref_temperature": math.nan}, r"ref_temperature must be a finite number in \[0.001, 1000\]"),
        ({"ref_temperature": 0.0}, r"ref_temperature must be a finite number in \[0.001, 1000\]"),
        ({"ref_temperature": math.inf}, r"ref_temperature must be a finite number"),
        ({"max_new_tokens": 10**6}, r"max_new_tokens must be in \[1, "),
    ],
)
def test_impossible_language_settings_are_value_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gym.make("RLHF/Sentiment-v0", **kwargs)


def test_min_above_max_names_both_fields() -> None:
    """Found by the fuzz suite: max_length=1 (min_length left at its default 2) said only
    "min_length must be in [1, 1], got 2", naming a field the user never passed."""
    with pytest.raises(ConfigValueError, match="min_length=2 must be at most max_length=1"):
        gym.make("RLHF/Copy-v0", max_length=1)
    with pytest.raises(ConfigValueError, match="min_words=3 must be at most max_words=1"):
        gym.make("RLHF/Length-v0", max_words=1, **LANG)


def test_ill_typed_language_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="ref_logprobs must be True or False"):
        gym.make("RLHF/Sentiment-v0", ref_logprobs="no")
    with pytest.raises(ConfigError, match="kl_coef must be a number, got str"):
        gym.make("RLHF/Sentiment-v0", kl_coef="0.1")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fit_lr": math.nan}, r"fit_lr must be a finite number in \(0, 1\)"),
        ({"n_members": 1000}, r"n_members must be in \[1, 64\]"),
        ({"proxy_seed": -1}, r"proxy_seed must be in \[0, "),
        ({"proxy_seed": "3"}, r"proxy_seed must be an int"),
        ({"cache": "yes"}, r"cache must be True or False"),
        ({"n_comparisons": 0}, r"n_comparisons must be in \[1, 1000000\]"),
    ],
)
def test_simulated_human_settings_are_checked_before_fitting(kwargs: dict, match: str, monkeypatch) -> None:
    from rlhf_envs.tasks.simulated_human import SimulatedHumanTask

    def no_fit(self, cache):  # noqa: ANN001
        raise AssertionError("the settings must be checked before any proxy is built")

    monkeypatch.setattr(SimulatedHumanTask, "_cached_or_fitted", no_fit)
    with pytest.raises(ConfigError, match=match):
        SimulatedHumanTask(ref_logprobs=False, **kwargs)


@pytest.mark.parametrize(
    "field, value",
    [
        ("rationality", math.inf),
        ("rationality", math.nan),
        ("equal", math.inf),
        ("likert_cuts", (0, 1, math.nan, 3)),
    ],
)
def test_rater_config_rejects_non_finite_values(field: str, value) -> None:
    from rlhf_envs.feedback.simulated import RaterConfig

    with pytest.raises(ConfigError, match=f"RaterConfig.{field}"):
        RaterConfig(**{field: value})


def test_toy_demo_negative_episodes_exits_2_with_one_line(capsys) -> None:
    from rlhf_envs.cli import main

    assert main(["toy-demo", "--episodes", "-3"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "--episodes must be" in err and "got -3" in err  # the CLI checks before run_demo does
    assert main(["toy-demo", "--seed", "-1", "--episodes", "2"]) == 2
    with pytest.raises(ConfigValueError):
        rlhf_envs.toy_demo.run_demo(episodes=0)


class _Term:
    def __init__(self, name: str, value: float) -> None:
        self.name, self.value = name, value

    def __call__(self, input_ids, lengths, actions):  # noqa: ANN001
        return np.full(len(actions), self.value, dtype=np.float32)


def test_shaping_terms_are_checked() -> None:
    env = gym.make("RLHF/Copy-v0", shaping=[_Term("bonus", np.nan)])
    env.reset(seed=0)
    with pytest.raises(FeedbackError, match="shaping term 'bonus' returned nan for row 0"):
        env.step(3)
    with pytest.raises(ConfigError, match="name must be a non-empty str other than 'task'"):
        gym.make("RLHF/Copy-v0", shaping=[_Term("task", 0.0)])
    vec = gym.make_vec("RLHF/Copy-v0", num_envs=2, shaping=[_Term("bonus", np.inf)])
    vec.reset(seed=0)
    with pytest.raises(FeedbackError, match="returned inf"):
        vec.step(np.array([3, 3]))


# -- item 10: vector env edge cases -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [">i8", ">i4", ">u2", "<i8", "<u4", "i1", "u1"])
def test_any_byte_order_and_integer_width_is_a_legal_action(dtype: str) -> None:
    native = gym.make_vec("RLHF/Reverse-v0", num_envs=4)
    other = gym.make_vec("RLHF/Reverse-v0", num_envs=4)
    native.reset(seed=3)
    other.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(12):
        a = rng.integers(0, 30, size=4)
        x, y = native.step(a), other.step(a.astype(dtype))
        for u, v in zip(x[:4], y[:4], strict=True):
            np.testing.assert_array_equal(u["input_ids"] if isinstance(u, dict) else u,
                                          v["input_ids"] if isinstance(v, dict) else v)  # fmt: skip
    with pytest.raises(InvalidActionError, match=r"action 300 of sub-env 2 is out of range"):
        other.step(np.array([1, 1, 300, 1], dtype=">i8"))


def test_negative_narrow_ints_are_out_of_range_on_a_large_vocabulary() -> None:
    """Found by the fuzz suite: int8 -1 viewed as unsigned is 255, below a 2288-token vocabulary, so
    it went through to the ids (and the reference model's index)."""
    vec = gym.make_vec("RLHF/Length-v0", num_envs=3, **LANG)
    vec.reset(seed=0)
    for dtype in ("i1", "i2", ">i4"):
        with pytest.raises(InvalidActionError, match=r"action -1 of sub-env 2 is out of range"):
            vec.step(np.array([0, 0, -1], dtype=dtype))
    vec.step(np.array([0, 0, 1], dtype="i1"))


def _both(n: int = 3):
    vec = gym.make_vec("RLHF/Copy-v0", num_envs=n)
    sync = SyncVectorEnv([lambda: gym.make("RLHF/Copy-v0") for _ in range(n)])
    return vec, sync


@pytest.mark.parametrize("mask", [np.array([True, False]), np.ones((3, 1), dtype=bool), np.array(True)])
def test_reset_mask_of_wrong_shape_is_a_value_error_like_sync_vector_env(mask) -> None:
    vec, sync = _both()
    for env in (vec, sync):
        env.reset(seed=0)
    with pytest.raises(ValueError):
        sync.reset(options={"reset_mask": mask})
    with pytest.raises(OptionValueError, match=r"shape \(3,\)") as info:
        vec.reset(options={"reset_mask": mask})
    assert not isinstance(info.value, TypeError)


def test_all_false_reset_mask_is_a_value_error_like_sync_vector_env() -> None:
    vec, sync = _both()
    for env in (vec, sync):
        env.reset(seed=0)
    mask = np.zeros(3, dtype=bool)
    with pytest.raises(ValueError, match="at least one True"):
        sync.reset(options={"reset_mask": mask})
    with pytest.raises(OptionValueError, match="at least one True"):
        vec.reset(options={"reset_mask": mask})
    with pytest.raises(ConfigError, match="dtype int64"):  # a TypeError, as in SyncVectorEnv
        vec.reset(options={"reset_mask": np.array([1, 0, 1])})


def test_np_random_seed_matches_sync_vector_env() -> None:
    vec, sync = _both()
    for seed in (42, [None, 7, None], 0):
        vec.reset(seed=seed)
        sync.reset(seed=seed)
        assert vec.np_random_seed == sync.np_random_seed
    assert vec.np_random_seed == (0, 1, 2)
    vec.reset(seed=[5, None, 9], options={"reset_mask": np.array([True, False, True])})
    assert vec.np_random_seed == (5, 1, 9)


def test_np_random_seed_before_reset_is_the_seed_the_first_reset_uses() -> None:
    a = gym.make_vec("RLHF/Copy-v0", num_envs=3)
    seeds = a.np_random_seed
    assert len(set(seeds)) == 3 and all(isinstance(s, int) for s in seeds)
    obs_a, _ = a.reset()
    b = gym.make_vec("RLHF/Copy-v0", num_envs=3)
    obs_b, _ = b.reset(seed=list(seeds))
    np.testing.assert_array_equal(obs_a["input_ids"], obs_b["input_ids"])
    assert a.np_random_seed == seeds


@pytest.mark.parametrize("scalar", [3, np.int64(3), np.array(3)])
def test_scalar_action_is_a_type_error_like_sync_vector_env(scalar) -> None:
    vec, sync = _both()
    vec.reset(seed=0)
    sync.reset(seed=0)
    with pytest.raises(TypeError):
        sync.step(scalar)
    with pytest.raises(ActionTypeError, match="got the scalar"):
        vec.step(scalar)
    with pytest.raises(ActionTypeError, match="integer array of shape"):
        vec.step([[1], [2, 3], 4])  # ragged


def test_huge_num_envs_is_refused_before_allocating() -> None:
    start = time.perf_counter()
    with pytest.raises(
        ConfigValueError, match=r"num_envs=1099511627776 needs about .* GiB .* fewer sub-envs"
    ):
        gym.make_vec("RLHF/Copy-v0", num_envs=2**40)
    assert time.perf_counter() - start < 5.0
    with pytest.raises(ConfigValueError, match="num_envs must be a positive int"):
        gym.make_vec("RLHF/Copy-v0", num_envs=0)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, [1, 2], [0, -1, 2]])
def test_bad_seeds_are_clear_errors(seed) -> None:
    vec = gym.make_vec("RLHF/Copy-v0", num_envs=3)
    with pytest.raises((ConfigError, ValueError), match="seed"):
        vec.reset(seed=seed)
    if not isinstance(seed, list):
        env = gym.make("RLHF/Copy-v0")
        with pytest.raises(ConfigError, match="seed must be None or an int >= 0"):
            env.reset(seed=seed)


# -- item 11: API traps -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comparisons():
    from rlhf_envs.feedback.base import Episode
    from rlhf_envs.feedback.scripted import Sentiment
    from rlhf_envs.feedback.simulated import SimulatedHuman

    good = Episode("The food.", " was great and wonderful .", (), (), True)
    bad = Episode("The food.", " was bad and awful .", (), (), True)
    a = [good, bad] * 12
    b = [bad, good] * 12
    return a, b, SimulatedHuman(Sentiment(), "Oracle", seed=0).compare(a, b)


def _reward_model():
    from rlhf_envs.feedback.learned import RewardModel
    from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config, word_tokenizer

    tok = word_tokenizer()
    return RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32), tok, seed=0)


def test_fit_preferences_takes_the_comparisons_object(comparisons, one_torch_thread) -> None:
    a, b, answers = comparisons
    rm = _reward_model()
    rep = rm.fit_preferences(a, b, answers, epochs=30, lr=3e-3, val_fraction=0.0)
    assert rep.n_train == 24
    s = rm.score([a[0], a[1]])  # the great one, the bad one
    assert s[0] > s[1], "trained the right way round"
    ref = _reward_model()
    ref.fit_preferences(a, b, answers.prob_a(), epochs=30, lr=3e-3, val_fraction=0.0)
    np.testing.assert_allclose(ref.score([a[0], a[1]]), s, rtol=1e-5)


def test_fit_preferences_refuses_integer_label_codes(comparisons) -> None:
    a, b, answers = comparisons
    rm = _reward_model()
    assert answers.labels.dtype == np.int8
    with pytest.raises(FeedbackError, match=r"integer array \(dtype int8\).*Comparisons\.labels"):
        rm.fit_preferences(a, b, answers.labels)
    with pytest.raises(FeedbackError, match="label 0 is the integer"):
        rm.fit_preferences(a, b, answers.labels.tolist())
    with pytest.raises(FeedbackError, match="label 0 is the integer"):
        rm.fit_preferences(a, b, list(answers.labels))


class _ConstantFeedback:
    """Any object with score(episodes) is a feedback model."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def score(self, episodes):  # noqa: ANN001
        self.calls += 1
        return np.full(len(episodes), self.value, dtype=np.float32)


@pytest.mark.parametrize("env_id", ["RLHF/Copy-v0", "RLHF/Length-v0"])
def test_gym_make_and_make_vec_take_a_feedback_model(env_id: str) -> None:
    fb = _ConstantFeedback(0.25)
    env = gym.make(env_id, feedback=fb, **_kw(env_id))
    env.reset(seed=0)
    eos = env.unwrapped.eos_id
    _, r, term, _, info = env.step(eos)
    assert term and r == pytest.approx(0.25) and info["reward_task"] == pytest.approx(0.25) and fb.calls == 1
    vec = gym.make_vec(env_id, num_envs=3, feedback=fb, **_kw(env_id))
    vec.reset(seed=0)
    _, rewards, term, _, _ = vec.step(np.full(3, eos))
    np.testing.assert_allclose(rewards, 0.25)
    with pytest.raises(ConfigError, match="feedback must be None or a feedback model"):
        gym.make(env_id, feedback="vader", **_kw(env_id))


def test_feedback_does_not_change_a_callers_task() -> None:
    from rlhf_envs.envs import TextGenerationEnv
    from rlhf_envs.tasks.toy import CopyTask

    task = CopyTask()
    original = task.feedback
    env = TextGenerationEnv(task, feedback=_ConstantFeedback(0.5))
    env.reset(seed=0)
    assert env.step(env.eos_id)[1] == pytest.approx(0.5)
    assert task.feedback is original


@pytest.mark.parametrize("env_id", [e for e in rlhf_envs.list_envs() if e != "RLHF/SimulatedHuman-v0"])
def test_sb3_make_vec_env_works_and_renders_rgb_frames(env_id: str) -> None:
    """SB3's make_vec_env passes render_mode="rgb_array"; the envs draw their text as a frame.
    (RLHF/SimulatedHuman-v0 runs through the same classes; the fuzz suite covers it.)"""
    from stable_baselines3.common.env_util import make_vec_env

    from rlhf_envs.envs.rendering import FRAME_HEIGHT, FRAME_WIDTH

    venv = make_vec_env(env_id, n_envs=2, seed=0, env_kwargs=_kw(env_id))
    assert venv.render_mode == "rgb_array"
    obs = venv.reset()
    assert obs["input_ids"].shape[0] == 2
    frames = venv.get_images()
    assert (
        len(frames) == 2 and frames[0].shape == (FRAME_HEIGHT, FRAME_WIDTH, 3) and frames[0].dtype == np.uint8
    )
    assert frames[0].min() < 128 < frames[0].max(), "the text is drawn"
    venv.step(np.array([1, 1]))
    venv.close()


def test_rgb_array_and_gym_render_wrappers() -> None:
    env = gym.make("RLHF/Copy-v0", render_mode="rgb_array_list")  # gym.make's RenderCollection
    env.reset(seed=0)
    env.step(3)
    frames = env.render()
    assert len(frames) == 2 and all(f.shape[2] == 3 for f in frames)
    vec = gym.make_vec("RLHF/Copy-v0", num_envs=2, render_mode="rgb_array")
    vec.reset(seed=0)
    assert [f.shape for f in vec.render()] == [frames[0].shape] * 2
    with pytest.raises(ValueError, match="render_mode must be None, 'ansi' or 'rgb_array'"):
        rlhf_envs.envs.TextGenerationEnv("copy", render_mode="video")
    with pytest.raises(ValueError, match="render_mode must be None"):
        rlhf_envs.envs.TextGenerationVectorEnv("copy", num_envs=2, render_mode=3)


def test_tests_use_a_temporary_cache(rlhf_envs_cache: Path) -> None:
    from rlhf_envs.tasks.simulated_human import cache_root

    assert cache_root() == rlhf_envs_cache == Path(os.environ["RLHF_ENVS_CACHE"])
    assert not rlhf_envs_cache.is_relative_to(Path.home() / ".cache")


# -- item 5 (for the env): the reference model must use the task's tokenizer -------------------------


def test_reference_model_with_another_tokenizer_is_refused(tmp_path: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf_envs.feedback.review_fixtures import word_tokenizer

    tok = word_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=96, n_embd=16, n_layer=1, n_head=2,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ConfigValueError, match="reference .* different tokenizer from the task's model"):
        gym.make("RLHF/Sentiment-v0", reference=str(tmp_path))


def test_every_library_error_has_the_common_base() -> None:
    from rlhf_envs import errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert len(classes) >= 12
    assert all(issubclass(c, RLHFEnvsError) for c in classes)
