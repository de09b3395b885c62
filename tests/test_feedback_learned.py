"""RewardModel: fits, scores at the last real token, agrees with choix, saves safely, fails loudly.

Backbones are tiny GPT-2s built here from ``GPT2Config`` with a word-level tokenizer trained in the
test by the ``tokenizers`` library, so nothing is downloaded and each fit takes seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhf_envs.errors import ConfigError, FeedbackError
from rlhf_envs.feedback import Episode, FeedbackModel, score_episodes
from rlhf_envs.feedback.learned import RewardModel, bradley_terry_loss, plackett_luce_loss
from rlhf_envs.feedback.review_fixtures import tiny_gpt2_config, word_tokenizer

choix = pytest.importorskip("choix")

ITEMS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
TRUE_U = np.array([1.5, 1.0, 0.6, 0.2, -0.1, -0.5, -0.9, -1.6])


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer(ITEMS + ["the", "a", "is", "good", "bad", "x", "."])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tok):
    """A causal-LM directory, as the embedded default model would be saved."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_lm")
    GPT2LMHeadModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def bt_comparisons(n: int, seed: int) -> list[tuple[int, int]]:
    """(winner, loser) pairs sampled from Bradley-Terry with utilities TRUE_U."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(ITEMS), n)
    j = (i + rng.integers(1, len(ITEMS), n)) % len(ITEMS)
    p = 1 / (1 + np.exp(-(TRUE_U[i] - TRUE_U[j])))
    win = rng.random(n) < p
    return [(int(x), int(y)) if w else (int(y), int(x)) for x, y, w in zip(i, j, win, strict=True)]


def test_loads_a_causal_lm_directory_and_scores_at_the_last_real_token(model_dir):
    rm = RewardModel(model_dir, batch_size=8)
    assert isinstance(rm, FeedbackModel)
    assert rm.tokenizer.pad_token_id != rm.tokenizer.eos_token_id
    texts = ["alpha", "the bravo is good .", "a", "x x x x x x x x x x x x", "delta bad"] * 3
    batched = rm.score_texts(texts)
    single = np.array([rm.score_texts([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)  # padding never changes a score
    eps = [Episode("the alpha", " is good", (), (), True)]
    out = score_episodes(rm, eps)
    assert out.dtype == np.float32 and out[0] == pytest.approx(rm.score_texts(["the alpha is good"])[0])
    # the head reads the final (EOS) position: changing only the first token changes the score
    assert rm.score_texts(["alpha is good"])[0] != pytest.approx(rm.score_texts(["bravo is good"])[0])


def test_bradley_terry_loss_matches_choix_mle():
    """The loss the reward model trains with, minimised over free utilities, is choix's MLE."""
    data = bt_comparisons(3000, seed=1)
    w, loser = torch.tensor(data).T
    theta = torch.zeros(len(ITEMS), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = bradley_terry_loss(theta[w], theta[loser], torch.ones(len(data), dtype=torch.float64))
        loss.backward()
        return loss

    opt.step(closure)
    ours = theta.detach().numpy() - theta.detach().numpy().mean()
    ref = choix.opt_pairwise(len(ITEMS), data, alpha=0.0)
    np.testing.assert_allclose(ours, ref - ref.mean(), atol=2e-3)


def test_plackett_luce_loss_matches_choix_mle():
    rng = np.random.default_rng(2)
    rankings = []
    for _ in range(800):  # sample rankings of 4 items from Plackett-Luce (Gumbel trick)
        items = rng.choice(len(ITEMS), 4, replace=False)
        noisy = TRUE_U[items] + rng.gumbel(size=4)
        rankings.append([int(x) for x in items[np.argsort(-noisy)]])
    theta = torch.zeros(len(ITEMS), dtype=torch.float64, requires_grad=True)
    idx = torch.tensor(rankings)
    opt = torch.optim.LBFGS([theta], max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = plackett_luce_loss(theta[idx], torch.full((len(rankings),), 4))
        loss.backward()
        return loss

    opt.step(closure)
    ours = theta.detach().numpy() - theta.detach().numpy().mean()
    ref = choix.ilsr_rankings(len(ITEMS), rankings)  # converges to the ML estimate
    np.testing.assert_allclose(ours, ref - ref.mean(), atol=2e-3)


def test_reward_model_bradley_terry_fit_agrees_with_choix(tok):
    """The full RewardModel fit (GPT-2 backbone, one word per item) recovers choix's estimates."""
    data = bt_comparisons(4000, seed=3)
    rm = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32), tok, seed=0)
    report = rm.fit_preferences(
        [ITEMS[w] for w, _ in data], [ITEMS[lo] for _, lo in data], ["A"] * len(data),
        epochs=12, lr=3e-3, train_batch_size=128, val_fraction=0.0,
    )  # fmt: skip
    assert report.n_train == 4000 and report.kind == "preferences"
    ours = rm.score_texts(ITEMS).astype(np.float64)
    ref = choix.opt_pairwise(len(ITEMS), data, alpha=0.0)
    ours, ref = ours - ours.mean(), ref - ref.mean()
    assert np.corrcoef(ours, ref)[0, 1] > 0.995
    assert np.max(np.abs(ours - ref)) < 0.2, (ours, ref)


def test_fit_ratings_and_rankings_report_held_out_accuracy(tok):
    rng = np.random.default_rng(4)
    items = [ITEMS[i] for i in rng.integers(0, len(ITEMS), 600)]
    ratings = [float(TRUE_U[ITEMS.index(x)]) for x in items]
    rm = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32), tok, seed=1)
    rep = rm.fit_ratings(items, ratings, epochs=10, lr=3e-3, val_fraction=0.2)
    assert rep.n_val == 120 and rep.val_accuracy > 0.95 and rep.extra["val_pearson"] > 0.95
    assert "held-out accuracy" in str(rep)
    rankings = []
    for _ in range(400):
        pick = rng.choice(len(ITEMS), 3, replace=False)
        rankings.append([ITEMS[i] for i in sorted(pick, key=lambda i: -TRUE_U[i])])
    rm2 = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32), tok, seed=2)
    rep2 = rm2.fit_rankings(rankings, epochs=10, lr=3e-3)
    assert rep2.kind == "rankings" and rep2.val_accuracy > 0.95
    assert rm2.last_fit is rep2


def test_margin_and_ties_and_skips(tok):
    a, b = ["alpha"] * 64, ["hotel"] * 64
    rm = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32), tok, seed=3)
    rep = rm.fit_preferences(
        a, b, [1.0] * 60 + ["tie", "skip", None, 0.5], margins=1.0, epochs=20, lr=3e-3, val_fraction=0.0
    )
    assert rep.n_train == 62  # two skips dropped
    s = rm.score_texts(["alpha", "hotel"])
    assert s[0] - s[1] > 1.0  # the margin pushes the gap past 1


def test_ensemble_bootstrap_aggregates(tok):
    data = bt_comparisons(600, seed=5)
    a, b = [ITEMS[w] for w, _ in data], [ITEMS[lo] for _, lo in data]
    rm = RewardModel(
        tiny_gpt2_config(tok, n_layer=1, n_embd=32),
        tok,
        n_members=3,
        aggregate="mean_minus_std",
        k=2.0,
        normalize=True,
        seed=0,
    )
    rep = rm.fit_preferences(a, b, ["A"] * len(a), epochs=4, lr=3e-3)
    assert len(rep.train_loss) == 3 and rep.val_accuracy > 0.6
    m = rm.member_scores(ITEMS)
    assert m.shape == (3, len(ITEMS)) and not np.allclose(m[0], m[1])  # different resamples
    np.testing.assert_allclose(rm.score_texts(ITEMS), m.mean(0) - 2.0 * m.std(0), rtol=1e-5, atol=1e-5)
    assert np.all(rm.uncertainty(ITEMS) > 0)
    d = rm.disagreement(ITEMS, ITEMS[::-1])
    assert d.shape == (len(ITEMS),) and np.all(d >= 0) and d.max() > 0
    rm.aggregate = "min"
    np.testing.assert_allclose(rm.score_texts(ITEMS), m.min(0), rtol=1e-5, atol=1e-5)
    # normalised members have mean 0 / std 1 on their training texts
    assert np.allclose(m.mean(1), 0, atol=0.2)


def test_save_and_load_with_safetensors(tmp_path, tok):
    rm = RewardModel(tiny_gpt2_config(tok, n_layer=1, n_embd=32), tok, n_members=2, aggregate="min", seed=4)
    rm.fit_preferences(["alpha"] * 40, ["hotel"] * 40, ["A"] * 40, epochs=2, lr=3e-3)
    rm.save(tmp_path / "rm")
    files = sorted(p.name for p in (tmp_path / "rm").iterdir())
    assert "member_0.safetensors" in files and "member_1.safetensors" in files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    back = RewardModel.load(tmp_path / "rm")
    np.testing.assert_allclose(back.score_texts(ITEMS), rm.score_texts(ITEMS), atol=1e-6)
    assert back.aggregate == "min" and back.last_fit.n_train == rm.last_fit.n_train
    with pytest.raises(ConfigError, match="no saved RewardModel"):
        RewardModel.load(tmp_path)


def test_bad_input_is_an_error(model_dir, tok):
    rm = RewardModel(model_dir)
    with pytest.raises(FeedbackError, match="2 A items, 1 B items and 2 labels"):
        rm.fit_preferences(["alpha", "bravo"], ["echo"], ["A", "B"])
    with pytest.raises(FeedbackError, match="3 items but 2 ratings"):
        rm.fit_ratings(["alpha"] * 3, [1.0, 2.0])
    with pytest.raises(FeedbackError, match="empty text"):
        rm.score([Episode("", "", (), (), True)])
    with pytest.raises(FeedbackError, match="label 1 is 'maybe'"):
        rm.fit_preferences(["alpha"] * 2, ["echo"] * 2, ["A", "maybe"])
    with pytest.raises(FeedbackError, match="finite"):
        rm.fit_ratings(["alpha"], [float("nan")])
    with pytest.raises(FeedbackError, match="all skipped"):
        rm.fit_preferences(["alpha"], ["echo"], ["skip"])
    with pytest.raises(ConfigError, match="aggregate"):
        RewardModel(model_dir, aggregate="median")
    with pytest.raises(ConfigError, match="not a transformers model directory"):
        RewardModel(model_dir / "nope")
    with pytest.raises(ConfigError, match="tokenizer is required"):
        RewardModel(tiny_gpt2_config(tok))


@pytest.mark.slow
def test_oracle_comparisons_give_a_reward_model_that_ranks_by_gold_utility():
    """2,000 Oracle comparisons -> held-out Spearman >= 0.9 and pairwise accuracy >= 0.85.

    Completions: the seeded review grammar (negation off); gold: VADER compound sentiment; model:
    GPT-2 from scratch (2 layers, 64 wide, dropout 0.1). About 2-3 minutes on one CPU thread.
    """
    from scipy.stats import spearmanr

    from rlhf_envs.feedback.review_fixtures import ReviewGenerator
    from rlhf_envs.feedback.scripted import Sentiment
    from rlhf_envs.feedback.simulated import SimulatedHuman

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    gen, gold = ReviewGenerator(p_negation=0.0), Sentiment()
    pool, test = gen.episodes(3000, rng), gen.episodes(1000, rng)
    i = rng.integers(0, 3000, 2000)
    j = (i + rng.integers(1, 3000, 2000)) % 3000
    a, b = [pool[k] for k in i], [pool[k] for k in j]
    labels = SimulatedHuman(gold, "Oracle").compare(a, b).prob_a()
    tok = word_tokenizer()
    cfg = tiny_gpt2_config(tok, n_layer=2, n_embd=64)
    cfg.resid_pdrop = cfg.embd_pdrop = cfg.attn_pdrop = 0.1
    rm = RewardModel(cfg, tok, seed=0)
    rm.fit_preferences(a, b, labels, epochs=30, lr=1e-3, weight_decay=0.01)
    s, g = rm.score(test), gold.score(test)
    x, y = np.triu_indices(len(g), 1)
    keep = g[x] != g[y]
    acc = np.mean(((s[x] > s[y]) == (g[x] > g[y]))[keep])
    rho = spearmanr(s, g).correlation
    print(f"Spearman {rho:.3f}, pairwise accuracy {acc:.3f}, {rm.last_fit}")
    assert rho >= 0.9 and acc >= 0.85


def test_fits_are_reproducible_from_the_seed(tok):
    def fitted(seed):
        cfg = tiny_gpt2_config(tok, n_layer=1, n_embd=32)
        cfg.resid_pdrop = 0.1  # dropout draws from the model's seeded stream, not the global one
        rm = RewardModel(cfg, tok, n_members=2, seed=seed)
        torch.manual_seed(12345 + seed)  # global RNG state must not matter
        rm.fit_preferences(["alpha", "bravo"] * 20, ["hotel", "golf"] * 20, ["A"] * 40, epochs=2, lr=1e-3)
        return rm.member_scores(ITEMS)

    np.testing.assert_array_equal(fitted(7), fitted(7))
    assert not np.allclose(fitted(7), fitted(8))


def test_compare_gives_bradley_terry_probabilities(model_dir):
    rm = RewardModel(model_dir)
    p = rm.compare(["alpha", "bravo"], ["bravo", "alpha"])
    s = rm.score_texts(["alpha", "bravo"]).astype(np.float64)
    assert p[0] == pytest.approx(1 / (1 + np.exp(-(s[0] - s[1]))), abs=1e-6)
    assert p[0] + p[1] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(FeedbackError, match="pair up"):
        rm.compare(["alpha"], [])
