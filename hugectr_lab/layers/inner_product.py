"""InnerProduct (fully connected) and FusedInnerProduct (fully connected + ReLU, mixed precision only).

y = x·W + b with x (m, k), W (k, n), b (1, n); FusedInnerProduct applies ReLU on top.
Backward: g = dy (masked by y > 0 when fused); dW += xᵀ·g; db = Σ_rows g; dx = g·Wᵀ.
db is accumulated in FP32 mode and overwritten in fp16 (both FC variants), as in HugeCTR.

3xTF32 (``BuildContext.fp32_gemm="tf32x3"``, float32 inference): each operand is split into a TF32 part and
its remainder, x = x_hi + x_lo (``tf32_parts``), and x·W ≈ x_hi·W_hi + x_lo·W_hi + x_hi·W_lo (x_lo·W_lo,
~2^-22 relative, dropped) runs as one TF32 GEMM over a 3x longer K: x' = [x_hi | x_lo | x_hi] (``tf32_split``,
per forward) times W' = [W_hi; W_hi; W_lo] (``tf32_split_weight``, per weight load), float32 accumulation.
The tensor cores truncating x_lo and W_lo to TF32 costs ~2^-21 relative: the result is float32-accurate
(as close to the plain GEMM as another float32 summation order), at TF32 tensor-core speed.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import reference_op
from ..backend.cuda.cublas_abi import ALIGN_BYTES
from ..backend.scratch import scratch
from .base import Layer, matmul, sum_rows
from .concat_slice import concat_columns
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
    return xp.maximum(z, 0, out=z) if relu else z   # z is fresh: ReLU in place, no second (m, n) array


@reference_op
def gemm_bias_act(xp, x, w, b, relu, tf32):
    """The FC forward in one op: ``act(x (m, k) · w (k, n) + b (1, n))`` -> z (m, n), ReLU when ``relu``;
    here ``gemm`` then ``bias_act_fwd``. The CUDA version is one cuBLASLt matmul whose epilogue adds the
    bias to the float32 accumulator and applies ReLU before rounding once to the output dtype, where this
    rounds the product to it and rounds again after the bias: in float16 the two differ by at most one
    ulp of z (float32: the summation order of the algorithm cuBLASLt picks), so GPU parity is a tolerance."""
    return bias_act_fwd(xp, gemm(xp, x, w, tf32), b, relu)


@reference_op
def gemm_bias_act_concat(xp, w, b, relu, *xs):
    """``gemm_bias_act`` of the inputs ``xs`` (m, k_i) side by side (a Concat feeding an FC, run as one step
    in inference: ``fusion.ConcatProduct``): act([x_0 | x_1 | …] · w (Σk_i, n) + b (1, n)). The CUDA version
    reads the inputs where they lie for one output (n = 1: one GEMV kernel, no concatenated copy) and
    sums each input's columns in turn: float32 parity is a tolerance, as for any GEMM."""
    return gemm_bias_act(xp, concat_columns(xp, *xs), w, b, relu, False)


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


# ---- 3xTF32 operands ----------------------------------------------------------------------------
# Float32 bits: TF32 keeps the sign, the 8 exponent bits and the top 10 of the 23 mantissa bits.
_EXPONENT = np.uint32(0x7F800000)   # all ones: inf or NaN
_TF32_KEPT = np.uint32(0xFFFFE000)
_DROPPED = np.uint32(13)
_BELOW_HALF = np.uint32(0x0FFF)     # half the dropped bits' weight less one; plus the kept LSB: ties to even
# Rows (batch) and outputs from which a float32 inference FC runs as 3xTF32. Below it in m the GEMM is bound
# by reading W' (three times W's bytes), below it in n by writing and reading x' (three times x's): by bytes
# and FLOPs on an H100 (~3 TB/s; ~50 TFLOP/s float32, ~400 TF32) 3xTF32 overtakes the plain GEMM (2mkn FLOPs)
# near m = 100 (W': 12kn bytes) and n = 200 (x': 24mk); 256 leaves room for the split pass and smaller grids
# (a prediction, not measured). It keeps the one-output FC (n = 1, a GEMV kernel) plain.
TF32X3_MIN_EXTENT = 256


def tf32_parts(xp, x):
    """(hi, lo) of float32 ``x`` (any shape): hi = x rounded to TF32 (nearest, ties to even) on the float's
    bits -- kernels/tf32_split.cu does the same integer operations, so both give the same bits; lo = x - hi,
    exact in float32, |lo| <= half a TF32 ulp of x. A finite x that would round to infinity
    (|x| >= 2^128 - 2^116) is truncated instead, so hi + lo == x for every finite x; inf and NaN give
    hi = x, lo = 0."""
    bits = x.view(xp.uint32)
    finite = (bits & _EXPONENT) != _EXPONENT
    bits = xp.where(finite, bits, np.uint32(0))   # non-finite values split as 0; hi takes them back below
    up = (bits + (_BELOW_HALF + ((bits >> _DROPPED) & np.uint32(1)))) & _TF32_KEPT
    up = xp.where((up & _EXPONENT) == _EXPONENT, bits & _TF32_KEPT, up)   # rounded past the largest finite
    hi = up.view(xp.float32)
    return xp.where(finite, hi, x), bits.view(xp.float32) - hi


def tf32_width(k):
    """K of the 3xTF32 operands for k (x's columns): 3k rounded up to whole 16-byte pieces, so that their
    rows stay aligned for the tensor cores (else cuBLAS's wrapper pads copies of both on every call)."""
    step = ALIGN_BYTES // 4   # float32 elements
    return -(-3 * k // step) * step


def _fill_rows(out, blocks):
    """``out`` = ``blocks`` stacked along its first axis, then zeros."""
    start = 0
    for block in blocks:
        out[start:start + block.shape[0]] = block
        start += block.shape[0]
    out[start:] = 0


@reference_op
def tf32_split(xp, x, out):
    """The activation operand of a 3xTF32 product: ``out`` (m, K) float32 = [x_hi | x_lo | x_hi | 0] of
    x (m, k) float32 (``tf32_parts``), zeros in the K - 3k columns past them (K = ``tf32_width(k)``, or any
    K >= 3k). Writes ``out``; returns None."""
    hi, lo = tf32_parts(xp, x.T)
    _fill_rows(out.T, (hi, lo, hi))


def tf32_split_weight(xp, w, out):
    """The weight operand that meets ``tf32_split``'s: ``out`` (K, n) float32 = [w_hi; w_hi; w_lo; 0] of
    w (k, n) float32, so that x'·w' = x_hi·w_hi + x_lo·w_hi + x_hi·w_lo. Once per weight load, in xp ops."""
    hi, lo = tf32_parts(xp, w)
    _fill_rows(out, (hi, hi, lo))


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
        self.tf32x3 = self._runs_tf32x3(m, n)
        return [(m, n)]

    def _runs_tf32x3(self, m, n):
        """Whether the forward GEMM runs as 3xTF32 (module docstring): ``BuildContext.fp32_gemm`` asks for it,
        float32 inference (training keeps the plain GEMM) with fused epilogues (the unfused baseline stays
        plain), TF32 not allowed already (``enable_tf32_compute``: plain TF32 is faster), and m and n at
        least ``TF32X3_MIN_EXTENT``."""
        ctx = self.ctx
        return (ctx.fp32_gemm == "tf32x3" and ctx.compute_dtype == np.float32 and not ctx.training
                and ctx.fuse_epilogues and not ctx.tf32 and min(m, n) >= TF32X3_MIN_EXTENT)

    def bind(self, weights, grads):
        super().bind(weights, grads)
        k, n = self.weights[0].shape
        # W' (K, n): allocated here, before any CUDA graph reads it, and rewritten in place at every weight
        # load (``weights_changed``), so a captured graph keeps reading the current one.
        self._split_w = self.xp.empty((tf32_width(k), n), np.float32) if self.tf32x3 else None
        self.weights_changed()

    def weights_changed(self):
        if self._split_w is not None:
            tf32_split_weight(self.xp, self.weights[0], self._split_w)

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
        the epilogue kernel apart (the unfused baseline); as 3xTF32 (``tf32x3``) the op multiplies the split
        operands x' (m, K) and W' (K, n) on TF32 tensor cores."""
        ops, (w, b) = self.ctx.backend.ops, self.weights
        if not self.ctx.fuse_epilogues:
            return ops.bias_act_fwd(self.product(x), b, relu=relu)
        self.x = x
        if self._split_w is None:
            return ops.gemm_bias_act(x, w, b, relu, self.ctx.tf32)
        x3 = scratch(self.xp, "tf32x3 operand", (x.shape[0], self._split_w.shape[0]), np.float32)   # (m, K)
        ops.tf32_split(x, x3)
        return ops.gemm_bias_act(x3, self._split_w, b, relu, True)

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
