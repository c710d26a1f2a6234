"""CUDA wrappers of the dense-layer ops: GEMM (cuBLAS, ``cublas.py``; one output column or K = 1:
kernels/gemv.cu), GEMM with the bias + ReLU epilogue (cuBLASLt, ``cublaslt.py``), FC epilogue (+ dropout), dropout
and sigmoid (kernels/dense.cu), BCE loss (kernels/losses.cu), MultiCross, FmOrder2,
Interaction and the 3xTF32 split of an FC's float32 input (kernels/tf32_split.cu)."""

from __future__ import annotations

import math
import os

import numpy as np

from ..ops import kernel_op
from . import cublas, cublaslt
from .common import COLUMN_BLOCKS, block_args, ctype, floats, reference, row_layout, row_view, vector_width
from .interaction_gemms import backward_product, forward_products, scratch_ld
from .loader import MAX_BLOCKS, NULL, launch, launch_grid, multiprocessors, per_sample
from .rows import contiguous, copy_parts

_F32 = np.dtype(np.float32)
_SHARED_LIMIT = 48 * 1024   # static shared-memory limit without opting in per kernel


def _device_sms(xp):
    return multiprocessors(xp.cuda.runtime.getDevice())


@kernel_op("gemm")
def gemm(xp, a, b, tf32):
    # float16 operands: float32 accumulation on tensor cores; ctypes cuBLAS, so CUDA graphs capture it.
    if a.ndim != 2 or b.ndim != 2 or not floats(a, b):
        return reference("gemm", **locals())
    product = skinny_product(xp, a, b)
    return cublas.matmul(a, b, tf32) if product is None else product


@kernel_op("gemm_bias_act")
def gemm_bias_act(xp, x, w, b, relu, tf32):
    # One cuBLASLt matmul with a bias (+ ReLU) epilogue; where cuBLASLt has no algorithm for the call
    # (logged once), the GEMM and the epilogue kernel.
    if x.ndim != 2 or w.ndim != 2 or not floats(x, w, b) or b.size != w.shape[1]:
        return reference("gemm_bias_act", **locals())
    z = skinny_product(xp, x, w, b, relu) if w.shape[1] == 1 else None
    if z is not None:
        return z
    z = cublaslt.gemm_bias_act(x, w, b, relu, tf32)
    return bias_act_fwd(xp, gemm(xp, x, w, tf32), b, relu) if z is None else z


# ---- skinny products (kernels/gemv.cu) -----------------------------------------------------------
# An FC with one output and its two gradients: degenerate GEMM shapes that cuBLAS runs with general
# kernels at about half the HBM rate (H100, DCN's 1453 -> 1 FC: 0.113 ms a step in three kernels).

def skinny_product(xp, a, b, bias=None, relu=False):
    """``act(a (m, k) · b (k, n) + bias (1, 1))`` for the skinny shapes -- n = 1 with ``a`` rows (a
    row-strided view too) or the transpose of rows (the weight gradient xᵀ·g), k = 1 (the data gradient
    g·wᵀ) -- as one kernel (two for xᵀ·g); None for any other shape (the caller runs cuBLAS)."""
    (m, k), n = a.shape, b.shape[1]
    if min(m, k, n) == 0 or (n != 1 and k != 1):
        return None
    t = ctype(a.dtype)
    if n == 1:
        w = xp.ascontiguousarray(b).reshape(k)
        rows = row_layout(a)
        if rows is not None:
            return gemv_rows(xp, [(a, rows)], w, bias, relu)
        x_rows = row_layout(a.T)
        if x_rows is None or bias is not None:
            return None
        # a = xᵀ, x (k, m) rows: out[c] = Σ_r x[r, c] w[r], in per-chunk partial sums added in order
        col_blocks = -(-m // 32)
        chunks, rows_per_block = _row_chunks(xp, k, col_blocks)
        partial = xp.empty((chunks, m), dtype=xp.float32)
        launch_grid("gemv.cu", f"hctr_gemv_cols<{t}>", (col_blocks, chunks), (32, 8),
                    (np.uint64(a.data.ptr), np.int64(x_rows[2]), w, partial, np.int64(k), np.int32(m),
                     np.int64(rows_per_block)))
        return column_sums(xp, partial, a.dtype).reshape(m, 1)
    if bias is not None:
        return None
    g, w = xp.ascontiguousarray(a).reshape(m), xp.ascontiguousarray(b).reshape(n)
    out = xp.empty((m, n), a.dtype)
    launch_grid("gemv.cu", f"hctr_outer<{t}>", *per_sample(m, n), (g, w, out, np.int64(m), np.int32(n)))
    return out


def gemv_rows(xp, parts, w, bias, relu):
    """``act(x · w + bias)`` (m, 1) for x (m, k) given as ``parts`` -- at most ``COLUMN_BLOCKS`` ``(x_p, layout)``
    pairs, ``layout`` = ``row_layout(x_p)`` (m rows of k_p elements, ld apart), side by side -- w (k,)
    contiguous and bias (1, 1) or None: one launch of ``hctr_gemv_rows``."""
    m, dtype = parts[0][1][0], parts[0][0].dtype
    y = xp.empty((m, 1), dtype)
    if m:
        bias = NULL if bias is None else xp.ascontiguousarray(bias).reshape(1)
        launch_grid("gemv.cu", f"hctr_gemv_rows<{ctype(dtype)}>", min(-(-m // 8), MAX_BLOCKS), 256,
                    (*block_args(parts), w, bias, y, np.int64(m), np.int32(bool(relu))))
    return y


@kernel_op("gemm_bias_act_concat")
def gemm_bias_act_concat(xp, w, b, relu, *xs):
    # One output (the fused step's case): one GEMV over the inputs, read where their rows lie (an input whose
    # rows do not lie ld apart is copied first: kernels only, so a CUDA graph can capture it); else the reference.
    if (w.ndim == 2 and w.shape[1] == 1 and xs and len(xs) <= COLUMN_BLOCKS and floats(w, b, *xs)
            and all(x.ndim == 2 and x.dtype == w.dtype for x in xs) and len({x.shape[0] for x in xs}) == 1
            and b.size == 1 and sum(x.shape[1] for x in xs) == w.shape[0]):
        parts = [row_view(xp, x) for x in xs if x.shape[1]]
        if parts:
            return gemv_rows(xp, parts, xp.ascontiguousarray(w).reshape(-1), b, relu)
    return reference("gemm_bias_act_concat", xp, w, b, relu, *xs)


def _row_chunks(xp, m, col_blocks, blocks_per_sm=8):
    """(chunks, rows per chunk) of m rows for a column-sum kernel of ``col_blocks`` column blocks per chunk:
    about ``blocks_per_sm`` blocks of 256 threads per SM, at least 64 rows a block."""
    chunks = max(1, min(-(-m // 64), -(-blocks_per_sm * _device_sms(xp) // col_blocks)))
    return chunks, -(-m // chunks)


def column_sums(xp, partial, dtype):
    """(n,) ``dtype``: the rows of ``partial`` (chunks, n) float32 added in order (deterministic)."""
    chunks, n = partial.shape
    out = xp.empty(n, dtype)
    launch("gemv.cu", f"hctr_column_sums<{ctype(dtype)}>", n, (partial, out, np.int32(chunks), np.int64(n)))
    return out


# ---- Concat ----------------------------------------------------------------------------------------

@kernel_op("concat_columns")
def concat_columns(xp, *xs):
    if not xs or not floats(*xs) or any(x.ndim != 2 for x in xs) or len({x.shape[0] for x in xs}) != 1:
        return reference("concat_columns", xp, *xs)
    out = xp.empty((xs[0].shape[0], sum(x.shape[1] for x in xs)), dtype=xs[0].dtype)
    parts = [row_view(xp, x) for x in xs if x.shape[1]]   # an input without columns writes nothing
    if parts:
        copy_parts(parts, out)
    return out


# ---- FC epilogue, dropout -------------------------------------------------------------------
# One forward and one backward kernel serve the plain epilogue (bias, ReLU) and the one that ends
# in dropout (``layers/fusion.py``): the dropout arguments are a seed pointer (NULL: none), the rate and
# the mask's scale 1/(1 - rate) rounded to the data's dtype, as the reference rounds it.

def _dropout_args(seed, rate, dtype):
    if seed is None:
        return NULL, np.float32(0), np.float32(0)
    return seed, np.float32(rate), np.float32(dtype.type(1.0 / (1.0 - rate)))


def _is_seed(seed):
    return seed.dtype == np.uint64 and seed.size == 1


def _epilogue_fwd(xp, y, b, relu, seed, rate):
    m, n = y.shape
    z = xp.empty((m, n), dtype=y.dtype)
    y, b = contiguous(xp, y), xp.ascontiguousarray(b)
    v = vector_width(n, (y, b, z))   # the epilogue kernels' V (kernels/dense.cu)
    launch_grid("dense.cu", f"hctr_bias_act_fwd<{ctype(y.dtype)}, {v}>", *per_sample(m, n // v),
                (y, b, z, np.int64(m), np.int32(n), np.int32(bool(relu)), *_dropout_args(seed, rate, y.dtype)))
    return z


def _epilogue_bwd(xp, d_y, y, relu, seed, rate):
    m, n = d_y.shape
    writes = bool(relu) or seed is not None   # else d_pre is d_y itself
    if writes:
        d_y, (_, _, ld_dy) = row_view(xp, d_y)   # read in place: a Concat gradient's columns
    else:
        d_y, ld_dy = contiguous(xp, d_y), n           # returned as d_pre: contiguous
    y = contiguous(xp, y)
    d_pre = xp.empty((m, n), dtype=d_y.dtype) if writes else d_y
    v = vector_width(n, (y, d_pre))
    dy_vec = ld_dy == n and d_y.data.ptr % (v * d_y.itemsize) == 0   # V-wide loads of d_y too
    col_blocks = -(-n // (32 * v))
    chunks, rows_per_block = _row_chunks(xp, m, col_blocks)   # 8 blocks per SM: all the threads an SM holds
    partial = xp.empty((chunks, n), dtype=xp.float32)  # per-chunk column sums
    launch_grid("dense.cu", f"hctr_bias_act_bwd<{ctype(d_y.dtype)}, {v}>", (col_blocks, chunks), (32, 8),
                (np.uint64(d_y.data.ptr), np.int64(ld_dy), np.int32(dy_vec), y, d_pre if writes else NULL, partial,
                 np.int64(m), np.int32(n),
                 np.int32(bool(relu)), np.int64(rows_per_block), *_dropout_args(seed, rate, d_y.dtype)))
    return d_pre, column_sums(xp, partial, d_y.dtype).reshape(1, n)


@kernel_op("bias_act_fwd")
def bias_act_fwd(xp, y, b, relu):
    if y.ndim != 2 or not floats(y, b) or b.size != y.shape[1] or y.size == 0:
        return reference("bias_act_fwd", **locals())
    return _epilogue_fwd(xp, y, b, relu, None, 0.0)


@kernel_op("bias_act_bwd")
def bias_act_bwd(xp, d_y, y, relu):
    if d_y.ndim != 2 or not floats(d_y, y) or d_y.shape != y.shape or d_y.size == 0:
        return reference("bias_act_bwd", **locals())
    return _epilogue_bwd(xp, d_y, y, relu, None, 0.0)


@kernel_op("bias_act_dropout_fwd")
def bias_act_dropout_fwd(xp, y, b, relu, seed, rate):
    if y.ndim != 2 or not floats(y, b) or b.size != y.shape[1] or y.size == 0 or not _is_seed(seed):
        return reference("bias_act_dropout_fwd", **locals())
    return _epilogue_fwd(xp, y, b, relu, seed, rate)


@kernel_op("bias_act_dropout_bwd")
def bias_act_dropout_bwd(xp, d_z, z, relu, seed, rate):
    if d_z.ndim != 2 or not floats(d_z, z) or d_z.shape != z.shape or d_z.size == 0 or not _is_seed(seed):
        return reference("bias_act_dropout_bwd", **locals())
    return _epilogue_bwd(xp, d_z, z, relu, seed, rate)


@kernel_op("dropout_fwd")
def dropout_fwd(xp, x, seed, rate):
    if not floats(x) or not _is_seed(seed):
        return reference("dropout_fwd", **locals())
    x = xp.ascontiguousarray(x)
    y, mask = xp.empty_like(x), xp.empty_like(x)
    scale = np.float32(x.dtype.type(1.0 / (1.0 - rate)))   # rounded to x's dtype, as the reference
    launch("dense.cu", f"hctr_dropout_fwd<{ctype(x.dtype)}>", x.size,
           (x, y, mask, np.int64(x.size), seed, np.float32(rate), scale))
    return y, mask


@kernel_op("sigmoid")
def sigmoid(xp, x):
    if not floats(x) or x.size == 0:
        return reference("sigmoid", **locals())
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    launch("dense.cu", f"hctr_sigmoid<{ctype(x.dtype)}>", x.size, (x, y, np.int64(x.size)))
    return y


# ---- 3xTF32 split -------------------------------------------------------------------------------

@kernel_op("tf32_split")
def tf32_split(xp, x, out):
    # x is read where its rows lie (a Concat's output, a Slice's columns); out is written: C-contiguous only.
    if (x.ndim != 2 or out.ndim != 2 or x.dtype != _F32 or out.dtype != _F32 or x.size == 0
            or out.shape[0] != x.shape[0] or out.shape[1] < 3 * x.shape[1] or not out.flags.c_contiguous):
        return reference("tf32_split", **locals())
    (m, k), width = x.shape, out.shape[1]
    x, (_, _, ld) = row_view(xp, x)
    v = vector_width(math.gcd(k, ld, width), (x, out))   # V divides the row lengths and strides too
    launch_grid("tf32_split.cu", f"hctr_tf32_split<{v}>", *per_sample(m, k // v),
                (np.uint64(x.data.ptr), np.int64(ld), out, np.int64(m), np.int32(k), np.int32(width)))


# ---- BCE loss -----------------------------------------------------------------------------------

@kernel_op("bce_loss_fwd")
def bce_loss_fwd(xp, logits, labels):
    if not floats(logits) or labels.dtype != _F32 or logits.size != labels.size:
        return reference("bce_loss_fwd", **locals())
    loss = xp.empty((), dtype=xp.float32)
    launch_grid("losses.cu", f"hctr_bce_loss_fwd<{ctype(logits.dtype)}>", 1, 1024,
                (xp.ascontiguousarray(logits), xp.ascontiguousarray(labels), loss, np.int64(logits.size)))
    return loss


@kernel_op("bce_loss_bwd")
def bce_loss_bwd(xp, logits, labels, scale):
    if not floats(logits) or labels.dtype != _F32 or logits.size != labels.size:
        return reference("bce_loss_bwd", **locals())
    d_logits = xp.empty(logits.shape, dtype=logits.dtype)
    launch("losses.cu", f"hctr_bce_loss_bwd<{ctype(logits.dtype)}>", logits.size,
           (xp.ascontiguousarray(logits), xp.ascontiguousarray(labels), d_logits, np.int64(logits.size),
            np.float32(scale)))
    return d_logits


# ---- MultiCross ---------------------------------------------------------------------------------

_MC_WARPS = 4   # warps (rows in flight) per block
_MC_PLANES = 8  # HCTR_MC_PLANES of kernels/multicross.cu
# Rows up to which the forward stages w and b in shared memory: at batch 1 it waited on a global load per
# element per layer (20 µs -> 12 µs with them staged). At 16384 rows the forward took 0.067 ms with them
# staged and 0.065 without (H100, 2026-12-07 21:46 / 22:21 UTC; 0.057 before x0's row moved to shared memory
# too): the weights there neither help nor clearly hurt, and the bound keeps training's blocks smaller
_MC_SHARED_WEIGHTS_ROWS = 4096


def _rows_args(a, layout):
    """A ``row_view``'s two kernel arguments: its address and its row stride."""
    return np.uint64(a.data.ptr), np.int64(layout[2])


@kernel_op("multicross_fwd")
def multicross_fwd(xp, x0, w, b):
    m, dim = x0.shape
    layers = w.shape[0]
    rows = _MC_WARPS * 2 * dim * 4          # per warp: x_l and the row of x0 (float32)
    weights = 2 * layers * dim * 4          # w and b, when they fit beside the rows
    if not floats(x0, w, b) or rows > _SHARED_LIMIT:
        return reference("multicross_fwd", xp, x0, w, b)
    wb_shared = rows + weights <= _SHARED_LIMIT and m <= _MC_SHARED_WEIGHTS_ROWS
    (w, w_layout), (b, b_layout) = row_view(xp, w), row_view(xp, b)   # rows of the flat weight buffer: in place
    x0 = contiguous(xp, x0)
    y = xp.empty_like(x0)   # after contiguous(): a column-major x0 would make y column-major
    hs = xp.empty((layers, m, 1), dtype=xp.float32)
    blocks = max(1, min(-(-m // _MC_WARPS), 16 * _device_sms(xp)))
    launch_grid("multicross.cu", f"hctr_multicross_fwd<{ctype(x0.dtype)}>", blocks, 32 * _MC_WARPS,
                (x0, *_rows_args(w, w_layout), *_rows_args(b, b_layout), y, hs, np.int64(m),
                 np.int32(dim), np.int32(layers), np.int32(wb_shared)), shared_mem=rows + weights * wb_shared)
    return y, hs


@kernel_op("multicross_bwd")
def multicross_bwd(xp, d_y, x0, hs, w, b):
    m, dim = x0.shape
    layers = w.shape[0]
    shared = _MC_WARPS * 2 * dim * 4
    if not floats(d_y, x0, w, b) or hs.dtype != _F32 or shared > _SHARED_LIMIT or m == 0:
        return reference("multicross_bwd", xp, d_y, x0, hs, w, b)
    t = ctype(d_y.dtype)
    # d_y (a Concat gradient's columns) and the weights (rows of the flat buffer) are read in place
    (d_y, d_y_layout), (w, w_layout), (b, b_layout) = row_view(xp, d_y), row_view(xp, w), row_view(xp, b)
    d_y_args, w_rows, b_rows = _rows_args(d_y, d_y_layout), _rows_args(w, w_layout), _rows_args(b, b_layout)
    x0, hs = contiguous(xp, x0), xp.ascontiguousarray(hs)
    d_x0 = xp.empty((m, dim), dtype=d_y.dtype)
    v = xp.empty((m, layers), dtype=xp.float32)   # dL/dh_l per row
    blocks = max(1, min(-(-m // _MC_WARPS), 16 * _device_sms(xp)))
    launch_grid("multicross.cu", f"hctr_multicross_bwd<{t}>", blocks, 32 * _MC_WARPS,
                (*d_y_args, x0, hs, *w_rows, d_x0, v, np.int64(m), np.int32(dim), np.int32(layers)),
                shared_mem=shared)
    # Weight gradients without atomics: column sums per chunk of rows, then the chunks in order.
    width = dim + layers
    col_blocks = -(-width // 32)
    groups = -(-layers // _MC_PLANES)   # planes a block sums in one walk: HCTR_MC_PLANES of multicross.cu
    # ~4 blocks per SM: 4 rows' loads in flight per thread keep HBM busy, the finish stays short
    chunks, rows_per_block = _row_chunks(xp, m, col_blocks * groups, blocks_per_sm=4)
    partial = xp.empty((chunks, layers + 1, width), dtype=xp.float32)
    launch_grid("multicross.cu", f"hctr_multicross_bwd_sums<{t}>", (col_blocks, chunks, groups), (32, 8),
                (*d_y_args, x0, hs, *b_rows, v, partial, np.int64(m), np.int32(dim), np.int32(layers),
                 np.int64(rows_per_block)))
    d_w, d_b = xp.empty((layers, dim), dtype=d_y.dtype), xp.empty((layers, dim), dtype=d_y.dtype)
    launch("multicross.cu", f"hctr_multicross_bwd_finish<{t}>", layers * dim * 32,   # a warp per (l, d)
           (partial, *w_rows, d_w, d_b, np.int32(dim), np.int32(layers), np.int32(chunks)))
    return d_x0, d_w, d_b


# ---- FmOrder2 -----------------------------------------------------------------------------------

@kernel_op("fm_order2_fwd")
def fm_order2_fwd(xp, x, out_dim):
    if not floats(x):
        return reference("fm_order2_fwd", **locals())
    m = x.shape[0]
    y = xp.empty((m, out_dim), dtype=x.dtype)
    launch("fm_order2.cu", f"hctr_fm_order2_fwd<{ctype(x.dtype)}>", m * out_dim,
           (xp.ascontiguousarray(x), y, np.int64(m), np.int32(x.shape[1] // out_dim), np.int32(out_dim)))
    return y


@kernel_op("fm_order2_bwd")
def fm_order2_bwd(xp, d_y, x, out_dim):
    if not floats(d_y, x):
        return reference("fm_order2_bwd", **locals())
    m = x.shape[0]
    d_x = xp.empty(x.shape, dtype=d_y.dtype)
    launch("fm_order2.cu", f"hctr_fm_order2_bwd<{ctype(x.dtype)}>", m * out_dim,
           (xp.ascontiguousarray(d_y), xp.ascontiguousarray(x), d_x, np.int64(m), np.int32(x.shape[1] // out_dim),
            np.int32(out_dim)))
    return d_x


# ---- Interaction --------------------------------------------------------------------------------
# float16 with n = F + 1 <= 32 rows of w % 16 == 0, w <= 256 (DLRM): one fused tensor-core kernel each way
# (Z and the products stay in shared memory). Else batched GEMMs on tensor cores (float16 operands,
# float32 accumulation; float32 in float32) through the ctypes cuBLAS binding, so CUDA graphs capture
# them; operand layouts in interaction_gemms.py. ``HUGECTR_LAB_INTERACTION_MMA=0`` keeps the GEMMs for
# every case (A/B benchmarking; read at each call, so a captured graph keeps the path it was captured with).

_MMA_SWITCH = "HUGECTR_LAB_INTERACTION_MMA"


def _fused_mma(*arrays):
    """Whether the tensor-core kernels serve these (contiguous) Interaction arrays, the last one emb (m, F, w)."""
    _, fields, w = arrays[-1].shape
    return (os.environ.get(_MMA_SWITCH, "1") != "0" and all(a.dtype == np.float16 for a in arrays)
            and fields + 1 <= 32 and w % 16 == 0 and w <= 256
            and all(a.data.ptr % 16 == 0 for a in arrays[-2:]))   # mlp and emb are read in 16-byte pieces


def _mma_launch(m, fields, w, backward):
    """(grid, block, shared bytes) of the tensor-core kernels: a warp per sample, as many warps a block (at
    most 4) as fit 48 KB; per warp the shared-memory layout of kernels/interaction.cu's header."""
    rows = 16 if fields + 1 <= 16 else 32
    z = rows * (w + 8) * 2
    per_warp = z + (rows * (rows + 8) * 2 + rows * 36 * 4 if backward else rows * (rows + 4) * 4)
    warps = min(4, _SHARED_LIMIT // per_warp)
    return min(-(-m // warps), MAX_BLOCKS), 32 * warps, warps * per_warp


@kernel_op("interaction_fwd")
def interaction_fwd(xp, mlp, emb):
    if not floats(mlp, emb) or emb.size == 0:
        return reference("interaction_fwd", xp, mlp, emb)
    m, fields, w = emb.shape
    n = fields + 1
    mlp, emb = xp.ascontiguousarray(mlp), xp.ascontiguousarray(emb)
    out = xp.empty((m, w + n * (n - 1) // 2 + 1), dtype=mlp.dtype)
    if _fused_mma(mlp, emb):
        grid, block, shared = _mma_launch(m, fields, w, False)
        launch_grid("interaction.cu", "hctr_interaction_fwd_mma", grid, block,
                    (mlp, emb, out, np.int64(m), np.int32(fields), np.int32(w)), shared_mem=shared)
        return out
    dots = xp.empty((m, fields, scratch_ld(fields)), dtype=mlp.dtype)
    for a, b, c in forward_products(mlp, emb, dots):
        cublas.gemm_strided_batched(a, b, c, m)
    launch_grid("interaction.cu", f"hctr_interaction_pack<{ctype(mlp.dtype)}>", *per_sample(m, out.shape[1]),
                (mlp, dots, out, np.int64(m), np.int32(fields), np.int32(w), np.int32(dots.shape[2])))
    return out


@kernel_op("interaction_bwd")
def interaction_bwd(xp, d_y, mlp, emb):
    if not floats(d_y, mlp, emb) or emb.size == 0:
        return reference("interaction_bwd", xp, d_y, mlp, emb)
    m, fields, w = emb.shape
    t = ctype(mlp.dtype)
    d_y, mlp, emb = xp.ascontiguousarray(d_y), xp.ascontiguousarray(mlp), xp.ascontiguousarray(emb)
    d_mlp, d_emb = xp.empty_like(mlp), xp.empty(emb.shape, dtype=emb.dtype)
    if _fused_mma(d_y, mlp, emb):
        grid, block, shared = _mma_launch(m, fields, w, True)
        launch_grid("interaction.cu", "hctr_interaction_bwd_mma", grid, block,
                    (d_y, mlp, emb, d_mlp, d_emb, np.int64(m), np.int32(fields), np.int32(w)), shared_mem=shared)
        return d_mlp, d_emb
    z = xp.empty((m, fields + 1, w), dtype=mlp.dtype)   # [emb; mlp] per sample
    launch_grid("interaction.cu", f"hctr_interaction_stack<{t}>", *per_sample(m, w),
                (d_y, mlp, emb, z, d_mlp, np.int64(m), np.int32(fields), np.int32(w)))
    sym = xp.empty((m, fields, scratch_ld(fields)), dtype=mlp.dtype)
    launch_grid("interaction.cu", f"hctr_interaction_unpack<{t}>", *per_sample(m, fields * (fields + 1)),
                (d_y, sym, np.int64(m), np.int32(fields), np.int32(w), np.int32(sym.shape[2])))
    cublas.gemm_strided_batched(*backward_product(sym, z, d_emb), m)
    return d_mlp, d_emb
