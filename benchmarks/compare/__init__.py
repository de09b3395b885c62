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
  train seconds, env steps (tokens) per second, the settings used, the preset the run started from
  (:mod:`agents.presets`; ``suites.TEXT_PRESETS`` / ``GYM_PRESETS``) and its full resolved config;
* ``compare.png``: per env, the mean curve over seeds with a 95% t confidence band;
* ``compare.md``: the summary table (mean final score with 95% CI, steps to threshold, wall time,
  tokens/s), the command, seeds and machine load.

Wall times are sequential in one process on a shared machine: compare them as ratios within one
table, not as absolute speeds.

The package: :mod:`~benchmarks.compare.suites` (envs, budgets, thresholds, the preset per
algorithm), :mod:`~benchmarks.compare.runners` (one run: train, record the curve, evaluate),
:mod:`~benchmarks.compare.report` (CSVs, plot, table) and :mod:`~benchmarks.compare.cli` (the
command); the curve statistics and confidence intervals are in :mod:`benchmarks.common`.

    python -m benchmarks.compare --quick --out-dir /tmp/cmp   # CI smoke test, under a minute
    python -m benchmarks.compare                               # the full suite (see README)
"""

from benchmarks.common import RESULTS, grid_curve, mean_ci, steps_to_threshold
from benchmarks.compare.cli import main
from benchmarks.compare.report import RUN_FIELDS, plot, summary_table, write_curves, write_runs
from benchmarks.compare.runners import NotApplicable, RunResult, run_custom, run_one, run_sb3
from benchmarks.compare.suites import ALGOS, FULL, GYM_PRESETS, QUICK, SUITES, TEXT_PRESETS, EnvSpec

__all__ = [
    "ALGOS",
    "FULL",
    "GYM_PRESETS",
    "QUICK",
    "RESULTS",
    "RUN_FIELDS",
    "SUITES",
    "TEXT_PRESETS",
    "EnvSpec",
    "NotApplicable",
    "RunResult",
    "grid_curve",
    "main",
    "mean_ci",
    "plot",
    "run_custom",
    "run_one",
    "run_sb3",
    "steps_to_threshold",
    "summary_table",
    "write_curves",
    "write_runs",
]
