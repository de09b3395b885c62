"""Calibrating the simulated human against real raters (Hutto & Gilbert 2014 data; issue 16, item 4).

The question: how often does one real rater order two sentences the way the crowd's mean rating
does, as a function of how far apart the two means are? And which setting of
:class:`~rlhf_envs.feedback.simulated.SimulatedHuman`'s noise models reproduces that?

1. **Real disagreement.** Per domain, ``--pairs`` random pairs of different sentences of the
   *train* split (seeded; pairs whose means are exactly equal have no crowd order and are counted
   apart). For each pair, the exact probabilities that one random real rating of each sentence (a
   :class:`~rlhf_envs.feedback.recorded.RecordedRaters` crowd comparison) agrees with the crowd
   order, ties, or disagrees, from the two sentences' rating histograms. Binned by the gap between
   the means, with counts. A Monte Carlo run of ``RecordedRaters.compare`` on the same pairs checks
   the exact figures.
2. **The simulated rater's model of it**, on the crowd mean as gold utility
   (``SimulatedHuman(CrowdMean(...), rater, scale=4)``: utilities in rating points, ``scale`` 4 maps
   the -4..+4 scale onto [-1, 1], the range of VADER's compound score that the suite's default gold
   uses with ``scale=1``). For a pair with gap ``d``: *skip* if both means are below
   ``skip * scale``; else *tie* if ``d < equal * scale``; else the Boltzmann choice agrees with
   probability ``p = sigmoid(beta * d / scale)`` (``beta=None``: 1) and a *mistake* flips it with
   probability ``epsilon``: ``P(agree) = (1 - eps) p + eps (1 - p)``. (Myopia needs a gold that
   scores word prefixes; the crowd rated whole sentences only, so ``Myopic`` does not apply.)
3. **Fit.** A tie is worth 0.5 to a Bradley-Terry reward model (``prob_a``), the same in
   expectation as a coin flip, so the curve that matters for reward learning is the *expected
   label* ``P(agree) + P(tie) / 2`` (exactly what ``RecordedRaters(ties="coin")`` gives). The primary
   fit is ``(beta, epsilon)`` to that curve by maximum likelihood over all pairs (coin-resolved
   labels), with a least-squares fit over the bins (count-weighted) beside it; the fitted rater
   never ties, so its labels carry the same expectation with more variance per label than the
   real 0.5s. The secondary fit adds ``equal`` and matches the three outcome shares (agree, tie,
   disagree) by least squares over the bins (``equal`` on a grid, ``beta`` and ``epsilon`` by
   Nelder-Mead at each grid point): B-Pref's hard threshold cannot make the real, smooth share of
   ties (about 0.4 at equal means, falling to 0.1 at a gap of 2), and the distance (count-weighted
   mean over bins of the total-variation distance between outcome distributions) says how far off
   that leaves it. Each B-Pref preset is scored both ways (root-mean-square difference of the
   expected-label curve over bins; three-outcome distance); the closest is reported. Fits are on
   pairs of the *train* split and checked on pairs of the held-out *test* split; the fitted rater
   is also run through the real ``SimulatedHuman`` (Monte Carlo) to check that the analytic model
   above is what the class does.

Writes ``benchmarks/results/human_calibration.json`` and ``human_calibration.png``.

    python -m benchmarks.human_calibration                 # about 4 minutes on a busy 2-core machine
    python -m benchmarks.human_calibration --pairs 2000 --out /tmp/cal   # quick
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from rlhf_envs.data import hutto2014
from rlhf_envs.feedback.recorded import CrowdMean, RatedSentenceIndex, RecordedRaters, episode_for
from rlhf_envs.feedback.simulated import PRESETS, Label, RaterConfig, SimulatedHuman

SCALE = 4.0
EDGES = (0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 8.0)
OUTCOMES = ("agree", "tie", "disagree", "skip")
EQUAL_GRID = np.round(np.arange(0.0, 0.1501, 0.0025), 4)  # in units of SCALE (0 .. 0.6 rating points)
RESULTS = Path(__file__).resolve().parent / "results"
BPREF = ("Oracle", "Stoc", "Mistake", "Skip", "Myopic", "Equal")  # B-Pref's teachers, the presets compared


def rater_params(cfg: RaterConfig) -> dict:
    """The RaterConfig fields this benchmark models (the one place that names them), under the short
    names the results file uses: beta = ``rationality``, epsilon = ``mistake_rate``, gamma =
    ``myopia_discount``."""
    return {
        "beta": cfg.rationality,
        "epsilon": cfg.mistake_rate,
        "equal": cfg.equal,
        "skip": cfg.skip,
        "gamma": cfg.myopia_discount,
    }


def rater_config(beta: float, epsilon: float, name: str) -> RaterConfig:
    """A Boltzmann rater with mistakes (the fitted one)."""
    return RaterConfig(rationality=beta, mistake_rate=epsilon, name=name)


# ---------------------------------------------------------------------------------------------------
# Real pairs
# ---------------------------------------------------------------------------------------------------


def histograms(records: list[hutto2014.RatedSentence]) -> np.ndarray:
    """``(N, 9)`` share of each rating -4..+4 per sentence."""
    out = np.zeros((len(records), 9))
    for k, r in enumerate(records):
        out[k] = np.bincount(np.asarray(r.ratings) + 4, minlength=9) / len(r.ratings)
    return out


def bin_index(gap: np.ndarray) -> np.ndarray:
    return np.clip(np.digitize(gap, EDGES) - 1, 0, len(EDGES) - 2)


def domain_pairs(records: list[hutto2014.RatedSentence], n_pairs: int, seed: int, domain: str) -> dict:
    """``n_pairs`` random pairs of different sentences of one domain, oriented so ``hi`` has the
    higher crowd mean, with the exact shares of one real rating of each agreeing, tying, disagreeing."""
    rng = np.random.default_rng([seed, hutto2014.DOMAINS.index(domain)])
    mean = np.array([r.mean for r in records])
    hist = histograms(records)
    i = rng.integers(0, len(records), n_pairs)
    j = (i + rng.integers(1, len(records), n_pairs)) % len(records)
    gap = mean[i] - mean[j]
    keep = gap != 0
    hi, lo = np.where(gap > 0, i, j)[keep], np.where(gap > 0, j, i)[keep]
    cdf_lo = np.cumsum(hist[lo], 1)  # P(r_lo <= k)
    agree = (hist[hi][:, 1:] * cdf_lo[:, :-1]).sum(1)  # P(r_hi > r_lo)
    tie = (hist[hi] * hist[lo]).sum(1)
    return finish(
        {
            "hi": hi,
            "lo": lo,
            "u_hi": mean[hi],
            "u_lo": mean[lo],
            "gap": mean[hi] - mean[lo],
            "real": np.stack([agree, tie, np.clip(1 - agree - tie, 0, 1), np.zeros_like(agree)], 1),
            "equal_mean_pairs": int((~keep).sum()),
            "records": records,
        }
    )


def finish(p: dict) -> dict:
    """Add the bin of each pair, the bins' counts and the real outcome shares per bin."""
    p["bin"] = bin_index(p["gap"])
    p["real_bins"], p["count"] = bin_means(p["real"], p["bin"])
    return p


def merge(parts: list[dict]) -> dict:
    out = {k: np.concatenate([p[k] for p in parts]) for k in ("u_hi", "u_lo", "gap", "real")}
    out["equal_mean_pairs"] = sum(p["equal_mean_pairs"] for p in parts)
    return finish(out)


def bin_means(values: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bin: the mean of each column of ``values`` and the count."""
    nb = len(EDGES) - 1
    count = np.bincount(b, minlength=nb).astype(np.float64)
    means = np.stack([np.bincount(b, weights=values[:, k], minlength=nb) for k in range(values.shape[1])], 1)
    return means / np.maximum(count, 1)[:, None], count


def expected_label(shares: np.ndarray) -> np.ndarray:
    """Mean ``prob_a`` over answered queries (agree 1, tie 0.5, disagree 0; skips left out)."""
    answered = np.maximum(1.0 - shares[..., 3], 1e-12)
    return (shares[..., 0] + 0.5 * shares[..., 1]) / answered


def table(pairs: dict, model: np.ndarray | None = None) -> list[dict]:
    real, count = pairs["real_bins"], pairs["count"]
    gap, _ = bin_means(pairs["gap"][:, None], pairs["bin"])
    mod = None if model is None else bin_means(model, pairs["bin"])[0]
    rows = []
    for k in range(len(EDGES) - 1):
        if count[k] == 0:
            continue
        a, t, d, _ = real[k]
        row = {
            "gap_lo": EDGES[k],
            "gap_hi": EDGES[k + 1],
            "n": int(count[k]),
            "mean_gap": round(float(gap[k, 0]), 4),
            "agree": round(float(a), 4),
            "tie": round(float(t), 4),
            "disagree": round(float(d), 4),
            "agree_given_decided": round(float(a / (a + d)), 4),
            "expected_label": round(float(a + 0.5 * t), 4),
        }
        if mod is not None:
            row["model"] = {o: round(float(mod[k, n]), 4) for n, o in enumerate(OUTCOMES)}
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------
# The simulated rater, analytically
# ---------------------------------------------------------------------------------------------------


def model_outcomes(
    pairs: dict, beta: float | None, epsilon: float, equal: float, skip: float | None, scale: float = SCALE
) -> np.ndarray:
    """Per pair, ``(P(agree), P(tie), P(disagree), P(skip))`` of a SimulatedHuman rater with these
    settings and ``scale`` on the crowd mean (utilities in rating points)."""
    d = pairs["gap"]
    p = np.ones_like(d) if beta is None else 1 / (1 + np.exp(-np.clip(beta * d / scale, -50, 50)))
    q = (1 - epsilon) * p + epsilon * (1 - p)
    sk = np.zeros_like(d) if skip is None else (np.maximum(pairs["u_hi"], pairs["u_lo"]) < skip * scale) * 1.0
    eq = (d < equal * scale) * 1.0
    return np.stack([(1 - sk) * (1 - eq) * q, (1 - sk) * eq, (1 - sk) * (1 - eq) * (1 - q), sk], 1)


def outcome_distance(pairs: dict, model: np.ndarray) -> float:
    """Count-weighted mean over bins of the total-variation distance between outcome distributions."""
    mod, _ = bin_means(model, pairs["bin"])
    tv = 0.5 * np.abs(pairs["real_bins"] - mod).sum(1)
    return float((tv * pairs["count"]).sum() / pairs["count"].sum())


def label_rmse(pairs: dict, model: np.ndarray) -> float:
    """Count-weighted root-mean-square difference over bins of the expected-label curves."""
    mod, _ = bin_means(model, pairs["bin"])
    diff = expected_label(pairs["real_bins"]) - expected_label(mod)
    return float(np.sqrt((diff**2 * pairs["count"]).sum() / pairs["count"].sum()))


def _unpack(x: np.ndarray) -> tuple[float, float]:
    return math.exp(x[0]), 0.5 / (1 + math.exp(-x[1]))  # beta > 0, epsilon in (0, 0.5)


STARTS = ((math.log(8.0), -4.0), (math.log(2.0), -1.0))  # (log beta, logit of 2 epsilon)


def _minimize(loss) -> tuple[float, float, float]:  # noqa: ANN001
    """Nelder-Mead on ``(log beta, logit 2 epsilon)`` from :data:`STARTS`; the best ``(beta, epsilon, loss)``."""
    from scipy.optimize import minimize

    res = min(
        (
            minimize(loss, np.array(x0), method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-10})
            for x0 in STARTS
        ),
        key=lambda r: r.fun,
    )
    return (*_unpack(res.x), float(res.fun))


def fit_label_ml(pairs: dict) -> dict:
    """``(beta, epsilon)`` by maximum likelihood of the coin-resolved labels of all pairs."""
    y = pairs["real"][:, 0] + 0.5 * pairs["real"][:, 1]
    d = pairs["gap"]

    def nll(x: np.ndarray) -> float:
        beta, eps = _unpack(x)
        p = 1 / (1 + np.exp(-np.clip(beta * d / SCALE, -50, 50)))
        q = np.clip((1 - eps) * p + eps * (1 - p), 1e-12, 1 - 1e-12)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    beta, eps, f = _minimize(nll)
    return {"beta": beta, "epsilon": eps, "equal": 0.0, "skip": None, "nll_per_pair": f}


def fit_label_ls(pairs: dict) -> dict:
    """``(beta, epsilon)`` by count-weighted least squares over bins of the expected-label curve."""

    def loss(x: np.ndarray) -> float:
        beta, eps = _unpack(x)
        return label_rmse(pairs, model_outcomes(pairs, beta, eps, 0.0, None)) ** 2

    beta, eps, _ = _minimize(loss)
    return {"beta": beta, "epsilon": eps, "equal": 0.0, "skip": None}


def fit_outcomes_ls(pairs: dict) -> dict:
    """``(beta, epsilon, equal)`` by count-weighted least squares over bins of the three outcome shares."""
    best = None
    for e in EQUAL_GRID:

        def loss(x: np.ndarray, e: float = float(e)) -> float:
            mod, _ = bin_means(model_outcomes(pairs, *_unpack(x), e, None), pairs["bin"])
            return float(
                (((pairs["real_bins"] - mod) ** 2).sum(1) * pairs["count"]).sum() / pairs["count"].sum()
            )

        beta, eps, f = _minimize(loss)
        if best is None or f < best[0]:
            best = (f, beta, eps, float(e))
    return {"beta": best[1], "epsilon": best[2], "equal": best[3], "skip": None}


def describe(fit: dict, train: dict, test: dict, scale: float = SCALE) -> dict:
    """A fit's parameters (in ``scale`` units and per rating point) and its distances on train and test."""
    out = {k: (None if v is None else round(float(v), 5)) for k, v in fit.items()}
    out["scale"] = scale
    out["beta_per_rating_point"] = None if fit["beta"] is None else round(fit["beta"] / scale, 5)
    out["equal_in_rating_points"] = round(fit["equal"] * scale, 4)
    for name, p in (("train", train), ("test", test)):
        m = model_outcomes(p, fit["beta"], fit["epsilon"], fit["equal"], fit["skip"], scale)
        out[f"label_rmse_{name}"] = round(label_rmse(p, m), 5)
        out[f"outcome_tv_{name}"] = round(outcome_distance(p, m), 5)
    return out


# ---------------------------------------------------------------------------------------------------
# Monte Carlo checks with the real classes
# ---------------------------------------------------------------------------------------------------


def one_hot(labels: np.ndarray) -> np.ndarray:
    """Per query one-hot ``(agree, tie, disagree, skip)`` given ``A`` is the higher-mean sentence."""
    return np.stack(
        [labels == Label.A, labels == Label.TIE, labels == Label.B, labels == Label.SKIP], 1
    ).astype(np.float64)


def monte_carlo(parts: list[dict], seed: int, rater: RaterConfig | None) -> np.ndarray:
    """One query per pair: recorded raters (``rater=None``) or SimulatedHuman with ``rater`` on CrowdMean."""
    out = []
    for p in parts:
        eps = [episode_for(r) for r in p["records"]]
        index = RatedSentenceIndex(p["records"])
        a, b = [eps[i] for i in p["hi"]], [eps[i] for i in p["lo"]]
        if rater is None:
            res = RecordedRaters(index, seed=seed).compare(a, b)
        else:
            res = SimulatedHuman(CrowdMean(index), rater, seed=seed, scale=SCALE).compare(a, b)
        out.append(one_hot(res.labels))
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------------


def plot(path: Path, train: dict, per_domain: dict, crowd: RaterConfig, three: dict, closest: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    gap, _ = bin_means(train["gap"][:, None], train["bin"])
    ok = train["count"] > 0
    x = gap[ok, 0]
    real = train["real_bins"][ok]

    def curve(cfg_beta, cfg_eps, cfg_equal, cfg_skip) -> np.ndarray:  # noqa: ANN001
        return bin_means(model_outcomes(train, cfg_beta, cfg_eps, cfg_equal, cfg_skip), train["bin"])[0][ok]

    ax = axes[0]
    ax.plot(x, expected_label(real), "ko", label="real raters (tie = 1/2)")
    cp = rater_params(crowd)
    ax.plot(x, expected_label(curve(cp["beta"], cp["epsilon"], 0.0, None)), "k-", label="crowd-2014 (fitted)")
    for name in ("Oracle", "Stoc", "Mistake", "Equal"):
        cfg = rater_params(PRESETS[name])
        ax.plot(
            x,
            expected_label(curve(cfg["beta"], cfg["epsilon"], cfg["equal"], cfg["skip"])),
            "--",
            alpha=0.7,
            label=name,
        )
    stoc1 = bin_means(model_outcomes(train, 1.0, 0.0, 0.0, None, scale=1.0), train["bin"])[0][ok]
    ax.plot(x, expected_label(stoc1), ":", color="tab:orange", label="Stoc with scale=1")
    ax.set_xlabel("gap between the two mean ratings (rating points)")
    ax.set_ylabel("expected label (P(agree) + P(tie)/2)")
    ax.set_title(f"Expected label, all domains (train); presets at scale={SCALE:g}, closest: {closest}")
    ax.legend(fontsize=8)

    ax = axes[1]
    colours = {"agree": "tab:green", "tie": "tab:grey", "disagree": "tab:red"}
    m3 = curve(three["beta"], three["epsilon"], three["equal"], None)
    for n, o in enumerate(OUTCOMES[:3]):
        ax.plot(x, real[:, n], "o", color=colours[o], label=f"real: {o}")
        ax.plot(x, m3[:, n], "-", color=colours[o], alpha=0.8)
    ax.plot([], [], "k-", label=f"fit with equal={three['equal']:.4f} x {SCALE:g}")
    ax.set_xlabel("gap between the two mean ratings (rating points)")
    ax.set_ylabel("share of one real rater's comparisons")
    ax.set_title("Three outcomes: real vs B-Pref's hard tie threshold")
    ax.legend(fontsize=8)

    ax = axes[2]
    for d, pd in per_domain.items():
        g, _ = bin_means(pd["gap"][:, None], pd["bin"])
        k = pd["count"] > 0
        r = pd["real_bins"][k]
        line = ax.plot(g[k, 0], r[:, 0] / (r[:, 0] + r[:, 2]), "o-", label=f"{d}: agree | decided")
        ax.plot(g[k, 0], r[:, 1], "s--", color=line[0].get_color(), alpha=0.6, label=f"{d}: tie")
    ax.set_xlabel("gap between the two mean ratings (rating points)")
    ax.set_title("Per domain (train)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000, help="random pairs per domain and split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    train_parts, test_parts = {}, {}
    for d in hutto2014.DOMAINS:
        train_parts[d] = domain_pairs(hutto2014.load(d, split="train"), args.pairs, args.seed, d)
        test_parts[d] = domain_pairs(hutto2014.load(d, split="test"), args.pairs, args.seed + 1, d)
    train, test = merge(list(train_parts.values())), merge(list(test_parts.values()))

    ml = fit_label_ml(train)
    ls = fit_label_ls(train)
    three = fit_outcomes_ls(train)
    per_domain = {
        d: describe(fit_label_ml(train_parts[d]), train_parts[d], test_parts[d]) for d in hutto2014.DOMAINS
    }
    presets: dict[str, dict] = {}
    closest: dict[str, dict] = {}
    for scale in (SCALE, 1.0):  # presets' units depend on the scale the user picks; 1 = rating points
        tag = f"scale={scale:g}"
        presets[tag] = {}
        for name in BPREF:
            cfg = rater_params(PRESETS[name])
            if cfg["gamma"] < 1.0:
                presets[tag][name] = (
                    "not applicable: myopia needs a gold that scores word prefixes; people rated whole sentences"
                )
                continue
            fit = {k: cfg[k] for k in ("beta", "epsilon", "equal", "skip")}
            presets[tag][name] = describe(fit, train, test, scale)
        scored = {k: v for k, v in presets[tag].items() if isinstance(v, dict)}
        closest[tag] = {
            "expected_label": min(scored, key=lambda k: scored[k]["label_rmse_train"]),
            "three_outcomes": min(scored, key=lambda k: scored[k]["outcome_tv_train"]),
        }
    ml_round = {"beta": round(ml["beta"], 3), "epsilon": round(ml["epsilon"], 4)}
    crowd = rater_config(ml_round["beta"], ml_round["epsilon"], "crowd-2014")

    parts = list(train_parts.values())
    mc_recorded = monte_carlo(parts, args.seed, None)
    mc_sim = monte_carlo(parts, args.seed, crowd)
    analytic = model_outcomes(train, ml_round["beta"], ml_round["epsilon"], 0.0, None)

    def overall(x: np.ndarray) -> dict:
        out = {o: round(float(x[:, k].mean()), 4) for k, o in enumerate(OUTCOMES)}
        out["expected_label"] = round(float(expected_label(x.mean(0))), 4)
        return out

    result = {
        "meta": {
            "data": "Hutto & Gilbert (ICWSM 2014), vaderSentiment 3.3.2 sdist, MIT licence",
            "command": "python -m benchmarks.human_calibration" + (f" {' '.join(argv)}" if argv else ""),
            "pairs_per_domain": args.pairs,
            "seed": args.seed,
            "fit_split": "train",
            "check_split": "test",
            "gold": "CrowdMean: the published mean rating, -4..+4",
            "scale": SCALE,
            "bin_edges": list(EDGES),
            "tie_rule": "one real rating per sentence; equal ratings are a tie (RecordedRaters ties='tie')",
            "seconds": None,
        },
        "real": {
            "all": {"train": table(train, analytic), "test": table(test)},
            **{d: {"train": table(train_parts[d]), "test": table(test_parts[d])} for d in hutto2014.DOMAINS},
        },
        "equal_mean_pairs_left_out": {
            "all": train["equal_mean_pairs"],
            **{d: p["equal_mean_pairs"] for d, p in train_parts.items()},
        },
        "overall": {
            "real_exact": overall(train["real"]),
            "recorded_raters_monte_carlo": overall(mc_recorded),
            "crowd_2014_analytic": overall(analytic),
            "crowd_2014_simulated_human_monte_carlo": overall(mc_sim),
        },
        "fit": {
            "expected_label_ml": {**describe(ml, train, test), "nll_per_pair": round(ml["nll_per_pair"], 5)},
            "expected_label_least_squares": describe(ls, train, test),
            "three_outcomes_least_squares": describe(three, train, test),
            "per_domain_expected_label_ml": per_domain,
            "simulated_human_monte_carlo_label_rmse_train": round(label_rmse(train, mc_sim), 5),
            "recorded_raters_monte_carlo_outcome_tv_train": round(outcome_distance(train, mc_recorded), 5),
        },
        "presets": presets,
        "closest_preset": closest,
        "crowd_2014": {**ml_round, "equal": 0.0, "scale": SCALE},
    }
    result["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
    (out_dir / "human_calibration.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(
        out_dir / "human_calibration.png",
        train,
        train_parts,
        crowd,
        three,
        closest[f"scale={SCALE:g}"]["expected_label"],
    )
    print_summary(result)
    return result


def print_summary(r: dict) -> None:
    print("gap bin          n   agree  tie    disagree  agree|decided  expected label   (all domains, train)")
    for row in r["real"]["all"]["train"]:
        print(
            f"[{row['gap_lo']:.3g},{row['gap_hi']:.3g})".ljust(13)
            + f"{row['n']:6d}  {row['agree']:.3f}  {row['tie']:.3f}  {row['disagree']:.3f}     "
            + f"{row['agree_given_decided']:.3f}          {row['expected_label']:.3f}"
        )
    print("overall:", json.dumps(r["overall"]))
    for k, v in r["fit"].items():
        if k != "per_domain_expected_label_ml":
            print(k, json.dumps(v))
    for d, f in r["fit"]["per_domain_expected_label_ml"].items():
        print(
            f"  {d}: beta {f['beta']:.2f} epsilon {f['epsilon']:.4f} label_rmse_test {f['label_rmse_test']:.4f}"
        )
    for tag, ps in r["presets"].items():
        for k, v in ps.items():
            if isinstance(v, str):
                print(f"preset {k} ({tag}): {v}")
            else:
                print(
                    f"preset {k} ({tag}): label_rmse {v['label_rmse_train']:.4f}/{v['label_rmse_test']:.4f}  "
                    f"outcome_tv {v['outcome_tv_train']:.4f}/{v['outcome_tv_test']:.4f}  (train/test)"
                )
    print("closest preset:", json.dumps(r["closest_preset"]), " crowd-2014:", json.dumps(r["crowd_2014"]))
    print(f"({r['meta']['seconds']} s)")


if __name__ == "__main__":
    main()
