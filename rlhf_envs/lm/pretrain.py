"""Pretraining of the embedded default model: ``rlhf-envs pretrain``.

Steps, all seeded so a rerun with the same arguments on the same software gives the same weights:

1. generate the corpus (:mod:`rlhf_envs.lm.corpus`), hold out the last 2% of documents;
2. train a byte-level BPE tokenizer with the ``tokenizers`` library on the training documents,
   with ``<pad>`` (id 0) and ``<eos>`` (id 1) as distinct special tokens;
3. pack documents (each followed by ``<eos>``) into fixed-length blocks that each start at a document
   boundary, so the model learns to begin text at position 0 the way an env prompt does;
4. train a GPT-2 (``transformers.GPT2LMHeadModel``, tied embeddings, no dropout) with AdamW,
   linear warm-up then cosine decay;
5. measure held-out perplexity (exp of the mean token negative log-likelihood, ``<eos>`` included,
   padding excluded) and save ``model.safetensors``, ``config.json``, the tokenizer files and
   ``training_info.json`` to the output directory.

``extra_documents`` (the ``mixed`` corpus of ``rlhf-envs pretrain --corpus mixed``, assembled by
:mod:`rlhf_envs.data.pretrain_mix` because this layer reads no data sets) adds more training
documents, by source name, to the generated ones: they enter the tokenizer's training and the packed
blocks (shuffled together with the generated documents by ``seed``), never the held-out set, which
stays the generated corpus's last 2% so held-out perplexity remains comparable across builds.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rlhf_envs.lm.corpus import count_sentences, generate_corpus

PAD, EOS = "<pad>", "<eos>"


@dataclass
class PretrainConfig:
    """Everything that determines the embedded model (the defaults built the shipped one)."""

    seed: int = 0
    n_documents: int = 40_000
    vocab_size: int = 4096
    n_layer: int = 4
    n_embd: int = 160
    n_head: int = 5
    n_positions: int = 256
    block_size: int = 128
    batch_size: int = 32
    steps: int = 1500
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    held_out_fraction: float = 0.02
    threads: int = 2


def train_tokenizer(documents: list[str], vocab_size: int):  # noqa: ANN201 - transformers type
    """Train a byte-level BPE on ``documents``; return a ``PreTrainedTokenizerFast`` with pad/EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(documents, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, model_max_length=10**6)


def pack_blocks(token_docs: list[list[int]], block: int, pad_id: int, eos_id: int) -> np.ndarray:
    """Greedily pack documents (each + EOS) into ``block``-token rows that start at a document start.

    A document that does not fit in the rest of a row starts the next row; one longer than a row is
    cut. The tail of each row is ``pad_id`` (excluded from the loss).
    """
    rows: list[list[int]] = []
    cur: list[int] = []
    for doc in token_docs:
        seq = (doc + [eos_id])[:block]
        if len(cur) + len(seq) > block:
            rows.append(cur)
            cur = []
        cur = cur + seq
    if cur:
        rows.append(cur)
    out = np.full((len(rows), block), pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _loss(model, batch, pad_id: int):  # noqa: ANN001, ANN202
    import torch

    x = torch.as_tensor(batch)
    labels = x.clone()
    labels[labels == pad_id] = -100
    out = model(input_ids=x, labels=labels)
    return out.loss, int((labels[:, 1:] != -100).sum())


def evaluate_perplexity(model, blocks: np.ndarray, pad_id: int, batch_size: int = 64) -> float:  # noqa: ANN001
    """Token-level perplexity of ``model`` on packed ``blocks`` (padding excluded)."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(blocks), batch_size):
            loss, n = _loss(model, blocks[i : i + batch_size], pad_id)
            total += float(loss) * n
            count += n
    return math.exp(total / count)


def pretrain(
    out_dir: str | os.PathLike,
    config: PretrainConfig | None = None,
    log: bool = True,
    extra_documents: Mapping[str, Sequence[str]] | None = None,
    corpus_info: Mapping | None = None,
) -> dict:
    """Build the default model into ``out_dir``; return the training facts (also saved as JSON).

    Args:
        extra_documents: more training documents by source name (e.g. ``{"rated_train": [...]}``),
            mixed into the generated corpus's training part (repeat a document to weight it).
        corpus_info: a description of the extra documents, stored in ``training_info.json``.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    cfg = config or PretrainConfig()
    t0 = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    docs = generate_corpus(cfg.n_documents, seed=cfg.seed)
    n_held = max(1, int(len(docs) * cfg.held_out_fraction))
    train_docs, held_docs = docs[:-n_held], docs[-n_held:]
    source_of = ["generated"] * len(train_docs)
    for name, extra in (extra_documents or {}).items():
        train_docs = train_docs + list(extra)
        source_of += [name] * len(extra)
    hf_tok = train_tokenizer(train_docs, cfg.vocab_size)
    pad_id, eos_id = hf_tok.pad_token_id, hf_tok.eos_token_id
    enc = hf_tok(train_docs, add_special_tokens=False)["input_ids"]
    enc_held = hf_tok(held_docs, add_special_tokens=False)["input_ids"]
    order = rng.permutation(len(enc))
    train_blocks = pack_blocks([enc[i] for i in order], cfg.block_size, pad_id, eos_id)
    held_blocks = pack_blocks(enc_held, cfg.block_size, pad_id, eos_id)
    n_train_tokens = int((train_blocks != pad_id).sum())
    tokens_by_source: dict[str, int] = {}
    for src, ids in zip(source_of, enc, strict=True):
        tokens_by_source[src] = tokens_by_source.get(src, 0) + min(len(ids) + 1, cfg.block_size)
    if log:
        print(
            f"corpus: {len(docs)} documents, {count_sentences(docs)} sentences; "
            f"tokenizer vocab {len(hf_tok)}; {n_train_tokens} training tokens in {len(train_blocks)} blocks",
            flush=True,
        )

    model_cfg = GPT2Config(
        vocab_size=len(hf_tok),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=4 * cfg.n_embd,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(model_cfg)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    model.train()
    perm = rng.permutation(len(train_blocks))
    pos = 0
    t_train = time.perf_counter()
    for step in range(cfg.steps):
        if pos + cfg.batch_size > len(perm):
            perm, pos = rng.permutation(len(train_blocks)), 0
        batch = train_blocks[perm[pos : pos + cfg.batch_size]]
        pos += cfg.batch_size
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss, _ = _loss(model, batch, pad_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if log and (step % 100 == 0 or step == cfg.steps - 1):
            el = time.perf_counter() - t_train
            print(f"step {step:5d}  loss {loss.item():.3f}  lr {lr_at(step):.2e}  {el:.0f}s", flush=True)
    train_seconds = time.perf_counter() - t_train

    ppl = evaluate_perplexity(model, held_blocks, pad_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    hf_tok.save_pretrained(out)
    info = {
        "config": asdict(cfg),
        "n_parameters": int(n_params),
        "vocab_size": len(hf_tok),
        "pad_id": int(pad_id),
        "eos_id": int(eos_id),
        "corpus_documents": len(docs),
        "corpus_sentences": count_sentences(docs),
        "held_out_documents": n_held,
        "train_tokens": n_train_tokens,
        "tokens_seen": int(cfg.steps * cfg.batch_size * cfg.block_size),
        "held_out_perplexity": round(ppl, 4),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "torch_version": torch.__version__,
    }
    if extra_documents:
        total = sum(tokens_by_source.values())
        info["corpus"] = {
            **dict(corpus_info or {}),
            "train_documents_by_source": dict(
                sorted({src: source_of.count(src) for src in set(source_of)}.items())
            ),
            "train_tokens_by_source": tokens_by_source,
            "train_token_share_by_source": {k: round(v / total, 4) for k, v in tokens_by_source.items()},
        }
    (out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    if log:
        print(json.dumps(info, indent=2), flush=True)
    return info
