"""FmOrder2: second-order factorisation machine term over F vectors of size k.

Input (m, F·k) viewed as v (m, F, k); y_j = ½((Σ_f v_fj)² − Σ_f v_fj²), output (m, k).
Backward: dv_fj = dy_j·(Σ_f' v_f'j − v_fj). No weights.
"""

from __future__ import annotations

from ..backend import reference_op
from .base import Layer, widen
from .registry import register_layer


@reference_op
def fm_order2_fwd(xp, x, out_dim):
    """x (m, F·k) → y (m, k) with k = out_dim."""
    v = widen(x).reshape(x.shape[0], -1, out_dim)  # (m, F, k)
    s = v.sum(axis=1)
    return (0.5 * (s * s - (v * v).sum(axis=1))).astype(x.dtype, copy=False)


@reference_op
def fm_order2_bwd(xp, d_y, x, out_dim):
    """d_y (m, k), x (m, F·k) → d_x (m, F·k)."""
    v = widen(x).reshape(x.shape[0], -1, out_dim)
    s = v.sum(axis=1, keepdims=True)
    return (widen(d_y)[:, None, :] * (s - v)).reshape(x.shape).astype(d_y.dtype, copy=False)


@register_layer("FmOrder2")
class FmOrder2(Layer):
    def __init__(self, out_dim):
        self.out_dim = out_dim

    def _build(self, shapes):
        (shape,) = shapes
        self._require_rank(shape, (2,))
        k = self.out_dim
        if not (isinstance(k, int) and k > 0):
            raise self.error(f"out_dim must be a positive integer, got {k!r}")
        if shape[1] % k:
            raise self.error(f"the input width {shape[1]} must be a multiple of out_dim {k}")
        return [(shape[0], k)]

    def forward(self, inputs, training):
        (self.x,) = inputs
        return [self.ctx.backend.ops.fm_order2_fwd(self.x, self.out_dim)]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        return [self.ctx.backend.ops.fm_order2_bwd(d_y, self.x, self.out_dim)]
