"""Element-wise activations (ReLU, ELU, Sigmoid) and Softmax over the last axis (a v3.1 layer)."""

from __future__ import annotations

from ..backend import reference_op
from .base import Layer
from .registry import register_layer


@reference_op
def sigmoid(xp, x):
    """1/(1+e^-x), written with tanh so that no exponential overflows (same values)."""
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


class _Unary(Layer):
    """One input, one output of the same shape."""

    def _build(self, shapes):
        return [shapes[0]]


@register_layer("ReLU")
class ReLU(_Unary):
    """y = max(x, 0); dx = dy where x > 0 else 0."""

    def forward(self, inputs, training):
        (x,) = inputs
        self.x = x
        return [self.xp.maximum(x, 0)]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        return [d_y * (self.x > 0)]


@register_layer("ELU")
class ELU(_Unary):
    """y = x if x >= 0 else alpha·(eˣ − 1); dx = dy if x >= 0 else alpha·eˣ·dy."""

    def __init__(self, alpha):
        self.alpha = alpha

    def _build(self, shapes):
        if not isinstance(self.alpha, (int, float)):
            raise self.error(f"alpha must be a number, got {self.alpha!r}")
        return super()._build(shapes)

    def forward(self, inputs, training):
        (x,) = inputs
        self.x = x
        neg = self.alpha * (self.xp.exp(self.xp.minimum(x, 0)) - 1)
        return [self.xp.where(x >= 0, x, neg).astype(x.dtype, copy=False)]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        x = self.x
        slope = self.alpha * self.xp.exp(self.xp.minimum(x, 0))
        return [self.xp.where(x >= 0, d_y, slope * d_y).astype(d_y.dtype, copy=False)]


@register_layer("Sigmoid")
class Sigmoid(_Unary):
    """y = σ(x); dx = dy·σ(x)·(1 − σ(x)) (σ recomputed from x, as HugeCTR does)."""

    def forward(self, inputs, training):
        (x,) = inputs
        self.x = x
        return [self.ctx.backend.ops.sigmoid(x)]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        s = sigmoid(self.xp, self.x)
        return [d_y * s * (1 - s)]


@register_layer("Softmax")
class Softmax(_Unary):
    """y = softmax over the last axis; dx = y ⊙ (dy − Σ_last(dy ⊙ y)). (v3.1 layer; our definition.)"""

    def forward(self, inputs, training):
        (x,) = inputs
        e = self.xp.exp(x - x.max(axis=-1, keepdims=True))
        self.y = e / e.sum(axis=-1, keepdims=True)
        return [self.y]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        y = self.y
        return [y * (d_y - (d_y * y).sum(axis=-1, keepdims=True))]
