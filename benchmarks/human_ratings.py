"""How well do scorers agree with real people? Held-out agreement with the crowd's mean rating.

Data: Hutto & Gilbert (ICWSM 2014) sentences with 15-99 individual ratings each
(:mod:`rlhf_envs.data.hutto2014`), per domain (tweets, movies, amazon, nyt), always on the fixed
*held-out test* split; anything fitted is fitted on the *train* split of the same domain (and
tuned on *validation*). Methods (issue 16, the ones that need no reward model yet):

* ``vader``: VADER's compound score (the ``vaderSentiment`` package the suite's sentiment reward uses).
* ``one_rater``: one of the sentence's real ratings, drawn at random, against the mean of its
  *other* ratings (leave-one-out, so the rater is not compared with itself); the figures are
  averages over ``--draws`` seeded draws. This is how well a single person agrees with the crowd.
* ``bow_ridge``: a plain bag-of-words ridge regression on the mean rating (lower-cased word and
  ``!``/``?`` presence features, words seen in at least two training sentences; intercept not
  penalised; the penalty chosen on the validation split), fitted in-domain on train.
* ``rm_regression``: a :class:`~rlhf_envs.feedback.learned.RewardModel` (the whole backbone
  fine-tuned with a one-output head) fitted by regression on the mean rating of the train
  sentences (``fit_ratings``), early-stopped on validation (below).
* ``rm_bradley_terry``: the same model fitted by Bradley-Terry (``fit_preferences``) on pairs of
  train sentences whose labels are real people's answers: each pair is answered by
  :class:`~rlhf_envs.feedback.recorded.RecordedRaters` (one real rating drawn for each sentence,
  the higher one preferred, a tie when equal, which the fit takes as 0.5). ``--pairs-per-sentence``
  pairs per train sentence (default 0.5: half as many pairs as sentences, so a fit reads as many texts per epoch as the regression), drawn uniformly in-domain.

Reward-model protocol (both methods, in-domain, one model per domain): backbone ``--backbone``
(``default``: the embedded model of ``rlhf_envs/assets/default_lm``; or a model directory, e.g. a
candidate built by ``rlhf-envs pretrain --corpus mixed``); AdamW ``--rm-lr`` (1e-3), batches of 32,
texts cut to their last 128 tokens. Training goes one epoch per ``fit_*`` call (each call decays
its learning rate linearly to 0, so the schedule is a warm restart per epoch, and the training items
are reshuffled between calls); after each epoch the model scores the validation sentences and the
weights with the best validation Pearson are kept; training stops after ``--rm-patience`` (1)
epochs without improvement or after ``--rm-epochs`` (3). ``fit_*`` holds out nothing itself
(``val_fraction=0``): the fixed validation split is the held-out set.

Metrics against the crowd mean (the published mean rating; for ``one_rater`` the leave-one-out
mean): Pearson, Spearman, and **pairwise accuracy**: over all pairs of test sentences of the domain
whose crowd means differ, the share the method orders like the crowd (a tie in the method's scores
counts 1/2).

It also measures whether the embedded model can read real English (issue 16, item 2):

* **tokenizer**: of the real words (pre-tokens of the embedded byte-level BPE that contain a letter)
  in the train split's sentences, the share the tokenizer keeps whole (1 piece), splits into 4 or
  more pieces, or breaks down to single bytes (a piece that is one bare byte, in a word of two or
  more pieces); per occurrence and per distinct word; the same on the generated corpus's held-out
  documents for reference;
* **perplexity** of the embedded model on the held-out (test) real sentences and on its own
  generated corpus's held-out documents (the assets README's protocol: documents + ``<eos>``
  packed into 128-token blocks, ``<eos>`` included, padding excluded; 2.67 in the README), plus
  bits per byte of text, which does not depend on how finely the tokenizer cuts (a uniform guess
  over the 2,288 tokens would have perplexity 2,288; over bytes, 8 bits per byte).

    python -m benchmarks.human_ratings            # the shipped backbone; 106 min on the busy 2-core machine
    python -m benchmarks.human_ratings --backbone DIR  # a candidate: writes human_ratings_candidate.json
    python -m benchmarks.human_ratings --parts ratings --out /tmp/hr
    python -m benchmarks.human_ratings --quick --out /tmp/hr   # a few sentences per domain (tests)

Writes ``benchmarks/results/human_ratings.json`` (``--backbone default``) or
``human_ratings_candidate.json`` (any other backbone; ``meta.backbone`` says what it is and the
command that builds it): ``{"domains": {DOMAIN: {METHOD: {"pearson", "spearman",
"pairwise_accuracy", "n"}}}, "meta": ..., "embedded_model": ...}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rlhf_envs.data import hutto2014

RESULTS = Path(__file__).resolve().parent / "results"
ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")


# ---------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def pairwise_accuracy(pred: np.ndarray, gold: np.ndarray, chunk: int = 512) -> float:
    """Over all pairs ``i < j`` with ``gold[i] != gold[j]``: the share ``pred`` orders like ``gold``
    (a tie in ``pred`` counts 1/2)."""
    pred, gold = np.asarray(pred, float), np.asarray(gold, float)
    n = len(pred)
    credit, pairs = 0.0, 0
    for s in range(0, n, chunk):
        i = np.arange(s, min(s + chunk, n))
        dg = np.sign(gold[i, None] - gold[None, :])
        dp = np.sign(pred[i, None] - pred[None, :])
        upper = i[:, None] < np.arange(n)[None, :]
        m = upper & (dg != 0)
        credit += float(((dp == dg) & m).sum()) + 0.5 * float(((dp == 0) & m).sum())
        pairs += int(m.sum())
    return credit / pairs


def metrics(pred: np.ndarray, gold: np.ndarray) -> dict:
    return {
        "pearson": round(pearson(pred, gold), 4),
        "spearman": round(spearman(pred, gold), 4),
        "pairwise_accuracy": round(pairwise_accuracy(pred, gold), 4),
        "n": len(pred),
    }


# ---------------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------------


def vader(texts: list[str]) -> np.ndarray:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    return np.array([sia.polarity_scores(t)["compound"] for t in texts])


def one_rater(records: list[hutto2014.RatedSentence], draws: int, seed: int) -> dict:
    """One random real rating vs the mean of the sentence's other ratings, averaged over ``draws``."""
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(draws):
        one, rest = np.empty(len(records)), np.empty(len(records))
        for k, r in enumerate(records):
            rs = np.asarray(r.ratings, float)
            j = rng.integers(len(rs))
            one[k], rest[k] = rs[j], (rs.sum() - rs[j]) / (len(rs) - 1)
        runs.append(metrics(one, rest))
    out = {
        k: round(float(np.mean([m[k] for m in runs])), 4)
        for k in ("pearson", "spearman", "pairwise_accuracy")
    }
    out["n"] = len(records)
    out["draws"] = draws
    out["pearson_sd_over_draws"] = round(float(np.std([m["pearson"] for m in runs])), 4)
    return out


def words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


def bow_matrix(texts: list[str], vocab: dict[str, int]):  # noqa: ANN201 - scipy sparse matrix
    from scipy.sparse import csr_matrix

    rows, cols = [], []
    for i, t in enumerate(texts):
        for w in words(t):
            j = vocab.get(w)
            if j is not None:
                rows.append(i)
                cols.append(j)
    return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(vocab)))


def ridge(x, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:  # noqa: ANN001
    """``min |y - b - x w|^2 + alpha |w|^2`` (``b`` not penalised) on a sparse ``x``, by LSQR on the
    implicitly column-centred matrix."""
    from scipy.sparse.linalg import LinearOperator, lsqr

    mu = np.asarray(x.mean(0)).ravel()
    n, d = x.shape
    xc = LinearOperator(
        (n, d),
        matvec=lambda v: x @ v - mu @ v,
        rmatvec=lambda u: x.T @ u - mu * u.sum(),
        dtype=np.float64,
    )
    ym = float(y.mean())
    w = lsqr(xc, y - ym, damp=math.sqrt(alpha), atol=1e-10, btol=1e-10, iter_lim=5000)[0]
    return w, ym - float(mu @ w)


def bow_ridge(train: list, val: list, test: list) -> tuple[np.ndarray, dict]:
    """Fit on ``train``, pick the penalty on ``val``; return test predictions and the choice."""
    df = Counter(w for r in train for w in words(r.text))
    vocab = {w: i for i, w in enumerate(sorted(w for w, c in df.items() if c >= 2))}
    xtr, xva, xte = (bow_matrix([r.text for r in s], vocab) for s in (train, val, test))
    ytr, yva = np.array([r.mean for r in train]), np.array([r.mean for r in val])
    scores = {}
    for a in ALPHAS:
        w, b = ridge(xtr, ytr, a)
        scores[a] = pearson(xva @ w + b, yva)
    best = max(scores, key=scores.get)
    w, b = ridge(xtr, ytr, best)
    return xte @ w + b, {
        "alpha": best,
        "vocabulary": len(vocab),
        "validation_pearson": round(scores[best], 4),
    }


# -- reward models ---------------------------------------------------------------------------------


def resolve_backbone(backbone: str) -> str | None:
    """``"default"`` -> ``None`` (the embedded model); anything else must be a model directory."""
    if backbone == "default":
        return None
    if not (Path(backbone) / "config.json").is_file():
        raise SystemExit(f"--backbone {backbone!r}: not 'default' and not a model directory (no config.json)")
    return str(Path(backbone).resolve())


def describe_backbone(backbone: str | None) -> dict:
    """What the backbone is: its directory, training facts and the command that builds it."""
    from rlhf_envs.lm.loading import DEFAULT_MODEL_DIR

    path = Path(backbone) if backbone is not None else DEFAULT_MODEL_DIR
    info_file = path / "training_info.json"
    out: dict = {"name": "default" if backbone is None else "candidate", "dir": str(path)}
    if info_file.is_file():
        ti = json.loads(info_file.read_text())
        c = ti.get("config", {})
        corpus = ti.get("corpus", {}).get("corpus", "generated")
        out |= {
            "corpus": corpus,
            "vocab_size": ti.get("vocab_size"),
            "n_parameters": ti.get("n_parameters"),
            "generated_held_out_perplexity": ti.get("held_out_perplexity"),
            "build_command": (
                f"rlhf-envs pretrain --corpus {corpus} --vocab-size {c.get('vocab_size')} --seed "
                f"{c.get('seed')} --steps {c.get('steps')} --threads {c.get('threads')} --out "
                + ("rlhf_envs/assets/default_lm" if backbone is None else "DIR")
            ),
        }
        if "corpus" in ti:
            out["corpus_mix"] = ti["corpus"]
    return out


def fit_early_stopped(
    rm,  # noqa: ANN001 - a RewardModel
    fit_epoch: Callable[[int], object],
    val_texts: list[str],
    val_gold: np.ndarray,
    max_epochs: int,
    patience: int,
) -> dict:
    """Call ``fit_epoch(epoch)`` (one epoch of a ``fit_*``) until the validation Pearson has not
    improved for ``patience`` epochs or ``max_epochs`` ran; restore the best epoch's weights."""
    best, best_epoch, best_state, history = -math.inf, 0, None, []
    for epoch in range(1, max_epochs + 1):
        fit_epoch(epoch)
        v = pearson(rm.score_texts(val_texts), val_gold)
        v = v if math.isfinite(v) else -1.0  # a constant prediction has no correlation
        history.append(round(v, 4))
        if v > best:
            best, best_epoch = v, epoch
            best_state = [copy.deepcopy(m.state_dict()) for m in rm.members]
        elif epoch - best_epoch >= patience:
            break
    for m, state in zip(rm.members, best_state, strict=True):
        m.load_state_dict(state)
        m.eval()
    return {"best_epoch": best_epoch, "epochs_run": len(history), "validation_pearson": history}


def _reward_model(backbone: str | None, seed: int):  # noqa: ANN202
    from rlhf_envs.feedback.learned import RewardModel

    return RewardModel(backbone, seed=seed, max_length=128, batch_size=64)


def rm_regression(
    train: list, val: list, test: list, backbone: str | None, opts: dict
) -> tuple[np.ndarray, dict]:
    """The reward model fitted by regression on the train sentences' mean ratings; test scores."""
    rm = _reward_model(backbone, opts["seed"])
    rng = np.random.default_rng([opts["seed"], 101])
    texts, y = [r.text for r in train], np.array([r.mean for r in train])
    t0 = time.perf_counter()

    def epoch(_: int) -> None:
        order = rng.permutation(len(texts))
        rm.fit_ratings(
            [texts[i] for i in order],
            y[order],
            epochs=1,
            lr=opts["lr"],
            train_batch_size=32,
            val_fraction=0.0,
        )

    info = fit_early_stopped(
        rm, epoch, [r.text for r in val], np.array([r.mean for r in val]), opts["epochs"], opts["patience"]
    )
    info["fit_seconds"] = round(time.perf_counter() - t0, 1)
    return rm.score_texts([r.text for r in test]).astype(np.float64), info


def real_pairs(records: list, pairs_per_sentence: float, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Uniform random in-domain pairs ``(i, j)``, ``i != j``, of ``records``, labelled by recorded
    raters (one real rating drawn for each sentence; ties stay ties). Returns ``i, j, labels``."""
    from rlhf_envs.feedback.recorded import RecordedRaters, episode_for
    from rlhf_envs.feedback.simulated import Label

    n = len(records)
    m = max(1, int(round(pairs_per_sentence * n)))
    rng = np.random.default_rng([seed, 202])
    i = rng.integers(n, size=m)
    j = (i + rng.integers(1, n, size=m)) % n
    eps = [episode_for(r) for r in records]
    answers = RecordedRaters(records, seed=seed).compare([eps[k] for k in i], [eps[k] for k in j])
    return i, j, [Label(int(x)) for x in answers.labels]


def rm_bradley_terry(
    train: list, val: list, test: list, backbone: str | None, opts: dict
) -> tuple[np.ndarray, dict]:
    """The reward model fitted by Bradley-Terry on real pairwise draws between train sentences."""
    from rlhf_envs.feedback.simulated import Label

    i, j, labels = real_pairs(train, opts["pairs_per_sentence"], opts["seed"])
    a, b = [train[k].text for k in i], [train[k].text for k in j]
    rm = _reward_model(backbone, opts["seed"])
    rng = np.random.default_rng([opts["seed"], 303])
    t0 = time.perf_counter()

    def epoch(_: int) -> None:
        order = rng.permutation(len(a))
        rm.fit_preferences(
            [a[k] for k in order],
            [b[k] for k in order],
            [labels[k] for k in order],
            epochs=1,
            lr=opts["lr"],
            train_batch_size=32,
            val_fraction=0.0,
        )

    info = fit_early_stopped(
        rm, epoch, [r.text for r in val], np.array([r.mean for r in val]), opts["epochs"], opts["patience"]
    )
    info["fit_seconds"] = round(time.perf_counter() - t0, 1)
    info["pairs"] = len(labels)
    info["label_shares"] = {
        k.name: round(sum(x == k for x in labels) / len(labels), 4) for k in (Label.A, Label.B, Label.TIE)
    }
    return rm.score_texts([r.text for r in test]).astype(np.float64), info


def domain_splits(domain: str, quick: bool) -> tuple[list, list, list]:
    """The fixed train / validation / test split of a domain (``quick``: its first 60 / 30 / 40)."""
    train, val, test = (hutto2014.load(domain, split=s) for s in hutto2014.SPLITS)
    return (train[:60], val[:30], test[:40]) if quick else (train, val, test)


def rating_table(
    draws: int,
    seed: int,
    methods: set[str],
    backbone: str | None = None,
    rm_opts: dict | None = None,
    quick: bool = False,
    only: tuple[str, ...] = hutto2014.DOMAINS,
) -> tuple[dict, dict]:
    """Per domain (of ``only``), the held-out metrics of each method in ``methods`` (and each fit's
    details)."""
    domains, details = {}, {}
    for d in only:
        train, val, test = domain_splits(d, quick)
        gold = np.array([r.mean for r in test])
        texts = [r.text for r in test]
        domains[d], details[d] = (
            {},
            {"sizes": {"train": len(train), "validation": len(val), "test": len(test)}},
        )
        if "vader" in methods:
            domains[d]["vader"] = metrics(vader(texts), gold)
        if "one_rater" in methods:
            domains[d]["one_rater"] = one_rater(test, draws, seed)
        for name, fit in (("rm_regression", rm_regression), ("rm_bradley_terry", rm_bradley_terry)):
            if name in methods:
                pred, info = fit(train, val, test, backbone, rm_opts or {})
                domains[d][name] = metrics(pred, gold)
                details[d][name] = info
                print(f"{d} {name}: {domains[d][name]} {info}", flush=True)
        if "bow_ridge" in methods:
            pred_bow, info = bow_ridge(train, val, test)
            domains[d]["bow_ridge"] = metrics(pred_bow, gold)
            details[d]["bow_ridge"] = info
    return domains, details


# ---------------------------------------------------------------------------------------------------
# Can the embedded model read real English?
# ---------------------------------------------------------------------------------------------------


def generated_held_out() -> list[str]:
    """The embedded model's held-out generated documents (the assets README's perplexity set)."""
    from rlhf_envs.lm.corpus import generate_corpus
    from rlhf_envs.lm.pretrain import PretrainConfig

    cfg = PretrainConfig()
    docs = generate_corpus(cfg.n_documents, seed=cfg.seed)
    return docs[-max(1, int(len(docs) * cfg.held_out_fraction)) :]


def tokenizer_stats(texts: list[str], hf) -> dict:  # noqa: ANN001 - a PreTrainedTokenizerFast
    """How the tokenizer cuts the words (pre-tokens containing a letter) of ``texts``."""
    backend = hf.backend_tokenizer
    cache: dict[str, list[str]] = {}
    occ = Counter()
    for t in texts:
        for piece, _ in backend.pre_tokenizer.pre_tokenize_str(t):
            if any(c.isalpha() for c in piece):
                occ[piece] += 1
    for w in occ:
        cache[w] = [tok.value for tok in backend.model.tokenize(w)]

    def shares(weight) -> dict:  # noqa: ANN001
        total = sum(weight(w) for w in occ)
        n = {w: len(p) for w, p in cache.items()}
        byte = {w: len(p) >= 2 and any(len(x) == 1 for x in p) for w, p in cache.items()}
        return {
            "one_piece": round(sum(weight(w) for w in occ if n[w] == 1) / total, 4),
            "two_or_three_pieces": round(sum(weight(w) for w in occ if n[w] in (2, 3)) / total, 4),
            "four_or_more_pieces": round(sum(weight(w) for w in occ if n[w] >= 4) / total, 4),
            "byte_fallback": round(sum(weight(w) for w in occ if byte[w]) / total, 4),
            "mean_pieces": round(sum(weight(w) * n[w] for w in occ) / total, 3),
        }

    return {
        "words": sum(occ.values()),
        "distinct_words": len(occ),
        "per_occurrence": shares(lambda w: occ[w]),
        "per_distinct_word": shares(lambda w: 1),
    }


def lm_fit(texts: list[str], tok, lm, block: int = 128, batch: int = 64) -> dict:  # noqa: ANN001
    """Perplexity (the pretraining protocol) and bits per byte of the embedded model on ``texts``."""
    import torch

    from rlhf_envs.lm.pretrain import pack_blocks

    hf = tok.hf
    enc = [tok.encode(t) for t in texts]
    cut = sum(len(e) + 1 > block for e in enc)
    blocks = pack_blocks(enc, block, tok.pad_id, tok.eos_id)
    vocab = hf.convert_ids_to_tokens(list(range(len(hf))))
    special = {tok.pad_id, tok.eos_id}
    nbytes = torch.tensor([0 if i in special else len(v) for i, v in enumerate(vocab)], dtype=torch.float64)
    nll, count, byte_total = 0.0, 0, 0.0
    with torch.no_grad():
        for s in range(0, len(blocks), batch):
            x = torch.as_tensor(blocks[s : s + batch])
            # right padding needs no mask for a causal LM; an all-ones mask says so (same numbers)
            logp = torch.log_softmax(
                lm(input_ids=x, attention_mask=torch.ones_like(x)).logits[:, :-1].double(), -1
            )
            y = x[:, 1:]
            m = y != tok.pad_id
            tok_nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
            nll += float(tok_nll[m].sum())
            count += int(m.sum())
            byte_total += float(nbytes[y[m]].sum())
    return {
        "documents": len(texts),
        "tokens_scored": count,
        "documents_cut_at_block": cut,
        "perplexity": round(math.exp(nll / count), 3),
        "bits_per_byte": round(nll / math.log(2) / byte_total, 4),
        "tokens_per_word": round(sum(len(e) for e in enc) / sum(len(t.split()) for t in texts), 3),
    }


def embedded_model(backbone: str | None = None) -> dict:
    """Tokenizer and perplexity figures of ``backbone`` (``None``: the embedded model)."""
    import torch

    from rlhf_envs.lm.loading import load_causal_lm, load_tokenizer

    torch.set_num_threads(1)
    tok, lm = load_tokenizer(backbone), load_causal_lm(backbone)
    gen = generated_held_out()
    real_train = [r.text for r in hutto2014.load(split="train")]
    out = {
        "tokenizer": {
            "real_train_split": tokenizer_stats(real_train, tok.hf),
            "generated_held_out": tokenizer_stats(gen, tok.hf),
        },
        "perplexity": {"generated_held_out": lm_fit(gen, tok, lm)},
    }
    out["tokenizer"]["real_train_split_by_domain"] = {
        d: tokenizer_stats([r.text for r in hutto2014.load(d, split="train")], tok.hf)["per_occurrence"]
        for d in hutto2014.DOMAINS
    }
    real_test = {d: [r.text for r in hutto2014.load(d, split="test")] for d in hutto2014.DOMAINS}
    out["perplexity"]["real_test_split"] = lm_fit([t for v in real_test.values() for t in v], tok, lm)
    out["perplexity"]["real_test_split_by_domain"] = {d: lm_fit(v, tok, lm) for d, v in real_test.items()}
    return out


# ---------------------------------------------------------------------------------------------------


METHODS = ("vader", "one_rater", "rm_regression", "rm_bradley_terry", "bow_ridge")
RM_METHODS = ("rm_regression", "rm_bradley_terry")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts",
        default="ratings,rm,model",
        help="comma-separated: ratings (vader, one_rater, "
        "bow_ridge), rm (rm_regression, rm_bradley_terry), model (tokenizer, perplexity)",
    )
    parser.add_argument(
        "--backbone", default="default", help="'default' (the embedded model) or a model directory"
    )
    parser.add_argument("--draws", type=int, default=20, help="random draws for one_rater")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rm-lr", type=float, default=1e-3)
    parser.add_argument("--rm-epochs", type=int, default=3, help="most epochs of a reward-model fit")
    parser.add_argument(
        "--rm-patience", type=int, default=1, help="epochs without validation gain before stopping"
    )
    parser.add_argument(
        "--pairs-per-sentence", type=float, default=0.5, help="Bradley-Terry pairs per train sentence"
    )
    parser.add_argument(
        "--quick", action="store_true", help="60/30/40 sentences per domain, 1 epoch, 2 draws (tests)"
    )
    parser.add_argument(
        "--domains",
        default=",".join(hutto2014.DOMAINS),
        help="comma-separated subset (runs can be split and merged)",
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of the methods the parts select"
    )
    parser.add_argument(
        "--merge", nargs="+", default=None, help="merge these result files (disjoint domain/method sets)"
    )
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--name", default=None, help="output file stem (default: human_ratings[_candidate])")
    args = parser.parse_args(argv)
    if args.merge:
        merged = merge_results([json.loads(Path(p).read_text()) for p in args.merge], args.merge)
        out_file = Path(args.out) / f"{args.name or 'human_ratings'}.json"
        out_file.write_text(json.dumps(merged, indent=1) + "\n")
        print_summary(merged)
        return merged
    only = tuple(args.domains.split(","))
    if set(only) - set(hutto2014.DOMAINS):
        parser.error(f"--domains: known domains are {', '.join(hutto2014.DOMAINS)}")
    parts = set(args.parts.split(","))
    unknown = parts - {"ratings", "rm", "model"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; allowed: ratings, rm, model")
    backbone = resolve_backbone(args.backbone)
    if args.quick:
        args.rm_epochs, args.draws = 1, 2
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "meta": {
            "data": "Hutto & Gilbert (ICWSM 2014), vaderSentiment 3.3.2 sdist, MIT licence",
            "command": "python -m benchmarks.human_ratings" + (f" {' '.join(argv)}" if argv else ""),
            "evaluated_on": "test split (fixed, rlhf_envs.data.hutto2014.split_of)"
            + (" - QUICK MODE: first 40 test sentences per domain" if args.quick else ""),
            "gold": "published mean rating (one_rater: mean of the sentence's other ratings)",
            "pairwise_accuracy": "all test pairs of a domain with different crowd means; a tie in the method counts 1/2",
            "seed": args.seed,
        }
    }
    if parts & {"rm", "model"}:
        result["meta"]["backbone"] = describe_backbone(backbone)
    methods: set[str] = set()
    if "ratings" in parts:
        methods |= {"vader", "one_rater", "bow_ridge"}
    if "rm" in parts:
        methods |= set(RM_METHODS)
        result["meta"]["reward_model"] = {
            "lr": args.rm_lr,
            "max_epochs": args.rm_epochs,
            "patience": args.rm_patience,
            "batch_size": 32,
            "max_length": 128,
            "pairs_per_sentence": args.pairs_per_sentence,
            "early_stopping": "best validation Pearson, one epoch per fit_* call",
        }
    methods &= set(args.methods.split(","))
    if methods:
        rm_opts = {
            "seed": args.seed,
            "lr": args.rm_lr,
            "epochs": args.rm_epochs,
            "patience": args.rm_patience,
            "pairs_per_sentence": args.pairs_per_sentence,
        }
        table, result["meta"]["fits"] = rating_table(
            args.draws, args.seed, methods, backbone, rm_opts, args.quick, only
        )
        result["domains"] = {d: {m: v[m] for m in METHODS if m in v} for d, v in table.items()}
        result["average_over_domains"] = average_over_domains(result["domains"])
    if "model" in parts:
        result["embedded_model"] = embedded_model(backbone)
    result["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
    name = args.name or ("human_ratings" if backbone is None else "human_ratings_candidate")
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print_summary(result)
    return result


def average_over_domains(domains: dict) -> dict:
    """Each method's metrics averaged over the domains that have it (unweighted)."""
    methods = [m for m in METHODS if any(m in v for v in domains.values())]
    return {
        m: {
            k: round(float(np.mean([v[m][k] for v in domains.values() if m in v])), 4)
            for k in ("pearson", "spearman", "pairwise_accuracy")
        }
        for m in methods
    }


def merge_results(results: list[dict], sources: list[str]) -> dict:
    """One result from runs over disjoint (domain, method) subsets with the same settings (seeds,
    backbone); every figure is computed per domain and method from its own seeds, so it is the one a
    single run would give."""
    first = results[0]
    keys = ("backbone", "reward_model", "seed")
    for r in results[1:]:
        for k in keys:
            if r["meta"].get(k) != first["meta"].get(k):
                raise SystemExit(f"--merge: the runs differ in meta.{k}; only runs with equal settings merge")
    domains: dict[str, dict] = {}
    fits: dict[str, dict] = {}
    for r in results:
        for d, ms in r.get("domains", {}).items():
            overlap = set(domains.get(d, {})) & set(ms)
            if overlap:
                raise SystemExit(f"--merge: {d} {sorted(overlap)} appear in more than one run")
            domains.setdefault(d, {}).update(ms)
        for d, f in r["meta"].get("fits", {}).items():
            fits.setdefault(d, {}).update(f)
    order = [d for d in hutto2014.DOMAINS if d in domains]
    out = {
        "meta": dict(first["meta"]),
        "domains": {d: {m: domains[d][m] for m in METHODS if m in domains[d]} for d in order},
    }
    out["meta"]["fits"] = {d: fits[d] for d in order if d in fits}
    out["meta"]["command"] = " + ".join(r["meta"]["command"] for r in results)
    out["meta"]["merged_from"] = sources
    out["meta"]["seconds"] = round(sum(r["meta"]["seconds"] for r in results), 1)
    out["average_over_domains"] = average_over_domains(out["domains"])
    return out


def print_summary(r: dict) -> None:
    if "domains" in r:
        print("domain   method      pearson  spearman  pairwise   n")
        for d, ms in r["domains"].items():
            for m, v in ms.items():
                print(
                    f"{d:8s} {m:10s}  {v['pearson']:.3f}    {v['spearman']:.3f}     {v['pairwise_accuracy']:.3f}  {v['n']}"
                )
    if "embedded_model" in r:
        em = r["embedded_model"]
        for k, v in em["tokenizer"].items():
            print("tokenizer", k, json.dumps(v if k.endswith("domain") else v["per_occurrence"]))
        for k, v in em["perplexity"].items():
            print("perplexity", k, json.dumps(v))
    print(f"({r['meta']['seconds']} s)")


if __name__ == "__main__":
    main()
