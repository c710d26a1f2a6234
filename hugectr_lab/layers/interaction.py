"""Interaction: DLRM's dot interaction of the bottom-MLP output with the embedding vectors.

Inputs mlp (m, w) and emb (m, F, w); Z = [mlp; emb₁..emb_F] (m, n, w) with n = F + 1.
Output (m, w + n(n−1)/2 + 1): the w mlp values, the strictly-lower-triangle dot products ⟨zᵢ, zⱼ⟩ in
row-major order (i = 1..n−1, j = 0..i−1), then one padding column of 0 (HugeCTR's fp32 kernel never
writes it). Backward: G (n, n) holds the pair gradients at (i, j), S = G + Gᵀ, dZ = S·Z;
d_mlp = dy[:, :w] + dZ[:, 0], d_emb = dZ[:, 1:]; the padding gradient is ignored.
"""

from __future__ import annotations

from ..backend import reference_op
from .base import Layer, widen
from .registry import register_layer


def _stack(xp, mlp, emb):
    return xp.concatenate([widen(mlp)[:, None, :], widen(emb)], axis=1)  # (m, n, w)


@reference_op
def interaction_fwd(xp, mlp, emb):
    """mlp (m, w), emb (m, F, w) → (m, w + n(n−1)/2 + 1)."""
    z = _stack(xp, mlp, emb)
    m, n, _ = z.shape
    rows, cols = xp.tril_indices(n, -1)
    pairs = (z @ z.transpose(0, 2, 1))[:, rows, cols]  # (m, n(n−1)/2)
    pad = xp.zeros((m, 1), z.dtype)
    return xp.concatenate([widen(mlp), pairs, pad], axis=1).astype(mlp.dtype, copy=False)


@reference_op
def interaction_bwd(xp, d_y, mlp, emb):
    """d_y (m, w + n(n−1)/2 + 1) → (d_mlp (m, w), d_emb (m, F, w))."""
    z = _stack(xp, mlp, emb)
    m, n, w = z.shape
    rows, cols = xp.tril_indices(n, -1)
    d_y = widen(d_y)
    g = xp.zeros((m, n, n), z.dtype)
    g[:, rows, cols] = d_y[:, w:w + len(rows)]
    d_z = (g + g.transpose(0, 2, 1)) @ z  # (m, n, w)
    d_mlp = d_y[:, :w] + d_z[:, 0]
    return d_mlp.astype(mlp.dtype, copy=False), d_z[:, 1:].astype(emb.dtype)


@register_layer("Interaction")
class Interaction(Layer):
    def _build(self, shapes):
        mlp, emb = shapes
        self._require_rank(mlp, (2,), "input 0 (the bottom MLP output)")
        self._require_rank(emb, (3,), "input 1 (the embedding output)")
        if mlp[0] != emb[0] or mlp[1] != emb[2]:
            raise self.error(f"input 0 (m, w) and input 1 (m, F, w) must agree on m and w, "
                             f"got {list(mlp)} and {list(emb)}")
        n = emb[1] + 1
        return [(mlp[0], mlp[1] + n * (n - 1) // 2 + 1)]

    def forward(self, inputs, training):
        self.mlp, self.emb = inputs
        return [self.ctx.backend.ops.interaction_fwd(self.mlp, self.emb)]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        return list(self.ctx.backend.ops.interaction_bwd(d_y, self.mlp, self.emb))
