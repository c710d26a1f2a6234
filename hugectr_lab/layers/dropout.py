"""Dropout: train keeps an element where u >= rate (u ~ U[0, 1)), y = keep·x/(1 − rate), and backward
reuses the same mask and scale; eval is the identity. Each training forward draws one seed from the
build context's seeded ``numpy.random.Generator``; u is a counter-based hash of (seed, element index),
so the CUDA kernel draws the same numbers in place and no random array crosses to the device (HugeCTR
uses curand/cuDNN streams: same distribution, other numbers). The seed lives in a (1,) device array
that ``prepare`` fills before the forward, so a CUDA graph of the step (which replays the forward
without running Python) reads a fresh seed at every replay.
"""

from __future__ import annotations

import numpy as np

from ..backend import reference_op
from .base import Layer
from .registry import register_layer


_GOLDEN = 0x9E3779B97F4A7C15


def dropout_uniform(xp, seed, shape):
    """float32 in [0, 1) of ``shape``: the top 24 bits of splitmix64(seed + (i+1)·golden) per flat index i.
    ``seed``: (1,) uint64 array."""
    u64 = xp.uint64
    x = seed.astype(u64) + xp.arange(1, int(np.prod(shape)) + 1, dtype=u64) * u64(_GOLDEN)  # wraps mod 2**64
    x = (x ^ (x >> u64(30))) * u64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> u64(27))) * u64(0x94D049BB133111EB)
    x ^= x >> u64(31)
    return ((x >> u64(40)).astype(xp.float32) * xp.float32(1.0 / (1 << 24))).reshape(shape)


@reference_op
def dropout_fwd(xp, x, seed, rate):
    """``(y, mask)``: mask = (u >= rate)/(1 − rate) in x's dtype, y = x·mask; u = dropout_uniform(seed),
    ``seed`` a (1,) uint64 array."""
    u = dropout_uniform(xp, seed, x.shape)
    mask = (u >= rate).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - rate))
    return x * mask, mask


@register_layer("Dropout")
class Dropout(Layer):
    def __init__(self, rate=0.5):
        self.rate = rate

    def _build(self, shapes):
        if not (isinstance(self.rate, (int, float)) and 0 <= self.rate < 1):
            raise self.error(f"rate (the drop probability) must be in [0, 1), got {self.rate!r}")
        self._seed = self.xp.zeros(1, dtype=np.uint64)
        self._seeded_by_network = False
        return [shapes[0]]

    def _draw(self):
        self._seed[...] = self.ctx.rng.integers(0, 1 << 62)

    def prepare(self, training):
        # From the first call on, the Network draws the seeds: a forward that runs twice for one step
        # (a failed CUDA graph capture, then the eager run) then uses one mask.
        self._seeded_by_network = True
        if training:
            self._draw()

    def forward(self, inputs, training):
        (x,) = inputs
        if not training:
            return [x]
        if not self._seeded_by_network:   # driven directly: a new mask per forward
            self._draw()
        y, self.mask = self.ctx.backend.ops.dropout_fwd(x, self._seed, self.rate)
        return [y]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        return [d_y * self.mask]
