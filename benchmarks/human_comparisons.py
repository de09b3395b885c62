"""Reward-model accuracy against the number of real comparisons: real raters vs the simulated crowd.

Issue 16: how fast does a reward model learn from comparisons answered by real people, and does
the simulated rater fitted to them (the ``crowd-2014`` preset of
:class:`~rlhf_envs.feedback.simulated.SimulatedHuman`, ``benchmarks/human_calibration.py``) teach
it as fast when it answers the *same* questions?

Data: the movie and Amazon review snippets of Hutto & Gilbert (ICWSM 2014)
(:mod:`rlhf_envs.data.hutto2014`), their fixed split. Per seed, the train sentences of each domain
are shuffled and paired off (each sentence in at most one comparison, both sentences of a pair from
one domain): 3,751 movie + 1,315 Amazon = **5,066 comparisons, all the train split allows** without
reusing a sentence. The pairs are interleaved in a seeded order and the first ``n`` are used, for
``n`` in 100, 200, 400, ..., 3,200, 5,066 (nested). Each pair is answered by

* ``recorded``: :class:`~rlhf_envs.feedback.recorded.RecordedRaters` (the crowd: one real rating of
  each sentence drawn, the higher preferred, equal ratings a tie = label 0.5);
* ``crowd-2014``: ``SimulatedHuman(CrowdMean(train), preset("crowd-2014"), scale=4)``, the fitted
  Boltzmann rater with mistakes on the crowd mean (it never ties);
* ``crowd order`` (reference, not a rater): the label the crowd means give (1 or 0), i.e. what
  20 people's average would answer.

The model (kept small so the whole run is a few CPU-minutes): a linear Bradley-Terry reward on
bag-of-words features, ``r(x) = w . phi(x)`` with ``phi`` the presence of lower-cased words (and
``!``/``?``) seen in at least two train sentences (the ``bow_ridge`` features of
``benchmarks/human_ratings.py``), fitted by L2-penalised logistic regression of the label on
``phi(a) - phi(b)`` (soft labels; L-BFGS), the penalty chosen per fit from (0.1, 0.3, 1, 3, 10) by
pairwise accuracy on the validation split. Not the transformer :class:`RewardModel`: that costs about
0.1 CPU-s per text on this machine, so 3 seeds x 7 sizes x 3 label sources would take hours.

Metric: **held-out pairwise accuracy**: over all pairs of *test* sentences of one domain whose crowd
means differ, the share the model orders like the crowd mean (ties 1/2), pooled over the two
domains (pair-weighted). Seeds 0, 1, 2 (pairing, order and both raters' draws); mean and standard
deviation over seeds.

    python -m benchmarks.human_comparisons            # ~2 min; results/human_comparisons.{json,png}
    python -m benchmarks.human_comparisons --quick --out /tmp/hc
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, machine_info, pyplot, save_figure, write_json
from benchmarks.human_ratings import bow_matrix, pairwise_accuracy, words
from rlhf_envs.data import hutto2014

DOMAINS = ("movies", "amazon")
SIZES = (100, 200, 400, 800, 1600, 3200)
ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0)
SOURCES = ("recorded", "crowd-2014", "crowd_order")
LABELS = {
    "recorded": "RecordedRaters (real ratings)",
    "crowd-2014": "SimulatedHuman crowd-2014",
    "crowd_order": "crowd-mean order (reference)",
}


def all_pairs(train: list[hutto2014.RatedSentence], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every train sentence in at most one pair, pairs within a domain, in a seeded interleaved order."""
    rng = np.random.default_rng([seed, 61])
    i_all, j_all = [], []
    for d in DOMAINS:
        idx = rng.permutation(np.array([k for k, r in enumerate(train) if r.domain == d], dtype=np.int64))
        half = len(idx) // 2
        i_all.append(idx[:half])
        j_all.append(idx[half : 2 * half])
    i, j = np.concatenate(i_all), np.concatenate(j_all)
    order = rng.permutation(len(i))
    return i[order], j[order]


def labels_of(source: str, train: list, i: np.ndarray, j: np.ndarray, seed: int) -> np.ndarray:
    """P(first preferred) per pair from ``source`` (0, 1, or 0.5 for a tie)."""
    from rlhf_envs.feedback.recorded import CrowdMean, RecordedRaters, episode_for
    from rlhf_envs.feedback.simulated import SimulatedHuman, preset

    eps = [episode_for(r) for r in train]
    a, b = [eps[k] for k in i], [eps[k] for k in j]
    if source == "recorded":
        p = RecordedRaters(train, seed=seed).compare(a, b).prob_a()
    elif source == "crowd-2014":
        p = (
            SimulatedHuman(CrowdMean(train), preset("crowd-2014"), seed=seed, scale=4.0)
            .compare(a, b)
            .prob_a()
        )
    else:
        mean = np.array([r.mean for r in train])
        p = np.where(mean[i] > mean[j], 1.0, np.where(mean[i] < mean[j], 0.0, 0.5))
    return np.array([0.5 if x is None else float(x) for x in p])


def fit_bt(xd, y: np.ndarray, alpha: float) -> np.ndarray:  # noqa: ANN001 - scipy sparse
    """Linear Bradley-Terry: minimise mean BCE(sigmoid(xd w), y) + alpha / n |w|^2 (L-BFGS)."""
    from scipy.optimize import minimize

    n = xd.shape[0]

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = xd @ w
        loss = np.logaddexp(0, z) - y * z
        g = xd.T @ (1 / (1 + np.exp(-z)) - y) / n + 2 * alpha / n * w
        return float(loss.mean() + alpha / n * w @ w), g

    return minimize(f, np.zeros(xd.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x


def decided_pairs(y: np.ndarray) -> int:
    """Pairs ``i < j`` with ``y[i] != y[j]``."""
    _, counts = np.unique(y, return_counts=True)
    return int((len(y) ** 2 - (counts**2).sum()) // 2)


def pooled_accuracy(w: np.ndarray, feats: dict, gold: dict) -> float:
    """Pair-weighted pairwise accuracy over the domains' held-out sentences."""
    credit, pairs = 0.0, 0
    for d in DOMAINS:
        m = decided_pairs(gold[d])
        credit += pairwise_accuracy(feats[d] @ w, gold[d]) * m
        pairs += m
    return credit / pairs


def run(seeds: list[int], sizes: list[int], quick: bool) -> dict:
    from collections import Counter

    train = hutto2014.load(DOMAINS, split="train")
    val = {d: hutto2014.load(d, split="validation") for d in DOMAINS}
    test = {d: hutto2014.load(d, split="test") for d in DOMAINS}
    if quick:
        train = [r for d in DOMAINS for r in [x for x in train if x.domain == d][:200]]
        val = {d: v[:60] for d, v in val.items()}
        test = {d: v[:80] for d, v in test.items()}
    df = Counter(w for r in train for w in words(r.text))
    vocab = {w: k for k, w in enumerate(sorted(w for w, c in df.items() if c >= 2))}
    x = bow_matrix([r.text for r in train], vocab)
    xv = {d: bow_matrix([r.text for r in v], vocab) for d, v in val.items()}
    xt = {d: bow_matrix([r.text for r in v], vocab) for d, v in test.items()}
    gv = {d: np.array([r.mean for r in v]) for d, v in val.items()}
    gt = {d: np.array([r.mean for r in v]) for d, v in test.items()}
    runs = []
    for seed in seeds:
        i, j = all_pairs(train, seed)
        ns = [n for n in sizes if n < len(i)] + [len(i)]
        labels = {s: labels_of(s, train, i, j, seed) for s in SOURCES}
        for source in SOURCES:
            for n in ns:
                xd = x[i[:n]] - x[j[:n]]
                y = labels[source][:n]
                fits = {a: fit_bt(xd, y, a) for a in ALPHAS}
                val_acc = {a: pooled_accuracy(w, xv, gv) for a, w in fits.items()}
                best = max(val_acc, key=val_acc.get)
                acc = pooled_accuracy(fits[best], xt, gt)
                agree = labels[source][:n]
                gold_dir = np.sign(
                    np.array([train[k].mean for k in i[:n]]) - np.array([train[k].mean for k in j[:n]])
                )
                decided = (agree != 0.5) & (gold_dir != 0)
                runs.append(
                    {
                        "seed": seed,
                        "source": source,
                        "comparisons": n,
                        "test_pairwise_accuracy": round(acc, 4),
                        "alpha": best,
                        "validation_pairwise_accuracy": round(val_acc[best], 4),
                        "tie_share": round(float(np.mean(agree == 0.5)), 4),
                        "label_agrees_with_crowd_order": round(
                            float(np.mean((agree[decided] > 0.5) == (gold_dir[decided] > 0))), 4
                        ),
                    }
                )
            print(
                f"seed {seed} {source}: "
                + ", ".join(
                    f"{r['comparisons']}: {r['test_pairwise_accuracy']:.3f}"
                    for r in runs
                    if r["seed"] == seed and r["source"] == source
                ),
                flush=True,
            )
    curves = {}
    for source in SOURCES:
        by_n: dict[int, list[float]] = {}
        for r in runs:
            if r["source"] == source:
                by_n.setdefault(r["comparisons"], []).append(r["test_pairwise_accuracy"])
        curves[source] = [
            {
                "comparisons": n,
                "mean": round(float(np.mean(v)), 4),
                "sd": round(float(np.std(v, ddof=1)), 4) if len(v) > 1 else 0.0,
            }
            for n, v in sorted(by_n.items())
        ]
    return {
        "sizes": {
            "train_sentences": len(train),
            "vocabulary": len(vocab),
            "test": {d: len(v) for d, v in test.items()},
        },
        "curves": curves,
        "runs": runs,
    }


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = {"recorded": ("tab:red", "-"), "crowd-2014": ("tab:blue", "-"), "crowd_order": ("gray", "--")}
    for source in SOURCES:
        c = result["curves"][source]
        n = [p["comparisons"] for p in c]
        m, s = np.array([p["mean"] for p in c]), np.array([p["sd"] for p in c])
        color, ls = styles[source]
        ax.plot(n, m, color=color, ls=ls, marker="o", ms=3, label=LABELS[source])
        ax.fill_between(n, m - s, m + s, color=color, alpha=0.15)
    ax.set_xscale("log")
    ax.set(
        xlabel="comparisons (pairs of train sentences)",
        ylabel="held-out pairwise accuracy",
        title="linear BoW Bradley-Terry reward, movies + Amazon",
    )
    ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="400 train sentences, sizes 100/200, 1 seed")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    sizes = [100] if args.quick else list(SIZES)
    seeds = args.seeds[:1] if args.quick else args.seeds
    result = run(seeds, sizes, args.quick)
    result["meta"] = {
        "command": "python -m benchmarks.human_comparisons" + (f" {' '.join(argv)}" if argv else ""),
        "data": "Hutto & Gilbert (ICWSM 2014), movies + amazon, fixed split",
        "model": "linear Bradley-Terry on bag-of-words presence features, L2 penalty chosen on validation",
        "metric": "pairwise accuracy over all within-domain test pairs with different crowd means, pooled",
        "seeds": seeds,
        "quick": args.quick,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "human_comparisons.json", result, indent=1)
    plot(result, out / "human_comparisons.png")
    for source in SOURCES:
        print(source, [(c["comparisons"], c["mean"], c["sd"]) for c in result["curves"][source]])
    print(f"({result['meta']['seconds']} s)")
    return result


if __name__ == "__main__":
    main()
