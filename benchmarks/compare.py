"""Compare algorithms across envs and seeds: learning curves, a plot and a summary table.

Algorithms (``--algos``, all by default):

* ``ppo``, ``reinforce``, ``a2c``: the custom agents (``agents.PPO``, ``agents.REINFORCE``,
  ``agents.A2C``);
* ``sb3-ppo``, ``sb3-a2c``, ``sb3-dqn``, ``sb3-maskable_ppo``: stock Stable-Baselines3 /
  sb3-contrib, through :func:`agents.sb3.train_baseline` on the rlhf envs and as plain SB3
  ``MlpPolicy`` models on ordinary Gymnasium envs (CartPole-v1). MaskablePPO needs an action mask,
  which CartPole does not offer: that cell is reported as not applicable, not run.

Every (algorithm, env, seed) run trains for the env's budget of env steps (= generated tokens on
the text envs) with one torch thread. Its learning curve is the mean return of the last 100
training episodes (SB3's ``rollout/ep_rew_mean``; the custom agents track the same window),
recorded every ``budget / 50`` steps and resampled onto a common grid of 25 points (the last value
recorded at or before each grid point). At the end the policy is evaluated greedily on fresh
episodes from evaluation seeds (``10_000 + seed``, disjoint from training's): that mean return is
the final score. On the toy tasks the return is the task's partial-credit match (1 = exact answer
then EOS) and the success rate is the exact-match rate.

Outputs in ``--out-dir`` (default ``benchmarks/results``; ``runs/compare_quick`` with ``--quick``):

* ``compare_curves.csv``: algo, env, seed, timesteps, score (the gridded learning curves);
* ``compare_runs.csv``: one row per run: final score, success rate, steps to the env's threshold,
  train seconds, env steps (tokens) per second and the settings used;
* ``compare.png``: per env, the mean curve over seeds with a 95% t confidence band;
* ``compare.md``: the summary table (mean final score with 95% CI, steps to threshold, wall time,
  tokens/s), the command, seeds and machine load.

Wall times are sequential in one process on a shared machine: compare them as ratios within one
table, not as absolute speeds.

    python -m benchmarks.compare --quick --out-dir /tmp/cmp   # CI smoke test, under a minute
    python -m benchmarks.compare                               # the full suite (see README)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmarks.cartpole import ZOO as CARTPOLE_PPO
from benchmarks.sb3_toy import SETTINGS as SB3_TOY_SETTINGS

ALGOS = ("ppo", "reinforce", "a2c", "sb3-ppo", "sb3-a2c", "sb3-dqn", "sb3-maskable_ppo")
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: learning-curve grid points per run
GRID_POINTS = 25
#: curve records per run (the custom agents record at most once per rollout)
RECORDS = 50


@dataclass(frozen=True)
class EnvSpec:
    """One env of a suite: the id, its ``gym.make`` options, the budget and the score threshold."""

    label: str
    env_id: str
    timesteps: int
    threshold: float
    eval_episodes: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_text(self) -> bool:
        """True for the rlhf token envs (trained through the native vector env)."""
        return self.env_id.startswith("RLHF/")


#: the quick suite: small enough for a CI smoke test (every algorithm, a few thousand steps each)
QUICK = (
    EnvSpec("Copy-2x3", "RLHF/Copy-v0", 2_048, 0.5, 32, dict(min_length=1, max_length=2, n_symbols=3)),
    EnvSpec("CartPole-v1", "CartPole-v1", 2_048, 100.0, 5),
)
#: the full suite (run time and results in the README): a reduced Copy task (1-3 of 4 letters), the
#: standard Copy task (2-6 of 8 letters) on a budget far below what solving it takes with these
#: settings (~500k tokens; ~200k with ``anchor_token``, ``benchmarks/toy_tasks.py``), so it shows
#: early learning speed, and CartPole-v1
FULL = (
    EnvSpec("Copy-3x4", "RLHF/Copy-v0", 30_000, 0.9, 200, dict(min_length=1, max_length=3, n_symbols=4)),
    EnvSpec("Copy", "RLHF/Copy-v0", 30_000, 0.5, 200),
    EnvSpec("CartPole-v1", "CartPole-v1", 50_000, 475.0, 20),
)
SUITES = {"quick": QUICK, "full": FULL}

#: custom-agent settings on the token envs. PPO: the masked PPO with the small transformer policy
#: that ``benchmarks/toy_tasks.py`` recorded its 500k-token results with, before its CONFIG gained
#: ``anchor_token`` and ``ent_coef=0.03`` (written out here, not imported, so the committed
#: ``compare*`` results stay reproducible; all three custom agents share one policy here); REINFORCE and A2C get the same policy and mask with their own update rule and the batch
#: shapes of their defaults scaled to the many cheap toy envs.
CUSTOM_TEXT: dict[str, dict[str, Any]] = {
    "ppo": dict(
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
    ),
    "reinforce": dict(
        n_envs=64,
        n_steps=16,
        gamma=1.0,
        learning_rate=1e-3,
        policy="transformer",
        use_action_mask=True,
        ent_coef=0.01,
    ),
    "a2c": dict(
        n_envs=16,
        n_steps=8,
        gamma=1.0,
        learning_rate=7e-4,
        policy="transformer",
        use_action_mask=True,
        ent_coef=0.01,
    ),
}
#: custom-agent settings on ordinary Gymnasium envs: rl-zoo's CartPole PPO settings
#: (``benchmarks/cartpole.py``) and the A2C / REINFORCE defaults (A2C with rl-zoo's 8 envs)
CUSTOM_GYM: dict[str, dict[str, Any]] = {
    "ppo": dict(CARTPOLE_PPO),
    "reinforce": {},
    "a2c": dict(n_envs=8),
}
#: SB3 settings on ordinary Gymnasium envs: rl-zoo's CartPole-v1 hyperparameters
SB3_GYM: dict[str, dict[str, Any]] = {
    "ppo": dict(
        n_envs=8,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate="lin_1e-3",
        clip_range="lin_0.2",
    ),
    "a2c": dict(n_envs=8, ent_coef=0.0),
    "dqn": dict(
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
    ),
}


class NotApplicable(Exception):
    """This algorithm cannot run on this env (e.g. MaskablePPO on an env without action masks)."""


@dataclass
class RunResult:
    """What one (algo, env, seed) run produced."""

    curve: list[tuple[int, float]]
    timesteps: int
    train_seconds: float
    final_score: float
    success_rate: float
    settings: dict[str, Any]


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


# -- the custom agents -------------------------------------------------------------------------


def _run_custom(algo: str, spec: EnvSpec, seed: int, every: int) -> RunResult:
    from agents import A2C, PPO, REINFORCE

    cls = {"ppo": PPO, "reinforce": REINFORCE, "a2c": A2C}[algo]
    settings = dict((CUSTOM_TEXT if spec.is_text else CUSTOM_GYM)[algo])
    if spec.env_kwargs:
        settings["env_kwargs"] = dict(spec.env_kwargs)
    agent = cls(spec.env_id, seed=seed, tensorboard=False, **settings)
    rec = CurveRecorder(every)

    def callback(a: Any, metrics: dict[str, float]) -> bool:
        rec.offer(a.num_timesteps, metrics.get("mean_return"))
        return True

    t0 = time.perf_counter()
    agent.learn(spec.timesteps, callback=callback, progress_bar=False)
    train_s = time.perf_counter() - t0
    ev = agent.evaluate(spec.eval_episodes, deterministic=True, seed=10_000 + seed)
    agent.close()
    return RunResult(
        rec.points,
        agent.num_timesteps,
        train_s,
        ev["mean_return"],
        ev.get("success_rate", math.nan),
        settings,
    )


# -- Stable-Baselines3 -------------------------------------------------------------------------


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


def _sb3_value(v: Any) -> Any:
    """``"lin_<x>"`` -> SB3's linear schedule from ``x`` to 0 (rl-zoo's notation)."""
    if isinstance(v, str) and v.startswith("lin_"):
        from stable_baselines3.common.utils import LinearSchedule

        return LinearSchedule(float(v[4:]), 0.0, 1.0)
    return v


def _run_sb3(algo: str, spec: EnvSpec, seed: int, every: int) -> RunResult:
    name = algo.removeprefix("sb3-")
    rec = CurveRecorder(every)
    if spec.is_text:
        from agents.sb3 import evaluate_baseline, train_baseline

        settings = dict(SB3_TOY_SETTINGS[name])
        model = train_baseline(
            name,
            spec.env_id,
            spec.timesteps,
            seed,
            env_kwargs=spec.env_kwargs,
            callback=_sb3_recorder(rec),
            **settings,
        )
        train_s = float(model.train_seconds)
        ev = evaluate_baseline(
            model, spec.env_id, spec.eval_episodes, seed=10_000 + seed, env_kwargs=spec.env_kwargs
        )
        score, success = ev["mean_reward"], ev["success_rate"]
    else:
        if name == "maskable_ppo":
            raise NotApplicable(f"MaskablePPO needs action masks; {spec.env_id} offers none")
        from stable_baselines3 import A2C, DQN, PPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.evaluation import evaluate_policy

        settings = dict(SB3_GYM[name])
        kwargs = {k: _sb3_value(v) for k, v in settings.items() if k != "n_envs"}
        env = make_vec_env(spec.env_id, n_envs=settings["n_envs"], seed=seed, env_kwargs=spec.env_kwargs)
        cls = {"ppo": PPO, "a2c": A2C, "dqn": DQN}[name]
        model = cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
        t0 = time.perf_counter()
        model.learn(spec.timesteps, callback=_sb3_recorder(rec))
        train_s = time.perf_counter() - t0
        eval_env = make_vec_env(spec.env_id, n_envs=1, seed=10_000 + seed, env_kwargs=spec.env_kwargs)
        rets, _ = evaluate_policy(
            model,
            eval_env,
            n_eval_episodes=spec.eval_episodes,
            deterministic=True,
            return_episode_rewards=True,
        )
        score, success = float(np.mean(rets)), math.nan
        eval_env.close()
    model.get_env().close()
    return RunResult(rec.points, int(model.num_timesteps), train_s, score, success, settings)


def run_one(algo: str, spec: EnvSpec, seed: int) -> RunResult:
    """Train and evaluate ``algo`` on ``spec`` with ``seed`` (raises :class:`NotApplicable`)."""
    every = max(1, spec.timesteps // RECORDS)
    if algo.startswith("sb3-"):
        return _run_sb3(algo, spec, seed, every)
    return _run_custom(algo, spec, seed, every)


# -- curves and statistics ---------------------------------------------------------------------


def grid_curve(points: list[tuple[int, float]], budget: int, n: int = GRID_POINTS) -> list[tuple[int, float]]:
    """Resample a curve onto ``n`` evenly spaced steps up to ``budget`` (last value at or before each)."""
    grid = np.linspace(budget / n, budget, n).round().astype(int)
    steps = np.array([p[0] for p in points], dtype=np.int64)
    vals = np.array([p[1] for p in points], dtype=np.float64)
    out = []
    for g in grid:
        idx = np.searchsorted(steps, g, side="right") - 1
        out.append((int(g), float(vals[idx]) if idx >= 0 else math.nan))
    return out


#: two-sided 97.5% quantiles of Student's t by degrees of freedom (1.96 beyond the table)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_ci(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% t confidence interval (nan half-width for one value)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), math.nan
    t = _T975.get(x.size - 1, 1.96)
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


def steps_to_threshold(points: list[tuple[int, float]], threshold: float) -> int | None:
    """First recorded step whose training-curve value reaches ``threshold`` (None if never)."""
    for step, value in points:
        if value >= threshold:
            return step
    return None


# -- outputs -----------------------------------------------------------------------------------


def write_curves(path: str, rows: list[dict[str, Any]]) -> None:
    """Write the gridded learning curves."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["algo", "env", "env_id", "seed", "timesteps", "score"])
        w.writeheader()
        w.writerows(rows)


RUN_FIELDS = [
    "algo",
    "env",
    "env_id",
    "env_kwargs",
    "seed",
    "status",
    "timesteps",
    "train_seconds",
    "tokens_per_second",
    "final_score",
    "success_rate",
    "eval_episodes",
    "threshold",
    "steps_to_threshold",
    "settings",
]


def write_runs(path: str, rows: list[dict[str, Any]]) -> None:
    """Write one row per run."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RUN_FIELDS, restval="")
        w.writeheader()
        w.writerows(rows)


def plot(path: str, suite: tuple[EnvSpec, ...], algos: list[str], curves: list[dict[str, Any]]) -> None:
    """One panel per env: the mean curve over seeds with a 95% confidence band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(suite), figsize=(5.5 * len(suite), 4), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, spec in zip(axes[0], suite, strict=True):
        for k, algo in enumerate(algos):
            rows = [r for r in curves if r["env"] == spec.label and r["algo"] == algo]
            if not rows:
                continue
            steps = sorted({r["timesteps"] for r in rows})
            stats = [mean_ci([r["score"] for r in rows if r["timesteps"] == s]) for s in steps]
            mean = np.array([m for m, _ in stats])
            half = np.array([h for _, h in stats])
            ls = "-" if algo.startswith("sb3-") else "--"
            ax.plot(steps, mean, ls, color=colors(k), label=algo)
            if np.isfinite(half).any():
                ax.fill_between(steps, mean - half, mean + half, color=colors(k), alpha=0.15)
        ax.axhline(spec.threshold, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{spec.label} ({spec.env_id})", fontsize=10)
        ax.set_xlabel("env steps (tokens on text envs)")
        ax.set_ylabel("mean return, last 100 training episodes")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x: float, digits: int) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:,.{digits}f}"


def summary_table(suite: tuple[EnvSpec, ...], algos: list[str], runs: list[dict[str, Any]]) -> str:
    """The markdown summary: one row per (env, algo), aggregated over seeds."""
    head = (
        "| env | algorithm | final score (mean ± 95% CI) | success | steps to threshold "
        "(median, seeds reaching it) | train time s (mean) | tokens/s (mean) |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for spec in suite:
        for algo in algos:
            rows = [r for r in runs if r["env"] == spec.label and r["algo"] == algo]
            if not rows:
                continue
            ok = [r for r in rows if r["status"] == "ok"]
            if not ok:
                lines.append(f"| {spec.label} | {algo} | not applicable: {rows[0]['status']} | | | | |")
                continue
            digits = 3 if spec.is_text else 1
            m, h = mean_ci([r["final_score"] for r in ok])
            score = _fmt(m, digits) + ("" if not math.isfinite(h) else f" ± {_fmt(h, digits)}")
            succ = _fmt(float(np.mean([r["success_rate"] for r in ok])), 3) if spec.is_text else ""
            reached = [r["steps_to_threshold"] for r in ok if r["steps_to_threshold"] != ""]
            steps = f"{int(np.median(reached)):,}" if reached else "-"
            steps += f" ({len(reached)}/{len(ok)})"
            secs = float(np.mean([r["train_seconds"] for r in ok]))
            tps = float(np.mean([r["tokens_per_second"] for r in ok]))
            lines.append(
                f"| {spec.label} | {algo} | {score} | {succ} | {steps} | {_fmt(secs, 1)} | {_fmt(tps, 0)} |"
            )
    return head + "\n".join(lines) + "\n"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the CI smoke-test suite (one seed, tiny budgets)")
    p.add_argument("--algos", nargs="+", default=list(ALGOS), help=f"subset of {', '.join(ALGOS)}")
    p.add_argument("--envs", nargs="+", default=None, help="subset of the suite's env labels")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 (quick) or 0 1 2 (full)")
    p.add_argument("--timesteps", type=int, default=None, help="override every env's step budget")
    p.add_argument(
        "--out-dir", default=None, help="default: benchmarks/results (runs/compare_quick with --quick)"
    )
    args = p.parse_args(argv)
    bad = [a for a in args.algos if a not in ALGOS]
    if bad:
        p.error(f"unknown algorithm(s) {', '.join(bad)}; allowed: {', '.join(ALGOS)}")
    suite = SUITES["quick" if args.quick else "full"]
    labels = [s.label for s in suite]
    if args.envs is not None:
        bad = [e for e in args.envs if e not in labels]
        if bad:
            p.error(f"unknown env label(s) {', '.join(bad)} for this suite; allowed: {', '.join(labels)}")
    if args.timesteps is not None and args.timesteps < 1:
        p.error(f"--timesteps must be a positive number of env steps, got {args.timesteps}")
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    if args.out_dir is None:
        args.out_dir = os.path.join("runs", "compare_quick") if args.quick else RESULTS
    return args


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> int:
    """Run the suite and write the CSVs, the plot and the table into ``--out-dir``."""
    args = _parse_args(argv)
    torch.set_num_threads(1)
    import rlhf_envs  # noqa: F401  (registers the RLHF/ ids)

    suite = tuple(
        s for s in SUITES["quick" if args.quick else "full"] if args.envs is None or s.label in args.envs
    )
    if args.timesteps is not None:
        suite = tuple(dataclasses.replace(s, timesteps=args.timesteps) for s in suite)
    os.makedirs(args.out_dir, exist_ok=True)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    curves: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for spec in suite:
        for algo in args.algos:
            for seed in args.seeds:
                base = {
                    "algo": algo,
                    "env": spec.label,
                    "env_id": spec.env_id,
                    "env_kwargs": " ".join(f"{k}={v}" for k, v in spec.env_kwargs.items()),
                    "seed": seed,
                    "eval_episodes": spec.eval_episodes,
                    "threshold": spec.threshold,
                }
                try:
                    res = run_one(algo, spec, seed)
                except NotApplicable as exc:
                    runs.append({**base, "status": f"{exc}"})
                    log(f"{spec.label:12s} {algo:17s} seed {seed}: not applicable ({exc})")
                    break  # the same for every seed
                reached = steps_to_threshold(res.curve, spec.threshold)
                row = {
                    **base,
                    "status": "ok",
                    "timesteps": res.timesteps,
                    "train_seconds": round(res.train_seconds, 2),
                    "tokens_per_second": round(res.timesteps / max(res.train_seconds, 1e-9), 1),
                    "final_score": round(res.final_score, 4),
                    "success_rate": round(res.success_rate, 4)
                    if math.isfinite(res.success_rate)
                    else math.nan,
                    "steps_to_threshold": "" if reached is None else reached,
                    "settings": " ".join(f"{k}={v}" for k, v in res.settings.items()),
                }
                runs.append(row)
                write_runs(os.path.join(args.out_dir, "compare_runs.csv"), runs)  # partial results survive
                for step, value in grid_curve(res.curve, spec.timesteps):
                    if math.isfinite(value):
                        curves.append(
                            {
                                "algo": algo,
                                "env": spec.label,
                                "env_id": spec.env_id,
                                "seed": seed,
                                "timesteps": step,
                                "score": round(value, 4),
                            }
                        )
                log(
                    f"{spec.label:12s} {algo:17s} seed {seed}: final {row['final_score']:9.4f}  "
                    f"{row['train_seconds']:7.1f} s  {row['tokens_per_second']:8.0f} steps/s",
                )
                sys.stdout.flush()
    wall = time.perf_counter() - t_start
    load_after = os.getloadavg()
    write_curves(os.path.join(args.out_dir, "compare_curves.csv"), curves)
    write_runs(os.path.join(args.out_dir, "compare_runs.csv"), runs)
    plot(os.path.join(args.out_dir, "compare.png"), suite, args.algos, curves)
    cmd = "python -m benchmarks.compare " + " ".join(argv if argv is not None else sys.argv[1:])
    table = summary_table(suite, args.algos, runs)
    envs = "; ".join(
        f"{s.label} = `{s.env_id}`"
        + (f" ({', '.join(f'{k}={v}' for k, v in s.env_kwargs.items())})" if s.env_kwargs else "")
        + f", {s.timesteps:,} steps, threshold {s.threshold:g}, {s.eval_episodes} eval episodes"
        for s in suite
    )
    md = (
        f"# Algorithm comparison ({'quick' if args.quick else 'full'} suite)\n\n"
        f"Command: `{cmd.strip()}`  \n"
        f"Seeds: {', '.join(map(str, args.seeds))}. Envs: {envs}.  \n"
        f"Total wall time {wall:.0f} s on {os.cpu_count()} CPU cores, one torch thread, Python "
        f"{platform.python_version()}, torch {torch.__version__}; load average (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after.\n\n"
        "Final score: greedy evaluation on fresh episodes (seeds 10_000 + seed). Steps to threshold: "
        "first step at which the mean return of the last 100 training episodes reached the env's "
        "threshold. Train time and tokens/s (env steps per second) are measured sequentially in this "
        "one run on a shared machine; compare them as ratios.\n\n" + table
    )
    with open(os.path.join(args.out_dir, "compare.md"), "w") as f:
        f.write(md)
    log(md)
    log(f"wrote {args.out_dir}/compare_curves.csv, compare_runs.csv, compare.png, compare.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
