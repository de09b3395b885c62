"""One training run of one algorithm on one env: train from a preset, record the curve, evaluate.

:func:`run_custom` trains the custom agents (``agents.PPO`` / ``REINFORCE`` / ``A2C``),
:func:`run_sb3` Stable-Baselines3 (through :func:`agents.sb3.train_baseline` on the rlhf token envs,
as a plain ``MlpPolicy`` model on ordinary Gymnasium envs). Both return a :class:`RunResult` with the
preset's name and the full resolved config. ``benchmarks/cartpole.py`` uses them too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.presets import get_preset
from benchmarks.common import Timer, eval_seed
from benchmarks.compare.suites import EnvSpec, preset_for

#: curve records per run (the custom agents record at most once per rollout)
RECORDS = 50
CUSTOM_CLASSES = {"ppo": "PPO", "reinforce": "REINFORCE", "a2c": "A2C"}


class NotApplicable(Exception):
    """This algorithm cannot run on this env (e.g. MaskablePPO on an env without action masks)."""


def _needs_masks(env_id: str) -> NotApplicable:
    return NotApplicable(f"MaskablePPO needs action masks; {env_id} offers none")


@dataclass
class RunResult:
    """What one (algo, env, seed) run produced."""

    curve: list[tuple[int, float]]
    timesteps: int
    train_seconds: float
    final_score: float
    score_std: float
    success_rate: float
    preset: str
    #: the preset's fields and what the run added (``env_kwargs``): the CSVs' readable settings
    settings: dict[str, Any]
    #: every setting the run used (the agent's config, or SB3's constructor arguments)
    config: dict[str, Any]


class CurveRecorder:
    """Collects ``(timesteps, mean return of the last 100 training episodes)`` every ``every`` steps."""

    def __init__(self, every: int) -> None:
        self.every = max(1, int(every))
        self.next = self.every
        self.points: list[tuple[int, float]] = []

    def offer(self, timesteps: int, value: float | None) -> None:
        """Record ``value`` if ``timesteps`` passed the next mark and a value exists yet."""
        if timesteps >= self.next and value is not None and math.isfinite(value):
            self.points.append((int(timesteps), float(value)))
            self.next = (timesteps // self.every + 1) * self.every


def run_custom(
    algo: str,
    env_id: str,
    seed: int,
    timesteps: int,
    eval_episodes: int,
    preset: str,
    env_kwargs: dict[str, Any] | None = None,
    every: int | None = None,
) -> RunResult:
    """Train the custom agent ``algo`` from ``preset``; evaluate greedily on evaluation seeds."""
    import agents

    cls = getattr(agents, CUSTOM_CLASSES[algo])
    extra: dict[str, Any] = {"env_kwargs": dict(env_kwargs)} if env_kwargs else {}
    agent = cls(env_id, seed=seed, preset=preset, tensorboard=False, **extra)
    rec = CurveRecorder(every or max(1, timesteps // RECORDS))

    def callback(a: Any, metrics: dict[str, float]) -> bool:
        rec.offer(a.num_timesteps, metrics.get("mean_return"))
        return True

    with Timer() as clock:
        agent.learn(timesteps, callback=callback, progress_bar=False)
    ev = agent.evaluate(eval_episodes, deterministic=True, seed=eval_seed(seed))
    agent.close()
    return RunResult(
        rec.points,
        agent.num_timesteps,
        clock.seconds,
        ev["mean_return"],
        ev["std_return"],
        ev.get("success_rate", math.nan),
        preset,
        {**get_preset(preset), **extra},
        agent.config.to_json_dict(),
    )


def _sb3_recorder(rec: CurveRecorder) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class _Record(BaseCallback):
        """Offers SB3's ``ep_info_buffer`` mean (the last 100 episodes' return) to the recorder."""

        def _on_step(self) -> bool:
            buf = self.model.ep_info_buffer
            if buf is not None and len(buf) and self.num_timesteps >= rec.next:
                rec.offer(self.num_timesteps, float(np.mean([ep["r"] for ep in buf])))
            return True

    return _Record()


def run_sb3(
    algo: str,
    env_id: str,
    seed: int,
    timesteps: int,
    eval_episodes: int,
    preset: str,
    env_kwargs: dict[str, Any] | None = None,
    every: int | None = None,
) -> RunResult:
    """Train ``sb3-<name>`` from ``preset``: through ``train_baseline`` on the rlhf token envs, as a
    plain ``MlpPolicy`` model elsewhere; evaluate deterministically on evaluation seeds."""
    name = algo.removeprefix("sb3-")
    env_kwargs = dict(env_kwargs or {})
    rec = CurveRecorder(every or max(1, timesteps // RECORDS))
    if env_id.startswith("RLHF/"):
        from agents.sb3 import evaluate_baseline, train_baseline

        model = train_baseline(
            name, env_id, timesteps, seed, preset=preset, env_kwargs=env_kwargs, callback=_sb3_recorder(rec)
        )
        train_s = float(model.train_seconds)
        ev = evaluate_baseline(model, env_id, eval_episodes, seed=eval_seed(seed), env_kwargs=env_kwargs)
        score, std, success = ev["mean_reward"], ev["std_reward"], ev["success_rate"]
        config = model.train_config
    else:
        if name == "maskable_ppo":
            raise _needs_masks(env_id)
        from stable_baselines3 import A2C, DQN, PPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.evaluation import evaluate_policy

        from agents.sb3.train import resolved_hyperparameters, sb3_value

        settings = get_preset(preset, algo)
        n_envs = settings.pop("n_envs")
        kwargs = {k: sb3_value(v) for k, v in settings.items()}
        env = make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
        cls = {"ppo": PPO, "a2c": A2C, "dqn": DQN}[name]
        model = cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
        with Timer() as clock:
            model.learn(timesteps, callback=_sb3_recorder(rec))
        train_s = clock.seconds
        eval_env = make_vec_env(env_id, n_envs=1, seed=eval_seed(seed), env_kwargs=env_kwargs)
        rets, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=eval_episodes, deterministic=True, return_episode_rewards=True
        )
        score, std, success = float(np.mean(rets)), float(np.std(rets)), math.nan
        eval_env.close()
        config = {
            "preset": preset,
            "algo": name,
            "env_id": env_id,
            "env_kwargs": env_kwargs,
            "n_envs": n_envs,
        }
        config.update(resolved_hyperparameters(cls, kwargs))
    model.get_env().close()
    settings_row = get_preset(preset)
    if env_kwargs:
        settings_row["env_kwargs"] = env_kwargs
    return RunResult(
        rec.points, int(model.num_timesteps), train_s, score, std, success, preset, settings_row, config
    )


def run_one(algo: str, spec: EnvSpec, seed: int) -> RunResult:
    """Train and evaluate ``algo`` on ``spec`` with ``seed`` (raises :class:`NotApplicable`)."""
    preset = preset_for(algo, spec)
    if preset is None:
        if algo == "sb3-maskable_ppo":
            raise _needs_masks(spec.env_id)
        raise NotApplicable(f"no preset for {algo} on {spec.env_id}")
    run = run_sb3 if algo.startswith("sb3-") else run_custom
    return run(algo, spec.env_id, seed, spec.timesteps, spec.eval_episodes, preset, spec.env_kwargs)
