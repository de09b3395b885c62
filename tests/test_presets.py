"""agents/presets.py: named presets, their lookup, and every place that takes one."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

import rlhf_envs  # noqa: F401
from agents import A2C, PPO, REINFORCE
from agents.config import A2CConfig, PPOConfig, REINFORCEConfig
from agents.dpo import DPOConfig
from agents.es import ESConfig
from agents.grpo import GRPOConfig
from agents.presets import ALGOS, describe_preset, get_preset, list_presets
from agents.rloo import RLOOConfig
from rlhf_envs.errors import ConfigError
from rlhf_envs.tasks.toy import TOY_TOKENIZER

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIG_CLASSES = {
    "ppo": PPOConfig,
    "a2c": A2CConfig,
    "reinforce": REINFORCEConfig,
    "es": ESConfig,
    "rloo": RLOOConfig,
    "grpo": GRPOConfig,
    "dpo": DPOConfig,
}


def test_get_preset_returns_a_fresh_resolved_dict() -> None:
    a = get_preset("toy-copy")
    a["ent_coef"] = 99.0
    a["n_envs"] = 1
    b = get_preset("toy-copy")
    assert b["ent_coef"] == 0.03 and b["n_envs"] == 64
    # the base chain is resolved: toy-copy states only what differs from toy-transformer-ppo
    base = get_preset("toy-transformer-ppo")
    assert b == {**base, "ent_coef": 0.03, "anchor_token": TOY_TOKENIZER.encode("=")[0]}
    assert base["ent_coef"] == 0.01
    assert describe_preset("toy-copy").base == "toy-transformer-ppo"
    nested = get_preset("sb3-cartpole-zoo-dqn")
    nested["policy_kwargs"]["net_arch"].append(1)
    assert get_preset("sb3-cartpole-zoo-dqn")["policy_kwargs"]["net_arch"] == [256, 256]


def test_unknown_preset_and_wrong_algorithm_name_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'; allowed: .*cartpole-zoo.*toy-copy"):
        get_preset("nope")
    with pytest.raises(
        ConfigError, match="'cartpole-zoo' is for ppo, not a2c; presets for a2c: .*cartpole-a2c"
    ):
        get_preset("cartpole-zoo", "a2c")
    with pytest.raises(ConfigError, match="unknown preset"):
        PPO("CartPole-v1", seed=0, preset="cartpole-typo")
    with pytest.raises(ConfigError, match="not a2c"):
        A2C("CartPole-v1", seed=0, preset="cartpole-zoo")
    with pytest.raises(ConfigError, match="unknown algorithm"):
        list_presets("sac")


def test_every_preset_is_documented_and_fits_its_config_class() -> None:
    from agents.rlhf import RLHFConfig
    from agents.sb3.train import PRESET_KEYWORDS, _algo_class

    assert list_presets() == sorted(list_presets())
    for name in list_presets():
        preset = describe_preset(name)
        assert len(preset.doc) > 40, f"{name}: say where the values come from"
        values = get_preset(name)
        for algo in preset.algos:
            assert name in list_presets(algo)
            if algo in CONFIG_CLASSES:
                extra = {"model": "default"} if values.get("policy") == "lm" and "model" not in values else {}
                cfg = CONFIG_CLASSES[algo].from_kwargs(preset=name, **extra)
                assert cfg.preset == name
                assert all(
                    getattr(cfg, k) == (tuple(v) if k == "hidden_sizes" else v) for k, v in values.items()
                )
            elif algo == "rlhf-loop":
                cfg = RLHFConfig(**values)
                assert all(getattr(cfg, k) == v for k, v in values.items())
            else:
                cls = _algo_class(algo.removeprefix("sb3-"))
                allowed = set(inspect.signature(cls.__init__).parameters) | set(PRESET_KEYWORDS)
                assert set(values) <= allowed, (
                    f"{name}: {sorted(set(values) - allowed)} are not {cls.__name__} arguments"
                )
    assert set(ALGOS) == {a for n in list_presets() for a in describe_preset(n).algos}


def test_policy_lm_without_a_preset_keeps_the_lm_defaults() -> None:
    """The default LM config is unchanged by the move to presets (lm-human-preferences / TRL's)."""
    cfg = PPOConfig.from_kwargs(policy="lm", model="default")
    assert cfg.preset == "lm-default"
    expected = dict(
        n_envs=64, gamma=1.0, gae_lambda=0.95, learning_rate=1e-5, anneal_lr=False, ent_coef=0.0,
        vf_coef=0.1, norm_adv="batch", max_grad_norm=1.0, kl_coef=0.05, n_minibatches=4, n_epochs=4,
    )  # fmt: skip
    assert {k: getattr(cfg, k) for k in expected} == expected
    assert A2CConfig.from_kwargs(policy="lm", model="default").preset == "lm-default-a2c"
    r = REINFORCEConfig.from_kwargs(policy="lm", model="default")
    assert r.preset == "lm-default-reinforce" and r.gae_lambda == 1.0 and r.learning_rate == 1e-5
    # without policy="lm" and without a preset: the dataclass defaults, no preset recorded
    plain = PPOConfig.from_kwargs()
    assert plain.preset is None and plain == PPOConfig()


def test_keywords_override_the_preset_and_the_preset_overrides_the_defaults() -> None:
    cfg = PPOConfig.from_kwargs(preset="lm-sentiment-demo", learning_rate=3e-5, n_envs=8)
    assert (cfg.learning_rate, cfg.n_envs, cfg.kl_coef, cfg.model, cfg.policy) == (
        3e-5,
        8,
        0.05,
        "default",
        "lm",
    )
    demo = PPOConfig.from_kwargs(preset="lm-sentiment-demo")
    assert demo.learning_rate == 1e-4 and demo.n_envs == 64  # the demo's values
    lm = PPOConfig.from_kwargs(policy="lm", model="default")
    differ = {f.name for f in dataclasses.fields(PPOConfig) if getattr(demo, f.name) != getattr(lm, f.name)}
    assert differ == {"learning_rate", "preset"}
    assert get_preset("toy-copy")["anchor_token"] == TOY_TOKENIZER.encode("=")[0]


def test_agent_records_the_preset_in_its_checkpoint_and_reloads_it(tmp_path) -> None:
    agent = PPO("CartPole-v1", seed=0, preset="cartpole-zoo", n_envs=2, n_steps=8)
    assert agent.config.preset == "cartpole-zoo" and agent.config.n_epochs == 20
    agent.learn(16, progress_bar=False)
    path = agent.save(str(tmp_path / "ckpt"))
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["config"]["preset"] == "cartpole-zoo" and saved["config"]["n_envs"] == 2
    again = PPO.load(path)
    assert again.config == agent.config
    REINFORCE("CartPole-v1", seed=0, preset="cartpole-reinforce").close()


def test_train_baseline_takes_a_preset_and_records_the_resolved_config() -> None:
    from stable_baselines3 import PPO as SB3PPO

    from agents.sb3 import train_baseline

    model = train_baseline(
        "ppo", "RLHF/Copy-v0", 64, seed=0, preset="sb3-toy-fast-ppo", n_steps=1, batch_size=64
    )
    cfg = model.train_config
    assert cfg["preset"] == "sb3-toy-fast-ppo" and cfg["n_envs"] == 64  # n_envs from the preset
    assert cfg["n_steps"] == 1 and model.n_steps == 1  # keywords override the preset
    assert cfg["learning_rate"] == 1e-3 and cfg["n_epochs"] == 4  # the preset over its base
    assert cfg["clip_range"] == inspect.signature(SB3PPO.__init__).parameters["clip_range"].default
    json.dumps(cfg, default=str)
    model.get_env().close()
    default = train_baseline("a2c", "RLHF/Copy-v0", 16, seed=0, n_envs=2)
    assert default.train_config["preset"] == "sb3-toy-a2c" and default.n_steps == 8
    default.get_env().close()
    with pytest.raises(ConfigError, match="not sb3-dqn"):
        train_baseline("dqn", "RLHF/Copy-v0", 16, seed=0, preset="sb3-toy-ppo")


def test_rlhf_loop_preset_holds_the_ppo_settings_of_rlhfconfig() -> None:
    from agents.rlhf import RLHFConfig

    loop, preset = RLHFConfig(), PPOConfig.from_kwargs(preset="lm-rlhf-loop", model="default")
    assert (preset.n_envs, preset.learning_rate, preset.kl_coef) == (
        loop.n_envs,
        loop.learning_rate,
        loop.kl_coef,
    )


def test_cli_train_takes_a_preset(capsys: pytest.CaptureFixture[str]) -> None:
    from agents.cli_train import main

    base = ["--env", "RLHF/Copy-v0", "--steps", "64", "--eval-episodes", "4"]
    assert main(["--algo", "ppo", *base, "--preset", "toy-copy", "--set", "n_envs=4"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["preset"] == "toy-copy" and 0.0 <= out["reward_task"] <= 1.0
    assert main(["--algo", "sb3-a2c", *base, "--preset", "sb3-toy-fast-a2c", "--n-envs", "2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["preset"] == "sb3-toy-fast-a2c"
    assert main(["--algo", "a2c", *base, "--preset", "toy-copy"]) == 2
    assert "presets for a2c" in capsys.readouterr().err
