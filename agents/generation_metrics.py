"""What the generations of a language-model policy look like, beside the reward they earn.

Reward alone hides the usual failure modes of RL on text: a policy that repeats one phrase, stops
at once, never stops, or drifts into text the base model finds implausible. Every LM evaluation
(:meth:`agents.base.OnPolicyAgent.evaluate`, for PPO, A2C, REINFORCE, RLOO, GRPO and ES alike) and
every LM training iteration therefore also reports:

* ``distinct_1`` / ``distinct_2``: distinct unigrams / bigrams of completion tokens divided by all
  of them, pooled over the batch (Li et al. 2016, corpus level); 1 = no token (pair) repeats,
  near 0 = the policy says the same thing every time;
* ``mean_length``: completion tokens per episode (the episode summaries' own ``mean_length``);
* ``eos_rate``: the share of completions whose last token is end-of-sequence (the rest hit the
  length limit);
* ``ref_perplexity``: ``exp(-mean log p_ref(token))`` over all completion tokens, the frozen
  reference model's perplexity of the generated text (low = text the base model finds plausible);
* ``kl_ref``: the KL divergence from the reference, ``sum_t KL(pi(.|s_t) || p_ref(.|s_t))`` over
  each completion's positions, averaged over episodes. In evaluation it is exact at every visited
  state (a sum over the whole vocabulary), so it is valid for greedy decoding too; during training
  the agents log the sampled k1 estimate ``sum_t log pi - log p_ref`` under the same name, whose
  expectation is the same quantity for sampled completions.

All of it works on token ids: no decoding, no tokenizer beyond its end-of-sequence id.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def distinct_n(sequences: list[np.ndarray], n: int) -> float:
    """Distinct ``n``-grams over all ``n``-grams of ``sequences`` (pooled); nan when there are none."""
    grams: set[tuple[int, ...]] = set()
    total = 0
    for seq in sequences:
        seq = [int(t) for t in seq]
        for i in range(len(seq) - n + 1):
            grams.add(tuple(seq[i : i + n]))
            total += 1
    return len(grams) / total if total else float("nan")


def completions(completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> list[np.ndarray]:
    """Each row's real completion tokens (the masked positions dropped)."""
    ids = completion_ids.detach().cpu().numpy()
    mask = completion_mask.detach().cpu().numpy().astype(bool)
    return [ids[i][mask[i]] for i in range(len(ids))]


def eos_id_of(env: Any, model: Any = None) -> int | None:
    """The end-of-sequence id of a text env's tokenizer (else of ``model``'s config, else ``None``)."""
    tok = getattr(getattr(env, "task", None), "tokenizer", None)
    eos = getattr(tok, "eos_id", None)
    if eos is None and model is not None:
        eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    return int(eos) if isinstance(eos, int | np.integer) else None


def generation_metrics(
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    ref_log_probs: torch.Tensor,
    kl_per_token: torch.Tensor,
    eos_id: int | None,
) -> dict[str, float]:
    """The metrics of the module docstring for one batch of completions.

    ``completion_ids`` / ``completion_mask`` / ``ref_log_probs`` / ``kl_per_token`` are ``(B, R)``
    (the last two are read only where the mask is set). ``eos_rate`` is left out when ``eos_id``
    is ``None``. ``mean_length`` is not computed here (the episode summaries carry it).
    """
    seqs = completions(completion_ids, completion_mask)
    m = completion_mask.to(ref_log_probs.dtype)
    n_tokens = float(m.sum())
    out = {
        "distinct_1": distinct_n(seqs, 1),
        "distinct_2": distinct_n(seqs, 2),
        "ref_perplexity": (
            math.exp(-float((ref_log_probs * m).sum()) / n_tokens) if n_tokens else float("nan")
        ),
        "kl_ref": float((kl_per_token * m).sum(1).mean()) if len(m) else float("nan"),
    }
    if eos_id is not None:
        out["eos_rate"] = float(np.mean([len(s) > 0 and int(s[-1]) == eos_id for s in seqs]))
    return out


def merge_batches(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate per-batch ``(B, R_i)`` tensors along the batch, right-padding to the longest R."""
    width = max(p["completion_ids"].shape[1] for p in parts)
    out: dict[str, torch.Tensor] = {}
    for key in parts[0]:
        rows = []
        for p in parts:
            t = p[key]
            full = t.new_zeros(t.shape[0], width)
            full[:, : t.shape[1]] = t
            rows.append(full)
        out[key] = torch.cat(rows, 0)
    return out
