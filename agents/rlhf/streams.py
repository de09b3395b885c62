"""The RLHF loop's independent random streams, each a seed derived from (run seed, round, stream).

Every random choice of the loop draws from its own stream, so changing how much one step consumes
(more candidate pairs, another selection rule) leaves the others' numbers alone, and a resumed run
repeats an uninterrupted one. The stream numbers are part of the results: changing one changes
every number a run produces. Benchmarks that need streams of their own use numbers from 20 up.
"""

from __future__ import annotations

import enum

import numpy as np


class Stream(enum.IntEnum):
    """Which random choice a seed is for (the value is the third part of :func:`stream_seed`)."""

    #: the default simulated human's rater noise (round 0 only: one human per run)
    HUMAN = 1
    #: reset seeds of the prompts of round ``r``'s candidate pairs
    POOL_PROMPTS = 2
    #: token sampling of round ``r``'s candidate completions
    POOL_SAMPLING = 3
    #: the random subset chosen by ``selection="random"`` (and by every rule in round 0)
    QUERY_SELECTION = 4
    #: the reward model fitted in round ``r`` (member initialisation, bootstrap, minibatches)
    REWARD_MODEL_FIT = 5
    #: reset seeds of the evaluation prompts (round 0 only: the same prompts every round)
    EVAL_PROMPTS = 6
    #: token sampling of the evaluation after round ``r - 1`` (``r = 0``: the initial policy)
    EVAL_SAMPLING = 7


def stream_seed(seed: int, round_index: int, stream: int) -> int:
    """A 31-bit seed for ``stream`` (a :class:`Stream` or a benchmark's own number) in one round.

    Derived with ``numpy.random.SeedSequence([seed, round_index, stream])``, so distinct triples
    give statistically independent streams.
    """
    parts = [int(seed), int(round_index), int(stream)]
    return int(np.random.SeedSequence(parts).generate_state(1)[0] & 0x7FFFFFFF)
