"""Does asking where the reward-model ensemble disagrees reach a gold level with fewer queries?

Runs the RLHF loop (:mod:`agents.rlhf`) on the embedded model with both query-selection rules,
``random`` and ``disagreement``, for several seeds. The two runs of a seed are paired: round 0 is
identical (no ensemble exists yet, so both select at random), later rounds differ only in which
pairs of the same candidate pool the simulated human is asked about.

The threshold rule is fixed in advance (``THRESHOLDS`` below, primary ``PRIMARY``): the number of
queries a run has used at the end of the first round whose gold reward (mean VADER sentiment on
fresh episodes of that round's policy) is at least the level. A run that never reaches it is
reported as not reached (censored), never imputed. The ratio is mean queries-to-threshold of
``disagreement`` over that of ``random`` across the seeds where both reached it, with per-seed
ratios alongside.

Two pre-registered designs (``DESIGNS`` below), each fixed before any of its seeds was run:

* ``coarse`` (the default, the first recorded design; preset ``"rlhf-queries-coarse"``): 8 rounds x
  16 queries, pool x4, levels ``THRESHOLDS`` with primary ``PRIMARY`` (0.7). Its result: gold jumps from ~0.13 to ~0.5-0.6
  after round 0 (16 random queries) under either rule, so 16-query steps were too coarse to show a
  difference.
* ``fine`` (preset ``"rlhf-queries-fine"``): 10 rounds x 4 queries, pool x8, levels
  ``FINE_THRESHOLDS`` with primary ``FINE_PRIMARY`` (0.45), so the threshold is resolved in
  4-query steps.

    python -m benchmarks.rlhf_queries                 # coarse: 3 seeds x 2 rules, ~25-40 min on 2 cores
    python -m benchmarks.rlhf_queries --design fine   # fine: 3 seeds x 2 rules
    python -m benchmarks.rlhf_queries --seeds 0 --rounds 2 --out /tmp/q --runs /tmp/q/runs  # a quick look

The coarse design writes ``benchmarks/results/rlhf_queries.csv`` (one row per run and round),
``rlhf_queries.json`` (protocol, the preset and the resolved loop config, per-seed
queries-to-threshold, ratios) and ``rlhf_queries.png``,
and keeps each run's rounds under ``runs/rlhf_queries/`` so an interrupted benchmark resumes; the
fine design writes ``rlhf_queries_fine.{csv,json,png}`` and keeps its runs under
``runs/rlhf_queries_fine/``.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

import numpy as np

from agents.presets import get_preset
from agents.rlhf import RLHFConfig, RLHFLoop
from benchmarks.common import (
    RESULTS,
    Timer,
    init_torch,
    machine_info,
    pyplot,
    ratio_of_means,
    save_figure,
    write_csv,
    write_json,
)

#: gold levels (mean VADER on fresh episodes) fixed before the benchmark seeds were run
THRESHOLDS = (0.45, 0.6, 0.7, 0.8)
PRIMARY = 0.7
RULES = ("random", "disagreement")
#: the second design's levels: same comparison and threshold rule, resolved in 4-query steps. Fixed
#: by the lead engineer before any of its runs, after the coarse design found ratio 1.0 at 16-query
#: steps.
FINE_THRESHOLDS = (0.3, 0.45, 0.6, 0.7)
FINE_PRIMARY = 0.45
#: design name -> loop settings (a preset of agents/presets.py: RLHFConfig defaults except these),
#: gold levels, primary level, output stem and run directory
DESIGNS: dict[str, dict[str, Any]] = {
    "coarse": dict(
        preset="rlhf-queries-coarse",
        thresholds=THRESHOLDS,
        primary=PRIMARY,
        stem="rlhf_queries",
        runs="runs/rlhf_queries",
    ),
    "fine": dict(
        preset="rlhf-queries-fine",
        thresholds=FINE_THRESHOLDS,
        primary=FINE_PRIMARY,
        stem="rlhf_queries_fine",
        runs="runs/rlhf_queries_fine",
    ),
}
CSV_KEYS = (
    "seed selection round queries queries_total gold_reward gold_reward_std proxy_reward "
    "proxy_gold_accuracy kl sqrt_kl label_gold_agreement selected_disagreement pool_disagreement "
    "skipped cost rater_seconds ppo_tokens_total rm_train_loss round_seconds"
).split()


def queries_to_threshold(history: list[dict[str, Any]], level: float) -> int | None:
    """Queries used by the end of the first round whose gold reward is >= ``level`` (None: never)."""
    for row in history:
        if row["gold_reward"] >= level:
            return int(row["queries_total"])
    return None


def summarize(
    runs: dict[tuple[int, str], list[dict[str, Any]]],
    seeds: list[int],
    thresholds: tuple[float, ...] = THRESHOLDS,
) -> dict[str, Any]:
    """Per-seed queries-to-threshold for both rules and the ratios, for every threshold."""
    out: dict[str, Any] = {}
    for level in thresholds:
        per_seed = []
        for s in seeds:
            q = {rule: queries_to_threshold(runs[(s, rule)], level) for rule in RULES}
            ratio = (
                q["disagreement"] / q["random"]
                if q["disagreement"] is not None and q["random"] is not None
                else None
            )
            per_seed.append({"seed": s, **q, "ratio": ratio})
        both = [p for p in per_seed if p["ratio"] is not None]
        out[str(level)] = {
            "per_seed": per_seed,
            "seeds_both_reached": len(both),
            "ratio_of_means": ratio_of_means(both, "disagreement", "random"),
            "per_seed_ratios": [p["ratio"] for p in per_seed],
            "disagreement_fewer_in": sum(p["disagreement"] < p["random"] for p in both),
            "random_fewer_in": sum(p["disagreement"] > p["random"] for p in both),
            "equal_in": sum(p["disagreement"] == p["random"] for p in both),
        }
    return out


def _plot(
    runs: dict[tuple[int, str], list[dict[str, Any]]],
    initial: dict,
    path: str,
    primary: float = PRIMARY,
) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = {"random": "tab:blue", "disagreement": "tab:red"}
    for (seed, rule), hist in sorted(runs.items()):
        q = [0] + [r["queries_total"] for r in hist]
        g = [initial[(seed, rule)]] + [r["gold_reward"] for r in hist]
        ax[0].plot(
            q,
            g,
            marker="o",
            ms=3,
            color=colors[rule],
            alpha=0.8,
            label=f"{rule}" if seed == min(s for s, _ in runs) else None,
        )
        ax[1].plot(
            [r["sqrt_kl"] for r in hist],
            [r["gold_reward"] for r in hist],
            marker="o",
            ms=3,
            color=colors[rule],
            alpha=0.8,
        )
        ax[1].plot(
            [r["sqrt_kl"] for r in hist],
            [r["proxy_reward"] for r in hist],
            ls=":",
            color=colors[rule],
            alpha=0.6,
        )
    ax[0].axhline(primary, color="k", lw=0.8, ls="--")
    ax[0].set(xlabel="queries asked", ylabel="gold reward (VADER, fresh episodes)", title="gold vs queries")
    ax[0].legend()
    ax[1].set(
        xlabel="sqrt KL(policy || initial)",
        ylabel="reward",
        title="gold (solid) and proxy (dotted) vs sqrt KL",
    )
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--design",
        choices=sorted(DESIGNS),
        default="coarse",
        help="pre-registered design: settings, gold levels, outputs (default: coarse, the first one)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=None, help="default: the design's rounds")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default=None, help="run directories (resumable; default: the design's)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    design = DESIGNS[args.design]
    settings: dict[str, Any] = get_preset(design["preset"], "rlhf-loop")
    thresholds: tuple[float, ...] = design["thresholds"]
    primary: float = design["primary"]
    if args.rounds is None:
        args.rounds = settings["rounds"]
    if args.rounds < 1:
        p.error(f"--rounds must be a positive integer, got {args.rounds}")
    if args.runs is None:
        args.runs = design["runs"]
    init_torch(args.threads)
    os.makedirs(args.out, exist_ok=True)

    runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
    initial: dict[tuple[int, str], float] = {}
    seconds: dict[str, float] = {}
    t_all = Timer()
    for seed in args.seeds:
        for rule in RULES:
            cfg = RLHFConfig(**{**settings, "rounds": args.rounds}, selection=rule, seed=seed)
            clock = Timer()
            loop = RLHFLoop(cfg, run_dir=os.path.join(args.runs, f"seed{seed}_{rule}"), verbose=True)
            print(f"== seed {seed}, selection {rule} (resuming after {loop.rounds_done} rounds)", flush=True)
            runs[(seed, rule)] = loop.run()
            initial[(seed, rule)] = loop.initial["gold_reward"]
            seconds[f"seed{seed}_{rule}"] = clock.seconds
            loop.close()

    summary = summarize(runs, args.seeds, thresholds)
    rows = []
    for (seed, rule), hist in sorted(runs.items()):
        for r in hist:
            rows.append(
                {
                    "seed": seed,
                    "selection": rule,
                    **{k: r.get(k) for k in CSV_KEYS if k not in ("seed", "selection")},
                }
            )
    stem = os.path.join(args.out, design["stem"])
    write_csv(stem + ".csv", rows, CSV_KEYS)
    resolved = RLHFConfig(**{**settings, "rounds": args.rounds}).to_json_dict()
    for per_run in ("selection", "seed"):  # each run's own: in the CSV rows
        resolved.pop(per_run)
    result = {
        "question": "queries needed to reach a gold level: disagreement selection vs random selection",
        "design": args.design,
        "threshold_rule": "queries_total at the end of the first round with mean gold (VADER) on fresh "
        f"eval episodes >= level; levels {list(thresholds)} fixed in advance, primary {primary}",
        "settings": {**settings, "rounds": args.rounds},
        "preset": design["preset"],
        "resolved_config": resolved,
        "seeds": args.seeds,
        "initial_gold": {f"seed{s}": initial[(s, "random")] for s in args.seeds},
        "queries_to_threshold": summary,
        "final_round": {
            f"seed{s}_{rule}": {
                k: runs[(s, rule)][-1][k]
                for k in ("queries_total", "gold_reward", "proxy_reward", "kl", "proxy_gold_accuracy")
            }
            for s in args.seeds
            for rule in RULES
            if runs[(s, rule)]
        },
        "mean_proxy_gold_accuracy_after_round0": {
            rule: float(np.mean([r["proxy_gold_accuracy"] for s in args.seeds for r in runs[(s, rule)][1:]]))
            if args.rounds > 1
            else math.nan
            for rule in RULES
        },
        "seconds_per_run": seconds,
        "seconds_total": t_all.seconds,
        "machine": {**machine_info(), "torch_threads": args.threads},
    }
    write_json(stem + ".json", result, indent=1)
    _plot(runs, initial, stem + ".png", primary)

    print(f"\nqueries to reach gold >= level (None = not reached in {args.rounds} rounds):")
    for level in thresholds:
        s = summary[str(level)]
        per = ", ".join(
            f"seed {p['seed']}: random {p['random']} / disagreement {p['disagreement']}"
            for p in s["per_seed"]
        )
        star = " (primary)" if level == primary else ""
        print(f"  gold >= {level}{star}: {per}; ratio of means {s['ratio_of_means']}")
    print(f"wrote {stem}.csv, .json, .png ({t_all.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
