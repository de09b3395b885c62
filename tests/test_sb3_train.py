"""train_baseline, evaluation, save/load, the LM-initialised policy, bad combinations and the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from agents.cli_train import add_train_parser, run_train
from agents.sb3 import (
    ReferenceTopMask,
    canonical_algo,
    evaluate_baseline,
    load_baseline,
    make_sb3_env,
    random_baseline,
    train_baseline,
)
from rlhf_envs.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sb3-ppo", "ppo"),
        ("A2C", "a2c"),
        ("sb3-dqn", "dqn"),
        ("MaskablePPO", "maskable_ppo"),
        ("sb3-maskable-ppo", "maskable_ppo"),
    ],
)
def test_algo_names(name: str, expected: str) -> None:
    assert canonical_algo(name) == expected


@pytest.mark.parametrize(
    ("name", "match"), [("sb3-foo", "unknown SB3 algorithm"), ("sb3-sac", "Box"), ("td3", "Box")]
)
def test_unknown_or_unsuitable_algorithms_raise(name: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        train_baseline(name, "RLHF/Copy-v0", 100)


def test_dqn_on_huge_vocabulary_raises() -> None:
    # the language task's vocabulary (thousands of tokens) and no mask: DQN is refused up front
    with pytest.raises(ConfigError, match=r"DQN on RLHF/Sentiment-v0 with Discrete\(\d{4,}\)"):
        train_baseline("dqn", "RLHF/Sentiment-v0", 100)
    # the same rule on a toy env with the limit lowered
    with pytest.raises(ConfigError, match=r"DQN on RLHF/Copy-v0 with Discrete\(30\)"):
        train_baseline("dqn", "RLHF/Copy-v0", 100, max_dqn_actions=16)


def test_maskable_ppo_mask_memory_limit_raises() -> None:
    with pytest.raises(ConfigError, match="MaskablePPO on RLHF/Copy-v0 stores float32 masks"):
        train_baseline("maskable_ppo", "RLHF/Copy-v0", 100, n_steps=2048, n_envs=8, max_mask_bytes=2**20)


def test_unknown_env_and_bad_algo_kwargs_raise() -> None:
    with pytest.raises(ConfigError, match="unknown env id"):
        train_baseline("ppo", "RLHF/Nope-v0", 100)
    with pytest.raises(ConfigError, match="bad argument for PPO"):
        train_baseline("ppo", "RLHF/Copy-v0", 100, no_such_option=1)


def test_ppo_save_load_tensorboard_round_trip(tmp_path) -> None:  # noqa: ANN001
    path = str(tmp_path / "ppo_copy")
    model = train_baseline(
        "ppo",
        "RLHF/Copy-v0",
        512,
        seed=0,
        n_envs=16,
        n_steps=32,
        batch_size=256,
        save_path=path,
        tensorboard_log=str(tmp_path / "tb"),
    )
    assert model.episode_stats and model.episode_stats[-1][0] == model.num_timesteps == 512
    assert list((tmp_path / "tb").glob("ppo_Copy-v0_s0_*/events.out.tfevents.*"))
    res = evaluate_baseline(model, "RLHF/Copy-v0", n_episodes=32, seed=123)
    loaded = load_baseline(path + ".zip", "ppo")
    env = make_sb3_env("RLHF/Copy-v0", n_envs=8, seed=5)
    obs = env.reset()
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    assert evaluate_baseline(loaded, "RLHF/Copy-v0", n_episodes=32, seed=123) == res


def test_training_is_reproducible_under_a_seed() -> None:
    a = train_baseline("ppo", "RLHF/Reverse-v0", 256, seed=4, n_envs=8, n_steps=32, batch_size=128)
    b = train_baseline("ppo", "RLHF/Reverse-v0", 256, seed=4, n_envs=8, n_steps=32, batch_size=128)
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_short_ppo_run_on_copy_beats_random() -> None:
    """About 10 s on an idle 2-core CPU (12k tokens, 64 envs, 6 updates)."""
    torch.set_num_threads(1)
    rand = random_baseline("RLHF/Copy-v0", n_episodes=500, seed=123)
    model = train_baseline("ppo", "RLHF/Copy-v0", 12_288, seed=0, preset="sb3-toy-fast-ppo")
    res = evaluate_baseline(model, "RLHF/Copy-v0", n_episodes=200, seed=123)
    assert res["n_episodes"] == 200
    assert res["mean_task_reward"] > 2 * rand["mean_task_reward"] + 0.02, (res, rand)


@pytest.mark.parametrize("algo", ["a2c", "dqn", "maskable_ppo"])
def test_other_algorithms_run_and_evaluate(algo: str) -> None:
    kw = {"learning_starts": 100} if algo == "dqn" else {}
    model = train_baseline(algo, "RLHF/Sort-v0", 512, seed=1, n_envs=8, **kw)
    res = evaluate_baseline(model, "RLHF/Sort-v0", n_episodes=16)
    assert res["n_episodes"] == 16 and 0.0 <= res["mean_task_reward"] <= 1.0
    assert 0.0 <= res["success_rate"] <= 1.0


def test_lm_encoder_policy_starts_as_the_language_model() -> None:
    from rlhf_envs.lm.loading import load_causal_lm

    model = train_baseline(
        "ppo",
        "RLHF/Sentiment-v0",
        8,
        seed=0,
        n_envs=2,
        n_steps=4,
        batch_size=8,
        n_epochs=1,
        learning_rate=1e-12,
    )
    env = make_sb3_env("RLHF/Sentiment-v0", n_envs=2, seed=3)
    obs = env.reset()
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        logits = model.policy.get_distribution(obs_t).distribution.logits
        lm = load_causal_lm(None)
        ids = torch.as_tensor(obs["input_ids"])
        attn = torch.as_tensor(obs["attention_mask"]).long()
        last = attn.sum(1) - 1
        ref = torch.log_softmax(lm(input_ids=ids, attention_mask=attn).logits[torch.arange(2), last], -1)
    torch.testing.assert_close(torch.log_softmax(logits, -1), ref, atol=1e-3, rtol=0)


def test_reference_top_p_mask() -> None:
    from rlhf_envs.lm.loading import load_causal_lm

    lm = load_causal_lm(None)
    env = make_sb3_env("RLHF/Sentiment-v0", n_envs=3, seed=0, mask="top_p", top_p=0.8)
    obs = env.reset()
    masks = np.stack(env.env_method("action_masks"))
    ids = torch.as_tensor(obs["input_ids"])
    attn = torch.as_tensor(obs["attention_mask"]).long()
    last = attn.sum(1) - 1
    with torch.no_grad():
        p = torch.softmax(lm(input_ids=ids, attention_mask=attn).logits[torch.arange(3), last], -1).numpy()
    eos = env.unwrapped.venv.eos_id
    for row, prob in zip(masks, p, strict=True):
        assert row[prob.argmax()] and row[eos]
        kept = np.flatnonzero(row)
        assert prob[kept].sum() >= 0.8 - 1e-5
        assert 1 < len(kept) < len(row) // 2
    k1 = ReferenceTopMask(lm, top_k=1, top_p=1.0)(obs)
    assert (k1.sum(1) == 1).all() and (k1.argmax(1) == p.argmax(1)).all()


def test_reference_top_k_mask_follows_episodes_with_its_cache() -> None:
    """Across steps, episode ends and autoresets, the KV-cached mask keeps the top-k tokens of a full
    forward pass over each sub-env's current prefix."""
    from rlhf_envs.lm.loading import load_causal_lm

    lm = load_causal_lm(None)
    env = make_sb3_env("RLHF/Sentiment-v0", n_envs=3, seed=0, env_kwargs={"max_new_tokens": 4})
    mask_fn = ReferenceTopMask(lm, top_k=3, top_p=1.0)
    obs = env.reset()
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(10):
        got = mask_fn(obs)
        ids = torch.as_tensor(obs["input_ids"])
        attn = torch.as_tensor(obs["attention_mask"]).long()
        with torch.no_grad():
            logits = lm(input_ids=ids, attention_mask=attn).logits[torch.arange(3), attn.sum(1) - 1]
        top = logits.topk(3, dim=-1).indices.numpy()
        assert (got.sum(1) == 3).all() and all(got[i, top[i]].all() for i in range(3))
        obs, _, dones, _ = env.step(rng.integers(2, 500, size=3))
        ended += int(dones.sum())
    assert ended >= 3  # new episodes started while the mask kept its cache


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def test_cli_train_sb3_and_bad_algo(tmp_path, capsys) -> None:  # noqa: ANN001
    args = _parse(
        "--algo",
        "sb3-ppo",
        "--env",
        "RLHF/Copy-v0",
        "--steps",
        "256",
        "--seed",
        "1",
        "--n-envs",
        "4",
        "--eval-episodes",
        "8",
        "--save",
        str(tmp_path / "m"),
        "--set",
        "n_steps=32",
        "--set",
        "batch_size=64",
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["algo"] == "sb3-ppo" and out["n_episodes"] == 8 and (tmp_path / "m.zip").exists()
    args = _parse("--algo", "sb3-sac", "--env", "RLHF/Copy-v0", "--steps", "10")
    assert args.func(args) == 2
    assert "SAC needs continuous (Box) actions" in capsys.readouterr().err
    args = _parse("--algo", "bogus", "--env", "RLHF/Copy-v0", "--steps", "10")
    assert args.func(args) == 2
    assert "unknown --algo 'bogus'" in capsys.readouterr().err


def test_cli_dispatches_custom_ppo() -> None:
    pytest.importorskip("agents.ppo")
    args = _parse(
        "--algo",
        "ppo",
        "--env",
        "RLHF/Copy-v0",
        "--steps",
        "512",
        "--eval-episodes",
        "4",
        "--set",
        "n_steps=64",
    )
    res = run_train(args)
    assert res["algo"] == "ppo" and res["n_episodes"] == 4 and "mean_return" in res
