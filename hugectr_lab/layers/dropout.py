"""Dropout: train keeps an element where u >= rate (u ~ U[0, 1)), y = keep·x/(1 − rate), and backward
reuses the same mask and scale; eval is the identity. Each forward draws one seed from the build
context's seeded ``numpy.random.Generator``; u is a counter-based hash of (seed, element index), so
the CUDA kernel draws the same numbers in place and no random array crosses to the device (HugeCTR
uses curand/cuDNN streams: same distribution, other numbers).
"""

from __future__ import annotations

import numpy as np

from ..backend import reference_op
from .base import Layer
from .registry import register_layer


_GOLDEN = 0x9E3779B97F4A7C15


def dropout_uniform(xp, seed, shape):
    """float32 in [0, 1) of ``shape``: the top 24 bits of splitmix64(seed + (i+1)·golden) per flat index i."""
    u64 = xp.uint64
    x = u64(seed) + xp.arange(1, int(np.prod(shape)) + 1, dtype=u64) * u64(_GOLDEN)  # wraps mod 2**64
    x = (x ^ (x >> u64(30))) * u64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> u64(27))) * u64(0x94D049BB133111EB)
    x ^= x >> u64(31)
    return ((x >> u64(40)).astype(xp.float32) * xp.float32(1.0 / (1 << 24))).reshape(shape)


@reference_op
def dropout_fwd(xp, x, seed, rate):
    """``(y, mask)``: mask = (u >= rate)/(1 − rate) in x's dtype, y = x·mask; u = dropout_uniform(seed)."""
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
        return [shapes[0]]

    def forward(self, inputs, training):
        (x,) = inputs
        if not training:
            return [x]
        seed = int(self.ctx.rng.integers(0, 1 << 62))
        y, self.mask = self.ctx.backend.ops.dropout_fwd(x, seed, self.rate)
        return [y]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        return [d_y * self.mask]
