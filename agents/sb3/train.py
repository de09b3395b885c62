"""``train_baseline``: stock SB3 / sb3-contrib algorithms against an rlhf env id, in one call.

What it assembles (all ordinary SB3 pieces, nothing patched):

* the natively batched env in ``SameStep`` mode behind :class:`~agents.sb3.adapter.NativeVecEnv`,
  wrapped in ``VecMonitor`` (``info_keywords=("reward_task", "success")`` when the env reports them);
* ``MultiInputPolicy`` with :class:`~agents.sb3.extractor.TokenFeaturesExtractor` (a small causal
  transformer for the toy tasks; the embedded language model's own body and head for language tasks,
  so the policy starts as the reference model);
* for ``maskable_ppo``: the env's action mask on toy tasks, NLPO's top-p mask of the reference model
  on language tasks (``mask="top_p"``);
* the per-token KL penalty to the reference (:class:`~agents.sb3.callbacks.KLPenaltyCallback`) for
  PPO, A2C and MaskablePPO when the env reports ``info["ref_logprob"]`` (language tasks; default
  ``kl_coef=0.05``, as the custom PPO); DQN cannot use it (no policy log-probs) and refuses it;
* TensorBoard (``tensorboard_log=``; without the optional ``tensorboard`` package a warning says
  how to get it and only the monitor CSV is written), the progress bar (``progress_bar=True``),
  ``save_path=``.

Ordinary Gymnasium ids (``CartPole-v1``, ``Pendulum-v1``, ...) train too, through SB3's own
``make_vec_env`` and ``MlpPolicy`` with SB3's defaults (or a named preset): none of the text-env
machinery above (and no ``autoreset_mode``) is applied to them.

Objective, as in the custom PPO on text: the token budget ends the task (no bootstrapping on
truncation, ``bootstrap_truncated=False``), ``gamma=1`` by default, reward on the final token.

Refused combinations (a :class:`ConfigError` naming the algorithm and env): algorithms SB3 does not
ship or that need Box actions (SAC, TD3, DDPG, ...), DQN on a vocabulary above ``max_dqn_actions``
(epsilon-greedy exploration over thousands of tokens and no mask), MaskablePPO whose float32 mask
buffer ``n_steps * n_envs * vocab * 4`` bytes would exceed ``max_mask_bytes``, and ``kl_coef > 0``
with DQN or with an env that reports no reference log-probs.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from agents.presets import get_preset
from agents.run_logger import summary_writer_class, warn_no_tensorboard
from agents.sb3.adapter import NativeVecEnv, ReferenceTopMask, make_native_vec_env
from agents.sb3.callbacks import REF_LOGPROB_KEY, EpisodeStatsCallback, KLPenaltyCallback
from agents.sb3.extractor import TokenFeaturesExtractor, init_action_head_from_lm
from rlhf_envs.errors import ConfigError

#: supported algorithm names (aliases map to these)
ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo")
_ALIASES = {"maskableppo": "maskable_ppo", "maskable-ppo": "maskable_ppo", "nlpo": "maskable_ppo"}
#: algorithms SB3 / sb3-contrib ship that cannot act in Discrete(vocab) spaces
_BOX_ONLY = {"sac", "td3", "ddpg", "tqc", "crossq"}
#: sb3-contrib algorithms that exist but are not wired up here
_NOT_WIRED = {"qrdqn", "trpo", "ars", "recurrent_ppo", "recurrentppo"}
#: above this vocabulary size an env counts as a language task (LM-initialised policy)
LANGUAGE_VOCAB = 256

#: the preset (:mod:`agents.presets`) each algorithm starts from when none is named, on toy tasks
#: (``False``) and on language tasks (``True``); ``None``: SB3's own defaults
DEFAULT_PRESETS: dict[tuple[str, bool], str | None] = {
    ("ppo", False): "sb3-toy-ppo",
    ("maskable_ppo", False): "sb3-toy-ppo",
    ("a2c", False): "sb3-toy-a2c",
    ("dqn", False): "sb3-toy-dqn",
    ("ppo", True): "sb3-lm-ppo",
    ("maskable_ppo", True): "sb3-lm-ppo",
    ("a2c", True): "sb3-lm-a2c",
    ("dqn", True): None,
}
#: :func:`train_baseline` keywords a preset may set (used when the caller leaves them at ``None``);
#: every other preset field is a constructor argument of the SB3 class
PRESET_KEYWORDS = ("n_envs", "kl_coef", "net_arch", "mask")


def sb3_value(value: Any) -> Any:
    """``"lin_<x>"`` -> SB3's linear schedule from ``x`` to 0 over training (rl-zoo's notation for
    ``learning_rate`` / ``clip_range`` in presets); any other value is returned as it is."""
    if isinstance(value, str) and value.startswith("lin_"):
        from stable_baselines3.common.utils import LinearSchedule

        return LinearSchedule(float(value[4:]), 0.0, 1.0)
    return value


def resolved_hyperparameters(cls: type[BaseAlgorithm], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every constructor argument of the SB3 class ``cls`` with the value a model built with ``kwargs``
    gets: the class's signature defaults overlaid by ``kwargs`` (the full resolved config of a run)."""
    skip = {"self", "policy", "env", "_init_setup_model", "verbose", "tensorboard_log", "device", "seed"}
    out = {
        k: p.default
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if k not in skip and p.default is not inspect.Parameter.empty
    }
    out.update(kwargs)
    return out


def canonical_algo(algo: str) -> str:
    """Normalise an algorithm name (``"sb3-ppo"``, ``"MaskablePPO"``, ...) or raise a clear error."""
    if not isinstance(algo, str):
        raise ConfigError(f"algo must be a string, got {algo!r}")
    name = algo.strip().lower()
    for prefix in ("sb3-", "sb3_", "sb3:"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    name = _ALIASES.get(name, name.replace("-", "_"))
    if name in ALGOS:
        return name
    if name in _BOX_ONLY:
        raise ConfigError(
            f"{algo!r}: {name.upper()} needs continuous (Box) actions; the rlhf envs' actions are Discrete(vocab). "
            f"Supported: {', '.join(ALGOS)}"
        )
    if name in _NOT_WIRED:
        raise ConfigError(
            f"{algo!r} is an sb3-contrib algorithm not wired into agents.sb3; supported: {', '.join(ALGOS)}"
        )
    raise ConfigError(
        f"unknown SB3 algorithm {algo!r}; supported: {', '.join(ALGOS)} (optionally prefixed 'sb3-')"
    )


def _algo_class(name: str) -> type[BaseAlgorithm]:
    if name == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    return {"ppo": PPO, "a2c": A2C, "dqn": DQN}[name]


def check_combination(
    algo: str,
    env_id: str,
    n_actions: int,
    n_envs: int,
    n_steps: int | None,
    has_mask: bool,
    max_dqn_actions: int,
    max_mask_bytes: int,
) -> None:
    """Raise :class:`ConfigError` for algorithm / env combinations that cannot work (see module doc)."""
    if algo == "dqn" and n_actions > max_dqn_actions:
        raise ConfigError(
            f"unsupported combination: DQN on {env_id} with Discrete({n_actions}) actions. DQN explores by "
            f"uniform random tokens over the whole vocabulary and cannot use an action mask; above "
            f"{max_dqn_actions} actions it does not learn in any sane budget. Use maskable_ppo (top-p mask) "
            f"or ppo, or raise max_dqn_actions if you really mean it"
        )
    if algo == "maskable_ppo":
        if not has_mask:
            raise ConfigError(
                f"unsupported combination: MaskablePPO on {env_id}: the env offers no action_masks()"
            )
        need = int(n_steps or 0) * n_envs * n_actions * 4
        if need > max_mask_bytes:
            raise ConfigError(
                f"unsupported combination: MaskablePPO on {env_id} stores float32 masks of n_steps x n_envs x "
                f"vocab = {n_steps} x {n_envs} x {n_actions}: {need / 2**30:.2f} GiB > max_mask_bytes "
                f"{max_mask_bytes / 2**30:.2f} GiB; lower n_steps or n_envs"
            )


def make_sb3_env(
    env_id: str,
    n_envs: int = 8,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    bootstrap_truncated: bool = False,
    mask: str | None = "env",
    top_p: float = 0.9,
    top_k: int | None = None,
    monitor: bool = True,
    monitor_dir: str | None = None,
) -> VecEnv:
    """The SB3 VecEnv for an rlhf env id: native vector env -> :class:`NativeVecEnv` -> ``VecMonitor``.

    ``mask``: ``"env"`` (the env's ``action_masks()``), ``"top_p"`` (NLPO: the reference model's
    top-k/top-p set, for language tasks) or ``None`` (same as ``"env"``; only MaskablePPO reads it).
    """
    venv = make_native_vec_env(env_id, n_envs, **(env_kwargs or {}))
    mask_fn = None
    if mask == "top_p":
        task = venv.task
        if not hasattr(task, "reference_lm"):
            raise ConfigError(f"mask='top_p' needs a language task with a reference model; {env_id} has none")
        mask_fn = ReferenceTopMask(
            task.reference_lm(),
            top_k=top_k,
            top_p=top_p,
            temperature=getattr(task, "ref_temperature", 1.0),
            always_allow=[task.tokenizer.eos_id],
        )
    elif mask not in (None, "env"):
        raise ConfigError(f"mask must be 'env', 'top_p' or None, got {mask!r}")
    env: VecEnv = NativeVecEnv(venv, bootstrap_truncated=bootstrap_truncated, mask_fn=mask_fn)
    if seed is not None:
        env.seed(seed)
    if monitor:
        keys = _episode_end_keys(venv, ("reward_task", "success"), seed)
        filename = None
        if monitor_dir is not None:
            os.makedirs(monitor_dir, exist_ok=True)
            filename = os.path.join(monitor_dir, "monitor")
        env = VecMonitor(env, filename=filename, info_keywords=keys)
    return env


def is_rlhf_id(env_id: str) -> bool:
    """Whether ``env_id`` is one of this suite's text envs (natively batched, token observations)."""
    import rlhf_envs  # noqa: F401

    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"unknown env id {env_id!r}: {exc}") from None
    entry = spec.vector_entry_point
    return isinstance(entry, str) and entry.startswith("rlhf_envs.")


def make_gym_vec_env(
    env_id: str,
    n_envs: int = 8,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    monitor_dir: str | None = None,
) -> VecEnv:
    """SB3's ``make_vec_env`` for an ordinary Gymnasium id (``CartPole-v1``, ...): one ``Monitor``-ed
    env per sub-env in a ``DummyVecEnv``; no ``autoreset_mode`` or other rlhf-only arguments."""
    from stable_baselines3.common.env_util import make_vec_env

    kwargs = {"render_mode": None, **(env_kwargs or {})}
    if monitor_dir is not None:
        os.makedirs(monitor_dir, exist_ok=True)
    return make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=kwargs, monitor_dir=monitor_dir)


def _episode_end_keys(venv: Any, wanted: tuple[str, ...], seed: int | None) -> tuple[str, ...]:
    """Which of ``wanted`` the env reports when an episode ends (for ``VecMonitor``'s info_keywords).

    Probes with one step of EOS in every sub-env (each episode ends at once); the caller's first
    ``reset`` starts the real episodes afterwards, so training is unaffected.
    """
    venv.reset(seed=seed)
    _, _, _, _, infos = venv.step(np.full(venv.num_envs, venv.eos_id, dtype=np.int64))
    final = infos.get("final_info", {})
    return tuple(k for k in wanted if k in final)


def _reports_ref_logprob(env: VecEnv) -> bool:
    venv = env.unwrapped.venv if hasattr(env.unwrapped, "venv") else None
    task = getattr(venv, "task", None)
    if task is not None and getattr(task, "ref_logprobs", False):
        return True
    terms = getattr(venv, "shaping", [])
    return any(hasattr(t, "step_info") for t in terms)


def train_baseline(
    algo: str,
    env_id: str,
    total_timesteps: int,
    seed: int = 0,
    *,
    preset: str | None = None,
    n_envs: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    extractor_kwargs: dict[str, Any] | None = None,
    net_arch: Any = None,
    kl_coef: float | None = None,
    adaptive_kl: bool = False,
    kl_target: float = 6.0,
    mask: str | None = None,
    top_p: float = 0.9,
    top_k: int | None = None,
    bootstrap_truncated: bool = False,
    tensorboard_log: str | None = None,
    monitor_dir: str | None = None,
    progress_bar: bool = False,
    save_path: str | None = None,
    callback: BaseCallback | list[BaseCallback] | None = None,
    max_dqn_actions: int = LANGUAGE_VOCAB,
    max_mask_bytes: int = 2**30,
    device: str = "cpu",
    verbose: int = 0,
    **algo_kwargs: Any,
) -> BaseAlgorithm:
    """Train a stock SB3 / sb3-contrib algorithm on an rlhf env id and return the model.

    Args:
        algo: ``"ppo"``, ``"a2c"``, ``"dqn"`` or ``"maskable_ppo"`` (``"sb3-"`` prefix allowed).
        env_id: a registered id, e.g. ``"RLHF/Copy-v0"``.
        total_timesteps: env steps (= generated tokens) to train for.
        seed: seeds the algorithm (``set_random_seed``) and the envs (sub-env i gets ``seed + i``).
        preset: a preset of :mod:`agents.presets` for this algorithm (default: ``DEFAULT_PRESETS``,
            by algorithm and by toy or language task). Its fields named in ``PRESET_KEYWORDS`` fill
            those keywords when they are ``None``; the rest are constructor arguments of the SB3
            class, which ``**algo_kwargs`` override.
        n_envs: sub-envs of the native vector env (default: the preset's, else 8).
        env_kwargs: ``gym.make_vec`` keyword arguments (task parameters, ``kl_coef`` of the env, ...).
        extractor_kwargs: :class:`TokenFeaturesExtractor` arguments (default: a 2-layer 64-wide
            transformer on toy tasks, ``encoder="lm"`` on language tasks).
        net_arch: SB3 ``net_arch`` (default ``dict(pi=[64], vf=[64])``; ``dict(pi=[], vf=[64])`` with
            the LM encoder so the head is the LM's; ``[64]`` for DQN).
        kl_coef: per-token KL penalty to the reference (default 0.05 when the env reports
            ``info["ref_logprob"]``, else 0). ``adaptive_kl`` / ``kl_target``: Ziegler's controller.
        mask: MaskablePPO's masks: ``"env"`` (toy default) or ``"top_p"`` (language default; NLPO).
        top_p, top_k: for ``mask="top_p"``.
        bootstrap_truncated: bootstrap the value at the token budget (SB3's time-limit convention);
            ``False`` (default) treats it as the end of the task, like the custom PPO.
        tensorboard_log, progress_bar, verbose, device: passed to SB3 as usual.
        monitor_dir: write ``VecMonitor`` CSV there.
        save_path: ``model.save(save_path)`` after training.
        callback: extra SB3 callbacks.
        max_dqn_actions, max_mask_bytes: limits of the refused combinations (see the module doc).
        **algo_kwargs: any other constructor argument of the SB3 class (``learning_rate``,
            ``n_steps``, ``batch_size``, ...); they override the preset. ``"lin_<x>"`` values are
            linear schedules (:func:`sb3_value`).

    Returns:
        The trained model. ``model.episode_stats`` holds ``(timesteps, {"reward_task": mean,
        "success": mean})`` per rollout, ``model.train_seconds`` the wall time of ``learn`` and
        ``model.train_config`` the preset's name and the full resolved settings (this function's
        keywords and every constructor argument of the SB3 class).
    """
    name = canonical_algo(algo)
    if (
        isinstance(total_timesteps, bool)
        or not isinstance(total_timesteps, int | np.integer)
        or total_timesteps < 1
    ):
        raise ConfigError(f"total_timesteps must be a positive int, got {total_timesteps!r}")
    import rlhf_envs  # noqa: F401

    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"unknown env id {env_id!r}: {exc}") from None
    rlhf = is_rlhf_id(env_id)
    env_kwargs = dict(env_kwargs or {})
    if rlhf:
        probe = make_native_vec_env(env_id, 1, **env_kwargs)
        n_actions = int(probe.single_action_space.n)
        has_mask = hasattr(probe, "action_masks")
        obs_space = probe.single_observation_space
        probe.close()
        language = n_actions > LANGUAGE_VOCAB
        if preset is None:
            preset = DEFAULT_PRESETS[(name, language)]
    else:  # an ordinary Gymnasium id: SB3's own env helpers, SB3's defaults unless a preset is named
        probe = gym.make(spec.id, **env_kwargs)
        space, obs_space = probe.action_space, probe.observation_space
        probe.close()
        n_actions = int(space.n) if isinstance(space, gym.spaces.Discrete) else 0
        has_mask, language = False, False
    values = get_preset(preset, f"sb3-{name}") if preset is not None else {}
    if n_envs is None:
        n_envs = values.get("n_envs", 8)
    if kl_coef is None:
        kl_coef = values.get("kl_coef")
    if net_arch is None:
        net_arch = values.get("net_arch")
    if mask is None:
        mask = values.get("mask")
    for key in PRESET_KEYWORDS:
        values.pop(key, None)
    values.update(algo_kwargs)
    algo_kwargs = {k: sb3_value(v) for k, v in values.items()}
    if progress_bar:
        try:
            import rich  # noqa: F401
            import tqdm  # noqa: F401
        except ImportError:
            raise ConfigError(
                "progress_bar=True needs tqdm and rich (SB3's progress bar): pip install 'rlhf_envs[baselines]'"
            ) from None
    if mask is None:
        mask = "top_p" if language and name == "maskable_ppo" else "env"
    check_combination(
        name,
        env_id,
        n_actions,
        n_envs,
        algo_kwargs.get("n_steps", 2048),
        has_mask,
        max_dqn_actions,
        max_mask_bytes,
    )

    if tensorboard_log is not None and summary_writer_class() is None:
        warn_no_tensorboard(tensorboard_log)
        tensorboard_log = None
    if rlhf:
        env = make_sb3_env(
            env_id,
            n_envs,
            seed,
            env_kwargs,
            bootstrap_truncated,
            mask if name == "maskable_ppo" else "env",
            top_p,
            top_k,
            monitor=True,
            monitor_dir=monitor_dir,
        )
    else:
        env = make_gym_vec_env(env_id, n_envs, seed, env_kwargs, monitor_dir)
    has_ref = rlhf and _reports_ref_logprob(env)
    if kl_coef is None:
        kl_coef = 0.05 if (has_ref and name != "dqn") else 0.0
    if kl_coef > 0 and name == "dqn":
        env.close()
        raise ConfigError(
            "unsupported combination: kl_coef > 0 with DQN; DQN has no policy log-probs to form the per-token KL "
            "to the reference (use ppo, a2c or maskable_ppo)"
        )
    if kl_coef > 0 and not has_ref:
        env.close()
        raise ConfigError(
            f"kl_coef={kl_coef} but {env_id} reports no info[{REF_LOGPROB_KEY!r}] (no reference model); "
            "set kl_coef=0 or use a language task"
        )

    venv = getattr(env.unwrapped, "venv", None)
    env_kl = float(getattr(getattr(venv, "task", None), "kl_coef", 0.0) or 0.0)
    if kl_coef > 0 and env_kl > 0:
        env.close()
        raise ConfigError(
            f"the env already pays kl_coef={env_kl} * ref_logprob per token and kl_coef={kl_coef} adds the "
            "callback's full KL penalty: the reference term would count twice; set one of them to 0"
        )

    ext = dict(extractor_kwargs or {})
    lm_encoder = ext.get("encoder", "lm" if language else "transformer") == "lm"
    if language:
        ext.setdefault("encoder", "lm")
    policy_kwargs: dict[str, Any] = {}
    if rlhf:
        if net_arch is None:
            if name == "dqn":
                net_arch = [64]
            else:
                net_arch = dict(pi=[], vf=[64]) if lm_encoder else dict(pi=[64], vf=[64])
        policy_kwargs = dict(
            features_extractor_class=TokenFeaturesExtractor, features_extractor_kwargs=ext, net_arch=net_arch
        )
        if name != "dqn":
            policy_kwargs["share_features_extractor"] = True
            if lm_encoder:
                policy_kwargs["ortho_init"] = False  # keep the LM's weights
    elif net_arch is not None:  # SB3's own policy defaults otherwise
        policy_kwargs["net_arch"] = net_arch
    policy_kwargs.update(algo_kwargs.pop("policy_kwargs", {}))
    cls = _algo_class(name)
    policy = "MultiInputPolicy" if isinstance(obs_space, gym.spaces.Dict) else "MlpPolicy"
    try:
        model = cls(
            policy,
            env,
            seed=seed,
            device=device,
            verbose=verbose,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            **algo_kwargs,
        )
    except (TypeError, ValueError, AssertionError) as exc:  # SB3 checks arguments with assert
        env.close()
        raise ConfigError(f"bad argument for {cls.__name__} on {env_id}: {exc}") from None
    if rlhf and lm_encoder and name != "dqn" and isinstance(net_arch, dict) and not net_arch.get("pi"):
        init_action_head_from_lm(model)
    train_config: dict[str, Any] = {
        "preset": preset,
        "algo": name,
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "n_envs": n_envs,
        "kl_coef": kl_coef,
        "adaptive_kl": adaptive_kl,
        "kl_target": kl_target,
        "mask": mask if name == "maskable_ppo" else None,
        "top_p": top_p,
        "top_k": top_k,
        "bootstrap_truncated": bootstrap_truncated,
        **resolved_hyperparameters(cls, {**algo_kwargs, "policy_kwargs": policy_kwargs}),
    }

    stats = EpisodeStatsCallback()
    cbs: list[BaseCallback] = [stats]
    if kl_coef > 0:
        cbs.append(KLPenaltyCallback(kl_coef, adaptive=adaptive_kl, target=kl_target))
    if callback is not None:
        cbs.extend(callback if isinstance(callback, list) else [callback])
    t0 = time.perf_counter()
    model.learn(
        total_timesteps=int(total_timesteps),
        callback=CallbackList(cbs),
        progress_bar=progress_bar,
        tb_log_name=f"{name}_{env_id.split('/')[-1]}_s{seed}",
    )
    model.train_seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
    model.episode_stats = stats.history  # type: ignore[attr-defined]
    model.train_config = train_config  # type: ignore[attr-defined]
    if save_path is not None:
        model.save(save_path)
    return model


def evaluate_baseline(
    model: BaseAlgorithm,
    env_id: str,
    n_episodes: int = 200,
    seed: int = 10_000,
    deterministic: bool = True,
    n_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
    mask: str | None = None,
    top_p: float = 0.9,
    top_k: int | None = None,
) -> dict[str, float]:
    """Evaluate with SB3's ``evaluate_policy`` (sb3-contrib's masked one for MaskablePPO).

    Returns ``mean_reward``/``std_reward`` (total episode reward from ``VecMonitor``),
    ``mean_task_reward`` (the feedback model's score alone), ``success_rate`` (exact match, when the
    env reports ``success``) and ``n_episodes``. Envs are seeded with ``seed`` so evaluation prompts
    differ from training's (which start at the training seed).
    """
    masked = type(model).__name__ == "MaskablePPO"
    if not is_rlhf_id(env_id):
        env = make_gym_vec_env(env_id, min(n_envs, n_episodes), seed, env_kwargs)
    else:
        if mask is None:
            language = int(model.action_space.n) > LANGUAGE_VOCAB
            mask = "top_p" if (masked and language) else "env"
        env = make_sb3_env(env_id, min(n_envs, n_episodes), seed, env_kwargs, False, mask, top_p, top_k)
    task_rewards: list[float] = []
    successes: list[float] = []

    def on_step(local: dict[str, Any], _globals: dict[str, Any]) -> None:
        if local["done"]:
            info = local["info"]
            if "reward_task" in info:
                task_rewards.append(float(info["reward_task"]))
            if "success" in info:
                successes.append(float(info["success"]))

    if masked:
        from sb3_contrib.common.maskable.evaluation import evaluate_policy as masked_eval

        rewards, _ = masked_eval(
            model,
            env,
            n_eval_episodes=n_episodes,
            deterministic=deterministic,
            callback=on_step,
            return_episode_rewards=True,
            use_masking=True,
        )
    else:
        from stable_baselines3.common.evaluation import evaluate_policy

        rewards, _ = evaluate_policy(
            model,
            env,
            n_eval_episodes=n_episodes,
            deterministic=deterministic,
            callback=on_step,
            return_episode_rewards=True,
        )
    env.close()
    out = {
        "mean_reward": float(np.mean(rewards)),
        "std_reward": float(np.std(rewards)),
        "mean_task_reward": float(np.mean(task_rewards)) if task_rewards else math.nan,
        "success_rate": float(np.mean(successes)) if successes else math.nan,
        "n_episodes": len(rewards),
    }
    return out


def load_baseline(path: str, algo: str, env_id: str | None = None, **env_options: Any) -> BaseAlgorithm:
    """``<Algo>.load(path)`` for a model saved by :func:`train_baseline` (optionally with an env attached)."""
    cls = _algo_class(canonical_algo(algo))
    env = make_sb3_env(env_id, **env_options) if env_id is not None else None
    return cls.load(path, env=env, device="cpu")


def random_baseline(
    env_id: str, n_episodes: int = 1000, seed: int = 10_000, masked: bool = False
) -> dict[str, float]:
    """Mean task reward and success rate of a uniformly random policy (over all tokens, or the mask)."""
    env = make_native_vec_env(env_id, 16)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    rewards: list[float] = []
    succ: list[float] = []
    while len(rewards) < n_episodes:
        if masked:
            m = env.action_masks()
            actions = np.array([rng.choice(np.flatnonzero(row)) for row in m])
        else:
            actions = rng.integers(env.single_action_space.n, size=env.num_envs)
        _, _, term, trunc, infos = env.step(actions)
        done = np.flatnonzero(np.asarray(term) | np.asarray(trunc))
        fi = infos.get("final_info", {})
        for i in done:
            rewards.append(float(fi["reward_task"][i]))
            if "success" in fi:
                succ.append(float(fi["success"][i]))
    env.close()
    return {
        "mean_task_reward": float(np.mean(rewards[:n_episodes])),
        "success_rate": float(np.mean(succ[:n_episodes])) if succ else math.nan,
        "n_episodes": n_episodes,
    }
