"""CUDA wrappers of the embedding ops: gather + combine, gradient reduction, sparse optimizer
updates (kernels/embedding.cu, kernels/sparse_update.cu) and hash-table lookup (kernels/hash_table.cu)."""

from __future__ import annotations

import numpy as np

from ...embedding.sparse_optimizers import _adam_alpha
from ..ops import kernel_op
from .common import FLOATS, ctype, f32, reference
from .loader import MAX_BLOCKS, NULL, launch, launch_grid

_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)
_CHUNK = 32   # occurrences summed by one thread in the first pass of the gradient reduction


def _c(xp, a, dtype=None):
    return xp.ascontiguousarray(a if dtype is None or a.dtype == dtype else a.astype(dtype))


@kernel_op("embedding_combine_fwd")
def embedding_combine_fwd(xp, values, rows, row_offsets, row_scale, out_dtype):
    out_dtype = np.dtype(out_dtype)
    if values.dtype != _F32 or out_dtype not in FLOATS:
        return reference("embedding_combine_fwd", xp, values, rows, row_offsets, row_scale, out_dtype)
    num_rows, vec = row_offsets.size - 1, values.shape[1]
    out = xp.empty((num_rows, vec), dtype=out_dtype)  # (R, E)
    if num_rows == 0:
        return out
    scale = NULL if row_scale is None else _c(xp, row_scale, _F32)
    lanes = min(vec, 128)
    rows_per_block = max(1, 256 // lanes)
    blocks = min(-(-num_rows // rows_per_block), MAX_BLOCKS)   # a row per lane group: gathers in flight
    launch_grid("embedding.cu", f"hctr_embedding_combine_fwd<{ctype(out_dtype)}>", blocks, (lanes, rows_per_block),
                (_c(xp, values), _c(xp, rows, _I64), _c(xp, row_offsets, _I64), scale, out, np.int64(num_rows),
                 np.int32(vec)))
    return out


@kernel_op("embedding_reduce_grad")
def embedding_reduce_grad(xp, wgrad, row_ids, inverse, num_unique, scaler):
    if wgrad.dtype not in FLOATS:
        return reference("embedding_reduce_grad", xp, wgrad, row_ids, inverse, num_unique, scaler)
    vec = wgrad.shape[1]
    g = xp.empty((num_unique, vec), dtype=xp.float32)  # (U, E)
    if num_unique == 0:
        return g
    inverse = _c(xp, inverse, _I64)
    # Occurrences grouped by distinct key, each group in input order (the reference's add.at order):
    # sorting inverse*K + k makes every sort key distinct, so the order is the same whatever the sort.
    occ = xp.argsort(inverse * inverse.size + xp.arange(inverse.size, dtype=xp.int64))
    counts = xp.bincount(inverse, minlength=num_unique)
    occ_offsets = xp.zeros(num_unique + 1, dtype=xp.int64)
    occ_offsets[1:] = xp.cumsum(counts)
    chunk_offsets = xp.zeros(num_unique + 1, dtype=xp.int64)
    chunk_offsets[1:] = xp.cumsum(-(-counts // _CHUNK))
    num_chunks = int(chunk_offsets[-1])
    partial = xp.empty((num_chunks, vec), dtype=xp.float32)  # (C, E) chunk sums
    launch("embedding.cu", f"hctr_embedding_reduce_grad_chunks<{ctype(wgrad.dtype)}>", num_chunks * vec,
           (_c(xp, wgrad), _c(xp, row_ids, _I64), occ_offsets, occ, chunk_offsets, partial, np.int64(num_unique),
            np.int64(num_chunks), np.int32(vec), np.int32(_CHUNK)))
    launch("embedding.cu", "hctr_embedding_reduce_grad_bwd", num_unique * vec,
           (partial, chunk_offsets, g, np.int64(num_unique), np.int32(vec), np.float32(scaler)))
    return g


# ---- sparse optimizer updates -----------------------------------------------------------------

def _states_ok(values, states, g):
    return (values.dtype == _F32 and g.dtype == _F32 and values.flags.c_contiguous
            and all(s.dtype in FLOATS and s.dtype == states[0].dtype and s.flags.c_contiguous for s in states))


def _update(name, args, states, passes, hparams):
    """Run ``passes`` ((pass, rule) pairs: pass "rows" over the touched rows, "all" over the table)
    of kernels/sparse_update.cu; ``args`` are the wrapper's arguments (``locals()``), handed to the
    reference ``name`` when the arrays are not what the kernels take."""
    xp, values, rows, g = args["xp"], args["values"], args["rows"], args["g"]
    if not _states_ok(values, states, g):
        return reference(name, **args)
    vec = values.shape[1]
    state_type = ctype(states[0].dtype) if states else "float"
    pointers = (tuple(states) + (NULL, NULL))[:2]
    h = f32(*(tuple(hparams) + (0.0,) * 6)[:6])
    rows, g = _c(xp, rows, _I64), _c(xp, g)
    for pass_, rule in passes:
        expr = f"hctr_sparse_update_{pass_}<hctr::{rule}, {state_type}>"
        if pass_ == "rows":
            launch("sparse_update.cu", expr, rows.size * vec,
                   (values, *pointers, rows, g, np.int64(rows.size), np.int32(vec), *h))
        else:
            launch("sparse_update.cu", expr, values.size, (values, *pointers, np.int64(values.size), *h))


def _adam(lr, beta1, beta2, epsilon, step):
    return (_adam_alpha(lr, beta1, beta2, step), beta1, beta2, 1 - beta1, 1 - beta2, epsilon)


# Hyper-parameters are passed as the reference's float32 expressions read them (see sparse_update.cu).

@kernel_op("sparse_sgd_update")
def sparse_sgd_update(xp, values, rows, g, lr):
    _update("sparse_sgd_update", locals(), (), [("rows", "Sgd")], (lr,))


@kernel_op("sparse_momentum_sgd_update")
def sparse_momentum_sgd_update(xp, values, momentum, rows, g, lr, momentum_factor):
    _update("sparse_momentum_sgd_update", locals(), (momentum,), [("rows", "Momentum")], (lr, momentum_factor))


@kernel_op("sparse_momentum_sgd_global_update")
def sparse_momentum_sgd_global_update(xp, values, momentum, rows, g, lr, momentum_factor):
    _update("sparse_momentum_sgd_global_update", locals(), (momentum,),
            [("rows", "MomentumGlobal"), ("all", "MomentumGlobal")], (lr, momentum_factor))


@kernel_op("sparse_nesterov_update")
def sparse_nesterov_update(xp, values, accumulator, rows, g, lr, momentum_factor):
    _update("sparse_nesterov_update", locals(), (accumulator,), [("rows", "Nesterov")],
            (lr, momentum_factor, -momentum_factor, 1 + momentum_factor))


@kernel_op("sparse_nesterov_global_update")
def sparse_nesterov_global_update(xp, values, accumulator, rows, g, lr, momentum_factor):
    _update("sparse_nesterov_global_update", locals(), (accumulator,),
            [("all", "NesterovGlobal"), ("rows", "NesterovGlobal")], (lr, momentum_factor, (1 + momentum_factor) * lr))


@kernel_op("sparse_adam_update")
def sparse_adam_update(xp, values, m, v, rows, g, lr, beta1, beta2, epsilon, step):
    _update("sparse_adam_update", locals(), (m, v), [("rows", "Adam")], _adam(lr, beta1, beta2, epsilon, step))


@kernel_op("sparse_adam_global_update")
def sparse_adam_global_update(xp, values, m, v, rows, g, lr, beta1, beta2, epsilon, step):
    _update("sparse_adam_global_update", locals(), (m, v), [("rows", "AdamGlobal"), ("all", "AdamGlobal")],
            _adam(lr, beta1, beta2, epsilon, step))


@kernel_op("sparse_adagrad_update")
def sparse_adagrad_update(xp, values, accumulator, rows, g, lr, epsilon):
    _update("sparse_adagrad_update", locals(), (accumulator,), [("rows", "AdaGrad")], (lr, epsilon))


@kernel_op("sparse_sgd_atomic_update")
def sparse_sgd_atomic_update(xp, values, rows, row_ids, wgrad, lr_over_scaler):
    if values.dtype != _F32 or not values.flags.c_contiguous or wgrad.dtype not in FLOATS:
        return reference("sparse_sgd_atomic_update", **locals())
    vec = values.shape[1]
    launch("sparse_update.cu", f"hctr_sparse_sgd_atomic_update<{ctype(wgrad.dtype)}>", rows.size * vec,
           (values, _c(xp, rows, _I64), _c(xp, row_ids, _I64), _c(xp, wgrad), np.int64(rows.size), np.int32(vec),
            np.float32(-lr_over_scaler)))


@kernel_op("sparse_adam_lazy_global_update")
def sparse_adam_lazy_global_update(xp, values, m, v, prev_time, rows, g, lr, beta1, beta2, epsilon, step):
    if not _states_ok(values, (m, v), g) or prev_time.dtype != _I64:
        return reference("sparse_adam_lazy_global_update", **locals())
    launch("sparse_update.cu", f"hctr_sparse_adam_lazy_update<{ctype(m.dtype)}>", rows.size,
           (values, m, v, prev_time, _c(xp, rows, _I64), _c(xp, g), np.int64(rows.size), np.int32(values.shape[1]),
            np.float64(lr), np.float64(beta1), np.float64(beta2), *f32(1 - beta1, 1 - beta2, epsilon),
            np.int64(step)))


# ---- hash table ---------------------------------------------------------------------------------

@kernel_op("hash_table_lookup")
def hash_table_lookup(xp, index_keys, index_rows, keys):
    if index_keys.size == 0 or keys.size == 0:
        return xp.full(keys.shape, -1, dtype=xp.int64)
    if keys.dtype != index_keys.dtype or keys.dtype not in (np.dtype(np.uint32), _I64):
        return reference("hash_table_lookup", xp, index_keys, index_rows, keys)
    out = xp.empty(keys.shape, dtype=xp.int64)
    launch("hash_table.cu", f"hctr_hash_table_lookup<{ctype(keys.dtype)}>", keys.size,
           (_c(xp, index_keys), _c(xp, index_rows, _I64), np.int64(index_keys.size), _c(xp, keys), out,
            np.int64(keys.size)))
    return out
