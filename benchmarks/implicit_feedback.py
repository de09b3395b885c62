"""Implicit feedback: how well clicks, satisfied clicks and position-debiased clicks track gold, and
whether PPO on the debiased reward raises gold.

    nice -n 10 python -m benchmarks.implicit_feedback                   # both parts
    nice -n 10 python -m benchmarks.implicit_feedback --part correlation
    nice -n 10 python -m benchmarks.implicit_feedback --part ppo

Protocol (fixed before the first run)
-------------------------------------

**Part 1: correlation with gold** (``--part correlation``).

* Pool: 400 prompts of ``RLHF/Sentiment-v0``'s built-in prompts (drawn with seed 0), 5 completions
  of each by the embedded model (temperature 1, no top-k, 24 new tokens as in the env): 2,000
  completions in 400 result lists. Gold utility: the Sentiment task's score (VADER compound of the
  continuation, in [-1, 1]), the user's hidden utility in ``RLHF/ImplicitFeedback-v0`` too.
* Production ranker (the logged order of each list): base-model log-prob per token, highest first
  ("most fluent first"), a ranker not built for what the user wants. Its rank correlation with gold
  is reported.
* 10,000 impressions per run. Each shows one list chosen uniformly at random; a random 25% are swap
  interventions (the logged top result swapped with a uniformly random position 2..5; Joachims et
  al. 2017). The user is :class:`~rlhf_envs.feedback.click_user.ClickUser` with its defaults
  (5 positions, abandonment 0.1, click probability 0.05..0.9 logistic in gold, satisfied-dwell
  mean 60 s vs quick-return mean 5 s) and ``position_bias`` 1.0 (examination ``1/rank``: "on") or
  0.0 ("off").
* Propensities: estimated from that run's own swap and control impressions
  (:func:`~rlhf_envs.feedback.propensity.estimate_examination`); the simulator's curve is only
  printed next to the estimate.
* Estimators (:func:`~rlhf_envs.feedback.implicit.implicit_rewards`): ``raw`` clicks,
  ``satisfied`` clicks (dwell >= 20 s), ``debiased`` (IPW clicks, propensities floored at 0.05)
  and ``debiased_satisfied``; every displayed result of every impression gets a reward.
* Metrics: **item level** (the headline): each completion's mean reward over the impressions that
  showed it, correlated with its gold over the completions shown at least once (Pearson and
  Spearman); **impression level**: each displayed result's single reward against its gold (50,000
  points per run, Pearson).
* 20 runs (user seeds 0..19) per bias setting on the same pool; mean and 95% t-interval across
  runs, and the paired difference debiased - raw with its interval. The must-show: item-level
  Pearson of ``debiased`` above ``raw`` with position bias on (the interval of the difference above
  0). Whatever is measured is written down.

**Part 2: PPO on the debiased reward** (``--part ppo``).

* Env ``RLHF/ImplicitFeedback-v0`` with its defaults: ``estimator="debiased"``, 5 positions,
  position bias 1.0, propensities from the env's own swap experiment at construction (printed).
* ``agents.PPO`` with ``policy="lm"`` from the preset ``lm-sentiment-demo`` (as ``agents/demo.py``:
  the embedded model, 64 episodes per batch, lr 1e-4, KL coefficient 0.05), seeds 0, 1, 2, a budget
  of 24,576 generated tokens each (``--timesteps``).
* Before and after training: mean gold (``info["reward_gold"]``), mean debiased reward over the
  same 128 fresh episodes (evaluation seed 999, sampled at temperature 1). Reported
  per seed, the mean gain with its 95% t-interval, and the spread (min, max) across seeds.

Results: ``benchmarks/results/implicit_feedback.json`` (both parts, settings, machine, seconds);
the README's "Implicit feedback" section quotes it. Torch runs on one thread.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, init_torch, machine_info, write_json
from rlhf_envs.feedback.click_user import ClickUser, ClickUserConfig
from rlhf_envs.feedback.implicit import ESTIMATORS, implicit_rewards
from rlhf_envs.feedback.propensity import apply_swaps, estimate_examination, swap_positions

OUT = RESULTS / "implicit_feedback.json"
ENV_ID = "RLHF/ImplicitFeedback-v0"
N_PROMPTS, LIST_SIZE, N_IMPRESSIONS, SWAP_FRACTION, N_RUNS = 400, 5, 10_000, 0.25, 20
DWELL_THRESHOLD, CLIP = 20.0, 0.05
PPO_SEEDS, PPO_PRESET, PPO_TIMESTEPS, EVAL_EPISODES, EVAL_SEED = (
    (0, 1, 2),
    "lm-sentiment-demo",
    24_576,
    128,
    999,
)


def t_interval(x: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval."""
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        return float(x.mean()), math.nan
    return float(x.mean()), float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


# -- part 1 ------------------------------------------------------------------------------------------


def build_pool(seed: int = 0) -> dict[str, np.ndarray]:
    """The 400 x 5 completions, their gold and per-token log-probs, lists in production order."""
    import torch

    from rlhf_envs.feedback.base import Episode, score_episodes
    from rlhf_envs.lm.sampling import sample_with_logprobs
    from rlhf_envs.tasks.language import SentimentTask

    task = SentimentTask(ref_logprobs=False)
    tok = task.tokenizer
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    prompts = [task.sample_prompt(rng) for _ in range(N_PROMPTS)]
    rows = [p for p in prompts for _ in range(LIST_SIZE)]
    comps: list[list[int]] = []
    logp: list[float] = []
    for start in range(0, len(rows), 64):
        chunk = [p.ids for p in rows[start : start + 64]]
        c, lp = sample_with_logprobs(task.lm, chunk, task.max_new_tokens, tok.eos_id, gen, tok.vocab_size)
        comps.extend(c)
        logp.extend((lp / np.maximum([len(x) for x in c], 1)).tolist())
    eps = [Episode(p.text, tok.decode(c), p.ids, tuple(c), True) for p, c in zip(rows, comps, strict=True)]
    gold = score_episodes(task.feedback, eps).astype(np.float64).reshape(N_PROMPTS, LIST_SIZE)
    lp = np.asarray(logp).reshape(N_PROMPTS, LIST_SIZE)
    order = np.argsort(-lp, axis=1, kind="stable")  # production ranker: most fluent first
    ids = np.arange(N_PROMPTS * LIST_SIZE).reshape(N_PROMPTS, LIST_SIZE)
    take = np.take_along_axis
    texts = [eps[i].completion for i in take(ids, order, 1).ravel()]
    return {
        "gold": take(gold, order, 1),
        "logp": take(lp, order, 1),
        "ids": np.arange(gold.size).reshape(gold.shape),
        "texts": texts,
    }


def one_run(pool: dict[str, Any], position_bias: float, seed: int) -> dict[str, Any]:
    """10,000 impressions of the pool's lists with swaps; every estimator's correlations with gold."""
    from scipy import stats

    rng = np.random.default_rng([seed, 18])
    user = ClickUser(ClickUserConfig(list_size=LIST_SIZE, position_bias=position_bias), seed=seed)
    lists = rng.integers(N_PROMPTS, size=N_IMPRESSIONS)
    swap_to = swap_positions(N_IMPRESSIONS, LIST_SIZE, SWAP_FRACTION, rng)
    shown_ids = apply_swaps(pool["ids"][lists], swap_to)
    gold_all = pool["gold"].ravel()
    shown_gold = gold_all[shown_ids]
    imp = user.simulate_lists(shown_gold, rng)
    est = estimate_examination(swap_to, imp.clicked[np.arange(N_IMPRESSIONS), swap_to], LIST_SIZE)
    out: dict[str, Any] = {
        "propensity_estimate": est.relative.tolist(),
        "propensity_stderr": est.stderr.tolist(),
        "examination_true_relative": (
            user.config.examination_curve / user.config.examination_curve[0]
        ).tolist(),
        "click_rate": float(imp.clicked.mean()),
        "abandonment_rate": float(imp.abandoned.mean()),
    }
    counts = np.bincount(shown_ids.ravel(), minlength=gold_all.size)
    seen = counts > 0
    out["items_shown"] = int(seen.sum())
    for name in ESTIMATORS:
        r = implicit_rewards(name, imp.clicked, imp.dwell, imp.positions, est.relative, DWELL_THRESHOLD, CLIP)
        per_item = (
            np.bincount(shown_ids.ravel(), weights=r.ravel(), minlength=gold_all.size)[seen] / counts[seen]
        )
        out[name] = {
            "item_pearson": float(stats.pearsonr(per_item, gold_all[seen])[0]),
            "item_spearman": float(stats.spearmanr(per_item, gold_all[seen])[0]),
            "impression_pearson": float(stats.pearsonr(r.ravel(), shown_gold.ravel())[0]),
        }
    return out


def part_correlation(log: Any = print) -> dict[str, Any]:
    from scipy import stats

    t0 = time.perf_counter()
    pool = build_pool()
    ranker_gold = float(
        np.mean([stats.spearmanr(-np.arange(LIST_SIZE), g)[0] for g in pool["gold"] if np.ptp(g) > 0])
    )
    log(
        f"pool: {pool['gold'].size} completions, gold mean {pool['gold'].mean():+.3f} sd {pool['gold'].std():.3f}; "
        f"production ranker vs gold, mean within-list Spearman {ranker_gold:+.3f} ({time.perf_counter() - t0:.0f} s)"
    )
    result: dict[str, Any] = {
        "pool": {
            "n_prompts": N_PROMPTS, "list_size": LIST_SIZE, "gold_mean": float(pool["gold"].mean()),
            "gold_sd": float(pool["gold"].std()), "ranker_gold_spearman_within_list": ranker_gold,
            "gold_by_logged_position": pool["gold"].mean(0).tolist(),
        },
        "settings": {
            "n_impressions": N_IMPRESSIONS, "swap_fraction": SWAP_FRACTION, "runs": N_RUNS,
            "dwell_threshold": DWELL_THRESHOLD, "clip": CLIP, "user": repr(ClickUserConfig(list_size=LIST_SIZE)),
        },
    }  # fmt: skip
    for label, eta in (("position_bias_on", 1.0), ("position_bias_off", 0.0)):
        runs = [one_run(pool, eta, s) for s in range(N_RUNS)]
        summary: dict[str, Any] = {"position_bias": eta}
        for name in ESTIMATORS:
            summary[name] = {}
            for metric in ("item_pearson", "item_spearman", "impression_pearson"):
                m, h = t_interval(np.array([r[name][metric] for r in runs]))
                summary[name][metric] = {"mean": m, "ci95": h}
        for metric in ("item_pearson", "impression_pearson"):
            d = np.array([r["debiased"][metric] - r["raw"][metric] for r in runs])
            m, h = t_interval(d)
            summary[f"debiased_minus_raw_{metric}"] = {"mean": m, "ci95": h}
        p = np.array([r["propensity_estimate"] for r in runs])
        summary["propensity_estimate_mean"] = p.mean(0).tolist()
        summary["propensity_estimate_sd_across_runs"] = p.std(0, ddof=1).tolist()
        summary["examination_true_relative"] = runs[0]["examination_true_relative"]
        summary["click_rate"] = float(np.mean([r["click_rate"] for r in runs]))
        summary["abandonment_rate"] = float(np.mean([r["abandonment_rate"] for r in runs]))
        summary["runs"] = runs
        result[label] = summary
        log(f"\n{label} (eta {eta}): propensities estimated {np.round(p.mean(0), 3).tolist()} "
            f"(true {np.round(summary['examination_true_relative'], 3).tolist()}); click rate {summary['click_rate']:.3f}")  # fmt: skip
        for name in ESTIMATORS:
            s = summary[name]
            log(
                f"  {name:20s} item Pearson {s['item_pearson']['mean']:.3f} ± {s['item_pearson']['ci95']:.3f}  "
                f"Spearman {s['item_spearman']['mean']:.3f} ± {s['item_spearman']['ci95']:.3f}  "
                f"impression Pearson {s['impression_pearson']['mean']:.3f} ± {s['impression_pearson']['ci95']:.3f}"
            )
        d = summary["debiased_minus_raw_item_pearson"]
        log(f"  debiased - raw, item Pearson: {d['mean']:+.3f} ± {d['ci95']:.3f}")
    result["seconds"] = time.perf_counter() - t0
    return result


# -- part 2 ------------------------------------------------------------------------------------------


def evaluate(agent: Any, env: Any) -> dict[str, float]:
    """Mean gold and debiased reward over the same ``EVAL_EPISODES`` fresh episodes."""
    import torch

    gen = torch.Generator().manual_seed(EVAL_SEED)
    agent.policy.eval()
    eps = agent.collector.evaluate(env, EVAL_EPISODES, False, EVAL_SEED, gen)
    return {
        "gold": float(np.mean([e["reward_gold"] for e in eps])),
        "reward": float(np.mean([e["reward_task"] for e in eps])),
    }


def part_ppo(timesteps: int, seeds: tuple[int, ...], log: Any = print) -> dict[str, Any]:
    import gymnasium as gym

    from agents.envs import make_vector_env
    from agents.ppo import PPO

    t0 = time.perf_counter()
    probe = gym.make(ENV_ID).unwrapped.task
    est = probe.propensity_estimate
    log(f"env propensities from its swap experiment: {np.round(est.relative, 3).tolist()} (se {np.round(est.stderr, 3).tolist()}); "
        f"simulator's curve {np.round(probe.user.config.examination_curve, 3).tolist()}")  # fmt: skip
    rows = []
    for seed in seeds:
        t1 = time.perf_counter()
        agent = PPO(ENV_ID, seed=seed, preset=PPO_PRESET, tensorboard=False)
        env = make_vector_env(ENV_ID, min(agent.config.n_envs, EVAL_EPISODES), agent.config.env_kwargs)
        before = evaluate(agent, env)
        agent.learn(timesteps, progress_bar=False)
        after = evaluate(agent, env)
        env.close()
        row = {"seed": seed, "tokens": agent.num_timesteps, "before": before, "after": after,
               "gold_gain": after["gold"] - before["gold"], "seconds": time.perf_counter() - t1}  # fmt: skip
        rows.append(row)
        log(f"  seed {seed}: gold {before['gold']:+.3f} -> {after['gold']:+.3f}, debiased reward "
            f"{before['reward']:.3f} -> {after['reward']:.3f} ({agent.num_timesteps} tokens, {row['seconds']:.0f} s)")  # fmt: skip
    gains = np.array([r["gold_gain"] for r in rows])
    m, h = t_interval(gains)
    summary = {
        "env": ENV_ID, "env_kwargs": {}, "preset": PPO_PRESET, "resolved_config": agent.config.to_json_dict(),
        "timesteps_per_seed": timesteps, "eval_episodes": EVAL_EPISODES, "eval_seed": EVAL_SEED,
        "env_propensities": est.relative.tolist(), "env_propensity_stderr": est.stderr.tolist(),
        "seeds": rows, "gold_before_mean": float(np.mean([r["before"]["gold"] for r in rows])),
        "gold_after_mean": float(np.mean([r["after"]["gold"] for r in rows])),
        "gold_gain_mean": m, "gold_gain_ci95": h, "gold_gain_min": float(gains.min()),
        "gold_gain_max": float(gains.max()), "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    log(
        f"gold gain over {len(rows)} seeds: {m:+.3f} ± {h:.3f} (min {gains.min():+.3f}, max {gains.max():+.3f})"
    )
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("all", "correlation", "ppo"), default="all")
    ap.add_argument("--timesteps", type=int, default=PPO_TIMESTEPS)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(PPO_SEEDS))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    init_torch(1)
    try:
        result = json.loads(open(args.out).read())
    except (OSError, ValueError):
        result = {}
    if args.part in ("all", "correlation"):
        result["correlation"] = part_correlation()
    if args.part in ("all", "ppo"):
        result["ppo"] = part_ppo(args.timesteps, tuple(args.seeds))
    result["machine"] = machine_info()
    command = "nice -n 10 python -m benchmarks.implicit_feedback " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    for part in ("correlation", "ppo"):
        if args.part in ("all", part):
            result[part]["command"] = command.strip()
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
