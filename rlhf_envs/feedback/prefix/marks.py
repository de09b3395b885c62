"""A simulated person who marks tokens (or spans) of a completion as good or bad.

The dense, per-token feedback of the rating page's per-token mode, simulated: the person reads the
completion token by token and marks a token good (+1) when it made the text better under a hidden
gold utility and bad (-1) when it made it worse; tokens that changed nothing stay unmarked (0).
"Better" is the gold's score of the prefix ending with the token minus that of the prefix before it
(each scored as if finished, :class:`~rlhf_envs.feedback.prefix.scripted.ScriptedPrefixScorer`),
compared with ``threshold``.

Noise, all configurable and seeded (``seed`` and each episode's ``Episode.seed``; the same token of
the same episode always gets the same draw, however episodes are batched or cut):

* ``miss``: the chance that a deserved mark is left out;
* ``flip``: the chance that a mark is given the wrong sign (a mistake);
* ``span``: marks cover spans, not single tokens: a mark also covers the ``span`` tokens before it
  that have no mark of their own (people mark the phrase that leads to a good or bad word).

As a prefix scorer, ``Phi(s) = scale * (sum of the marks the person gives when shown s)``, so with
``gamma = 1`` the shaping reward of a token is ``scale`` times its mark (spans aside).

Cost: marking a state of ``t`` tokens scores its ``t + 1`` prefixes with the gold (one batched call),
so an env step with this scorer costs ``O(t)`` gold evaluations: cheap for rules (VADER, word
counts), noticeable for golds that run a language model (``RLHF/Keywords-v0``'s fluency gate).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigError
from rlhf_envs.feedback.base import EpisodeBatch, FeedbackModel
from rlhf_envs.feedback.prefix.scripted import ScriptedPrefixScorer
from rlhf_envs.seeding import episode_keys, uniforms


def _prob(name: str, v: Any) -> float:
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float | np.integer | np.floating)
        or not 0.0 <= v <= 1.0
    ):
        raise ConfigError(f"SimulatedTokenMarker: {name} must be a probability in [0, 1], got {v!r}")
    return float(v)


class SimulatedTokenMarker:
    """Per-token good / bad marks from a hidden gold utility, with seeded noise (module docstring).

    Args:
        gold: the hidden utility (a :class:`~rlhf_envs.feedback.FeedbackModel`).
        tokenizer: the env's tokenizer (decodes prefixes).
        threshold: a token is marked when the gold changes by more than this (>= 0).
        miss, flip: probabilities of leaving a mark out and of giving it the wrong sign.
        span: tokens before a mark that the mark also covers (>= 0).
        scale: ``Phi`` per unit of net mark (>= 0).
        seed: the marker's own seed (combined with each episode's seed).
    """

    def __init__(
        self,
        gold: FeedbackModel,
        tokenizer: Any,
        threshold: float = 0.0,
        miss: float = 0.0,
        flip: float = 0.0,
        span: int = 0,
        scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        for name, v in (("threshold", threshold), ("scale", scale)):
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float | np.integer | np.floating)
                or not 0 <= v < 1e6
            ):
                raise ConfigError(
                    f"SimulatedTokenMarker: {name} must be a finite number in [0, 1e6), got {v!r}"
                )
        if isinstance(span, bool) or not isinstance(span, int | np.integer) or not 0 <= span <= 1024:
            raise ConfigError(f"SimulatedTokenMarker: span must be an int in [0, 1024], got {span!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
            raise ConfigError(f"SimulatedTokenMarker: seed must be an int in [0, 2**63), got {seed!r}")
        self.gold = ScriptedPrefixScorer(gold, tokenizer, as_finished=True)
        self.tokenizer = tokenizer
        self.threshold, self.scale = float(threshold), float(scale)
        self.miss, self.flip = _prob("miss", miss), _prob("flip", flip)
        self.span, self.seed = int(span), int(seed)

    def _token_marks(self, episodes: EpisodeBatch) -> np.ndarray:
        """Each completion token's own mark (before spans), int8 ``(B, C)``."""
        gold = self.gold.score_prefixes(episodes).astype(np.float64)
        delta = np.diff(gold, axis=1)
        width = delta.shape[1]
        marks = np.where(delta > self.threshold, 1, np.where(delta < -self.threshold, -1, 0)).astype(np.int8)
        marks[np.arange(width)[None, :] >= np.asarray(episodes.completion_lengths)[:, None]] = 0
        if width and (self.miss or self.flip):
            keys = episode_keys(
                np.full(len(episodes), self.seed, dtype=np.uint64), np.asarray(episodes.seeds)
            )
            u = uniforms(keys, 2 * width)  # token i draws u[:, 2i] and u[:, 2i + 1], whatever the width
            marks[u[:, 0::2] < self.miss] = 0
            marks[u[:, 1::2] < self.flip] *= -1
        return marks

    def _spread(self, marks: np.ndarray) -> np.ndarray:
        """Extend each mark over the ``span`` unmarked tokens before it (the nearest mark wins)."""
        if not self.span:
            return marks
        out = marks.copy()
        for k in range(1, self.span + 1):
            shifted = np.zeros_like(marks)
            shifted[:, :-k] = marks[:, k:]
            out = np.where(out == 0, shifted, out)
        return out

    def marks(self, episodes: EpisodeBatch) -> list[np.ndarray]:
        """The marks the person gives each whole completion: per episode float32 ``(T_b,)``."""
        m = self._spread(self._token_marks(episodes))
        return [m[b, :n].astype(np.float32) for b, n in enumerate(np.asarray(episodes.completion_lengths))]

    def score_prefixes(self, episodes: EpisodeBatch) -> np.ndarray:
        """``Phi`` of every prefix: ``scale`` times the net mark the person gives that prefix."""
        own = self._token_marks(episodes)
        lengths = np.asarray(episodes.completion_lengths)
        out = np.zeros((len(episodes), own.shape[1] + 1), dtype=np.float32)
        for t in range(1, own.shape[1] + 1):
            cut = own[:, :t]
            out[:, t] = self.scale * self._spread(cut).sum(axis=1)
        out[np.arange(out.shape[1])[None, :] > lengths[:, None]] = 0.0
        return out

    def score_states(self, episodes: EpisodeBatch) -> np.ndarray:
        """``Phi`` of each episode as it stands."""
        table = self.score_prefixes(episodes)
        return table[np.arange(len(episodes)), np.asarray(episodes.completion_lengths)]

    def __repr__(self) -> str:
        return (
            f"SimulatedTokenMarker(threshold={self.threshold}, miss={self.miss}, flip={self.flip}, "
            f"span={self.span}, scale={self.scale}, seed={self.seed})"
        )
