"""Language tasks: rewards, user prompts and models, the reference model's log-probs and KL term."""

from __future__ import annotations

import json
import pickle

import gymnasium as gym
import numpy as np
import pytest

import rlhf_envs  # noqa: F401
from rlhf_envs.errors import ConfigError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.lm.loading import token_logprobs

LANGUAGE_IDS = ["RLHF/Sentiment-v0", "RLHF/Keywords-v0", "RLHF/Length-v0"]


def _episode(task, prompt: str, completion: str, terminated: bool = True, **meta) -> Episode:  # noqa: ANN001
    tok = task.tokenizer
    ids = tok.encode(completion) + ([tok.eos_id] if terminated else [])
    return Episode(prompt, completion, tuple(tok.encode(prompt)), tuple(ids), terminated, meta)


def test_language_ids_are_registered_with_vector_entry_points() -> None:
    for env_id in LANGUAGE_IDS:
        assert env_id in rlhf_envs.list_envs()
        assert gym.spec(env_id).vector_entry_point is not None


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_ref_logprobs_equal_a_full_forward_pass(mode: str) -> None:
    vec = gym.make_vec("RLHF/Sentiment-v0", num_envs=6, max_new_tokens=8, kl_coef=0.1, autoreset_mode=mode)
    lm = vec.unwrapped.task.lm
    obs, _ = vec.reset(seed=0)
    rng = np.random.default_rng(0)
    checked = 0
    # The cached step and a full pass sum in different orders: a few float32 ulps apart, which for
    # log-probs of rare tokens near -20 exceeds 1e-5 absolute, hence the relative tolerance.
    for _ in range(20):
        actions = rng.integers(2, vec.unwrapped.vocab_size, size=6)
        actions[rng.random(6) < 0.1] = vec.unwrapped.eos_id
        src_obs, _, term, trunc, src_info = vec.step(actions)
        info = src_info
        rows = np.flatnonzero(info.get("_ref_logprob", np.zeros(6, bool)))
        if mode == "SameStep" and "final_obs" in info:
            done = np.flatnonzero(info["_final_obs"])
            for i in done:
                o = info["final_obs"][i]
                full = token_logprobs(lm, o["input_ids"][None], o["attention_mask"][None]).numpy()[0]
                got = info["final_info"]["ref_logprob"][i]
                np.testing.assert_allclose(got, full[o["attention_mask"].sum() - 1], atol=1e-5, rtol=1e-5)
                checked += 1
        full = token_logprobs(lm, src_obs["input_ids"], src_obs["attention_mask"]).numpy()
        for i in rows:
            if mode == "SameStep" and (term[i] or trunc[i]):
                continue  # this row was reset in the same step; checked through final_obs above
            n = src_obs["attention_mask"][i].sum()
            np.testing.assert_allclose(src_info["ref_logprob"][i], full[i, n - 1], atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(src_info["reward_kl"][i], 0.1 * src_info["ref_logprob"][i], rtol=1e-6)
            checked += 1
    assert checked > 60


def test_kl_off_reports_logprob_but_pays_nothing_and_can_be_disabled() -> None:
    env = gym.make("RLHF/Sentiment-v0")
    env.reset(seed=0)
    _, r, *_, info = env.step(100)
    assert info["reward_kl"] == 0.0 and info["ref_logprob"] < 0 and r == 0.0
    env = gym.make("RLHF/Sentiment-v0", ref_logprobs=False)
    env.reset(seed=0)
    *_, info = env.step(100)
    assert "ref_logprob" not in info and "reward_kl" not in info


def test_sentiment_reward_is_vader_of_the_completion() -> None:
    task = gym.make("RLHF/Sentiment-v0").unwrapped.task
    pos = _episode(task, "I bought this phone.", " The screen was wonderful and I loved it.")
    neg = _episode(task, "I bought this phone.", " The screen was awful and I hated it.")
    s = task.feedback.score([pos, neg])
    assert s[0] > 0.5 and s[1] < -0.5


def test_keyword_reward_needs_coverage_and_fluency() -> None:
    task = gym.make("RLHF/Keywords-v0").unwrapped.task
    meta = {"keywords": ("rain", "bridge")}
    prompt = "Words: rain, bridge. The river"
    fluent = _episode(task, prompt, " crossed the bridge. The rain fell on the hills.", **meta)
    half = _episode(task, prompt, " crossed the bridge in the morning.", **meta)
    salad = _episode(task, prompt, " rain bridge rain bridge rain bridge rain bridge", **meta)
    stutter = _episode(task, prompt, " bridge bridge bridge rain rain rain.", **meta)
    noise = _episode(task, prompt, " bridgeorsmon rain%Des garlic turnedors", **meta)
    s = task.feedback.score([fluent, half, salad, stutter, noise])
    assert s[0] > 0.8 and 0.3 < s[1] <= 0.5 and s[2] < 0.2 and s[3] < 0.2 and s[4] < 0.2


def test_length_reward_wants_the_target_then_eos() -> None:
    task = gym.make("RLHF/Length-v0").unwrapped.task
    exact = _episode(task, "(5 words) I read it.", " The plot was very good.", target_words=5)
    long = _episode(task, "(5 words) I read it.", " The plot was very good and so on.", target_words=5)
    no_eos = _episode(
        task, "(5 words) I read it.", " The plot was very good.", terminated=False, target_words=5
    )
    np.testing.assert_allclose(task.feedback.score([exact, long, no_eos]), [1.0, 0.4, 0.0])


def test_user_prompt_files(tmp_path) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("I tried the new cafe.\n\nWe saw the film.\n")
    env = gym.make("RLHF/Sentiment-v0", prompts=str(txt))
    seen = {env.reset(seed=s)[1]["prompt"] for s in range(20)}
    assert seen == {"I tried the new cafe.", "We saw the film."}

    jl = tmp_path / "k.jsonl"
    jl.write_text(json.dumps({"keywords": ["snow", "piano"], "prompt": "The band"}) + "\n")
    _, info = gym.make("RLHF/Keywords-v0", prompts=str(jl)).reset(seed=0)
    assert info["prompt"] == "Words: snow, piano. The band" and tuple(info["keywords"]) == ("snow", "piano")

    kw = tmp_path / "k.txt"
    kw.write_text("garden, fox\n")
    _, info = gym.make("RLHF/Keywords-v0", prompts=str(kw)).reset(seed=0)
    assert tuple(info["keywords"]) == ("garden", "fox")

    ln = tmp_path / "l.jsonl"
    ln.write_text(json.dumps({"prompt": "I read it.", "target_words": 4}) + "\n")
    _, info = gym.make("RLHF/Length-v0", prompts=str(ln)).reset(seed=0)
    assert info["prompt"] == "(4 words) I read it." and info["target_words"] == 4

    _, info = gym.make("RLHF/Length-v0", prompts=["We saw the film."], min_words=2, max_words=2).reset(seed=1)
    assert info["prompt"] == "(2 words) We saw the film."


def test_bad_prompt_files_name_the_file_and_the_fix(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        gym.make("RLHF/Sentiment-v0", prompts=str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match=r"empty\.txt.*no prompts"):
        gym.make("RLHF/Sentiment-v0", prompts=str(empty))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": \n')
    with pytest.raises(ValueError, match=r"bad\.jsonl.*line 2.*not valid JSON"):
        gym.make("RLHF/Sentiment-v0", prompts=str(bad))
    long = tmp_path / "long.txt"
    long.write_text("short one.\n" + "The rain fell. " * 30 + "\n")
    with pytest.raises(ValueError, match=r"long\.txt.*line 2.*max_prompt_tokens=32.*shorten it"):
        gym.make("RLHF/Sentiment-v0", prompts=str(long))
    kw = tmp_path / "kw.jsonl"
    kw.write_text(json.dumps({"keywords": ["a", "b", "c", "d"]}) + "\n")
    with pytest.raises(ValueError, match=r"kw\.jsonl.*line 1.*one to three"):
        gym.make("RLHF/Keywords-v0", prompts=str(kw))
    with pytest.raises(ConfigError, match="kl_coef"):
        gym.make("RLHF/Sentiment-v0", kl_coef=-1.0)
    with pytest.raises(ConfigError, match="unknown argument"):
        gym.make("RLHF/Sentiment-v0", klcoef=0.1)


def test_prompt_option_and_render() -> None:
    env = gym.make("RLHF/Length-v0", render_mode="ansi")
    _, info = env.reset(seed=0, options={"prompt": "(3 words) I read the book."})
    assert info["target_words"] == 3
    assert env.render() == "(3 words) I read the book.|"


def test_pickled_vector_env_does_not_carry_the_weights() -> None:
    vec = gym.make_vec("RLHF/Keywords-v0", num_envs=2)
    vec.reset(seed=0)
    blob = pickle.dumps(vec)
    assert len(blob) < 2_000_000  # tokenizer + KV cache, not the 6.6 MB of weights
    clone = pickle.loads(blob)
    a = np.array([100, 200])
    x, y = vec.step(a), clone.step(a)
    np.testing.assert_array_equal(x[4]["ref_logprob"], y[4]["ref_logprob"])


def test_evaluate_base_model_reports_mean_reward() -> None:
    from rlhf_envs.lm.policy import evaluate_base_model

    res = evaluate_base_model("RLHF/Length-v0", episodes=6, num_envs=3, seed=0, max_new_tokens=4)
    assert res["episodes"] == 6 and 0.0 <= res["mean_reward"] <= 1.0 and "mean_n_words" in res
    again = evaluate_base_model("RLHF/Length-v0", episodes=6, num_envs=3, seed=0, max_new_tokens=4)
    assert again["mean_reward"] == res["mean_reward"]
