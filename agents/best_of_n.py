"""Best-of-n sampling: the non-RL baseline for optimising a reward model (Gao, Schulman, Hilton 2022).

For each prompt, draw ``n`` completions from a fixed policy ``pi`` (here a causal LM, e.g. the
embedded model) and keep the one the proxy reward model scores highest. Nothing is trained; the
only knob is ``n``, and the optimisation pressure it applies is measured, as for RL, by the KL
divergence of the best-of-n distribution ``pi_bon`` from ``pi``.

KL, two ways:

* :func:`analytic_kl`: ``log n - (n - 1) / n``. It is exact when no completion carries noticeable
  probability (continuous rewards, no ties) and an upper bound otherwise.
* :func:`bon_log_ratio` / :func:`pool_curve`: a Monte-Carlo estimate of
  ``KL(pi_bon || pi) = E_{y ~ pi_bon}[log pi_bon(y) - log pi(y)]``. For a completion ``y`` with
  probability ``p = pi(y)`` (exact, the sum of its token log-probs) whose proxy score is beaten by
  no more than a share ``q = P_pi(r(Y) < r(y))`` of the policy's samples,
  ``pi_bon(y) = (q + p)^n - q^n`` (ties in the proxy broken uniformly among equal texts; one text,
  one score). ``q`` is estimated from a pool of ``N`` samples per prompt (the share of the pool
  scored strictly below ``y``), and the expectation over ``y ~ pi_bon`` uses the same pool with the
  exact order-statistic weights of a uniformly random ``n``-subset (below). With small ``p`` this
  reduces to ``log n + (n - 1) log q``, whose mean is the analytic value; where the policy repeats
  itself (short, likely completions) it comes out lower, as it should.

Expectations under best-of-n from one pool (Gao et al.'s estimator, unbiased for ``n <= N``):
sort the ``N`` pool samples by proxy score ascending; the ``i``-th (1-based) is the best of a
uniformly random ``n``-subset with probability ``C(i - 1, n - 1) / C(N, n)``. So one pool of, say,
64 samples per prompt gives gold, proxy, length and KL for every ``n <= 64`` at once, with far less
variance than drawing separate groups.

:class:`BestOfN` is the sampler itself (``select`` returns the chosen completions), used by
``benchmarks/overoptimization.py`` and by the tests on a tiny model. It draws its pools with the
suite's one sampler, :func:`rlhf_envs.lm.sampling.sample_with_logprobs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlhf_envs.errors import ConfigError
from rlhf_envs.feedback.base import Episode, FeedbackModel, score_episodes
from rlhf_envs.lm.sampling import sample_with_logprobs


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"n must be a positive int, got {n!r}")
    return int(n)


def analytic_kl(n: int) -> float:
    """``KL(pi_bon || pi) = log n - (n - 1) / n`` nats: exact without ties, an upper bound with them."""
    n = _check_n(n)
    return math.log(n) - (n - 1) / n


def exact_kl(probs: Sequence[float], rewards: Sequence[float], n: int) -> float:
    """Exact ``KL(pi_bon || pi)`` for a discrete ``pi`` over items with the given rewards.

    Items with equal rewards form one tie group; best-of-n picks the group of the highest reward
    among its ``n`` draws and, within a group, an item in proportion to its probability (a uniform
    tie-break among the draws). Used to check the estimators on toy distributions.
    """
    n = _check_n(n)
    p = np.asarray(probs, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    if p.ndim != 1 or p.shape != r.shape or len(p) == 0:
        raise ConfigError(f"probs and rewards must be 1-D of one length, got {p.shape} and {r.shape}")
    if np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-9):
        raise ConfigError(f"probs must be non-negative and sum to 1 (sum {p.sum():.6g})")
    groups, inverse = np.unique(r, return_inverse=True)
    mass = np.bincount(inverse, weights=p, minlength=len(groups))
    upper = np.cumsum(mass)
    lower = upper - mass
    group_bon = upper**n - lower**n  # P(the best of n draws lands in each group)
    pb = np.where(
        mass[inverse] > 0, group_bon[inverse] * p / np.where(mass[inverse] > 0, mass[inverse], 1), 0
    )
    keep = pb > 0
    return float(np.sum(pb[keep] * (np.log(pb[keep]) - np.log(p[keep]))))


def bon_log_ratio(logp: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    """``log(pi_bon(y) / pi(y)) = log(((q + p)^n - q^n) / p)`` per completion (see module doc).

    Args:
        logp: ``log pi(y)``, the completion's total log-probability under the policy.
        q: ``P_pi(r(Y) < r(y))``, the share of the policy's mass the proxy ranks strictly below ``y``.
        n: the number of samples best-of-n draws.
    """
    n = _check_n(n)
    logp = np.asarray(logp, dtype=np.float64)
    p = np.exp(logp)
    q = np.clip(np.asarray(q, dtype=np.float64), 0.0, 1.0)
    top = np.minimum(q + p, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_top = np.log(top)
        log_q = np.log(q)
        # log(top^n - q^n) = n log top + log1p(-(q / top)^n), stable for q close to top
        diff = n * log_top + np.log1p(-np.exp(np.minimum(n * (log_q - log_top), 0.0)))
        # where p is tiny next to q (top rounds to q), the derivative form log n + (n - 1) log q + log p
        small = p < 1e-9 * np.maximum(q, 1e-300)
        approx = math.log(n) + (n - 1) * np.where(q > 0, log_q, 0.0) + logp
        return np.where(small, approx, diff) - logp


def order_weights(pool_size: int, n: int) -> np.ndarray:
    """``w[i] = C(i, n - 1) / C(N, n)`` for ``i = 0..N-1``: the chance the ``(i+1)``-th smallest of a
    pool of ``N`` is the maximum of a uniformly random ``n``-subset (zero for ``i < n - 1``)."""
    n = _check_n(n)
    if n > pool_size:
        raise ConfigError(f"n ({n}) must be at most the pool size ({pool_size})")
    lg = math.lgamma
    log_total = lg(pool_size + 1) - lg(n + 1) - lg(pool_size - n + 1)  # log C(N, n)
    w = np.zeros(pool_size)
    for i in range(n - 1, pool_size):  # log C(i, n - 1) - log C(N, n)
        w[i] = math.exp(lg(i + 1) - lg(n) - lg(i - n + 2) - log_total)
    return w / w.sum()


@dataclass
class PoolPoint:
    """Best-of-n figures for one ``n``, averaged over prompts."""

    n: int
    kl_analytic: float
    kl_measured: float
    proxy: float
    gold: float
    length: float
    gold_se: float


def pool_curve(
    proxy: np.ndarray,
    gold: np.ndarray,
    logp: np.ndarray,
    n_values: Sequence[int],
    length: np.ndarray | None = None,
) -> list[PoolPoint]:
    """Best-of-n curves from pools: arrays of shape ``(n_prompts, N)`` (``N`` samples per prompt).

    For each ``n``: the expected proxy, gold and length of the best-of-n choice (order-statistic
    weights, see module doc) and the measured KL (``bon_log_ratio`` with ``q`` the share of the
    prompt's pool scored strictly below). ``gold_se`` is the standard error over prompts.
    """
    proxy, gold, logp = (np.asarray(x, dtype=np.float64) for x in (proxy, gold, logp))
    if proxy.ndim != 2 or proxy.shape != gold.shape or proxy.shape != logp.shape:
        raise ConfigError(
            f"proxy, gold and logp must be (n_prompts, N) arrays of one shape, got {proxy.shape}"
        )
    length = np.zeros_like(proxy) if length is None else np.asarray(length, dtype=np.float64)
    n_prompts, pool = proxy.shape
    order = np.argsort(proxy, axis=1, kind="stable")
    take = np.take_along_axis
    sp, sg, sl, slp = (take(x, order, 1) for x in (proxy, gold, length, logp))
    # q: share of the pool strictly below each sorted sample (equal scores share the lower count)
    below = np.stack([np.searchsorted(sp[j], sp[j], side="left") for j in range(n_prompts)]) / pool
    out = []
    for n in n_values:
        w = order_weights(pool, int(n))
        per_prompt_gold = sg @ w
        ratio = bon_log_ratio(slp, below, int(n))
        ratio = np.where(w[None, :] > 0, ratio, 0.0)
        out.append(
            PoolPoint(
                n=int(n),
                kl_analytic=analytic_kl(int(n)),
                kl_measured=float(np.mean(ratio @ w)),
                proxy=float(np.mean(sp @ w)),
                gold=float(per_prompt_gold.mean()),
                length=float(np.mean(sl @ w)),
                gold_se=float(per_prompt_gold.std(ddof=1) / math.sqrt(n_prompts)) if n_prompts > 1 else 0.0,
            )
        )
    return out


@dataclass
class Samples:
    """Completions drawn by :class:`BestOfN`: episodes, their log-probs under the policy, scores."""

    episodes: list[Episode]
    logp: np.ndarray
    proxy: np.ndarray


class BestOfN:
    """Best-of-n over a causal-LM policy, reranked by a proxy feedback model.

    Args:
        lm: the policy (a ``transformers`` causal LM; left untouched).
        proxy: the reward model that reranks (any :class:`~rlhf_envs.feedback.FeedbackModel`).
        eos_id: the end-of-sequence id; ``decode``: ids -> text (the env's tokenizer decode).
        max_new_tokens: the completion budget, as in the env.
        n_actions: the env's vocabulary size (logits beyond it are dropped).
        seed: seeds every draw.
        batch_size: rows decoded together.
    """

    def __init__(
        self,
        lm: torch.nn.Module,
        proxy: FeedbackModel,
        eos_id: int,
        decode: Callable[[Sequence[int]], str],
        max_new_tokens: int,
        n_actions: int | None = None,
        seed: int = 0,
        batch_size: int = 256,
    ) -> None:
        if not hasattr(proxy, "score"):
            raise ConfigError(f"proxy must have a score(episodes) method, got {type(proxy).__name__}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        self.lm, self.proxy, self.eos_id, self.decode = lm.eval(), proxy, int(eos_id), decode
        self.max_new_tokens, self.n_actions, self.batch_size = max_new_tokens, n_actions, int(batch_size)
        self.generator = torch.Generator().manual_seed(int(seed))

    @classmethod
    def from_task(cls, task: Any, proxy: FeedbackModel | None = None, seed: int = 0, **kw: Any) -> BestOfN:
        """From an rlhf language task (``task.lm``, ``task.tokenizer``; proxy defaults to its feedback)."""
        tok = task.tokenizer
        return cls(
            task.lm, proxy if proxy is not None else task.feedback, tok.eos_id, tok.decode,
            task.max_new_tokens, tok.vocab_size, seed, **kw,
        )  # fmt: skip

    def sample(self, prompts: Sequence[Any], n: int) -> Samples:
        """``n`` completions of each prompt (a rlhf ``Prompt`` with ``text``/``ids``), prompt-major:
        row ``j * n + s`` is sample ``s`` of prompt ``j``. Proxy scores included."""
        n = _check_n(n)
        rows = [p for p in prompts for _ in range(n)]
        eps: list[Episode] = []
        logps = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            comps, logp = sample_with_logprobs(
                self.lm,
                [p.ids for p in chunk],
                self.max_new_tokens,
                self.eos_id,
                self.generator,
                self.n_actions,
            )
            logps.append(logp)
            for p, c in zip(chunk, comps, strict=True):
                term = bool(c) and c[-1] == self.eos_id
                eps.append(
                    Episode(
                        p.text, self.decode(c), tuple(p.ids), tuple(c), term, dict(getattr(p, "metadata", {}))
                    )
                )
        return Samples(eps, np.concatenate(logps), score_episodes(self.proxy, eps).astype(np.float64))

    def select(self, prompts: Sequence[Any], n: int) -> list[Episode]:
        """Best-of-n: for each prompt, the one of ``n`` fresh samples the proxy scores highest."""
        s = self.sample(prompts, n)
        best = s.proxy.reshape(len(prompts), n).argmax(1)
        return [s.episodes[j * n + int(b)] for j, b in enumerate(best)]
