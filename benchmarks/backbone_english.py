"""Can the backbone read real English? The shipped embedded model against a candidate (issue 16, item 2).

Both backbones are measured in one run with the same code (the measuring functions of
:mod:`benchmarks.human_ratings`):

* **tokenizer**: of the real words (byte-level pre-tokens containing a letter) of the rated
  sentences (Hutto & Gilbert 2014), the share kept whole, cut into 4+ pieces, or broken down to
  bare bytes (a one-byte piece in a word of two or more pieces), and the mean pieces per word; on
  the *train* split (the text a ``mixed`` candidate was trained on, so in-sample for its tokenizer),
  on the held-out *test* split (out of sample for both), and on the generated corpus's held-out
  documents;
* **perplexity and bits per byte** on the held-out test split (all domains and per domain) and on
  the generated corpus's held-out 2% (the assets README's protocol: documents + ``<eos>`` packed
  into 128-token blocks, ``<eos>`` included, padding excluded). Perplexity is per token, so it is
  not comparable across tokenizers; bits per byte (the summed negative log-likelihood in bits over
  the UTF-8 bytes of the scored tokens) is;
* **base model on RLHF/Sentiment-v0 prompts**: each backbone continues each of the task's 400
  built-in review openings once (temperature 1, no top-k, up to the task's 24 new tokens, stopping
  at ``<eos>``, seeded); the mean and spread of the task's reward (VADER's compound score of the
  continuation), with a few sample continuations.

    python -m benchmarks.backbone_english                      # candidate from the default cache path
    python -m benchmarks.backbone_english --candidate DIR --out benchmarks/results

The candidate is built (not committed) by
``rlhf-envs pretrain --corpus mixed --out $RLHF_ENVS_CACHE/candidates/mixed_lm --threads 1 --steps 1000``
(see :mod:`rlhf_envs.data.pretrain_mix`). Writes ``backbone_english.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.human_ratings import describe_backbone, generated_held_out, lm_fit, tokenizer_stats
from rlhf_envs.data import hutto2014
from rlhf_envs.data.sdist_cache import cache_root

RESULTS = Path(__file__).resolve().parent / "results"


def default_candidate() -> Path:
    """``$RLHF_ENVS_CACHE/candidates/mixed_lm`` (where the documented build command writes)."""
    return cache_root() / "candidates" / "mixed_lm"


def sentiment_base_score(tok, lm, n_prompts: int, max_new_tokens: int, seed: int) -> dict:  # noqa: ANN001
    """Sample one continuation per built-in Sentiment-v0 prompt; VADER's compound of each."""
    import torch

    from rlhf_envs.feedback.rules import Sentiment
    from rlhf_envs.lm.corpus import review_openings
    from rlhf_envs.lm.sampling import sample_with_logprobs

    prompts = review_openings(400)[:n_prompts]
    enc = [tok.encode(p) for p in prompts]
    gen = torch.Generator().manual_seed(seed)
    # the project's one sampler (KV-cached decoder, inverse-CDF draws); EOS ends a row and is kept
    new, _ = sample_with_logprobs(lm, enc, max_new_tokens, tok.eos_id, gen)
    ended = sum(1 for c in new if c and c[-1] == tok.eos_id)
    completions = [tok.decode([t for t in c if t != tok.eos_id]) for c in new]
    sent = Sentiment()
    scores = np.array([sent.compound(c) for c in completions])
    return {
        "prompts": len(prompts),
        "mean_reward": round(float(scores.mean()), 4),
        "sd_reward": round(float(scores.std()), 4),
        "standard_error": round(float(scores.std() / np.sqrt(len(scores))), 4),
        "share_positive": round(float((scores > 0.05).mean()), 4),
        "share_negative": round(float((scores < -0.05).mean()), 4),
        "share_ended_with_eos": round(ended / len(prompts), 4),
        "samples": [f"{prompts[i]} || {completions[i]}" for i in range(3)],
    }


def forward_speed(dirs: dict[str, str | None], batch: int = 64, length: int = 48, reps: int = 15) -> dict:
    """Median seconds of one full forward pass (``batch`` x ``length`` tokens, logits at every
    position, as a sampler without a cache or a PPO update computes them) per backbone, timed
    interleaved in one process on one thread so machine load hits both alike; and their ratio."""
    import torch

    from rlhf_envs.lm.loading import load_causal_lm

    torch.set_num_threads(1)
    lms = {k: load_causal_lm(v) for k, v in dirs.items()}
    gen = torch.Generator().manual_seed(0)
    xs = {k: torch.randint(2, lm.config.vocab_size, (batch, length), generator=gen) for k, lm in lms.items()}
    times: dict[str, list[float]] = {k: [] for k in lms}
    with torch.no_grad():
        for _ in range(reps):
            for k, lm in lms.items():
                t = time.perf_counter()
                lm(input_ids=xs[k], attention_mask=torch.ones_like(xs[k]))
                times[k].append(time.perf_counter() - t)
    med = {k: float(np.median(v[2:])) for k, v in times.items()}
    names = list(med)
    return {
        "batch": batch,
        "length": length,
        "median_seconds": {k: round(v, 4) for k, v in med.items()},
        f"ratio_{names[1]}_over_{names[0]}": round(med[names[1]] / med[names[0]], 3),
    }


def measure(backbone: str | None, n_prompts: int, seed: int) -> dict:
    """Every figure of one backbone (``None``: the shipped embedded model)."""
    import torch

    from rlhf_envs.lm.loading import load_causal_lm, load_tokenizer

    torch.set_num_threads(1)
    tok, lm = load_tokenizer(backbone), load_causal_lm(backbone)
    t0 = time.perf_counter()
    gen = generated_held_out()
    train = [r.text for r in hutto2014.load(split="train")]
    test_by_domain = {d: [r.text for r in hutto2014.load(d, split="test")] for d in hutto2014.DOMAINS}
    test = [t for v in test_by_domain.values() for t in v]
    out = {
        "backbone": describe_backbone(backbone),
        "tokenizer": {
            "vocab_size": len(tok.hf),
            "real_train_split": tokenizer_stats(train, tok.hf),
            "real_test_split": tokenizer_stats(test, tok.hf),
            "generated_held_out": tokenizer_stats(gen, tok.hf),
        },
        "perplexity": {
            "real_test_split": lm_fit(test, tok, lm),
            "real_test_split_by_domain": {d: lm_fit(v, tok, lm) for d, v in test_by_domain.items()},
            "generated_held_out": lm_fit(gen, tok, lm),
        },
        "sentiment_v0_base_model": sentiment_base_score(tok, lm, n_prompts, 24, seed),
        "parameters": int(sum(p.numel() for p in lm.parameters())),
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def summary_rows(result: dict) -> list[str]:
    rows = [
        "backbone   vocab  params   byte-fallback(test)  pieces/word(test)  ppl(real test)  bpb(real test)  "
        "ppl(gen)  bpb(gen)  sentiment base",
    ]
    for name, m in result["backbones"].items():
        t = m["tokenizer"]["real_test_split"]["per_occurrence"]
        p = m["perplexity"]
        s = m["sentiment_v0_base_model"]
        rows.append(
            f"{name:10s} {m['tokenizer']['vocab_size']:5d}  {m['parameters']:8d}  {t['byte_fallback']:.3f}"
            f"               {t['mean_pieces']:.2f}               {p['real_test_split']['perplexity']:<12.4g}"
            f"  {p['real_test_split']['bits_per_byte']:.3f}           {p['generated_held_out']['perplexity']:.3f}"
            f"     {p['generated_held_out']['bits_per_byte']:.3f}     {s['mean_reward']:+.3f} (se {s['standard_error']:.3f})"
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--candidate", default=None, help="candidate model directory (default: the cache path)"
    )
    parser.add_argument("--prompts", type=int, default=400, help="Sentiment-v0 prompts to continue (<= 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    candidate = Path(args.candidate) if args.candidate else default_candidate()
    if not (candidate / "config.json").is_file():
        raise SystemExit(
            f"no candidate model at {candidate}; build it with `rlhf-envs pretrain --corpus mixed --out {candidate}`"
        )
    t0 = time.perf_counter()
    result = {
        "meta": {
            "command": "python -m benchmarks.backbone_english" + (f" {' '.join(argv)}" if argv else ""),
            "data": "Hutto & Gilbert (ICWSM 2014) rated sentences, fixed split (rlhf_envs.data.hutto2014)",
            "bits_per_byte": "summed token NLL in bits / UTF-8 bytes of the scored tokens (comparable across tokenizers)",
            "perplexity": "per token, packed 128-token blocks, <eos> included (not comparable across tokenizers)",
            "byte_fallback": "share of real words (pre-tokens with a letter) cut into 2+ pieces of which one is a bare byte",
            "seed": args.seed,
        },
        "backbones": {
            "shipped": measure(None, args.prompts, args.seed),
            "candidate": measure(str(candidate), args.prompts, args.seed),
        },
    }
    result["forward_speed"] = forward_speed({"shipped": None, "candidate": str(candidate)})
    result["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backbone_english.json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(summary_rows(result)))
    return result


if __name__ == "__main__":
    main()
