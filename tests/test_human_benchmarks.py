"""The measuring parts of benchmarks/human_calibration.py and benchmarks/human_ratings.py, on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from benchmarks import human_calibration as cal
from benchmarks import human_ratings as hr
from rlhf_envs.data.hutto2014 import RatedSentence
from rlhf_envs.feedback.recorded import CrowdMean, RecordedRaters, episode_for
from rlhf_envs.feedback.simulated import RaterConfig, SimulatedHuman


def synthetic(n: int = 60, seed: int = 0) -> list[RatedSentence]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        centre = rng.uniform(-3, 3)
        ratings = tuple(int(x) for x in np.clip(np.rint(centre + rng.normal(0, 1.2, 20)), -4, 4))
        out.append(RatedSentence("movies", str(i), f"sentence {i}", float(np.mean(ratings)), ratings))
    return out


def test_pairwise_accuracy():
    gold = np.array([0.0, 1.0, 2.0, 3.0])
    assert hr.pairwise_accuracy(gold, gold) == 1.0
    assert hr.pairwise_accuracy(-gold, gold) == 0.0
    assert hr.pairwise_accuracy(np.zeros(4), gold) == 0.5
    # one of six pairs swapped; a pair tied in gold is left out
    assert hr.pairwise_accuracy(np.array([0.0, 2.0, 1.0, 3.0]), gold) == pytest.approx(5 / 6)
    assert hr.pairwise_accuracy(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.0, 1.0])) == 1.0
    assert hr.pairwise_accuracy(np.arange(1000.0), np.arange(1000.0), chunk=7) == 1.0


def test_ridge_matches_the_closed_form_with_an_unpenalised_intercept():
    rng = np.random.default_rng(0)
    x = (rng.random((80, 15)) < 0.3).astype(float)
    y = x @ rng.normal(size=15) + 2.0 + rng.normal(0, 0.1, 80)
    w, b = hr.ridge(csr_matrix(x), y, alpha=3.0)
    xc = x - x.mean(0)
    w_ref = np.linalg.solve(xc.T @ xc + 3.0 * np.eye(15), xc.T @ (y - y.mean()))
    assert np.allclose(w, w_ref, atol=1e-6)
    assert b == pytest.approx(y.mean() - x.mean(0) @ w_ref, abs=1e-6)


def test_exact_outcome_shares_match_recorded_raters():
    recs = synthetic()
    pairs = cal.domain_pairs(recs, 3000, seed=0, domain="movies")
    eps = [episode_for(r) for r in recs]
    labels = (
        RecordedRaters(recs, seed=1)
        .compare([eps[i] for i in pairs["hi"]], [eps[i] for i in pairs["lo"]])
        .labels
    )
    mc = cal.one_hot(labels).mean(0)
    assert np.allclose(mc, pairs["real"].mean(0), atol=0.02)
    assert (pairs["gap"] > 0).all() and np.allclose(pairs["real"].sum(1), 1.0)


def test_analytic_rater_model_is_what_simulated_human_does():
    recs = synthetic()
    pairs = cal.domain_pairs(recs, 4000, seed=0, domain="movies")
    cfg = RaterConfig(rationality=5.0, mistake_rate=0.1, equal=0.05, skip=-0.2)
    eps = [episode_for(r) for r in recs]
    human = SimulatedHuman(CrowdMean(recs), cfg, seed=3, scale=cal.SCALE)
    mc = cal.one_hot(human.compare([eps[i] for i in pairs["hi"]], [eps[i] for i in pairs["lo"]]).labels)
    model = cal.model_outcomes(pairs, cfg.rationality, cfg.mistake_rate, cfg.equal, cfg.skip)
    assert np.allclose(mc.mean(0), model.mean(0), atol=0.02)
    assert model[:, 1].mean() > 0.01 and model[:, 3].mean() > 0.01  # ties and skips both exercised


def test_label_fit_recovers_a_known_rater():
    """Pairs answered by a known Boltzmann rater (with mistakes): the fit finds its parameters."""
    rng = np.random.default_rng(0)
    gap = rng.uniform(0.01, 4, 20000)
    p = 1 / (1 + np.exp(-6.0 * gap / cal.SCALE))
    q = 0.95 * p + 0.05 * (1 - p)
    pairs = {"gap": gap, "u_hi": gap, "u_lo": np.zeros_like(gap)}
    pairs["real"] = np.stack([q, np.zeros_like(q), 1 - q, np.zeros_like(q)], 1)
    cal.finish(pairs)
    fit = cal.fit_label_ml(pairs)
    assert fit["beta"] == pytest.approx(6.0, rel=0.01) and fit["epsilon"] == pytest.approx(0.05, abs=0.002)


def test_crowd_2014_preset_is_the_committed_fit():
    import json
    from pathlib import Path

    from rlhf_envs.feedback.simulated import preset

    fit = json.loads((Path(cal.__file__).parent / "results" / "human_calibration.json").read_text())[
        "crowd_2014"
    ]
    params = cal.rater_params(preset("crowd-2014"))
    assert (params["beta"], params["epsilon"], params["equal"]) == (fit["beta"], fit["epsilon"], fit["equal"])


# -- the reward-model methods ------------------------------------------------------------------------


class _FakeRewardModel:
    """A one-parameter 'model' whose validation quality follows a script, to check early stopping."""

    def __init__(self, quality: list[float]) -> None:
        import torch

        self.members = [torch.nn.Linear(1, 1, bias=False)]
        self.quality = quality
        self.epoch = 0

    def fit(self, epoch: int) -> None:
        import torch

        self.epoch = epoch
        with torch.no_grad():
            self.members[0].weight.fill_(float(epoch))

    def score_texts(self, texts):
        q = self.quality[int(self.members[0].weight.item()) - 1]
        gold = np.arange(len(texts), dtype=float)
        return q * gold + (1 - q) * np.cos(7 * gold)


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    rm = _FakeRewardModel([0.2, 0.9, 0.5, 0.4, 0.95])
    gold = np.arange(30, dtype=float)
    info = hr.fit_early_stopped(rm, rm.fit, ["t"] * 30, gold, max_epochs=5, patience=2)
    assert info["best_epoch"] == 2 and info["epochs_run"] == 4  # epochs 3 and 4 did not improve
    assert rm.members[0].weight.item() == 2.0  # the best epoch's weights are back
    assert info["validation_pearson"][1] == max(info["validation_pearson"])
    rm = _FakeRewardModel([0.2, 0.9, 0.5, 0.4, 0.95])
    assert hr.fit_early_stopped(rm, rm.fit, ["t"] * 30, gold, max_epochs=5, patience=5)["best_epoch"] == 5


def test_real_pairs_are_labelled_by_recorded_raters():
    from rlhf_envs.feedback.simulated import Label

    recs = synthetic(40)
    i, j, labels = hr.real_pairs(recs, 50, seed=3)
    assert len(i) == len(labels) == 2000 and not np.any(i == j)
    assert set(labels) <= {Label.A, Label.B, Label.TIE}
    gap = np.array([recs[a].mean - recs[b].mean for a, b in zip(i, j, strict=True)])
    won = np.array([x == Label.A for x in labels])
    lost = np.array([x == Label.B for x in labels])
    # real draws follow the ratings: a much better sentence usually wins, a much worse one loses
    assert won[gap > 2].mean() > 0.8 and lost[gap < -2].mean() > 0.8
    again = hr.real_pairs(recs, 50, seed=3)
    assert np.array_equal(again[0], i) and again[2] == labels


def test_quick_mode_writes_every_method_on_the_shipped_backbone(tmp_path):
    """The benchmark end to end on the real data (a few sentences per domain, one epoch)."""
    import json

    r = hr.main(["--quick", "--parts", "ratings,rm", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "human_ratings.json").read_text())
    assert saved["domains"] == r["domains"]
    assert set(saved["domains"]) == {"tweets", "movies", "amazon", "nyt"}
    for ms in saved["domains"].values():
        assert list(ms) == list(hr.METHODS)
        for v in ms.values():
            assert v["n"] == 40 and -1 <= v["pearson"] <= 1 and 0 <= v["pairwise_accuracy"] <= 1
    assert saved["meta"]["backbone"]["name"] == "default"
    assert saved["meta"]["backbone"]["build_command"].startswith("rlhf-envs pretrain --corpus generated")
    fits = saved["meta"]["fits"]["movies"]
    assert fits["rm_regression"]["epochs_run"] == 1 and fits["rm_bradley_terry"]["pairs"] == 30
    part = hr.main(
        ["--quick", "--parts", "rm", "--domains", "nyt", "--methods", "rm_regression", "--out", str(tmp_path)]
    )
    assert list(part["domains"]) == ["nyt"] and list(part["domains"]["nyt"]) == ["rm_regression"]
    assert part["domains"]["nyt"]["rm_regression"] == saved["domains"]["nyt"]["rm_regression"]  # seeded
    with pytest.raises(SystemExit):
        hr.main(["--quick", "--backbone", str(tmp_path / "nowhere"), "--out", str(tmp_path)])


def test_merging_runs_over_disjoint_domains():
    def run(domains, r):
        return {
            "meta": {"command": f"run {r}", "seed": 0, "backbone": {"name": "candidate"}, "seconds": 2.0},
            "domains": {
                d: {"rm_regression": {"pearson": r, "spearman": r, "pairwise_accuracy": 0.5 + r / 2, "n": 9}}
                for d in domains
            },
        }

    m = hr.merge_results([run(["nyt", "tweets"], 0.2), run(["movies"], 0.5)], ["a.json", "b.json"])
    assert list(m["domains"]) == ["tweets", "movies", "nyt"]
    assert m["average_over_domains"]["rm_regression"]["pearson"] == pytest.approx(0.3)
    assert m["meta"]["merged_from"] == ["a.json", "b.json"] and m["meta"]["seconds"] == 4.0
    with pytest.raises(SystemExit, match="more than one run"):  # same domain and method
        hr.merge_results([run(["nyt"], 0.2), run(["nyt"], 0.5)], ["a", "b"])
    bt = run(["nyt"], 0.4)
    bt["domains"]["nyt"] = {"rm_bradley_terry": bt["domains"]["nyt"].pop("rm_regression")}
    both = hr.merge_results([bt, run(["nyt"], 0.2)], ["a", "b"])
    assert list(both["domains"]["nyt"]) == ["rm_regression", "rm_bradley_terry"]  # METHODS order
    other = run(["amazon"], 0.1)
    other["meta"]["seed"] = 1
    with pytest.raises(SystemExit, match="differ in meta.seed"):
        hr.merge_results([run(["nyt"], 0.2), other], ["a", "b"])
