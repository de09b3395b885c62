"""Agent configuration: one dataclass per algorithm, every default documented in place.

``PPO(env, seed=0, **config)`` builds a :class:`PPOConfig` from the keyword arguments, so the
fields below are the agent's keyword arguments. Unknown keywords raise a :class:`ConfigError` that
lists the allowed ones. ``preset="name"`` starts from a named preset of :mod:`agents.presets`
(``PPO(env, seed=0, preset="lm-sentiment-demo", learning_rate=3e-5)``: keyword arguments override
the preset, the preset overrides the class defaults). Language-model policies (``policy="lm"``)
with no preset start from the class's ``LM_PRESET`` (``"lm-default"`` for PPO: the
lm-human-preferences / TRL settings) for every field the caller did not set. Each field is
documented once, here; the presets only name values.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agents.checks import check_bool, check_choice, check_float, check_int, check_path
from agents.presets import get_preset
from rlhf_envs.errors import ConfigError


@dataclass
class OnPolicyConfig:
    """Settings shared by PPO, A2C and REINFORCE (the CleanRL CartPole settings by default)."""

    # -- environment ----------------------------------------------------------------------------
    #: number of parallel sub-envs (ignored when a VectorEnv instance is passed)
    n_envs: int = 4
    #: keyword arguments for ``gym.make_vec`` / ``gym.make`` when an env id is given
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    #: ``None``: bootstrap on truncation for ordinary envs (time limits), but treat the rlhf text
    #: envs' truncation at the token budget as the end of the task (the feedback model already
    #: paid the final reward there). ``True`` / ``False`` force one or the other.
    bootstrap_truncated: bool | None = None

    # -- rollout ----------------------------------------------------------------------------------
    #: env steps per sub-env per rollout (MLP policies); LM policies collect one episode per sub-env
    n_steps: int = 128
    #: discount factor
    gamma: float = 0.99
    #: GAE lambda (1.0 = Monte Carlo returns with bootstrapping only at cuts)
    gae_lambda: float = 0.95

    # -- optimisation -----------------------------------------------------------------------------
    #: learning rate (Adam eps 1e-5)
    learning_rate: float = 2.5e-4
    #: linearly anneal the learning rate to 0 over the ``learn`` call
    anneal_lr: bool = True
    #: "adam" or "rmsprop" (SB3's A2C optimiser)
    optimizer: str = "adam"
    #: global gradient-norm clip (applied before every optimiser step); ``None`` disables it
    max_grad_norm: float | None = 0.5
    #: value-loss coefficient
    vf_coef: float = 0.5
    #: entropy-bonus coefficient
    ent_coef: float = 0.01
    #: advantage normalisation: "minibatch" (CleanRL), "batch" (whitening, TRL) or "none"
    norm_adv: str = "minibatch"

    # -- policy -----------------------------------------------------------------------------------
    #: "mlp" (any Discrete/Box-action env), "transformer" (a small transformer trained from scratch
    #: over the rlhf token observation, Discrete actions) or "lm" (a transformers causal LM)
    policy: str = "mlp"
    #: hidden layer widths of the separate actor and critic MLPs
    hidden_sizes: tuple[int, ...] = (64, 64)
    #: "tanh" (CleanRL) or "relu"
    activation: str = "tanh"
    #: initial log standard deviation of the Gaussian policy (Box actions)
    log_std_init: float = 0.0
    #: policy="transformer": embedding width, encoder layers and attention heads of the shared
    #: actor-critic trunk (token + learned position embeddings, pre-norm layers, no dropout)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    #: policy="transformer": a token id (e.g. the toy tasks' separator ``=``) from whose first
    #: occurrence every position's offset is embedded too (see ``TransformerActorCritic``);
    #: ``None`` = absolute positions only
    anchor_token: int | None = None
    #: extra features for the rlhf token observation (MLP policy): "none" (the per-position
    #: one-hot only) or "length" (also a one-hot of the number of real tokens, i.e. the current
    #: position, so the network need not infer it from where the padding starts)
    token_features: str = "none"
    #: masked PPO (as sb3-contrib's MaskablePPO): restrict the Categorical policy to the actions
    #: the env marks valid in ``info["action_mask"]`` (read after every reset and step). The mask
    #: is applied identically when sampling in the rollout, in evaluation and in the update's
    #: log-probs and entropy. Discrete actions, mlp/transformer policies; the env must report it.
    use_action_mask: bool = False

    # -- language-model policy (policy="lm") --------------------------------------------------------
    #: a ``transformers`` causal LM instance or a path/name for ``AutoModelForCausalLM.from_pretrained``
    model: Any = None
    #: sampling temperature, used identically in rollout, reference and training passes
    temperature: float = 1.0
    #: initial KL-penalty coefficient beta (reward -= beta * KL per token)
    kl_coef: float = 0.05
    #: "k1" (logp - logp_ref) or "k3" ((r - 1) - log r, r = p_ref / p) per-token penalty estimator
    kl_estimator: str = "k1"
    #: adapt beta towards ``kl_target`` (Ziegler et al. 2019) instead of keeping it fixed
    adaptive_kl: bool = False
    #: target KL per episode (nats) for the adaptive controller
    kl_target: float = 6.0
    #: horizon (episodes) of the adaptive controller
    kl_horizon: int = 10_000
    #: initial std of the value head's weights (small: the value starts near 0)
    value_head_init_std: float = 1e-3

    # -- bookkeeping ------------------------------------------------------------------------------
    #: torch device
    device: str = "cpu"
    #: torch CPU threads while the agent learns, evaluates and samples (set for the call, restored
    #: afterwards); ``None``: the process's choice (:func:`agents.threads.set_training_threads`,
    #: e.g. ``--threads``), else 1, fastest for these small models and on a busy machine (measured
    #: in :mod:`agents.threads`); try more on an idle many-core machine
    threads: int | None = None
    #: directory for TensorBoard events and ``progress.csv``; ``None`` logs nothing to disk
    log_dir: str | None = None
    #: write TensorBoard events into ``log_dir``
    tensorboard: bool = True
    #: directory for periodic checkpoints; ``None`` disables them
    checkpoint_dir: str | None = None
    #: checkpoint every this many rollout/update iterations. At each checkpoint the envs are
    #: re-seeded from the agent's generator, so the state at a checkpoint is fully captured by the
    #: weights, optimiser and generators, and a resumed run repeats the uninterrupted one exactly
    #: (running episodes are cut there and bootstrapped like time-limit truncations).
    checkpoint_every: int = 10
    #: the named preset (:mod:`agents.presets`) the other fields started from, recorded with every
    #: checkpoint and result; ``None``: the class defaults. ``policy="lm"`` without a preset records
    #: the class's ``LM_PRESET``.
    preset: str | None = None

    #: the algorithm a preset must be for (:data:`agents.presets.ALGOS`); ``None`` accepts any
    ALGO: ClassVar[str | None] = None
    #: the preset applied when ``policy="lm"`` and no preset is named
    LM_PRESET: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        if isinstance(self.hidden_sizes, list | tuple):
            self.hidden_sizes = tuple(self.hidden_sizes)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on settings that cannot work, naming the field and its range.

        Every field is checked here, when the config is built: non-finite numbers, negative
        coefficients and clip ranges (a negative ``max_grad_norm`` would turn descent into ascent)
        and empty layers never reach training.
        """
        for name in ("n_envs", "n_steps", "checkpoint_every", "d_model", "n_layers", "n_heads", "kl_horizon"):
            check_int(name, getattr(self, name), 1)
        choices = {
            "optimizer": ("adam", "rmsprop"),
            "norm_adv": ("minibatch", "batch", "none"),
            "policy": ("mlp", "transformer", "lm"),
            "activation": ("tanh", "relu"),
            "kl_estimator": ("k1", "k3"),
            "token_features": ("none", "length"),
        }
        for name, allowed in choices.items():
            check_choice(name, getattr(self, name), allowed)
        if not isinstance(self.env_kwargs, dict):
            raise ConfigError(f"env_kwargs must be a dict of env keyword arguments, got {self.env_kwargs!r}")
        check_bool("bootstrap_truncated", self.bootstrap_truncated, allow_none=True)
        for name in ("anneal_lr", "use_action_mask", "adaptive_kl", "tensorboard"):
            check_bool(name, getattr(self, name))
        check_float("gamma", self.gamma, 0.0, 1.0)
        check_float("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_float("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_float("temperature", self.temperature, 0.0, low_open=True)
        check_float("max_grad_norm", self.max_grad_norm, 0.0, low_open=True, allow_none=True)
        for name in ("vf_coef", "ent_coef", "kl_coef", "value_head_init_std"):
            check_float(name, getattr(self, name), 0.0)
        check_float("kl_target", self.kl_target, 0.0, low_open=True)
        check_float("log_std_init", self.log_std_init)
        if not isinstance(self.hidden_sizes, tuple):
            raise ConfigError(
                f"hidden_sizes must be a tuple of layer widths (ints >= 1), got {self.hidden_sizes!r}"
            )
        for i, width in enumerate(self.hidden_sizes):
            check_int(f"hidden_sizes[{i}]", width, 1)
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if not isinstance(self.device, str):
            raise ConfigError(
                f"device must be a torch device string ('cpu', 'cuda', ...), got {self.device!r}"
            )
        if self.threads is not None:
            check_int("threads", self.threads, 1)
        for name in ("log_dir", "checkpoint_dir"):
            path = check_path(name, getattr(self, name))
            if path is not None and os.path.exists(path) and not os.path.isdir(path):
                raise ConfigError(f"{name} {path!r} is a file; give a directory (new or existing)")
        if self.use_action_mask and self.policy == "lm":
            raise ConfigError("use_action_mask=True is supported for policy='mlp' and 'transformer' only")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.policy == "lm" and self.model is None:
            raise ConfigError("policy='lm' needs model= (a transformers causal LM instance or a path)")
        if self.anchor_token is not None:
            if (
                isinstance(self.anchor_token, bool)
                or not isinstance(self.anchor_token, int)
                or self.anchor_token < 0
            ):
                raise ConfigError(
                    f"anchor_token must be None or a non-negative token id, got {self.anchor_token!r}"
                )
            if self.policy != "transformer":
                raise ConfigError(
                    f"anchor_token is an option of policy='transformer', not policy={self.policy!r}"
                )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> OnPolicyConfig:
        """Build the config from agent keyword arguments.

        Order: the class defaults, then the preset (``preset=`` or, for ``policy="lm"`` without
        one, the class's ``LM_PRESET``), then the other keyword arguments.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} option(s): {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(names))}"
            )
        name = kwargs.pop("preset", None)
        if name is None and kwargs.get("policy") == "lm":
            name = cls.LM_PRESET
        values: dict[str, Any] = {}
        if name is not None:
            values = get_preset(name, cls.ALGO)
            bad = sorted(set(values) - names)
            if bad:
                raise ConfigError(
                    f"preset {name!r} sets option(s) {', '.join(map(repr, bad))} that {cls.__name__} "
                    "does not have"
                )
        return cls(**{**values, **kwargs, "preset": name})

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the settings (a model instance is recorded by its class name only)."""
        # not dataclasses.asdict: it would deep-copy a model instance held in ``model``
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["env_kwargs"] = dict(self.env_kwargs)
        out["hidden_sizes"] = list(self.hidden_sizes)
        if self.model is not None and not isinstance(self.model, str):
            out["model"] = f"<{type(self.model).__name__} instance>"
        return out


@dataclass
class PPOConfig(OnPolicyConfig):
    """PPO: clipped surrogate over ``n_epochs`` passes of shuffled minibatches.

    Defaults are CleanRL's CartPole settings (4 envs x 128 steps, 4 epochs x 4 minibatches, clip
    0.2, entropy 0.01). With ``policy="lm"`` and no preset they become the ``"lm-default"`` preset
    (lm-human-preferences / TRL's settings, see :mod:`agents.presets`).
    """

    #: optimisation passes over each rollout
    n_epochs: int = 4
    #: minibatches per pass (transitions for MLPs, episodes for LMs)
    n_minibatches: int = 4
    #: policy-ratio clip range (linearly annealed with the LR when ``anneal_clip``)
    clip_range: float = 0.2
    #: anneal the clip range with the same linear schedule as the LR
    anneal_clip: bool = False
    #: value-loss clip range around the old values; ``None`` = unclipped MSE
    clip_range_vf: float | None = 0.2
    #: stop the epoch loop early when the k3 approx-KL exceeds this; ``None`` disables it
    target_kl: float | None = None

    ALGO: ClassVar[str | None] = "ppo"
    LM_PRESET: ClassVar[str | None] = "lm-default"

    def validate(self) -> None:
        super().validate()
        for name in ("n_epochs", "n_minibatches"):
            check_int(name, getattr(self, name), 1)
        check_float("clip_range", self.clip_range, 0.0, low_open=True)
        check_bool("anneal_clip", self.anneal_clip)
        check_float("clip_range_vf", self.clip_range_vf, 0.0, low_open=True, allow_none=True)
        check_float("target_kl", self.target_kl, 0.0, low_open=True, allow_none=True)


@dataclass
class A2CConfig(OnPolicyConfig):
    """A2C: one gradient step per short rollout on the whole batch (SB3's A2C defaults).

    5 steps per env, RMSprop (alpha 0.99, eps 1e-5), lr 7e-4, no GAE smoothing (lambda 1),
    no entropy bonus, no advantage normalisation.
    """

    n_steps: int = 5
    learning_rate: float = 7e-4
    optimizer: str = "rmsprop"
    gae_lambda: float = 1.0
    ent_coef: float = 0.0
    norm_adv: str = "none"
    anneal_lr: bool = False
    checkpoint_every: int = 100

    ALGO: ClassVar[str | None] = "a2c"
    LM_PRESET: ClassVar[str | None] = "lm-default-a2c"


@dataclass
class REINFORCEConfig(OnPolicyConfig):
    """REINFORCE with a learned state-value baseline.

    Advantages are Monte Carlo returns minus the baseline (lambda 1; an episode cut by the rollout
    boundary or a time limit is completed with the baseline's estimate). One full-batch gradient
    step per rollout; the baseline is fitted by the same step through ``vf_coef``.
    """

    n_steps: int = 256
    learning_rate: float = 1e-3
    gae_lambda: float = 1.0
    ent_coef: float = 0.0
    norm_adv: str = "batch"
    anneal_lr: bool = False

    ALGO: ClassVar[str | None] = "reinforce"
    LM_PRESET: ClassVar[str | None] = "lm-default-reinforce"
