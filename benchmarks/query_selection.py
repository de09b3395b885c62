"""Query selection without PPO noise: disagreement vs random on a fixed pool of candidate pairs.

``benchmarks/rlhf_queries.py`` asks the question inside the RLHF loop, where each round's gold
reward also carries the noise of a PPO run; there the two rules came out level. This benchmark asks
only the part that query selection can change, the reward model:

1. sample a fixed pool of ``POOL_PAIRS`` candidate pairs (two completions of one prompt) and a
   held-out evaluation set (``EVAL_PROMPTS`` prompts x ``PER_PROMPT`` completions) from the initial
   policy, the embedded model, on RLHF/Sentiment-v0;
2. ask the simulated human (rater ``RATER``) about ``BATCH`` random pairs; then, ``STEPS - 1``
   times: fit a fresh reward-model ensemble on all answers so far (the loop's recipe,
   :func:`agents.rlhf.fit_reward_model` with :class:`~agents.rlhf.RLHFConfig` defaults), measure
   it, and ask about ``BATCH`` more pairs of the pool, chosen at ``random`` or where the ensemble's
   members disagree most about ``P(A > B)``;
3. measure each fitted model by the **gold reward of best-of-16**: on each held-out prompt, keep
   the completion the model scores highest; the mean gold (VADER) of the kept completions is the
   gold reward a policy that reranks with this reward model reaches. Also the model's concordance
   with gold on all held-out completions.

The two rules of a seed are paired: the same pool, evaluation set, first batch, rater noise stream
and fit seeds; they differ only in which pairs are asked after the first batch.

Two designs, each fixed before its seeds were run (``DESIGNS``):

* ``first`` (seeds 10-14; seeds 0 and 1 were used while the script was written and are not part of
  any result). Primary: queries used when best-of-16 gold *first* reaches 0.75 (levels 0.7, 0.75,
  0.8). Secondary: per seed, disagreement minus random of best-of-16 gold and of concordance,
  averaged over the measurements after the first batch (where the rules can differ). Its result:
  primary ratio of means 1.3 (3 of 5 seeds reached 0.75 at the shared first measurement or the
  next, where the rules cannot or barely differ, and single refits swing by +-0.1); secondary
  +0.035 best-of-16 gold (sem 0.013, 4 of 5 seeds positive).
* ``confirm`` (seeds 20-29, fresh), written after looking at ``first``: the same runs, with a
  threshold statistic less at the mercy of one lucky refit: each run's best-of-16 gold curve is
  replaced by its isotonic (non-decreasing) least-squares fit, and queries-to-level is the first
  number of queries where that fit reaches the level. Levels 0.74, 0.76, 0.78, primary 0.76
  (chosen on the ``first`` seeds, where the curves still rise). Decision rule, stated before the
  run: the saving counts as shown when, at the primary level, the ratio of means (over seeds where
  both rules reached it) is below 1, disagreement needs fewer queries in more seeds than random
  does (a run that never reaches the level counts as needing more than any that does), and the
  paired best-of-16 gold difference is above zero by more than two standard errors. Its result:
  at 0.76 ratio of means 0.85 (7 seeds where both reached it), disagreement fewer in 5 seeds and
  random in 4, paired best-of-16 gold +0.018 (sem 0.015, 4 of 10 seeds positive): the first two
  conditions hold, the third does not, so the saving is **not shown**. Concordance +0.014 (sem
  0.008); disagreement does ask about pairs further apart in gold (+0.075, sem 0.020).

* ``recorded`` (issue 16; seeds 40-44, fresh; seed 0 was a pilot, stopped after 4 fits, run while
  the design was written to set the levels; it is not part of any result): the same protocol on
  **real sentences judged by real people**, where reward learning is limited by data and the noise
  is real. What changes:

  - the pool: pairs of two different *train*-split sentences of the same domain (movie or Amazon
    review snippets of :mod:`rlhf_envs.data.hutto2014`; a pair's first sentence uniform over both
    domains' train sentences, its second uniform over the other train sentences of its domain),
    instead of two completions of one prompt;
  - the rater: :class:`~rlhf_envs.feedback.recorded.RecordedRaters` on those sentences (the crowd:
    each answer draws one real rating of each sentence, the higher is preferred, equal ratings are
    a tie, label 0.5), instead of a simulated human;
  - gold: the sentence's published crowd mean rating (-4..+4), instead of VADER;
  - the held-out set: ``eval_prompts`` groups of ``per_prompt`` different *test*-split sentences
    (movies and Amazon, drawn without replacement), so "best-of-16" is the crowd mean of the
    sentence of a group the reward model ranks first, averaged over the groups; concordance is
    with the crowd mean over all held-out sentences;
  - sizes (``RECORDED_SIZES``): a pool of 256 pairs, 32 held-out groups of 16, 8 random queries then
    7 batches of 8 (at most 64 queries), 5 seeds. Why smaller than ``confirm``: on this machine
    (load average about 15 on two cores while it ran) one fit-and-measure step of the pilot cost
    about 20 CPU-seconds at the ``confirm`` sizes, so 7+ seeds at those sizes would be about an hour
    of CPU; at these sizes a seed is about 3 CPU-minutes and the run about 16 (within the ~30 CPU-
    minute budget, with room for the load).

  The reward model and its fits (:func:`agents.rlhf.fit_reward_model`, ``RLHFConfig`` defaults: a
  3-member ensemble on the embedded model), the statistic (isotonic) and the pairing of the two
  rules are those of ``confirm``. Levels (crowd-mean rating points): 0.4, 0.5, 0.6, primary 0.5, set
  from the pilot (held-out mean -0.005, the crowd's own best of 16 2.74; the pilot's random rule
  reached -0.34, 0.17, 0.21, 0.51 after 8, 16, 24, 32 queries). **Decision rule**, written down and
  committed before seeds 40-44 ran, the ``confirm`` rule unchanged: the saving counts as shown
  when, at the primary level, (1) the ratio of means (over seeds where both rules reached it) is
  below 1, (2) disagreement needs fewer queries in more seeds than random does (a run that never
  reaches the level counts as needing more than any that does), and (3) the paired best-of-16 gold
  difference (disagreement minus random, per seed averaged over the measurements after the first
  batch) is above zero by more than two standard errors. All three, or not shown. Seeds run one
  process each (``--seeds 40``, ...), and their CSVs are summarised together with ``--from-csv``.

In all, a run that never reaches a level is reported as not reached, never imputed, and the ratio
of means is taken over the seeds where both rules reached it. Diagnostics: what each rule asks
about (mean gold gap of the chosen pairs, share of exact gold ties, share of answers agreeing with
gold).

    python -m benchmarks.query_selection --design confirm --jobs 2   # 10 seeds x 2 rules, ~21 min
    python -m benchmarks.query_selection --jobs 2                    # first: 5 seeds, ~17 min
    for s in 40 41 42 43 44; do python -m benchmarks.query_selection --design recorded --seeds $s --out runs/qsr/$s; done
    python -m benchmarks.query_selection --design recorded --from-csv runs/qsr/all.csv   # the 5 CSVs concatenated
    python -m benchmarks.query_selection --quick --out /tmp/qs      # a tiny smoke run
    python -m benchmarks.query_selection --design recorded --quick --out /tmp/qs
    python -m benchmarks.query_selection --from-csv benchmarks/results/query_selection.csv --out /tmp/qs
                                                  # re-summarise saved runs under a design's rules

Writes ``benchmarks/results/query_selection.{csv,json,png}`` (``first``),
``query_selection_confirm.{csv,json,png}`` (``confirm``) and ``query_selection_recorded.*``
(``recorded``; ``--backbone DIR`` fits the reward models on another backbone). The JSON records the loop config the
reward models were fitted with (``RLHFConfig`` defaults with the rater: no preset) in full.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from typing import Any

import numpy as np

from agents.rlhf import RLHFConfig, RLHFLoop, concordance, fit_reward_model, select_pairs
from agents.rlhf import stream_seed as _seed
from benchmarks.common import (
    RESULTS,
    Timer,
    init_torch,
    machine_info,
    pyplot,
    ratio_of_means,
    save_figure,
    sem,
    write_csv,
    write_json,
)
from rlhf_envs.feedback.base import Episode

RULES = ("random", "disagreement")
STATISTICS = ("first", "isotonic")
#: design name -> seeds, threshold statistic, gold levels, primary level, output stem
DESIGNS: dict[str, dict[str, Any]] = {
    "first": dict(
        seeds=(10, 11, 12, 13, 14),
        statistic="first",
        levels=(0.7, 0.75, 0.8),
        primary=0.75,
        stem="query_selection",
    ),
    "confirm": dict(
        seeds=tuple(range(20, 30)),
        statistic="isotonic",
        levels=(0.74, 0.76, 0.78),
        primary=0.76,
        stem="query_selection_confirm",
    ),
    "recorded": dict(
        seeds=tuple(range(40, 45)),
        statistic="isotonic",
        levels=(0.4, 0.5, 0.6),
        primary=0.5,
        stem="query_selection_recorded",
        source="recorded",
    ),
}
#: the review domains of the Hutto & Gilbert data the ``recorded`` design draws sentences from
RECORDED_DOMAINS = ("movies", "amazon")
RATER = "Mistake"
POOL_PAIRS, EVAL_PROMPTS, PER_PROMPT, BATCH, STEPS = 512, 64, 16, 8, 12
#: the ``recorded`` design's sizes (see the module docstring for why they are smaller)
RECORDED_SIZES = dict(pool_pairs=256, eval_prompts=32, per_prompt=16, batch=8, steps=8)
QUICK = dict(pool_pairs=24, eval_prompts=4, per_prompt=4, batch=4, steps=2)
CSV_KEYS = (
    "seed selection step queries bo_gold concordance chosen_gold_gap chosen_gold_ties "
    "label_gold_agreement fit_seconds"
).split()


def _label_gold_agreement(labels: list[float | None], ga: np.ndarray, gb: np.ndarray) -> float:
    hits = [
        (p > 0.5) == (x > y)
        for p, x, y in zip(labels, ga, gb, strict=True)
        if p not in (None, 0.5) and x != y
    ]
    return float(np.mean(hits)) if hits else float("nan")


def run_seed(
    seed: int,
    pool_pairs: int = POOL_PAIRS,
    eval_prompts: int = EVAL_PROMPTS,
    per_prompt: int = PER_PROMPT,
    batch: int = BATCH,
    steps: int = STEPS,
    rater: str = RATER,
    verbose: bool = True,
) -> dict[str, Any]:
    """Both rules on one seed; returns per-rule lists of per-step measurements and the set-up."""
    from rlhf_envs.feedback.simulated import SimulatedHuman

    if batch * steps > pool_pairs:
        raise ValueError(f"{steps} steps of {batch} queries need a pool of at least {batch * steps} pairs")
    cfg = RLHFConfig(seed=seed, rater=rater)
    loop = RLHFLoop(cfg, run_dir=None)  # only for the initial policy's sampler and the gold
    base = _seed(seed, 0, 20) % (2**30)
    eps, _ = loop.sample(np.repeat(base + np.arange(pool_pairs), 2).tolist(), _seed(seed, 0, 21))
    a, b = eps[0::2], eps[1::2]
    ga, gb = loop.gold_of(a), loop.gold_of(b)
    held: list[Episode]
    held, _ = loop.sample(
        np.repeat(base + (2**30) + np.arange(eval_prompts), per_prompt).tolist(), _seed(seed, 0, 22)
    )
    hg = loop.gold_of(held).reshape(eval_prompts, per_prompt)
    setup = {
        "pool_gold_mean": float(np.r_[ga, gb].mean()),
        "pool_gold_ties": float(np.mean(ga == gb)),
        "eval_gold_mean": float(hg.mean()),
        "eval_best_of_n_oracle": float(hg.max(1).mean()),
    }
    if verbose:
        print(
            f"seed {seed}: pool gold {setup['pool_gold_mean']:.3f} (ties {setup['pool_gold_ties']:.0%}), "
            f"held-out gold {setup['eval_gold_mean']:.3f}, best-of-{per_prompt} with gold itself "
            f"{setup['eval_best_of_n_oracle']:.3f}",
            flush=True,
        )
    out: dict[str, Any] = {"setup": setup}
    for rule in RULES:
        human = SimulatedHuman(loop.gold, rater, seed=_seed(seed, 0, 1))
        _run_rule(out, rule, cfg, human, a, b, ga, gb, held, hg, seed, batch, steps, verbose)
    loop.close()
    return out


def recorded_setup(
    seed: int, pool_pairs: int, eval_prompts: int, per_prompt: int
) -> tuple[list, list, list, np.ndarray, np.ndarray, list, np.ndarray]:
    """The ``recorded`` design's fixed pool and held-out set for one seed.

    Returns ``(train_records, a, b, ga, gb, held, hg)``: the pool's two sides as episodes of real
    train sentences (same domain within a pair) with their crowd means ``ga``, ``gb``; the held-out
    test sentences as episodes and their crowd means, shape ``(eval_prompts, per_prompt)``.
    """
    from rlhf_envs.data import hutto2014
    from rlhf_envs.feedback.recorded import episode_for

    train = hutto2014.load(RECORDED_DOMAINS, split="train")
    test = hutto2014.load(RECORDED_DOMAINS, split="test")
    if eval_prompts * per_prompt > len(test):
        raise ValueError(
            f"{eval_prompts} x {per_prompt} held-out sentences, but the test split has {len(test)}"
        )
    rng = np.random.default_rng(_seed(seed, 0, 25))
    by_domain = {d: np.array([k for k, r in enumerate(train) if r.domain == d]) for d in RECORDED_DOMAINS}
    i = rng.integers(len(train), size=pool_pairs)
    j = np.empty_like(i)
    for k, first in enumerate(i):
        same = by_domain[train[first].domain]
        pos = int(np.searchsorted(same, first))
        j[k] = same[(pos + rng.integers(1, len(same))) % len(same)]
    eps = [episode_for(r) for r in train]
    a, b = [eps[k] for k in i], [eps[k] for k in j]
    mean = np.array([r.mean for r in train])
    pick = rng.choice(len(test), size=eval_prompts * per_prompt, replace=False)
    held = [episode_for(test[k]) for k in pick]
    hg = np.array([test[k].mean for k in pick]).reshape(eval_prompts, per_prompt)
    return train, a, b, mean[i], mean[j], held, hg


def run_seed_recorded(
    seed: int,
    pool_pairs: int = POOL_PAIRS,
    eval_prompts: int = EVAL_PROMPTS,
    per_prompt: int = PER_PROMPT,
    batch: int = BATCH,
    steps: int = STEPS,
    backbone: str = "default",
    verbose: bool = True,
) -> dict[str, Any]:
    """Both rules on one seed of the ``recorded`` design (real sentences, recorded raters, crowd-mean
    gold); the same output as :func:`run_seed`."""
    from rlhf_envs.feedback.recorded import RecordedRaters

    if batch * steps > pool_pairs:
        raise ValueError(f"{steps} steps of {batch} queries need a pool of at least {batch * steps} pairs")
    cfg = RLHFConfig(seed=seed, model=backbone)
    train, a, b, ga, gb, held, hg = recorded_setup(seed, pool_pairs, eval_prompts, per_prompt)
    setup = {
        "pool_gold_mean": float(np.r_[ga, gb].mean()),
        "pool_gold_ties": float(np.mean(ga == gb)),
        "eval_gold_mean": float(hg.mean()),
        "eval_best_of_n_oracle": float(hg.max(1).mean()),
    }
    if verbose:
        print(
            f"seed {seed}: pool crowd mean {setup['pool_gold_mean']:.3f} (equal means "
            f"{setup['pool_gold_ties']:.1%}), held-out {setup['eval_gold_mean']:.3f}, the crowd's own "
            f"best of {per_prompt} {setup['eval_best_of_n_oracle']:.3f}",
            flush=True,
        )
    out: dict[str, Any] = {"setup": setup}
    for rule in RULES:
        human = RecordedRaters(train, seed=_seed(seed, 0, 1))
        _run_rule(out, rule, cfg, human, a, b, ga, gb, held, hg, seed, batch, steps, verbose)
    return out


def _run_rule(
    out: dict[str, Any],
    rule: str,
    cfg: RLHFConfig,
    human: Any,
    a: list[Episode],
    b: list[Episode],
    ga: np.ndarray,
    gb: np.ndarray,
    held: list[Episode],
    hg: np.ndarray,
    seed: int,
    batch: int,
    steps: int,
    verbose: bool,
) -> None:
    """One rule's query-and-refit run on a fixed pool; appends its rows as ``out[rule]``."""
    pool_pairs = len(a)
    eval_prompts, per_prompt = hg.shape
    first = select_pairs(batch, pool_pairs, "random", np.random.default_rng(_seed(seed, 0, 23)))
    chosen: list[int] = [int(i) for i in first]
    labels = list(human.compare([a[i] for i in chosen], [b[i] for i in chosen]).prob_a())
    rows = []
    for step in range(steps):
        t0 = time.perf_counter()
        rm, _ = fit_reward_model(
            cfg, [a[i] for i in chosen], [b[i] for i in chosen], labels, _seed(seed, step, 24)
        )
        fit_s = time.perf_counter() - t0
        s = rm.score(held).reshape(eval_prompts, per_prompt)
        idx = np.asarray(chosen)
        rows.append(
            {
                "step": step,
                "queries": len(chosen),
                "bo_gold": float(hg[np.arange(eval_prompts), s.argmax(1)].mean()),
                "concordance": concordance(s.ravel(), hg.ravel()),
                # what the rule asked about in the batch that produced this model
                "chosen_gold_gap": float(np.abs(ga[idx[-batch:]] - gb[idx[-batch:]]).mean()),
                "chosen_gold_ties": float(np.mean(ga[idx[-batch:]] == gb[idx[-batch:]])),
                "label_gold_agreement": _label_gold_agreement(
                    labels[-batch:], ga[idx[-batch:]], gb[idx[-batch:]]
                ),
                "fit_seconds": fit_s,
            }
        )
        if verbose:
            r = rows[-1]
            print(
                f"  {rule:12s} queries {r['queries']:3d}: best-of-{per_prompt} gold {r['bo_gold']:.3f}, "
                f"concordance {r['concordance']:.3f}, asked gold gap {r['chosen_gold_gap']:.3f}",
                flush=True,
            )
        if step == steps - 1:
            break
        rest = np.setdiff1d(np.arange(pool_pairs), idx)
        dis = rm.disagreement([a[i] for i in rest], [b[i] for i in rest]) if rule == "disagreement" else None
        pick = select_pairs(batch, len(rest), rule, np.random.default_rng(_seed(seed, step + 1, 23)), dis)
        new = [int(rest[i]) for i in pick]
        chosen += new
        labels += list(human.compare([a[i] for i in new], [b[i] for i in new]).prob_a())
    out[rule] = rows


def queries_to_level(rows: list[dict[str, Any]], level: float, statistic: str = "first") -> int | None:
    """Queries at which a run's best-of-n gold reaches ``level`` (None: never).

    ``statistic="first"``: the first measured model at or above it. ``"isotonic"``: the first point
    where the isotonic (non-decreasing, least-squares) fit of the run's curve is at or above it, so
    one lucky or unlucky refit cannot decide alone.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    y = np.array([float(r["bo_gold"]) for r in rows])
    if statistic == "isotonic" and len(y):
        from scipy.optimize import isotonic_regression

        y = isotonic_regression(y).x
    return next((int(r["queries"]) for r, v in zip(rows, y, strict=True) if v >= level), None)


def _fewer(q: int | None, other: int | None) -> bool:
    """``q`` needed fewer queries than ``other``; a run that never reached the level needs more than
    any that did, and two that never did are level."""
    return q is not None and (other is None or q < other)


def summarize(
    results: dict[int, dict[str, Any]],
    levels: tuple[float, ...] = DESIGNS["first"]["levels"],
    statistic: str = "first",
) -> dict[str, Any]:
    """Queries-to-level per seed and rule with ratios, and the paired secondary differences."""
    seeds = sorted(results)
    out: dict[str, Any] = {"statistic": statistic, "queries_to_level": {}, "paired_difference": {}}
    for level in levels:
        per = []
        for s in seeds:
            q = {rule: queries_to_level(results[s][rule], level, statistic) for rule in RULES}
            both = q["random"] is not None and q["disagreement"] is not None
            per.append({"seed": s, **q, "ratio": q["disagreement"] / q["random"] if both else None})
        done = [p for p in per if p["ratio"] is not None]
        out["queries_to_level"][str(level)] = {
            "per_seed": per,
            "seeds_both_reached": len(done),
            "ratio_of_means": ratio_of_means(done, "disagreement", "random"),
            "disagreement_fewer_in": sum(_fewer(p["disagreement"], p["random"]) for p in per),
            "random_fewer_in": sum(_fewer(p["random"], p["disagreement"]) for p in per),
        }
    for key in ("bo_gold", "concordance", "chosen_gold_gap", "chosen_gold_ties"):
        d = [
            float(
                np.mean([r[key] for r in results[s]["disagreement"][1:]])
                - np.mean([r[key] for r in results[s]["random"][1:]])
            )
            for s in seeds
        ]
        out["paired_difference"][key] = {
            "per_seed": d,
            "mean": float(np.mean(d)),
            "sem": sem(d),
        }
    return out


def decision(summary: dict[str, Any], primary: float) -> dict[str, Any]:
    """The ``confirm`` design's decision rule (see the module docstring), applied to a summary."""
    q = summary["queries_to_level"][str(primary)]
    d = summary["paired_difference"]["bo_gold"]
    checks = {
        "ratio_of_means_below_1": q["ratio_of_means"] is not None and q["ratio_of_means"] < 1.0,
        "fewer_in_more_seeds": q["disagreement_fewer_in"] > q["random_fewer_in"],
        "bo_gold_difference_above_2_sem": d["sem"] is not None and d["mean"] > 2 * d["sem"],
    }
    return {**checks, "shown": all(checks.values())}


def results_from_csv(path: str) -> dict[int, dict[str, Any]]:
    """Per-seed, per-rule rows of a saved ``query_selection*.csv`` (to re-summarise without re-running)."""
    results: dict[int, dict[str, Any]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            r = {
                k: (int(v) if k in ("step", "queries") else float(v))
                for k, v in row.items()
                if k not in ("seed", "selection")
            }
            results.setdefault(int(row["seed"]), {rule: [] for rule in RULES})[row["selection"]].append(r)
    for runs in results.values():
        for rule in RULES:
            runs[rule].sort(key=lambda r: r["step"])
    return results


def _plot(results: dict[int, dict[str, Any]], path: str, per_prompt: int, primary: float) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = {"random": "tab:blue", "disagreement": "tab:red"}
    for k, (key, label) in enumerate(
        (("bo_gold", f"gold of best-of-{per_prompt}"), ("concordance", "concordance with gold"))
    ):
        for rule in RULES:
            q = [r["queries"] for r in results[min(results)][rule]]
            ys = np.array([[r[key] for r in results[s][rule]] for s in sorted(results)])
            for y in ys:
                ax[k].plot(q, y, color=colors[rule], alpha=0.2, lw=0.8)
            ax[k].plot(
                q, ys.mean(0), color=colors[rule], marker="o", ms=3, label=f"{rule} (mean of {len(ys)} seeds)"
            )
        ax[k].set(xlabel="queries asked", ylabel=label, title=f"{label} on held-out prompts")
    ax[0].axhline(primary, color="k", lw=0.8, ls="--")
    ax[0].legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--design", choices=sorted(DESIGNS), default="first", help="pre-registered design")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the design's seeds")
    p.add_argument("--quick", action="store_true", help="tiny pool and evaluation set: a smoke run")
    p.add_argument("--threads", type=int, default=1, help="torch threads per seed")
    p.add_argument("--jobs", type=int, default=1, help="seeds run side by side in separate processes")
    p.add_argument("--from-csv", default=None, help="re-summarise this saved CSV instead of running")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument(
        "--backbone",
        default="default",
        help="recorded design: reward-model backbone ('default' or a model directory)",
    )
    args = p.parse_args(argv)
    design = DESIGNS[args.design]
    levels: tuple[float, ...] = design["levels"]
    primary: float = design["primary"]
    if args.jobs < 1:
        p.error(f"--jobs must be a positive integer, got {args.jobs}")
    init_torch(args.threads)
    os.makedirs(args.out, exist_ok=True)
    full = dict(
        pool_pairs=POOL_PAIRS, eval_prompts=EVAL_PROMPTS, per_prompt=PER_PROMPT, batch=BATCH, steps=STEPS
    )
    if design.get("source") == "recorded":
        full = dict(RECORDED_SIZES)
    sizes = dict(QUICK) if args.quick else full
    t_all = Timer()
    setup: dict[str, Any] = {}
    recorded = design.get("source") == "recorded"
    run = run_seed_recorded if recorded else run_seed
    if recorded:
        sizes["backbone"] = args.backbone
    if args.from_csv is not None:
        results = results_from_csv(args.from_csv)
        seeds = sorted(results)
    else:
        seeds = list(design["seeds"]) if args.seeds is None else args.seeds
        if args.jobs > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(
                args.jobs,
                mp_context=mp.get_context("spawn"),
                initializer=init_torch,
                initargs=(args.threads,),
            ) as ex:
                futures = {s: ex.submit(run, s, **sizes) for s in seeds}
                results = {s: f.result() for s, f in futures.items()}
        else:
            results = {s: run(s, **sizes) for s in seeds}
        setup = {f"seed{s}": results[s]["setup"] for s in seeds}
    summary = summarize(results, levels, design["statistic"])
    verdict = decision(summary, primary)
    stem = os.path.join(args.out, design["stem"])
    if args.from_csv is None:
        rows = [
            {"seed": s, "selection": rule, **r}
            for s in sorted(results)
            for rule in RULES
            for r in results[s][rule]
        ]
        write_csv(stem + ".csv", rows, CSV_KEYS)
    loop_config = (RLHFConfig(model=args.backbone) if recorded else RLHFConfig(rater=RATER)).to_json_dict()
    loop_config.pop("seed")  # each seed's own
    write_json(
        stem + ".json",
        {
            "question": "queries a reward model needs before best-of-n with it reaches a gold level: "
            "disagreement selection vs random, on a fixed pool from the initial policy",
            "design": args.design,
            "protocol": {
                "seeds": seeds,
                "statistic": design["statistic"],
                "levels": list(levels),
                "primary": primary,
                "rater": "RecordedRaters (crowd, ties=tie) on real sentences" if recorded else RATER,
                **(
                    {"domains": list(RECORDED_DOMAINS), "gold": "crowd mean rating (-4..+4)"}
                    if recorded
                    else {}
                ),
                **sizes,
            },
            "reward_model": {
                k: v for k, v in loop_config.items() if k.startswith(("rm_", "n_members", "aggregate"))
            },
            "preset": None,
            "resolved_config": loop_config,
            "setup": setup,
            "summary": summary,
            "decision_rule": verdict,
            "seconds_total": t_all.seconds,
            "machine": {**machine_info(), "torch_threads": args.threads, "jobs": args.jobs},
        },
        indent=1,
    )
    n = sizes["per_prompt"] if args.from_csv is None else PER_PROMPT
    _plot(results, stem + ".png", n, primary)
    print(f"\nqueries until best-of-{n} gold >= level ({design['statistic']} statistic; None = not reached):")
    for level in levels:
        s = summary["queries_to_level"][str(level)]
        per = ", ".join(
            f"seed {x['seed']}: random {x['random']} / disagreement {x['disagreement']}"
            for x in s["per_seed"]
        )
        star = " (primary)" if level == primary else ""
        print(
            f"  >= {level}{star}: {per}; ratio of means {s['ratio_of_means']}, fewer queries: "
            f"disagreement in {s['disagreement_fewer_in']}, random in {s['random_fewer_in']}"
        )
    for key, d in summary["paired_difference"].items():
        sem = "n/a" if d["sem"] is None else f"{d['sem']:.4f}"
        print(
            f"  disagreement - random, {key}: {d['mean']:+.4f} (sem {sem}), per seed "
            f"{[round(x, 4) for x in d['per_seed']]}"
        )
    print(f"  decision rule at {primary}: {verdict}")
    print(f"wrote {stem}.json, .png{'' if args.from_csv else ', .csv'} ({t_all.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
