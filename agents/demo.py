"""The demo: PPO steers the embedded language model towards positive sentiment (RLHF/Sentiment-v0).

``run()`` trains the custom PPO with a language-model policy (the embedded GPT-2-style default
model, a value head, a frozen reference copy and a per-token KL penalty) for a few minutes on a
laptop CPU, and shows what changed: the same prompts completed before and after training, the mean
task reward and KL to the reference on fresh episodes, and a learning-curve PNG.

    python -c "import agents.demo; agents.demo.run()"
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from agents.envs import make_vector_env
from agents.ppo import PPO

ENV_ID = "RLHF/Sentiment-v0"


def sample_texts(agent: PPO, n: int, seed: int) -> list[tuple[str, str, float]]:
    """``n`` sampled completions ``(prompt, completion, task reward)`` on prompts drawn with ``seed``."""
    env = make_vector_env(agent.env_id, n, agent.config.env_kwargs)
    tok = env.task.tokenizer
    gen = torch.Generator(device=agent.config.device).manual_seed(seed)
    obs, actions, _, rewards, mask, _ = agent.collector.rollout(env, seed, gen)
    n_prompt = obs["input_ids"].shape[1] - actions.shape[1]
    out = []
    for i in range(n):
        p_ids = obs["input_ids"][i, :n_prompt][obs["attention_mask"][i, :n_prompt].bool()].tolist()
        c_ids = actions[i][mask[i]].tolist()
        out.append((tok.decode(p_ids), tok.decode(c_ids), float(rewards[i].sum())))
    env.close()
    return out


def _plot(history: list[dict[str, float]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["timesteps"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(steps, [h["reward_task"] for h in history], marker="o", ms=3)
    ax[0].set(xlabel="generated tokens", ylabel="mean task reward (VADER)", title="reward")
    ax[1].plot(steps, [h["kl_ref"] for h in history], marker="o", ms=3, label="k1")
    ax[1].plot(steps, [h["kl_ref_k3"] for h in history], marker="o", ms=3, label="k3")
    ax[1].set(
        xlabel="generated tokens", ylabel="KL(policy || reference) per episode", title="KL to the reference"
    )
    ax[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: the demo's hyperparameters (agents/presets.py)
PRESET = "lm-sentiment-demo"


def run(
    seed: int = 0,
    timesteps: int = 20_000,
    out_dir: str = "runs/demo",
    n_samples: int = 4,
    progress_bar: bool = True,
    preset: str = PRESET,
    **config: Any,
) -> dict[str, Any]:
    """Train PPO on ``RLHF/Sentiment-v0`` and report before/after; returns the figures it printed.

    ``timesteps`` counts generated tokens (about 1,400 per 64-episode batch). The settings are the
    ``preset`` (``"lm-sentiment-demo"`` of :mod:`agents.presets`); ``**config`` overrides any :class:`~agents.config.PPOConfig` field of it
    (``model=``, ``n_envs=``, ``learning_rate=``, ...). The defaults take a few minutes on two CPU
    cores. Outputs in ``out_dir``: ``learning_curve.png``, ``progress.csv`` and TensorBoard events,
    and the final checkpoint ``checkpoint/`` (its ``config.json`` records the preset and every field).
    """
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    agent = PPO(ENV_ID, seed=seed, preset=preset, log_dir=out_dir, **config)
    cfg = agent.config
    n_envs = cfg.n_envs
    print(
        f"PPO on {ENV_ID} (preset {cfg.preset}): model {cfg.model}, {n_envs} episodes per batch, "
        f"lr {cfg.learning_rate}, KL coef {cfg.kl_coef}, seed {seed}"
    )
    before = sample_texts(agent, n_samples, seed=12_345)
    eval_before = agent.evaluate(n_envs, deterministic=False, seed=999)
    history: list[dict[str, float]] = []

    def record(a: PPO, m: dict[str, float]) -> None:
        history.append(
            {
                "timesteps": a.num_timesteps,
                **{k: m[k] for k in ("reward_task", "kl_ref", "kl_ref_k3") if k in m},
            }
        )

    agent.learn(timesteps, callback=record, progress_bar=progress_bar)
    after = sample_texts(agent, n_samples, seed=12_345)
    eval_after = agent.evaluate(n_envs, deterministic=False, seed=999)
    curve = os.path.join(out_dir, "learning_curve.png")
    _plot(history, curve, f"PPO on {ENV_ID} (seed {seed})")
    agent.save(os.path.join(out_dir, "checkpoint"))

    print("\nsamples before training -> after training (same prompts, reward in brackets):")
    for (p, c0, r0), (_, c1, r1) in zip(before, after, strict=True):
        print(f"  prompt: {p!r}\n    before [{r0:+.2f}]: {c0!r}\n    after  [{r1:+.2f}]: {c1!r}")
    kl_after = history[-1]["kl_ref"] if history else float("nan")
    print(
        f"\nmean task reward on {n_envs} fresh episodes: {eval_before['reward_task']:+.3f} -> "
        f"{eval_after['reward_task']:+.3f}; KL to the reference at the end {kl_after:.2f} nats/episode"
    )
    print(f"learning curve: {curve}   ({time.perf_counter() - t0:.0f} s)")
    return {
        "reward_before": eval_before["reward_task"],
        "reward_after": eval_after["reward_task"],
        "kl_final": kl_after,
        "history": history,
        "samples_before": before,
        "samples_after": after,
        "curve": curve,
        "seconds": time.perf_counter() - t0,
        "final_rewards": np.array([h["reward_task"] for h in history[-3:]]).mean()
        if history
        else float("nan"),
    }
