"""SB3 PPO against the custom PPO on ``RLHF/Sentiment-v0``: learning curves and tokens per second.

Both agents start from the embedded language model, use the same batch (16 episodes or 16 x 24
tokens per update, 4 epochs x 4 minibatches), the same optimiser settings (lr 1e-5, gamma 1,
lambda 0.95, vf_coef 0.1, no entropy bonus, gradient clip 1.0) and the same fixed per-token KL
penalty to the frozen reference (beta 0.05, k1; SB3's through :class:`agents.sb3.KLPenaltyCallback`
with its own rollout log-probs). They run one after the other in one process on one torch thread.

Tokens per second = generated tokens / wall time of ``learn`` (rollouts and updates). SB3's
policy re-encodes the whole prefix at every step and evaluates every token as a separate
sequence at update time; the custom PPO samples with a KV cache and scores whole episodes in one
pass, which is where the difference comes from.

Writes ``benchmarks/results/sb3_sentiment_curve.csv`` (one row per update), ``sb3_sentiment.png``
and ``sb3_speed.json``. Run from the repository root::

    python -m benchmarks.sb3_sentiment --sb3-tokens 4608 --custom-tokens 18432 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

RESULTS = os.path.join(os.path.dirname(__file__), "results")
ENV = "RLHF/Sentiment-v0"
N_ENVS, TOKENS = 16, 24


class _Curve(BaseCallback):
    """Rows of (tokens, seconds since start, mean task reward of the episodes ended in the rollout)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []
        self._acc: list[float] = []
        self._t0 = time.perf_counter()
        self._pending: dict[str, float] | None = None

    def _flush(self) -> None:
        if self._pending is not None:
            self._pending["seconds"] = time.perf_counter() - self._t0  # after the update
            self.rows.append(self._pending)
            self._pending = None

    def _on_rollout_start(self) -> None:
        self._flush()
        self._acc = []

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
            if done:
                self._acc.append(float(info["reward_task"]))
        return True

    def _on_rollout_end(self) -> None:
        self._pending = {
            "tokens": float(self.num_timesteps),
            "reward_task": float(np.mean(self._acc)) if self._acc else float("nan"),
        }

    def _on_training_end(self) -> None:
        self._flush()


def run_sb3(tokens: int, seed: int) -> tuple[list[dict[str, float]], float, int]:
    """SB3 PPO; returns the curve, the wall time of learn and the tokens generated."""
    from agents.sb3 import train_baseline

    curve = _Curve()
    model = train_baseline(
        "ppo",
        ENV,
        tokens,
        seed,
        n_envs=N_ENVS,
        n_steps=TOKENS,
        batch_size=N_ENVS * TOKENS // 4,
        n_epochs=4,
        kl_coef=0.05,
        callback=[curve],
    )
    model.get_env().close()
    return curve.rows, model.train_seconds, int(model.num_timesteps)


def run_custom(tokens: int, seed: int) -> tuple[list[dict[str, float]], float, int]:
    """The custom PPO (agents.PPO, policy="lm"); same return values as :func:`run_sb3`."""
    from agents import PPO
    from rlhf_envs.lm.loading import resolve_model_path

    agent = PPO(
        ENV,
        seed=seed,
        policy="lm",
        model=resolve_model_path(None),
        n_envs=N_ENVS,
        n_minibatches=4,
        n_epochs=4,
        kl_coef=0.05,
    )
    rows: list[dict[str, float]] = []
    t0 = time.perf_counter()

    def cb(ag: object, m: dict[str, float]) -> None:
        rows.append(
            {
                "tokens": float(ag.num_timesteps),
                "seconds": time.perf_counter() - t0,
                "reward_task": float(m["reward_task"]),
            }
        )

    agent.learn(tokens, callback=cb, progress_bar=False)
    seconds = time.perf_counter() - t0
    agent.close()
    return rows, seconds, int(agent.num_timesteps)


def main(argv: list[str] | None = None) -> None:
    """Run both agents, write the CSV, the plot and the speed JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sb3-tokens", type=int, default=4608)
    p.add_argument("--custom-tokens", type=int, default=18432)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot-only", action="store_true", help="redraw the PNG from the existing CSV")
    args = p.parse_args(argv)
    if args.plot_only:
        plot(args.seed)
        return
    torch.set_num_threads(1)
    os.makedirs(RESULTS, exist_ok=True)
    load0 = os.getloadavg()[0]
    custom_rows, custom_s, custom_tok = run_custom(args.custom_tokens, args.seed)
    sb3_rows, sb3_s, sb3_tok = run_sb3(args.sb3_tokens, args.seed)
    load1 = os.getloadavg()[0]
    with open(os.path.join(RESULTS, "sb3_sentiment_curve.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["agent", "seed", "tokens", "seconds", "reward_task"])
        w.writeheader()
        for agent, rows in (("custom-ppo", custom_rows), ("sb3-ppo", sb3_rows)):
            for r in rows:
                w.writerow({"agent": agent, "seed": args.seed, **{k: round(v, 4) for k, v in r.items()}})
    # the speed over the same number of tokens: the custom run's first sb3_tok tokens
    upto = [r for r in custom_rows if r["tokens"] <= sb3_tok + N_ENVS * TOKENS]
    cut = upto[-1] if upto else custom_rows[-1]
    speed = {
        "env": ENV,
        "seed": args.seed,
        "batch": f"{N_ENVS} envs x {TOKENS} tokens, 4 epochs x 4 minibatches",
        "model": "embedded default GPT-2 (rlhf_envs/assets/default_lm)",
        "torch_threads": 1,
        "custom_ppo_tokens": custom_tok,
        "custom_ppo_seconds": round(custom_s, 2),
        "custom_ppo_tokens_per_s": round(custom_tok / custom_s, 2),
        "custom_ppo_tokens_per_s_first_same_tokens": round(cut["tokens"] / cut["seconds"], 2),
        "sb3_ppo_tokens": sb3_tok,
        "sb3_ppo_seconds": round(sb3_s, 2),
        "sb3_ppo_tokens_per_s": round(sb3_tok / sb3_s, 2),
        "ratio_custom_over_sb3": round((cut["tokens"] / cut["seconds"]) / (sb3_tok / sb3_s), 2),
        "load_average_before_after": [round(load0, 2), round(load1, 2)],
    }
    with open(os.path.join(RESULTS, "sb3_speed.json"), "w") as f:
        json.dump(speed, f, indent=2)
    print(json.dumps(speed, indent=2))

    plot(args.seed)


def plot(seed: int) -> None:
    """Draw ``sb3_sentiment.png`` from ``sb3_sentiment_curve.csv`` (task reward vs tokens and vs seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[dict[str, float]]] = {}
    with open(os.path.join(RESULTS, "sb3_sentiment_curve.csv"), newline="") as f:
        for r in csv.DictReader(f):
            curves.setdefault(r["agent"], []).append(
                {k: float(r[k]) for k in ("tokens", "seconds", "reward_task")}
            )
    labels = {"custom-ppo": ("custom PPO", "-o"), "sb3-ppo": ("SB3 PPO + KLPenaltyCallback", "-s")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for agent, rows in curves.items():
        label, style = labels.get(agent, (agent, "-"))
        y = [r["reward_task"] for r in rows]
        axes[0].plot([r["tokens"] for r in rows], y, style, ms=3, label=label)
        axes[1].plot([r["seconds"] for r in rows], y, style, ms=3, label=label)
    axes[0].set_xlabel("generated tokens")
    axes[1].set_xlabel("wall-clock seconds (1 torch thread, shared 2-core CPU)")
    axes[0].set_ylabel("mean task reward (VADER) per update")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"{ENV}, seed {seed}: same embedded model, batch 16x24 tokens, KL beta 0.05")
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "sb3_sentiment.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
