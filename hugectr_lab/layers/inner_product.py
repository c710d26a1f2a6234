"""InnerProduct (fully connected) and FusedInnerProduct (fully connected + ReLU, mixed precision only).

y = x·W + b with x (m, k), W (k, n), b (1, n); FusedInnerProduct applies ReLU on top.
Backward: g = dy (masked by y > 0 when fused); dW += xᵀ·g; db = Σ_rows g; dx = g·Wᵀ.
db is accumulated in FP32 mode and overwritten in fp16 (both FC variants), as in HugeCTR.
"""

from __future__ import annotations

import math

from ..backend import reference_op
from .base import Layer, matmul, sum_rows
from .dropout import apply_dropout
from .initializers import check_kind, draw, normal, variance_scaling
from .registry import register_layer


@reference_op
def gemm(xp, a, b, tf32):
    """``a (m, k) · b (k, n)`` with fp32 accumulation for fp16 operands; ``tf32`` (enable_tf32_compute) lets
    the CUDA version use TF32 tensor cores for float32 operands (no effect on NumPy)."""
    return matmul(a, b)


@reference_op
def bias_act_fwd(xp, y, b, relu):
    """Epilogue of the FC GEMM: ``y (m, n) + b (1, n)``, then ReLU when ``relu``."""
    z = y + b
    return xp.maximum(z, 0) if relu else z


@reference_op
def gemm_bias_act(xp, x, w, b, relu, tf32):
    """The FC forward in one op: ``act(x (m, k) · w (k, n) + b (1, n))`` -> z (m, n), ReLU when ``relu``;
    here ``gemm`` then ``bias_act_fwd``. The CUDA version is one cuBLASLt matmul whose epilogue adds the
    bias to the float32 accumulator and applies ReLU before rounding once to the output dtype, where this
    rounds the product to it and rounds again after the bias: in float16 the two differ by at most one
    ulp of z (float32: the summation order of the algorithm cuBLASLt picks), so GPU parity is a tolerance."""
    return bias_act_fwd(xp, gemm(xp, x, w, tf32), b, relu)


@reference_op
def bias_act_bwd(xp, d_y, y, relu):
    """Backward of the epilogue: ``(d_pre (m, n), d_b (1, n))``; the ReLU mask is ``y > 0``."""
    d_pre = d_y * (y > 0) if relu else d_y
    return d_pre, sum_rows(d_pre)


@reference_op
def bias_act_dropout_fwd(xp, y, b, relu, seed, rate):
    """The FC epilogue followed by Dropout: ``bias_act_fwd(y (m, n), b (1, n), relu)`` times the mask that
    ``dropout_fwd(·, seed, rate)`` draws, in y's dtype: z (m, n), the same bits as the three passes."""
    z = bias_act_fwd(xp, y, b, relu)   # a fresh array: masked in place
    return apply_dropout(xp, z, seed, rate, out=z)[0]


@reference_op
def bias_act_dropout_bwd(xp, d_z, z, relu, seed, rate):
    """Backward of ``bias_act_dropout_fwd``: ``(d_pre (m, n), d_b (1, n))``. The mask is drawn again from
    ``seed``; the ReLU mask is ``z > 0`` (z = relu(pre)·mask: where the mask keeps an element z > 0 iff
    pre > 0, where it drops one d_z·0 is the gradient whatever the ReLU mask), so the values are those of
    Dropout's, ReLU's and the FC epilogue's backward in turn, bit for bit."""
    return bias_act_bwd(xp, apply_dropout(xp, d_z, seed, rate)[0], z, relu)


@register_layer("InnerProduct")
class InnerProduct(Layer):
    """Fully connected layer; weights W (k, n) then b (1, n)."""

    fused_relu = False

    def __init__(self, num_output, weight_init=None, bias_init=None):
        self.num_output = num_output
        self.weight_init = weight_init
        self.bias_init = bias_init

    def _build(self, shapes):
        (shape,) = shapes
        self._require_rank(shape, (2,))
        n = self.num_output
        if not (isinstance(n, int) and n > 0):
            raise self.error(f"num_output must be a positive integer, got {n!r}")
        check_kind(self, "weight_init", self.weight_init)
        check_kind(self, "bias_init", self.bias_init)
        m, k = shape
        self._add_weight("W", (k, n))
        self._add_weight("b", (1, n))
        return [(m, n)]

    def init_weights(self, rng):
        (k, n), b_shape = self.weight_shapes()
        w = draw(self.weight_init, rng, (k, n), k, n,
                 default=lambda r, s: variance_scaling(r, s, k, n, "norm"))
        b = draw(self.bias_init, rng, b_shape, 0, n,
                 default=lambda r, s: normal(r, s, math.sqrt(1.0 / n)))
        return [w, b]

    @property
    def grad_overwrites(self):
        return ("b",) if self.ctx.mixed_precision else ()

    def forward(self, inputs, training):
        (x,) = inputs  # (m, k)
        self.y = self.product_bias_act(x, self.fused_relu)  # (m, n)
        return [self.y]

    def product(self, x):
        """x (m, k) · W: the GEMM before the epilogue (m, n); keeps x for the backward."""
        self.x = x
        return self.ctx.backend.ops.gemm(x, self.weights[0], self.ctx.tf32)

    def product_bias_act(self, x, relu):
        """act(x (m, k) · W + b) (m, n), ReLU when ``relu``; keeps x for the backward, which reads the
        returned output (its sign is the ReLU mask). One op (``gemm_bias_act``: on CUDA the bias and ReLU
        run in the GEMM's epilogue) unless ``BuildContext.fuse_epilogues`` is off, which keeps the GEMM and
        the epilogue kernel apart (the unfused baseline)."""
        ops, (w, b) = self.ctx.backend.ops, self.weights
        if not self.ctx.fuse_epilogues:
            return ops.bias_act_fwd(self.product(x), b, relu=relu)
        self.x = x
        return ops.gemm_bias_act(x, w, b, relu, self.ctx.tf32)

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        return [self.backward_product(*self.ctx.backend.ops.bias_act_bwd(d_y, self.y, relu=self.fused_relu))]

    def backward_product(self, d_pre, d_b):
        """Writes dW = xᵀ·d_pre and db from the epilogue's gradients d_pre (m, n), d_b (1, n); returns
        dx = d_pre·Wᵀ (m, k)."""
        ops, tf32, w = self.ctx.backend.ops, self.ctx.tf32, self.weights[0]
        self._write_grad(0, ops.gemm(self.x.T, d_pre, tf32))
        self._write_grad(1, d_b)
        return ops.gemm(d_pre, w.T, tf32)


@register_layer("FusedInnerProduct")
class FusedInnerProduct(InnerProduct):
    """y = ReLU(x·W + b); mixed precision only, per-device batch a multiple of 32, n a multiple of 64."""

    fused_relu = True

    def _build(self, shapes):
        out = super()._build(shapes)
        # float64 is the verification precision; only FP32 mode is refused, as HugeCTR does.
        if self.ctx.compute_dtype == "float32":
            raise self.error("FusedInnerProduct needs mixed precision; use InnerProduct + ReLU in FP32 mode")
        m, n = out[0]
        if m % 32 or n % 64:
            raise self.error(f"needs a batch dimension that is a multiple of 32 and num_output a multiple "
                             f"of 64, got batch {m} and num_output {n}")
        return out

    @property
    def grad_overwrites(self):
        return ("b",)
