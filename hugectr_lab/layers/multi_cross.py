"""MultiCross: the DCN cross network, L layers over x₀ (m, D).

Forward: hₗ = xₗ·wₗ (one scalar per row), xₗ₊₁ = x₀ ⊙ hₗ + xₗ + bₗ; output x_L.
Backward with g = dL/dx_L, for l = L−1..0: acc += g ⊙ hₗ; v = rowsum(g ⊙ x₀); dwₗ += Σ_rows xₗ ⊙ v;
dbₗ = Σ_rows g (overwritten, as in HugeCTR); g = g + v·wₗ. Finally dx₀ = acc + g.
Weights w₀, b₀, w₁, b₁, … each (1, D).
"""

from __future__ import annotations

import importlib

from ..backend import address, reference_op
from .base import Layer, widen
from .initializers import check_kind, constant, variance_scaling
from .registry import register_layer


@reference_op
def multicross_fwd(xp, x0, w, b):
    """x0 (m, D), w and b (L, D) → (y (m, D), hs (L, m, 1) the hₗ = ⟨xₗ, wₗ⟩).

    The layer inputs xₗ are not kept: the backward needs only x0, hs and b (on CUDA it rebuilds xₗ with the
    forward's roundings), which costs less than writing and reading L·m·D floats."""
    x0w, w, b = widen(x0), widen(w), widen(b)
    L, m = w.shape[0], x0.shape[0]
    hs = xp.empty((L, m, 1), x0w.dtype)
    x = x0w
    for l in range(L):
        xp.matmul(x, w[l][:, None], out=hs[l])
        nxt = xp.multiply(x0w, hs[l])      # x₀ ⊙ hₗ + xₗ + bₗ, summed in this order
        nxt += x
        nxt += b[l]
        x = nxt
    return x.astype(x0.dtype, copy=False), hs


@reference_op
def multicross_bwd(xp, d_y, x0, hs, w, b):
    """→ (d_x0 (m, D), d_w (L, D), d_b (L, D)), from the forward's ``hs`` (the inputs xₗ in closed form).

    The loop of the module docstring in closed form (same values up to float rounding), so that the
    (m, D) arrays are read a few times instead of seven times per layer. With gₗ = g + sum_{k>l} vₖ·wₖ
    (the gradient reaching layer l), cₖ = x₀·wₖ, Pₖ = sum_{l<k} hₗ (per row) and Bₖ = sum_{l<k} bₗ, so that
    xₖ = x₀ ⊙ (1 + Pₖ) + Bₖ:
    vₗ = rowsum(g ⊙ x₀) + sum_{k>l} vₖ·cₖ;  dwₗ = vₗᵀ·xₗ = (vₗ·(1 + Pₗ))ᵀ·x₀ + (Σ_rows vₗ)·Bₗ;
    dbₗ = Σ_rows g + sum_{k>l} (Σ_rows vₖ)·wₖ;  dx₀ = g ⊙ (1 + sum_l hₗ) + sum_k vₖ·(1 + Pₖ)·wₖ.
    """
    g, x0w, w, b = widen(d_y), widen(x0), widen(w), widen(b)
    L = w.shape[0]
    h = hs[:, :, 0].T                                   # (m, L)
    c = xp.stack([x0w @ w[k] for k in range(L)], axis=1)   # (m, L): cₖ = x₀·wₖ (GEMVs beat a K = L GEMM)
    v = xp.empty_like(c)                                     # (m, L): vₗ = dL/dhₗ
    run = (g * x0w).sum(axis=1)
    for l in reversed(range(L)):
        v[:, l] = run
        run = run + v[:, l] * c[:, l]
    v_cols = v.sum(axis=0)
    coef = v * (1 + (xp.cumsum(h, axis=1) - h))         # (m, L): vₖ·(1 + Pₖ)
    d_w = coef.T @ x0w + v_cols[:, None] * (xp.cumsum(b, axis=0) - b)
    d_b = xp.empty(w.shape, g.dtype)
    col = g.sum(axis=0)
    for l in reversed(range(L)):
        d_b[l] = col
        col = col + v_cols[l] * w[l]
    d_x0 = g * (1 + h.sum(axis=1, keepdims=True))
    d_x0 += coef @ w
    return d_x0.astype(d_y.dtype, copy=False), d_w.astype(d_y.dtype, copy=False), d_b.astype(d_y.dtype, copy=False)


@register_layer("MultiCross")
class MultiCross(Layer):
    def __init__(self, num_layers, weight_init=None, bias_init=None):
        self.num_layers = num_layers
        self.weight_init = weight_init
        self.bias_init = bias_init

    def _build(self, shapes):
        (shape,) = shapes
        self._require_rank(shape, (2,))
        if not (isinstance(self.num_layers, int) and self.num_layers >= 1):
            raise self.error(f"num_layers must be an integer >= 1, got {self.num_layers!r}")
        check_kind(self, "weight_init", self.weight_init)
        check_kind(self, "bias_init", self.bias_init)
        d = shape[1]
        for l in range(self.num_layers):
            self._add_weight(f"w{l}", (1, d))
            self._add_weight(f"b{l}", (1, d))
        return [shape]

    def init_weights(self, rng):
        # Only Zero is honoured; every other name falls back to the Default, as in HugeCTR.
        d = self.input_shapes[0][1]
        out = []
        for i, shape in enumerate(self.weight_shapes()):
            kind = (self.weight_init, self.bias_init)[i % 2]
            if kind == "Zero" or i % 2:
                out.append(constant(shape, 0.0))
            else:
                out.append(variance_scaling(rng, shape, d, d, "uniform"))  # U(±√(3/D))
        return out

    @property
    def grad_overwrites(self):
        return tuple(f"b{l}" for l in range(self.num_layers))

    def forward(self, inputs, training):
        (x0,) = inputs
        self.x0 = x0
        self.w = _stacked(self.xp, self.weights[0::2])  # (L, D)
        self.b = _stacked(self.xp, self.weights[1::2])
        y, self.hs = self.ctx.backend.ops.multicross_fwd(x0, self.w, self.b)
        return [y]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        d_x0, d_w, d_b = self.ctx.backend.ops.multicross_bwd(d_y, self.x0, self.hs, self.w, self.b)
        for first, d in ((0, d_w), (1, d_b)):   # the w_l, then the b_l
            grads = _rows_of(self.xp, self.grads[first::2])
            if grads is not None:
                self._write_grad(first, d, into=grads)   # one write for the L rows (w_l alike, b_l alike)
                continue
            for l in range(self.num_layers):
                self._write_grad(2 * l + first, d[l:l + 1])
        return [d_x0]


def _rows_of(xp, rows):
    """The L (1, D) arrays ``rows`` as one (L, D) view, or None. The weights w₀, b₀, w₁, b₁, … (and their
    gradients) lie one after another in the network's flat buffers, so the wₗ (or the bₗ) are the rows of
    one strided view: the kernels read it in place (``multicross.cu`` takes a row stride), and a gradient
    is written in one pass instead of L (10 of DCN's launches a step on CuPy)."""
    first = rows[0]
    pitch = 2 * first.size * first.itemsize
    if not all(r.shape == first.shape and r.dtype == first.dtype and r.flags.c_contiguous
               and address(r) == address(first) + l * pitch for l, r in enumerate(rows)):
        return None
    as_strided = importlib.import_module(f"{xp.__name__}.lib.stride_tricks").as_strided   # NumPy's or CuPy's
    return as_strided(first, shape=(len(rows), first.size), strides=(pitch, first.itemsize))


def _stacked(xp, rows):
    """The (L, D) stack of L (1, D) weights: the strided view of ``_rows_of`` where they lie in the flat
    buffer, else their concatenation (weights not from the flat buffer)."""
    view = _rows_of(xp, rows)
    return xp.concatenate(rows) if view is None else view
