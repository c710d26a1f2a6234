"""WeightMultiply: y[i, s·E + e] = x[i, s]·W[s, e] for x (m, S), W (S, E), y (m, S·E).

Backward: dW[s, e] += Σ_i dy[i, s·E+e]·x[i, s]; dx[i, s] = Σ_e dy[i, s·E+e]·W[s, e].
Mixed precision works here (fp32 master W, fp16 copy), unlike HugeCTR 3.0, whose fp16 variant keeps
W only in the fp16 buffer and so breaks the dense optimizer.
"""

from __future__ import annotations

from .base import Layer, sum_rows
from .initializers import check_kind, draw, variance_scaling
from .registry import register_layer


@register_layer("WeightMultiply")
class WeightMultiply(Layer):
    def __init__(self, weight_dims, weight_init=None):
        self.weight_dims = weight_dims
        self.weight_init = weight_init

    def _build(self, shapes):
        (shape,) = shapes
        self._require_rank(shape, (2,))
        dims = tuple(self.weight_dims)
        if len(dims) != 2 or not all(isinstance(d, int) and d > 0 for d in dims):
            raise self.error(f"weight_dims must be two positive integers [S, E], got {list(dims)}")
        check_kind(self, "weight_init", self.weight_init)
        s, e = dims
        if shape[1] != s:
            raise self.error(f"the input must have weight_dims[0] = {s} columns, got shape {list(shape)}")
        self._add_weight("W", (s, e))
        return [(shape[0], s * e)]

    def init_weights(self, rng):
        s, e = self.weight_shapes()[0]
        return [draw(self.weight_init, rng, (s, e), s, s * e,
                     default=lambda r, shape: variance_scaling(r, shape, s, s * e, "uniform"))]

    def forward(self, inputs, training):
        (x,) = inputs  # (m, S)
        self.x = x
        (w,) = self.weights
        return [(x[:, :, None] * w[None]).reshape(self.output_shapes[0])]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        (w,) = self.weights
        s, e = w.shape
        d_y3 = d_y.reshape(-1, s, e)  # (m, S, E)
        self._write_grad(0, sum_rows(d_y3 * self.x[:, :, None], keepdims=False))
        return [sum_rows(d_y3 * w[None], axis=2, keepdims=False)]
