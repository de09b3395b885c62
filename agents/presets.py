"""Named hyperparameter presets: every setting the agents, baselines and benchmarks use, in one place.

A preset is a name for a mapping of config fields for one algorithm, with a line saying where the
values come from. The fields themselves are documented once, where they are defined:

* ``ppo``, ``a2c``, ``reinforce`` (the custom agents): the dataclasses of :mod:`agents.config`
  (``rloo``, ``grpo``, ``es``, ``dpo``: :class:`agents.rloo.RLOOConfig`,
  :class:`agents.grpo.GRPOConfig`, :class:`agents.es.ESConfig`, :class:`agents.dpo.DPOConfig`);
  ``PPO(env, seed=0, preset="lm-sentiment-demo", learning_rate=3e-5)`` starts from the preset and
  lets keyword arguments override it;
* ``sb3-ppo``, ``sb3-a2c``, ``sb3-dqn``, ``sb3-maskable_ppo``: the keywords of
  :func:`agents.sb3.train_baseline` (``n_envs``, ``kl_coef``, ...) and the constructor arguments of
  the Stable-Baselines3 class (``learning_rate``, ``n_steps``, ...); ``"lin_<x>"`` is a linear
  schedule from ``x`` to 0 (rl-zoo's notation, :func:`agents.sb3.train.sb3_value`);
* ``rlhf-loop``: the fields of :class:`agents.rlhf.RLHFConfig`.

A preset may start from another one (``base``) and change a few fields, so a derived setting states
only what differs. :func:`get_preset` returns a fresh dict with the chain resolved;
:func:`list_presets` lists the names (optionally for one algorithm). Every result a benchmark writes
records the preset's name beside the full resolved config.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rlhf_envs.errors import ConfigError
from rlhf_envs.tasks.toy import TOY_TOKENIZER

#: the algorithms a preset can be for (see the module docstring)
ALGOS = (
    "ppo",
    "a2c",
    "reinforce",
    "rloo",
    "grpo",
    "es",
    "dpo",
    "sb3-ppo",
    "sb3-a2c",
    "sb3-dqn",
    "sb3-maskable_ppo",
    "rlhf-loop",
)


@dataclass(frozen=True)
class Preset:
    """One named setting: the algorithms it is for, where it comes from, and its fields."""

    name: str
    algos: tuple[str, ...]
    doc: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    base: str | None = None


_PRESETS: dict[str, Preset] = {}


def get_preset_fields(name: str) -> dict[str, Any]:
    """The own fields of an already defined preset (for building a sibling from it)."""
    return dict(_PRESETS[name].fields)


def _resolve(name: str) -> dict[str, Any]:
    """The fields of an already defined preset with its ``base`` chain resolved (no checks)."""
    chain = [_PRESETS[name]]
    while chain[-1].base is not None:
        chain.append(_PRESETS[chain[-1].base])
    out: dict[str, Any] = {}
    for p in reversed(chain):
        out.update(copy.deepcopy(dict(p.fields)))
    return out


def _add(name: str, algos: tuple[str, ...], doc: str, base: str | None = None, **fields: Any) -> None:
    bad = [a for a in algos if a not in ALGOS]
    if bad or not algos:
        raise ValueError(f"preset {name!r}: algorithms must be a non-empty subset of {ALGOS}, got {algos}")
    if name in _PRESETS:
        raise ValueError(f"preset {name!r} is defined twice")
    if base is not None and not set(algos) <= set(_PRESETS[base].algos):
        raise ValueError(
            f"preset {name!r} is for {algos} but its base {base!r} is for {_PRESETS[base].algos}"
        )
    _PRESETS[name] = Preset(name, algos, " ".join(doc.split()), dict(fields), base)


# -- the custom agents on CartPole-v1 ------------------------------------------------------------------

_add(
    "cartpole-cleanrl",
    ("ppo",),
    """PPOConfig's own defaults, which are CleanRL's CartPole settings (4 envs x 128 steps, 4 epochs
    x 4 minibatches, lr 2.5e-4 annealed, clip 0.2, entropy 0.01): benchmarks/cartpole.py's
    custom-ppo-cleanrl.""",
)
_add(
    "cartpole-zoo",
    ("ppo",),
    """rl-zoo's tuned CartPole-v1 PPO: 8 envs x 32 steps, one 256-sample minibatch, 20 epochs,
    lr 1e-3 and clip 0.2 both annealed linearly, unclipped value loss as in SB3. benchmarks/cartpole.py
    (custom-ppo-zoo) and the comparison's CartPole PPO.""",
    n_envs=8,
    n_steps=32,
    n_minibatches=1,
    n_epochs=20,
    gamma=0.98,
    gae_lambda=0.8,
    ent_coef=0.0,
    learning_rate=1e-3,
    anneal_lr=True,
    anneal_clip=True,
    clip_range_vf=None,
)
_add(
    "cartpole-es",
    ("es",),
    """ESConfig's own defaults (OpenAI-ES on the 64x64 tanh actor: 32 members in lock step on 32
    envs, one greedy episode each, sigma 0.1, Adam lr 0.03, weight decay 0.005):
    benchmarks/es_cartpole.py.""",
)
_add(
    "cartpole-a2c",
    ("a2c",),
    """A2CConfig's defaults (SB3's A2C) with rl-zoo's 8 CartPole envs: the comparison's CartPole A2C.""",
    n_envs=8,
)
_add(
    "cartpole-reinforce",
    ("reinforce",),
    """REINFORCEConfig's own defaults: the comparison's CartPole REINFORCE.""",
)

# -- the custom agents on the toy tasks ----------------------------------------------------------------

_add(
    "toy-transformer-ppo",
    ("ppo",),
    """Masked PPO with the small transformer policy (2 layers, width 64) that benchmarks/toy_tasks.py
    recorded its 500k-token results with, before it gained anchor_token and ent_coef 0.03: the
    comparison's PPO on the toy tasks (benchmarks/compare).""",
    n_envs=64,
    n_steps=16,
    n_minibatches=4,
    n_epochs=4,
    gamma=1.0,
    gae_lambda=0.95,
    learning_rate=5e-4,
    anneal_lr=True,
    ent_coef=0.01,
    use_action_mask=True,
    policy="transformer",
    d_model=64,
    n_layers=2,
    n_heads=4,
)
_add(
    "toy-transformer-reinforce",
    ("reinforce",),
    """The comparison's REINFORCE on the toy tasks: the same transformer policy and mask as
    toy-transformer-ppo, REINFORCE's own update, its batch shape scaled to 64 cheap toy envs.""",
    n_envs=64,
    n_steps=16,
    gamma=1.0,
    learning_rate=1e-3,
    policy="transformer",
    use_action_mask=True,
    ent_coef=0.01,
)
_add(
    "toy-transformer-a2c",
    ("a2c",),
    """The comparison's A2C on the toy tasks: the same transformer policy and mask as
    toy-transformer-ppo, A2C's own update, 16 envs x 8 steps.""",
    n_envs=16,
    n_steps=8,
    gamma=1.0,
    learning_rate=7e-4,
    policy="transformer",
    use_action_mask=True,
    ent_coef=0.01,
)
_add(
    "toy-copy",
    ("ppo",),
    """benchmarks/toy_tasks.py's setting that solves Copy and Reverse (>= 99.8% exact in 200k tokens,
    seeds 0-2): toy-transformer-ppo with positions also measured from the separator "=" (anchor_token)
    and the stronger entropy bonus 0.03 that let Copy seed 2 leave an 80% optimum.""",
    base="toy-transformer-ppo",
    ent_coef=0.03,
    anchor_token=TOY_TOKENIZER.encode("=")[0],
)

# -- the custom agents with a language-model policy ----------------------------------------------------

#: lm-human-preferences / TRL's settings shared by every on-policy agent with policy="lm"
_LM_COMMON: dict[str, Any] = dict(
    policy="lm",
    n_envs=64,
    gamma=1.0,
    gae_lambda=0.95,
    learning_rate=1e-5,
    anneal_lr=False,
    ent_coef=0.0,
    vf_coef=0.1,
    norm_adv="batch",
    max_grad_norm=1.0,
    kl_coef=0.05,
)
_add(
    "lm-default",
    ("ppo",),
    """PPO with policy="lm" when no preset is named: lm-human-preferences / TRL's settings, 64
    episodes per batch, gamma 1, lambda 0.95, whitened advantages, 4 epochs x 4 minibatches, vf_coef
    0.1, lr 1e-5, gradient clip 1.0, fixed KL coefficient 0.05.""",
    **_LM_COMMON,
    n_minibatches=4,
    n_epochs=4,
)
_add(
    "lm-default-a2c",
    ("a2c",),
    """A2C with policy="lm" when no preset is named: lm-default's settings (one update per batch).""",
    **_LM_COMMON,
)
_add(
    "lm-default-reinforce",
    ("reinforce",),
    """REINFORCE with policy="lm" when no preset is named: lm-default's settings with Monte Carlo
    returns (lambda 1).""",
    **{**_LM_COMMON, "gae_lambda": 1.0},
)
_add(
    "lm-default-rloo",
    ("rloo",),
    """RLOO with policy="lm" when no preset is named: lm-default's optimiser settings (64 episodes
    per batch = 16 prompts x 4 completions, lr 1e-5, gradient clip 1.0, KL 0.05 in the reward), one
    epoch of one minibatch (the plain policy gradient), raw leave-one-out advantages.""",
    policy="lm",
    n_envs=64,
    group_size=4,
    learning_rate=1e-5,
    anneal_lr=False,
    ent_coef=0.0,
    max_grad_norm=1.0,
    kl_coef=0.05,
    kl_mode="reward",
    n_epochs=1,
    n_minibatches=1,
    norm_adv="none",
)
_add(
    "lm-default-grpo",
    ("grpo",),
    """GRPO with policy="lm" when no preset is named: lm-default-rloo's settings with GRPO's own
    choices: group-normalised advantages and the KL (beta 0.05, k3) as a loss term.""",
    **{k: v for k, v in get_preset_fields("lm-default-rloo").items() if k != "kl_mode"},
    kl_mode="loss",
    scale_rewards=True,
)
_add(
    "lm-sentiment-rloo",
    ("rloo",),
    """benchmarks/critic_free_sentiment.py's RLOO on the embedded model: lm-default-rloo with
    lr 1e-4 (lm-sentiment-demo's) and 4 minibatches per batch, so a 64-episode batch gives PPO's
    number of steps per epoch.""",
    base="lm-default-rloo",
    model="default",
    learning_rate=1e-4,
    n_minibatches=4,
)
_add(
    "lm-sentiment-grpo",
    ("grpo",),
    """benchmarks/critic_free_sentiment.py's GRPO on the embedded model: lm-default-grpo with
    lm-sentiment-rloo's learning rate and minibatches.""",
    base="lm-default-grpo",
    model="default",
    learning_rate=1e-4,
    n_minibatches=4,
)
_add(
    "lm-default-es",
    ("es",),
    """ES with policy="lm" when no preset is named: the last transformer block perturbed with
    sigma 0.01, 16 members each completing 16 prompts greedily, Adam lr 1e-3, weight decay 0.005,
    fitness = return - 0.05 * KL to the reference.""",
    policy="lm",
    n_envs=16,
    population_size=16,
    sigma=0.01,
    learning_rate=1e-3,
    weight_decay=0.005,
    kl_coef=0.05,
    es_params="last_block",
)
_add(
    "lm-default-dpo",
    ("dpo",),
    """DPO with policy="lm" when no preset is named: the DPO paper's beta 0.1 and sigmoid loss, 16
    pairs per step, lm-default's optimiser settings (Adam lr 1e-5, gradient clip 1.0, no annealing),
    64 episodes per evaluation batch.""",
    policy="lm",
    n_envs=64,
    beta=0.1,
    loss="sigmoid",
    batch_size=16,
    learning_rate=1e-5,
    anneal_lr=False,
    max_grad_norm=1.0,
)
_add(
    "lm-sentiment-dpo",
    ("dpo",),
    """benchmarks/dpo_sentiment.py's DPO on the embedded model: lm-default-dpo with lr 1e-4 (the
    learning rate of lm-sentiment-demo, the PPO it is compared with), fixed before any DPO run.""",
    base="lm-default-dpo",
    model="default",
    learning_rate=1e-4,
)
_add(
    "lm-sentiment-demo",
    ("ppo",),
    """`make demo` (agents/demo.py): lm-default on the embedded model with lr 1e-4, ten times the
    default, so 20k tokens show a clear change (seed 0: task reward +0.071 -> +0.885, KL 3.89).""",
    base="lm-default",
    model="default",
    learning_rate=1e-4,
)
_add(
    "lm-sentiment-a2c",
    ("a2c",),
    """benchmarks/compare_lm.py's A2C on the embedded model: lm-default-a2c with lr 1e-4, the learning
    rate of lm-sentiment-demo (the rule lm-sentiment-rloo, -grpo and -dpo followed), fixed before any
    compare_lm run.""",
    base="lm-default-a2c",
    model="default",
    learning_rate=1e-4,
)
_add(
    "lm-sentiment-reinforce",
    ("reinforce",),
    """benchmarks/compare_lm.py's REINFORCE with a learned baseline on the embedded model:
    lm-default-reinforce with lr 1e-4 (lm-sentiment-a2c's rule), fixed before any compare_lm run.""",
    base="lm-default-reinforce",
    model="default",
    learning_rate=1e-4,
)
_add(
    "lm-sentiment-es",
    ("es",),
    """benchmarks/compare_lm.py's ES on the embedded model: lm-default-es unchanged (its Adam step
    1e-3 on parameter noise of sigma 0.01 is on another scale than the gradient agents' lr).""",
    base="lm-default-es",
    model="default",
)
_add(
    "lm-rlhf-loop",
    ("ppo",),
    """The PPO of the RLHF loop (RLHFConfig: 64 episodes per batch, lr 1e-4, KL coefficient 0.05)
    and of benchmarks/overoptimization.py, which also optimises against a learned proxy.""",
    base="lm-default",
    learning_rate=1e-4,
)
_add(
    "lm-sb3-sentiment",
    ("ppo",),
    """The custom PPO's side of benchmarks/sb3_sentiment.py, throughput.py and trl_speed.py:
    lm-default on the embedded model with SB3's batch (16 episodes per update).""",
    base="lm-default",
    model="default",
    n_envs=16,
)
#: the settings TRL's GRPOTrainer, the custom PPO and the custom GRPO share in benchmarks/trl_speed.py
TRL_JOB_FIELDS = (
    "policy",
    "model",
    "n_envs",
    "n_epochs",
    "n_minibatches",
    "learning_rate",
    "anneal_lr",
    "max_grad_norm",
    "kl_coef",
    "ent_coef",
)
_add(
    "lm-trl-sentiment-grpo",
    ("grpo",),
    """The custom GRPO's side of benchmarks/trl_speed.py and throughput.py (TRL's GRPOTrainer's job):
    every shared setting (TRL_JOB_FIELDS: 16 completions per batch, 4 epochs x 4 minibatches, lr 1e-5
    constant, gradient clip 1.0, KL 0.05, no entropy bonus) read from lm-sb3-sentiment, with groups
    of 4 completions per prompt, the KL as a k3 loss term and group-normalised advantages that are
    not whitened again (TRL's GRPO defaults).""",
    **{k: v for k, v in _resolve("lm-sb3-sentiment").items() if k in TRL_JOB_FIELDS},
    group_size=4,
    kl_mode="loss",
    scale_rewards=True,
    norm_adv="none",
)

# -- Stable-Baselines3 through agents.sb3.train_baseline -----------------------------------------------

_add(
    "sb3-toy-ppo",
    ("sb3-ppo", "sb3-maskable_ppo"),
    """train_baseline's PPO / MaskablePPO on the toy tasks (short sparse-reward episodes of <= 8
    tokens) when no preset is named.""",
    n_steps=128,
    batch_size=256,
    n_epochs=4,
    learning_rate=3e-4,
    gamma=1.0,
    gae_lambda=0.95,
    ent_coef=0.01,
)
_add(
    "sb3-toy-a2c",
    ("sb3-a2c",),
    """train_baseline's A2C on the toy tasks when no preset is named.""",
    n_steps=8,
    learning_rate=7e-4,
    gamma=1.0,
    gae_lambda=1.0,
    ent_coef=0.01,
)
_add(
    "sb3-toy-dqn",
    ("sb3-dqn",),
    """train_baseline's DQN on the toy tasks when no preset is named.""",
    learning_rate=3e-4,
    buffer_size=100_000,
    learning_starts=2_000,
    batch_size=128,
    gamma=1.0,
    train_freq=4,
    gradient_steps=1,
    target_update_interval=2_000,
    exploration_fraction=0.3,
    exploration_final_eps=0.05,
)
#: TRL-like optimiser settings of the SB3 baselines on language tasks (small batches for a CPU)
_SB3_LM: dict[str, Any] = dict(
    n_steps=24,
    learning_rate=1e-5,
    gamma=1.0,
    gae_lambda=0.95,
    ent_coef=0.0,
    vf_coef=0.1,
    max_grad_norm=1.0,
)
_add(
    "sb3-lm-ppo",
    ("sb3-ppo", "sb3-maskable_ppo"),
    """train_baseline's PPO / MaskablePPO on language tasks when no preset is named: TRL-like
    settings (lr 1e-5, gamma 1, vf_coef 0.1, no entropy bonus, clip 1.0), small batches for a CPU.""",
    **_SB3_LM,
    batch_size=96,
    n_epochs=4,
)
_add(
    "sb3-lm-a2c",
    ("sb3-a2c",),
    """train_baseline's A2C on language tasks when no preset is named (sb3-lm-ppo's optimiser settings).""",
    **_SB3_LM,
)
_add(
    "sb3-toy-fast-ppo",
    ("sb3-ppo", "sb3-maskable_ppo"),
    """The settings found to learn fastest per wall-clock second on a 2-core CPU:
    benchmarks/sb3_toy.py and the comparison's SB3 PPO / MaskablePPO on the toy tasks.""",
    base="sb3-toy-ppo",
    n_envs=64,
    n_steps=32,
    batch_size=512,
    learning_rate=1e-3,
)
_add(
    "sb3-toy-fast-a2c",
    ("sb3-a2c",),
    """benchmarks/sb3_toy.py's and the comparison's SB3 A2C on the toy tasks: 16 envs.""",
    base="sb3-toy-a2c",
    n_envs=16,
    n_steps=8,
    learning_rate=7e-4,
)
_add(
    "sb3-toy-fast-dqn",
    ("sb3-dqn",),
    """benchmarks/sb3_toy.py's and the comparison's SB3 DQN on the toy tasks: 8 envs.""",
    base="sb3-toy-dqn",
    n_envs=8,
)
_add(
    "sb3-lm-sentiment",
    ("sb3-ppo",),
    """SB3 PPO's side of benchmarks/sb3_sentiment.py and throughput.py: 16 envs x 24 tokens, 4 epochs
    x 4 minibatches, KL 0.05 through KLPenaltyCallback, the same batch as lm-sb3-sentiment.""",
    base="sb3-lm-ppo",
    n_envs=16,
    n_steps=24,
    batch_size=96,
    n_epochs=4,
    kl_coef=0.05,
)

# -- plain Stable-Baselines3 (MlpPolicy) on ordinary Gymnasium envs ------------------------------------

_add(
    "sb3-cartpole-zoo-ppo",
    ("sb3-ppo",),
    """rl-zoo's CartPole-v1 PPO hyperparameters for SB3: benchmarks/cartpole.py (sb3-ppo-zoo) and the
    comparison's SB3 PPO on CartPole.""",
    n_envs=8,
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    learning_rate="lin_1e-3",
    clip_range="lin_0.2",
)
_add(
    "sb3-cartpole-zoo-a2c",
    ("sb3-a2c",),
    """rl-zoo's CartPole-v1 A2C hyperparameters for SB3: the comparison's SB3 A2C on CartPole.""",
    n_envs=8,
    ent_coef=0.0,
)
_add(
    "sb3-cartpole-zoo-dqn",
    ("sb3-dqn",),
    """rl-zoo's CartPole-v1 DQN hyperparameters for SB3: the comparison's SB3 DQN on CartPole.""",
    n_envs=1,
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1_000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
    policy_kwargs=dict(net_arch=[256, 256]),
)

# -- the RLHF loop -------------------------------------------------------------------------------------

_add(
    "rlhf-queries-coarse",
    ("rlhf-loop",),
    """benchmarks/rlhf_queries.py's first pre-registered design (coarse): 8 rounds of 16 queries,
    pool x4, 3 reward-model members, 3,000 PPO tokens per round, 128 evaluation episodes, Mistake
    rater (RLHFConfig's defaults otherwise).""",
    rounds=8,
    queries_per_round=16,
    pool_factor=4,
    n_members=3,
    ppo_tokens_per_round=3000,
    eval_episodes=128,
    rater="Mistake",
)
_add(
    "rlhf-queries-fine",
    ("rlhf-loop",),
    """benchmarks/rlhf_queries.py's second design (fine), fixed before any of its runs: the coarse
    design resolved in 4-query steps (10 rounds of 4 queries, pool x8).""",
    base="rlhf-queries-coarse",
    rounds=10,
    queries_per_round=4,
    pool_factor=8,
)


# -- lookup --------------------------------------------------------------------------------------------


def _unknown(name: Any) -> ConfigError:
    return ConfigError(f"unknown preset {name!r}; allowed: {', '.join(sorted(_PRESETS))}")


def describe_preset(name: str) -> Preset:
    """The :class:`Preset` record of ``name`` (its algorithms, where it comes from, its own fields)."""
    if not isinstance(name, str) or name not in _PRESETS:
        raise _unknown(name)
    return _PRESETS[name]


def get_preset(name: str, algo: str | None = None) -> dict[str, Any]:
    """A fresh dict of the preset's fields, its ``base`` chain resolved (the caller may change it).

    ``algo``: check that the preset is for this algorithm (a :class:`ConfigError` names the presets
    that are). An unknown name raises a :class:`ConfigError` listing the allowed ones.
    """
    preset = describe_preset(name)
    if algo is not None and algo not in preset.algos:
        raise ConfigError(
            f"preset {name!r} is for {', '.join(preset.algos)}, not {algo}; presets for {algo}: "
            f"{', '.join(list_presets(algo)) or 'none'}"
        )
    return _resolve(preset.name)


def list_presets(algo: str | None = None) -> list[str]:
    """The preset names, sorted; with ``algo`` only those for that algorithm."""
    if algo is not None and algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}; presets exist for: {', '.join(ALGOS)}")
    return sorted(n for n, p in _PRESETS.items() if algo is None or algo in p.algos)
