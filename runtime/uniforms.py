"""nametool's random stream: the uniforms a seed means, defined here so any runtime can draw them.

A seed names an endless sequence of float64 uniforms in [0, 1). Draw ``k`` (from 0) is

    key = mix(seed)
    u_k = (mix(key + (k + 1) * GAMMA mod 2**64) >> 11) * 2**-53

where ``mix`` is SplitMix64's finaliser (a bijection on 64-bit integers). It is
counter-based: draw ``k`` is computed from ``k`` alone, in a few 64-bit integer
operations that every language has (the web page's JavaScript uses BigInt), with
no floating point before the one exact conversion, so every device and runtime
draws the same bits. numpy's ``default_rng`` (SeedSequence and PCG64) would mean
porting both, and importing ``numpy.random`` cost about 8 ms of a small request's
start-up. docs/random.md has the specification with test vectors.
"""

from __future__ import annotations

import os

import numpy as np

GAMMA = 0x9E3779B97F4A7C15  # the golden ratio's odd 64-bit constant, SplitMix64's increment
_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0 ** -53


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (arrays wrap on overflow, as the definition needs)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int) -> int:
    """The 64-bit key a seed in [0, 2**64) names."""
    return int(mix(np.array([seed], dtype=np.uint64))[0])


class UniformStream:
    """The draws of one seed, handed out in order: ``random(shape)`` takes the next ``prod(shape)``."""

    def __init__(self, seed: int | None = None):
        self.seed = int.from_bytes(os.urandom(8), "little") if seed is None else seed
        self._key = np.uint64(stream_key(self.seed))
        self.position = 0  # index of the next draw

    def random(self, shape: int | tuple[int, ...]) -> np.ndarray:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape, dtype=np.int64))
        k = np.arange(self.position + 1, self.position + count + 1, dtype=np.uint64)
        self.position += count
        bits = mix(self._key + k * np.uint64(GAMMA))
        return ((bits >> np.uint64(11)).astype(np.float64) * _TO_UNIT).reshape(shape)
