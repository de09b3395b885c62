"""Fluency under a frozen language model, and the rewards that are gated by it.

Lexicon and keyword rules are easy to game: a salad of positive words ("glad felt pleased glad")
scores as high on VADER as a real review, and a loop of the asked keywords covers them all. A
*fluency* factor closes that door: ``fluency = clip((m - low) / (high - low), 0, 1)``, where ``m`` is
the completion's mean log-prob per token under the frozen base model given the prompt. The base
model's own samples keep their score; incoherent text is worth nothing.

* :func:`mean_completion_logprob` and :func:`fluency`: the gate itself;
* :class:`FluentKeywordCoverage`: the reward of ``RLHF/Keywords-v0`` (coverage x fluency x diversity);
* :class:`FluentSentiment`: the ``"fluent_vader"`` gold utility of ``RLHF/SimulatedHuman-v0``
  (VADER x fluency).

The scoring model is read from ``lm_holder.lm`` when a batch is scored (not at construction), so
the holder (a task) can load it lazily and drop it when pickled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigError
from rlhf_envs.feedback.base import Episode
from rlhf_envs.feedback.rules import Sentiment


def mean_completion_logprob(lm: Any, episodes: Sequence[Episode]) -> np.ndarray:
    """Mean log-prob per completion token under ``lm`` given the prompt (``-inf`` for an empty one).

    One forward per episode keeps each score independent of which other episodes ended in the same
    step (batched matrix products can differ in the last bits), so the single and the vector env
    give identical rewards.
    """
    from rlhf_envs.lm.loading import token_logprobs

    out = np.zeros(len(episodes), dtype=np.float64)
    for i, ep in enumerate(episodes):
        comp = list(ep.completion_ids)
        if not comp:
            out[i] = -np.inf
            continue
        ids = np.asarray([list(ep.prompt_ids) + comp], dtype=np.int64)
        lp = token_logprobs(lm, ids).numpy()[0, len(ep.prompt_ids) :]
        out[i] = float(lp.mean())
    return out


def fluency(mean_logprob: np.ndarray, low: float, high: float) -> np.ndarray:
    """The fluency ramp: 0 at or below ``low`` nats per token, 1 at or above ``high`` (NaN -> 0)."""
    return np.nan_to_num(np.clip((mean_logprob - low) / (high - low), 0.0, 1.0), nan=0.0)


def _check_ramp(owner: str, low: float, high: float) -> tuple[float, float]:
    if not low < high:
        raise ConfigError(f"{owner}: low ({low}) must be below high ({high})")
    return float(low), float(high)


class FluentKeywordCoverage:
    """Keyword coverage gated by fluency: ``coverage * fluency * diversity`` in [0, 1].

    * ``coverage``: fraction of ``metadata["keywords"]`` that occur in the completion as whole words
      (case-insensitive; words are runs of letters and apostrophes);
    * ``fluency``: :func:`fluency` of the completion's mean log-prob under the frozen base model;
      text the base model finds natural scores 1, word salad 0;
    * ``diversity``: ``min(1, 2 * distinct_2)``, with ``distinct_2`` the fraction of distinct word
      bigrams, so repeating the keywords in a loop does not pay.

    Unlike the plain rule :class:`~rlhf_envs.feedback.rules.KeywordCoverage` (coverage only), this
    cannot be satisfied by listing the keywords.

    Args:
        lm_holder: an object whose ``lm`` attribute is the frozen scoring model (the task).
        low, high: the fluency ramp in nats per token.
    """

    def __init__(self, lm_holder: Any, low: float = -8.0, high: float = -4.0) -> None:
        self._lm_holder = lm_holder
        self.low, self.high = _check_ramp("FluentKeywordCoverage", low, high)

    @staticmethod
    def coverage(text: str, keywords: Sequence[str]) -> float:
        """Fraction of ``keywords`` that occur in ``text`` as whole words (case-insensitive)."""
        found = re.findall(r"[a-z']+", text.lower())
        kws = [k.lower() for k in keywords]
        return sum(k in found for k in kws) / max(1, len(kws))

    def parts(self, episodes: Sequence[Episode]) -> dict[str, np.ndarray]:
        """The three factors per episode (reported in the final ``info``)."""
        cov = np.zeros(len(episodes))
        div = np.ones(len(episodes))
        for i, ep in enumerate(episodes):
            cov[i] = self.coverage(ep.completion, ep.metadata["keywords"])
            found = re.findall(r"[a-z']+", ep.completion.lower())
            bigrams = list(zip(found, found[1:], strict=False))
            if bigrams:
                div[i] = min(1.0, 2.0 * len(set(bigrams)) / len(bigrams))
        m = mean_completion_logprob(self._lm_holder.lm, episodes)
        return {"coverage": cov, "fluency": fluency(m, self.low, self.high), "diversity": div}

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        p = self.parts(episodes)
        return (p["coverage"] * p["fluency"] * p["diversity"]).astype(np.float32)


class FluentSentiment:
    """A gold utility for "a positive review a person would want to read": ``VADER x fluency``.

    VADER alone is a bag-of-words lexicon: it scores a salad of positive words ("By the end I felt
    glad felt pleased glad By the end") as highly as a real review, so a policy that over-optimises
    a proxy into such text still looks good on VADER. A reader would not like it. Here the VADER
    compound score of the completion (:class:`~rlhf_envs.feedback.rules.Sentiment`) is multiplied by
    :func:`fluency` of its mean log-prob under the frozen base model given the prompt (the same gate
    as :class:`FluentKeywordCoverage`, with a stricter ramp): the base model's own samples (``m``
    about -1) keep their VADER score, incoherent text (``m`` below ``low``) is worth 0.

    Args:
        lm_holder: an object whose ``lm`` attribute is the frozen scoring model (the task).
        low, high: the fluency ramp in nats per token.
    """

    def __init__(self, lm_holder: Any, low: float = -6.0, high: float = -2.5) -> None:
        self._lm_holder = lm_holder
        self.low, self.high = _check_ramp("FluentSentiment", low, high)
        self.sentiment = Sentiment()

    def parts(self, episodes: Sequence[Episode]) -> dict[str, np.ndarray]:
        """``sentiment`` (VADER compound) and ``fluency`` (in [0, 1]) per episode."""
        m = mean_completion_logprob(self._lm_holder.lm, episodes)
        return {
            "sentiment": self.sentiment.score(episodes).astype(np.float64),
            "fluency": fluency(m, self.low, self.high),
        }

    def score(self, episodes: Sequence[Episode]) -> np.ndarray:
        p = self.parts(episodes)
        return (p["sentiment"] * p["fluency"]).astype(np.float32)
