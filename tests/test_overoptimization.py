"""Best-of-n (agents/best_of_n.py) and the over-optimisation benchmark (benchmarks/overoptimization.py)."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
import torch

from agents.best_of_n import (
    BestOfN,
    analytic_kl,
    bon_log_ratio,
    exact_kl,
    order_weights,
    pool_curve,
    sample_with_logprobs,
)
from benchmarks import overoptimization as oo
from rlhf_envs.errors import ConfigError

RESULTS_CSV = os.path.join(oo.RESULTS, "overoptimization.csv")
RESULTS_JSON = os.path.join(oo.RESULTS, "overoptimization_fits.json")
#: the gold reward of the low-KL PPO run must fall at least this much from its peak by the end
GOLD_DROP_MARGIN = 0.10


# -- the KL of best-of-n ----------------------------------------------------------------------------


def test_analytic_kl_formula():
    assert analytic_kl(1) == 0.0
    assert analytic_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert analytic_kl(64) == pytest.approx(math.log(64) - 63 / 64)
    values = [analytic_kl(n) for n in (1, 2, 4, 8, 16)]
    assert all(b > a for a, b in itertools.pairwise(values))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="positive int"):
            analytic_kl(bad)


def test_exact_kl_matches_the_formula_without_ties_and_is_below_it_with_a_heavy_item():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(20_000))
    r = rng.normal(size=p.size)
    for n in (2, 8, 32):
        assert exact_kl(p, r, n) == pytest.approx(analytic_kl(n), abs=1e-3)
    heavy = np.array([0.5] + [0.5 / 1000] * 1000)
    r2 = np.concatenate([[0.0], rng.normal(size=1000)])
    for n in (2, 8):
        assert exact_kl(heavy, r2, n) < analytic_kl(n) - 0.01
    with pytest.raises(ConfigError, match="sum to 1"):
        exact_kl([0.5, 0.2], [1.0, 2.0], 2)


def test_order_weights_are_the_chance_of_being_the_best_of_a_random_subset():
    big_n, n = 6, 3
    counts = np.zeros(big_n)
    subsets = list(itertools.combinations(range(big_n), n))
    for s in subsets:
        counts[max(s)] += 1
    np.testing.assert_allclose(order_weights(big_n, n), counts / len(subsets))
    with pytest.raises(ConfigError, match="at most the pool size"):
        order_weights(4, 5)


def test_measured_kl_is_close_to_the_analytic_one_on_a_toy_distribution():
    """Many items of small probability: the pool estimate recovers log n - (n-1)/n; with one item
    of probability 0.5 it follows the exact value, below the analytic bound."""
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(20_000))
    r = rng.normal(size=p.size)
    idx = rng.choice(p.size, size=(200, 128), p=p)
    for pt in pool_curve(r[idx], r[idx], np.log(p[idx]), [1, 2, 8, 32]):
        assert pt.kl_measured == pytest.approx(pt.kl_analytic, abs=0.03)
    heavy = np.array([0.5] + [0.5 / 1000] * 1000)
    r2 = np.concatenate([[0.0], rng.normal(size=1000)])
    idx = rng.choice(heavy.size, size=(400, 64), p=heavy)
    for pt in pool_curve(r2[idx], r2[idx], np.log(heavy[idx]), [2, 8]):
        assert pt.kl_measured == pytest.approx(exact_kl(heavy, r2, pt.n), abs=0.05)
        assert pt.kl_measured < pt.kl_analytic - 0.02


def test_bon_log_ratio_reduces_to_log_n_plus_n_minus_1_log_q_for_rare_items():
    q = np.array([0.1, 0.5, 0.9])
    got = bon_log_ratio(np.log(np.full(3, 1e-12)), q, 8)
    np.testing.assert_allclose(got, math.log(8) + 7 * np.log(q), rtol=1e-6)
    # a completion with all the probability (p = 1, q = 0) is always chosen: ratio 1
    assert bon_log_ratio(np.array([0.0]), np.array([0.0]), 8)[0] == pytest.approx(0.0, abs=1e-12)


# -- best-of-n on a tiny model ----------------------------------------------------------------------


class TokenValue:
    """A toy proxy: the mean of a fixed random value per completion token id."""

    def __init__(self, vocab: int, seed: int = 0) -> None:
        self.w = np.random.default_rng(seed).normal(size=vocab)

    def score(self, episodes):
        return np.array([self.w[list(e.completion_ids)].mean() for e in episodes], dtype=np.float32)


@pytest.fixture(scope="module")
def tiny():
    from transformers import GPT2LMHeadModel

    from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config, word_tokenizer

    tok = word_tokenizer()
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32)).eval()
    return lm, tok


class _Prompt:
    def __init__(self, ids):
        self.ids, self.text, self.metadata = tuple(ids), "p", {}


def test_sampled_log_probs_are_the_models(tiny):
    lm, tok = tiny
    prompts = [[5, 6, 7], [8, 9], [10]]
    comps, logp = sample_with_logprobs(lm, prompts, 6, tok.eos_token_id, torch.Generator().manual_seed(0))
    for p, c, lp in zip(prompts, comps, logp, strict=True):
        ids = torch.tensor([p + c])
        with torch.no_grad():
            logits = lm(ids).logits[0].log_softmax(-1)
        expect = sum(float(logits[len(p) - 1 + t, c[t]]) for t in range(len(c)))
        assert lp == pytest.approx(expect, abs=1e-4)


def test_best_of_n_proxy_rises_with_n(tiny):
    lm, tok = tiny
    proxy = TokenValue(len(tok))
    bon = BestOfN(lm, proxy, tok.eos_token_id, tok.decode, max_new_tokens=6, seed=0)
    prompts = [_Prompt([5 + i % 20, 30 + i % 7]) for i in range(48)]
    means = [float(proxy.score(bon.select(prompts, n)).mean()) for n in (1, 4, 16)]
    assert means[0] + 0.1 < means[1] < means[2] - 0.05, means
    with pytest.raises(ConfigError, match="score"):
        BestOfN(lm, object(), tok.eos_token_id, tok.decode, 6)


# -- Gao et al.'s functional forms -------------------------------------------------------------------


def test_fits_recover_the_functional_forms():
    d = np.linspace(0, 6, 25)
    fit = oo.fit_form("rl", d, 0.2 + oo.rl_form(d, 0.3, 0.2))
    assert fit["alpha"] == pytest.approx(0.3, abs=1e-3) and fit["beta"] == pytest.approx(0.2, abs=1e-3)
    assert fit["d_peak_fit"] == pytest.approx(math.exp(0.3 / 0.2 - 1))
    fit = oo.fit_form("bon", d, oo.bon_form(d, 0.4, 0.05))
    assert fit["alpha"] == pytest.approx(0.4, abs=1e-3) and fit["r2"] > 0.999
    with pytest.raises(ValueError, match="kind"):
        oo.fit_form("dpo", d, d)


# -- the env options the benchmark relies on ----------------------------------------------------------


def test_env_passes_aggregate_and_the_fluent_gold(tmp_path):
    import gymnasium as gym

    from rlhf_envs.feedback import Episode
    from rlhf_envs.feedback.fluency import FluentSentiment
    from rlhf_envs.feedback.learned import RewardModel
    from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config, word_tokenizer
    from rlhf_envs.tasks.simulated_human import ENV_ID

    tok = word_tokenizer()
    rm = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32), tok, n_members=2, seed=0)
    rm.save(tmp_path)
    env = gym.make(ENV_ID, proxy=str(tmp_path), aggregate="min", gold="fluent_vader", ref_logprobs=False)
    task = env.unwrapped.task
    assert task.proxy.aggregate == "min" and task.proxy.n_members == 2
    assert isinstance(task.gold, FluentSentiment)
    good = task.tokenizer.encode(" By the end I felt glad and a little quiet.")
    salad = task.tokenizer.encode(" wonderful glad By pleased the the happy By felt")
    prompt = task.tokenizer.encode("I read this novel last week.")
    eps = [
        Episode("I read this novel last week.", task.tokenizer.decode(c), tuple(prompt), tuple(c), True)
        for c in (good, salad)
    ]
    parts = task.gold.parts(eps)
    assert parts["sentiment"][1] > 0.5 and parts["fluency"][0] == 1.0 and parts["fluency"][1] < 0.5
    with pytest.raises(ConfigError, match="gold must be one of"):
        gym.make(ENV_ID, proxy=str(tmp_path), gold="bleu", ref_logprobs=False)
    with pytest.raises(ConfigError, match="aggregate"):
        gym.make(ENV_ID, proxy=str(tmp_path), aggregate="max", ref_logprobs=False)


# -- the committed benchmark results ------------------------------------------------------------------


def assert_overoptimised(rows, margin):
    """Proxy rises, gold peaks strictly inside the run and falls from the peak by ``margin``."""
    gold = np.array([r["gold"] for r in rows])
    proxy = np.array([r["proxy"] for r in rows])
    kl = np.array([r["kl"] for r in rows])
    i = int(np.argmax(gold))
    assert 0 < i < len(rows) - 1, f"gold peaks at the edge (index {i} of {len(rows)}): {gold.round(3)}"
    assert gold[i] - gold[-1] >= margin, f"gold falls only {gold[i] - gold[-1]:.3f} from its peak"
    assert gold[i] - gold[0] >= margin, "gold never rose above its start"
    assert proxy[-1] > proxy[i] > proxy[0], f"proxy does not keep rising: {proxy.round(3)}"
    assert kl[-1] > kl[i] > kl[0]
    # the proxy's trend is up over the whole run (rank correlation with the step)
    steps = np.arange(len(rows))
    rho = np.corrcoef(np.argsort(np.argsort(proxy)), steps)[0, 1]
    assert rho > 0.8, f"proxy rank correlation with training progress only {rho:.2f}"


def test_committed_results_show_overoptimisation():
    rows = oo.read_csv(RESULTS_CSV)
    ppo = [r for r in rows if r["setting"] == "PPO kl=0.01"]
    assert len(ppo) >= 8
    assert_overoptimised(ppo, GOLD_DROP_MARGIN)
    # the saved summary (gold peak per setting) is what the CSV says
    import json

    summary = json.load(open(RESULTS_JSON))["summary"]
    for name, s in summary.items():
        got = oo.gold_peak([r for r in rows if r["setting"] == name])
        assert got["peak_kl"] == pytest.approx(s["peak"]["peak_kl"], rel=1e-4)
        assert got["peak_gold"] == pytest.approx(s["peak"]["peak_gold"], rel=1e-4, abs=1e-5)
    for setting in ("PPO kl=0.1", "PPO kl=0.01 ens3-min", "best-of-n"):
        assert setting in summary
    bon = [r for r in rows if r["method"] == "bon" and r["setting"] == "best-of-n"]
    assert [r["n"] for r in bon] == sorted(r["n"] for r in bon)
    for r in bon:  # measured KL never above the analytic bound (up to pool noise)
        assert r["kl"] <= r["kl_analytic"] + 0.02


@pytest.mark.slow
def test_quick_benchmark_reproduces_overoptimisation(tmp_path):
    """Re-run the shortened seeded benchmark (one low-KL PPO run, a small best-of-n pool)."""
    out = oo.run(oo.quick_config(), str(tmp_path / "quick"), log=lambda *a: None)
    rows = [r for r in out["rows"] if r["setting"] == "PPO kl=0.01"]
    assert_overoptimised(rows, GOLD_DROP_MARGIN / 2)
    assert (tmp_path / "quick.csv").exists() and (tmp_path / "quick.png").exists()
