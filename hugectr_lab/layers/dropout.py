"""Dropout: train keeps an element where u >= rate (u ~ U[0, 1)), y = keep·x/(1 − rate), and backward
reuses the same mask and scale; eval is the identity. u comes from the build context's seeded
``numpy.random.Generator`` (HugeCTR uses curand/cuDNN streams: same distribution, other numbers).
"""

from __future__ import annotations

import numpy as np

from ..backend import reference_op
from .base import Layer
from .registry import register_layer


@reference_op
def dropout_fwd(xp, x, u, rate):
    """``(y, mask)``: mask = (u >= rate)/(1 − rate) in x's dtype, y = x·mask; u has x's shape."""
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
        u = self.ctx.backend.asarray(self.ctx.rng.random(x.shape, dtype=np.float32))
        y, self.mask = self.ctx.backend.ops.dropout_fwd(x, u, self.rate)
        return [y]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        return [d_y * self.mask]
