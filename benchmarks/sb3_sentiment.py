"""SB3 PPO against the custom PPO on ``RLHF/Sentiment-v0``: learning curves and tokens per second.

Both agents start from the embedded language model, use the same batch (16 episodes or 16 x 24
tokens per update, 4 epochs x 4 minibatches), the same optimiser settings (lr 1e-5, gamma 1,
lambda 0.95, vf_coef 0.1, no entropy bonus, gradient clip 1.0) and the same fixed per-token KL
penalty to the frozen reference (beta 0.05, k1; SB3's through :class:`agents.sb3.KLPenaltyCallback`
with its own rollout log-probs): the presets ``"lm-sb3-sentiment"`` (custom) and
``"sb3-lm-sentiment"`` (SB3) of :mod:`agents.presets`. They run one after the other in one process
on one torch thread.

Tokens per second = generated tokens / wall time of ``learn`` (rollouts and updates). SB3's
policy re-encodes the whole prefix at every step and evaluates every token as a separate
sequence at update time; the custom PPO samples with a KV cache and scores whole episodes in one
pass, which is where the difference comes from.

Writes ``benchmarks/results/sb3_sentiment_curve.csv`` (one row per update), ``sb3_sentiment.png``
and ``sb3_speed.json`` (with both presets and full resolved configs). Run from the repository root::

    python -m benchmarks.sb3_sentiment --sb3-tokens 4608 --custom-tokens 18432 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from typing import Any

import numpy as np

from agents.presets import get_preset
from benchmarks.common import (
    RESULTS,
    Timer,
    init_torch,
    load_average,
    pyplot,
    save_figure,
    write_csv,
    write_json,
)

ENV = "RLHF/Sentiment-v0"
CUSTOM_PRESET, SB3_PRESET = "lm-sb3-sentiment", "sb3-lm-sentiment"
#: SB3's batch: episodes (sub-envs) x tokens per rollout
N_ENVS, TOKENS = get_preset(SB3_PRESET)["n_envs"], get_preset(SB3_PRESET)["n_steps"]
CURVE_CSV = RESULTS / "sb3_sentiment_curve.csv"


def _curve_callback() -> Any:
    """An SB3 callback whose ``rows`` are (tokens, seconds since start, mean task reward of the episodes
    ended in the rollout), one per rollout (SB3 is imported only when this runs)."""
    from stable_baselines3.common.callbacks import BaseCallback

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

    return _Curve()


Run = tuple[list[dict[str, float]], float, int, dict[str, Any]]


def run_sb3(tokens: int, seed: int) -> Run:
    """SB3 PPO from ``SB3_PRESET``; returns the curve, the wall time of learn, the tokens generated
    and the full resolved config."""
    from agents.sb3 import train_baseline

    curve = _curve_callback()
    model = train_baseline("ppo", ENV, tokens, seed, preset=SB3_PRESET, callback=[curve])
    model.get_env().close()
    return curve.rows, model.train_seconds, int(model.num_timesteps), model.train_config


def run_custom(tokens: int, seed: int) -> Run:
    """The custom PPO (agents.PPO, policy="lm") from ``CUSTOM_PRESET``; same return values as
    :func:`run_sb3`."""
    from agents import PPO

    agent = PPO(ENV, seed=seed, preset=CUSTOM_PRESET)
    rows: list[dict[str, float]] = []
    clock = Timer()

    def cb(ag: Any, m: dict[str, float]) -> None:
        rows.append(
            {
                "tokens": float(ag.num_timesteps),
                "seconds": clock.seconds,
                "reward_task": float(m["reward_task"]),
            }
        )

    agent.learn(tokens, callback=cb, progress_bar=False)
    seconds = clock.seconds
    agent.close()
    return rows, seconds, int(agent.num_timesteps), agent.config.to_json_dict()


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
    init_torch(1)
    load0 = load_average()[0]
    custom_rows, custom_s, custom_tok, custom_cfg = run_custom(args.custom_tokens, args.seed)
    sb3_rows, sb3_s, sb3_tok, sb3_cfg = run_sb3(args.sb3_tokens, args.seed)
    load1 = load_average()[0]
    write_csv(
        CURVE_CSV,
        [
            {"agent": agent, "seed": args.seed, **{k: round(v, 4) for k, v in r.items()}, "preset": preset}
            for agent, preset, rows in (
                ("custom-ppo", CUSTOM_PRESET, custom_rows),
                ("sb3-ppo", SB3_PRESET, sb3_rows),
            )
            for r in rows
        ],
        ["agent", "seed", "tokens", "seconds", "reward_task", "preset"],
    )
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
        "load_average_before_after": [load0, load1],
        "preset": {"custom-ppo": CUSTOM_PRESET, "sb3-ppo": SB3_PRESET},
        "resolved_config": {"custom-ppo": custom_cfg, "sb3-ppo": sb3_cfg},
    }
    write_json(RESULTS / "sb3_speed.json", speed)
    print(json.dumps(speed, indent=2, default=str))

    plot(args.seed)


def plot(seed: int) -> None:
    """Draw ``sb3_sentiment.png`` from ``sb3_sentiment_curve.csv`` (task reward vs tokens and vs seconds)."""
    plt = pyplot()
    curves: dict[str, list[dict[str, float]]] = {}
    with open(CURVE_CSV, newline="") as f:
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
    fig.suptitle(f"{ENV}, seed {seed}: same embedded model, batch {N_ENVS}x{TOKENS} tokens, KL beta 0.05")
    save_figure(fig, RESULTS / "sb3_sentiment.png")


if __name__ == "__main__":
    main()
