"""Impossible or non-finite agent settings fail when the config is built (issue 15, item 7).

Each is a :class:`ConfigError` whose message names the field and says what is allowed; before,
``max_grad_norm=-1`` multiplied gradients by a negative factor (silent gradient ascent),
``kl_coef=-1`` rewarded drifting from the reference and ``hidden_sizes=(0,)`` built an empty layer.
"""

from __future__ import annotations

import math

import pytest

from agents.config import A2CConfig, PPOConfig, REINFORCEConfig
from agents.presets import get_preset, list_presets
from agents.rlhf.config import RLHFConfig
from rlhf_envs.errors import ConfigError

NAN, INF = math.nan, math.inf

BAD_AGENT_SETTINGS = [
    ("max_grad_norm", -1, r"max_grad_norm must be a finite number > 0 or None"),
    ("max_grad_norm", 0, r"max_grad_norm must be a finite number > 0"),
    ("max_grad_norm", INF, r"max_grad_norm must be a finite number > 0"),
    ("kl_coef", -1, r"kl_coef must be a finite number >= 0, got -1"),
    ("kl_coef", INF, r"kl_coef must be a finite number >= 0, got inf"),
    ("kl_coef", NAN, r"kl_coef must be a finite number >= 0, got nan"),
    ("clip_range", INF, r"clip_range must be a finite number > 0"),
    ("clip_range", 0.0, r"clip_range must be a finite number > 0"),
    ("clip_range_vf", -0.2, r"clip_range_vf must be a finite number > 0 or None"),
    ("target_kl", NAN, r"target_kl must be a finite number > 0 or None"),
    ("vf_coef", -5, r"vf_coef must be a finite number >= 0, got -5"),
    ("ent_coef", NAN, r"ent_coef must be a finite number >= 0"),
    ("hidden_sizes", (0,), r"hidden_sizes\[0\] must be an int >= 1, got 0"),
    ("hidden_sizes", (64, -1), r"hidden_sizes\[1\] must be an int >= 1, got -1"),
    ("hidden_sizes", (2.5,), r"hidden_sizes\[0\] must be an int >= 1, got 2.5"),
    ("hidden_sizes", 64, r"hidden_sizes must be a tuple of layer widths"),
    ("learning_rate", NAN, r"learning_rate must be a finite number > 0, got nan"),
    ("learning_rate", -1e-3, r"learning_rate must be a finite number > 0"),
    ("learning_rate", "1e-3", r"learning_rate must be a finite number > 0, got '1e-3'"),
    ("gamma", 1.5, r"gamma must be a number in \[0, 1\], got 1.5"),
    ("gamma", NAN, r"gamma must be a number in \[0, 1\]"),
    ("gae_lambda", -0.1, r"gae_lambda must be a number in \[0, 1\]"),
    ("temperature", 0, r"temperature must be a finite number > 0"),
    ("temperature", INF, r"temperature must be a finite number > 0"),
    ("kl_target", 0, r"kl_target must be a finite number > 0"),
    ("kl_horizon", 0, r"kl_horizon must be an int >= 1"),
    ("value_head_init_std", -1, r"value_head_init_std must be a finite number >= 0"),
    ("log_std_init", INF, r"log_std_init must be a finite number, got inf"),
    ("n_envs", True, r"n_envs must be an int >= 1, got True"),
    ("n_steps", 0, r"n_steps must be an int >= 1, got 0"),
    ("n_epochs", 1.5, r"n_epochs must be an int >= 1"),
    ("anneal_lr", "yes", r"anneal_lr must be True or False"),
    ("bootstrap_truncated", 1, r"bootstrap_truncated must be True, False or None"),
    ("env_kwargs", [("a", 1)], r"env_kwargs must be a dict"),
    ("log_dir", 3, r"log_dir must be a path \(str or os.PathLike\) or None"),
    ("optimizer", "sgd", r"optimizer must be one of 'adam', 'rmsprop'; got 'sgd'"),
]


@pytest.mark.parametrize("field,value,message", BAD_AGENT_SETTINGS)
def test_bad_agent_setting_is_a_config_error_naming_field_and_range(field, value, message):
    with pytest.raises(ConfigError, match=message):
        PPOConfig.from_kwargs(**{field: value})


def test_the_ppo_agent_refuses_them_before_building_anything():
    from agents import PPO

    with pytest.raises(ConfigError, match="max_grad_norm"):
        PPO("CartPole-v1", max_grad_norm=-1)
    with pytest.raises(ConfigError, match=r"hidden_sizes\[0\]"):
        PPO("CartPole-v1", hidden_sizes=(0,))


def test_every_preset_and_the_defaults_pass_the_checks():
    for cls in (PPOConfig, A2CConfig, REINFORCEConfig):
        cls()
    for algo, cls in (("ppo", PPOConfig), ("a2c", A2CConfig), ("reinforce", REINFORCEConfig)):
        for name in list_presets(algo):
            values = get_preset(name, algo)
            if values.get("policy") == "lm":
                values.setdefault("model", "default")
            cls.from_kwargs(**values)


BAD_RLHF_SETTINGS = [
    ("rounds", 0, r"rounds must be an int >= 1"),
    ("decay", NAN, r"decay must be a number in \(0, 1\]"),
    ("kl_coef", INF, r"kl_coef must be a finite number >= 0, got inf"),
    ("kl_coef", -1, r"kl_coef must be a finite number >= 0"),
    ("learning_rate", NAN, r"learning_rate must be a number in \(0, 1\)"),
    ("rm_lr", 1.0, r"rm_lr must be a number in \(0, 1\)"),
    ("rm_random_fraction", NAN, r"rm_random_fraction must be a number in \[0, 1\)"),
    ("cost_per_comparison", -0.1, r"cost_per_comparison must be a finite number >= 0"),
    ("seconds_per_query", INF, r"seconds_per_query must be a finite number >= 0"),
    ("seconds_per_word", NAN, r"seconds_per_word must be a finite number >= 0"),
    ("rater", "Nobody", r"rater must be a simulated rater preset, one of .*Mistake"),
    ("aggregate", "median", r"aggregate must be one of 'mean', 'mean_minus_std', 'min'"),
    ("model", None, r"model must be 'default' or a model directory"),
    ("max_new_tokens", 0, r"max_new_tokens must be an int >= 1"),
    ("seed", -1, r"seed must be an int >= 0"),
    ("budget", -3, r"budget must be an int >= 0"),
    ("pool_factor", 2.0, r"pool_factor must be an int >= 1"),
    ("on_budget_exhausted", "panic", r"on_budget_exhausted must be one of 'stop', 'continue'"),
    ("query_kind", "likert", r"query_kind must be one of 'pairwise', 'rating'"),
    ("ppo_kwargs", [], r"ppo_kwargs must be a dict"),
]


@pytest.mark.parametrize("field,value,message", BAD_RLHF_SETTINGS)
def test_rlhf_config_checks_every_field_at_construction(field, value, message):
    with pytest.raises(ConfigError, match=message):
        RLHFConfig(**{field: value})


def test_rlhf_config_defaults_are_valid():
    RLHFConfig()
    RLHFConfig(rater="oracle", aggregate="min", budget=0, max_new_tokens=4, schedule="decaying")
