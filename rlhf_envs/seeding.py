"""Counter-based random streams: every episode's randomness from one 64-bit key, computed in batch.

A seeded env draws one 64-bit *stream key* from its ``np_random`` when it is seeded; episode ``k``
of that stream gets the key ``episode_key(stream, k)``. Prompts (and, through ``Episode.seed``, any
noise a feedback model adds) are functions of that key alone. So:

* the same seed gives the same episodes, as Gymnasium requires;
* sub-env ``i`` of a vector env seeded with ``s`` replays the single env seeded with ``s + i``;
* a vector env can draw the prompts of all sub-envs that reset in a step with a few numpy
  operations instead of one Python RNG call per sub-env.

The mixer is SplitMix64 (Steele, Lea and Flood 2014), whose output passes BigCrush; numpy's uint64
arithmetic wraps, which is what it needs.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser applied elementwise to a uint64 array (a bijection on 64-bit ints)."""
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def stream_key(rng: np.random.Generator) -> np.uint64:
    """Draw a stream key from a (seeded) numpy generator."""
    return np.uint64(rng.integers(0, 2**63, dtype=np.int64))


def episode_keys(streams: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """The key of episode ``counters[b]`` of stream ``streams[b]``."""
    streams = np.asarray(streams, dtype=np.uint64)
    counters = np.asarray(counters, dtype=np.uint64)
    return mix64(streams + mix64(counters + np.uint64(1)) * _GOLDEN)


def uniforms(keys: np.ndarray, n: int) -> np.ndarray:
    """``n`` independent uniforms in ``[0, 1)`` per key: shape ``(len(keys), n)``, float64."""
    keys = np.asarray(keys, dtype=np.uint64)
    steps = (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)[None, :]
    bits = mix64(keys[:, None] + steps)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def key_to_seed(keys: np.ndarray) -> np.ndarray:
    """Non-negative int64 seeds (for ``Episode.seed`` / ``np.random.default_rng``) from keys."""
    return (np.asarray(keys, dtype=np.uint64) >> np.uint64(1)).astype(np.int64)
