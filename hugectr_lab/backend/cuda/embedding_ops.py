"""CUDA wrappers of the embedding ops: gather + combine, gradient reduction, row scatter, sparse
optimizer updates (kernels/embedding.cu, kernels/sparse_update.cu) and the open-addressing hash table
(kernels/hash_table.cu).

Nothing in the training step's ops reads the device from the host: array sizes are fixed by the
batch (K key occurrences), and counts that depend on the data stay in device memory."""

from __future__ import annotations

import numpy as np

from ...rules.keys import refused_room, sentinel_key
from ..ops import kernel_op
from .common import FLOATS, ctype, f32, reference, vector_width
from .loader import MAX_BLOCKS, NULL, launch, launch_grid
from .rows import contiguous

_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)
_CHUNK = 32   # occurrences summed by one thread in the first pass of the gradient reduction


def _c(xp, a, dtype=None):
    return contiguous(xp, a if dtype is None or a.dtype == dtype else a.astype(dtype))


_COMBINE_ROWS = 4   # CSR rows a lane group takes at a time (HCTR_COMBINE_ROWS in embedding.cu): sizes the grid
_COMBINE_THREADS = 256   # threads of a combine block: the kernel's __launch_bounds__


@kernel_op("embedding_combine_fwd")
def embedding_combine_fwd(xp, values, rows, row_offsets, row_scale, out_dtype):
    out_dtype = np.dtype(out_dtype)
    if values.dtype != _F32 or out_dtype not in FLOATS:
        return reference("embedding_combine_fwd", xp, values, rows, row_offsets, row_scale, out_dtype)
    num_rows, vec = row_offsets.size - 1, values.shape[1]
    out = xp.empty((num_rows, vec), dtype=out_dtype)  # (R, E)
    if num_rows == 0 or vec == 0:
        return out
    values = _c(xp, values)
    scale = NULL if row_scale is None else _c(xp, row_scale, _F32)
    width = vector_width(vec, (values,), (4, 2, 1))   # floats per table access: 16, 8 or 4 bytes
    lanes = min(32, 1 << (vec // width - 1).bit_length())   # a lane per piece of a row, a power of 2
    groups = _COMBINE_THREADS // lanes
    tiles = -(-num_rows // _COMBINE_ROWS)
    launch_grid("embedding.cu", f"hctr_embedding_combine_fwd<{ctype(out_dtype)}, {width}>",
                min(-(-tiles // groups), MAX_BLOCKS), (lanes, groups),
                (values, _c(xp, rows, _I64), _c(xp, row_offsets, _I64), scale, out, np.int64(num_rows),
                 np.int64(rows.size), np.int32(vec)))
    return out


@kernel_op("embedding_reduce_grad")
def embedding_reduce_grad(xp, wgrad, row_ids, inverse, num_unique, scaler):
    if wgrad.dtype not in FLOATS:
        return reference("embedding_reduce_grad", xp, wgrad, row_ids, inverse, num_unique, scaler)
    vec = wgrad.shape[1]
    g = xp.empty((num_unique, vec), dtype=xp.float32)  # (U, E)
    if num_unique == 0:
        return g
    if inverse.size == 0:
        g.fill(0)
        return g
    partial, chunk_offsets = _chunk_sums(xp, wgrad, row_ids, inverse, num_unique)
    launch("embedding.cu", "hctr_embedding_reduce_grad_bwd", num_unique * vec,
           (partial, chunk_offsets, g, np.int64(num_unique), np.int32(vec), np.float32(scaler)))
    return g


def _chunk_sums(xp, wgrad, row_ids, inverse, num_unique):
    """The first pass of the gradient reduction (K >= 1 occurrences, U >= 1): ``(partial, chunk_offsets)``,
    partial (K, E) float32 holding the sums of each distinct key's occurrences in chunks of ``_CHUNK``
    (in input order), chunk_offsets (U+1,) int64 where key u's chunks start; the second pass adds a
    key's chunks in order and divides by S (``hctr_chunk_sum``)."""
    vec, k = wgrad.shape[1], inverse.size
    # Occurrences grouped by distinct key, each group in input order (the reference's add.at order),
    # occurrences without a row (-1) last, by a stable radix sort of the group. All sizes are fixed
    # (U, K); the chunk count stays on the device.
    groups, occ = _group_sort(xp, xp.where(inverse < 0, num_unique, inverse).astype(xp.int64, copy=False),
                              num_unique)
    occ_offsets = xp.searchsorted(groups, xp.arange(num_unique + 1, dtype=xp.int64))   # (U+1,)
    chunk_offsets = xp.zeros(num_unique + 1, dtype=xp.int64)
    chunk_offsets[1:] = xp.cumsum((occ_offsets[1:] - occ_offsets[:-1] + (_CHUNK - 1)) // _CHUNK)
    partial = xp.empty((k, vec), dtype=xp.float32)  # (C_max, E) chunk sums: at most one chunk per occurrence
    launch("embedding.cu", f"hctr_embedding_reduce_grad_chunks<{ctype(wgrad.dtype)}>", k * vec,
           (_c(xp, wgrad), _c(xp, row_ids, _I64), occ_offsets, occ, chunk_offsets, partial, np.int64(num_unique),
            np.int32(vec), np.int32(_CHUNK)))
    return partial, chunk_offsets


_RADIX_TILE = 1024   # items of one radix tile (one warp)


def _group_sort(xp, groups, max_group):
    """(sorted groups, their positions): a stable sort of ``groups`` (K,) int64 in [0, max_group], by
    8-bit LSD radix passes (kernels/embedding.cu). Thrust's sort (``argsort``) may synchronise the
    stream; this one never does, and its order does not depend on timing."""
    k = groups.size
    tiles = -(-k // _RADIX_TILE)
    hist = xp.empty(256 * tiles, dtype=xp.int64)
    offsets = xp.zeros(256 * tiles, dtype=xp.int64)   # exclusive prefix sums of hist, digit-major
    keys, vals = groups, None
    for shift in range(0, max(1, int(max_group).bit_length()), 8):
        launch_grid("embedding.cu", "hctr_radix_hist", min(tiles, MAX_BLOCKS), 32,
                    (keys, np.int64(k), np.int32(shift), np.int64(_RADIX_TILE), np.int64(tiles), hist))
        offsets[1:] = xp.cumsum(hist[:-1])
        keys_out, vals_out = xp.empty(k, dtype=xp.int64), xp.empty(k, dtype=xp.int64)
        launch_grid("embedding.cu", "hctr_radix_scatter", min(tiles, MAX_BLOCKS), 32,
                    (keys, NULL if vals is None else vals, np.int64(k), np.int32(shift), np.int64(_RADIX_TILE),
                     np.int64(tiles), offsets, keys_out, vals_out))
        keys, vals = keys_out, vals_out
    return keys, vals


_SCATTER = (np.dtype(np.float32), np.dtype(np.float16), _I64)


@kernel_op("csr_row_ids")
def csr_row_ids(xp, row_offsets, num_keys):
    row_offsets = _c(xp, row_offsets, _I64)
    out = xp.empty(num_keys, dtype=xp.int64)
    if num_keys:
        num_rows = row_offsets.size - 1
        launch("embedding.cu", "hctr_csr_row_ids", max(num_rows, num_keys),
               (row_offsets, np.int64(num_rows), out, np.int64(num_keys)))
    return out


@kernel_op("scatter_rows")
def scatter_rows(xp, dst, rows, src):
    if dst.dtype not in _SCATTER or not dst.flags.c_contiguous or dst.ndim == 0:
        return reference("scatter_rows", xp, dst, rows, src)
    width = dst.size // dst.shape[0] if dst.shape[0] else 0
    if src.size != rows.size * width:
        return reference("scatter_rows", xp, dst, rows, src)
    launch("embedding.cu", f"hctr_scatter_rows<{ctype(dst.dtype)}>", rows.size * width,
           (dst, _c(xp, rows, _I64), _c(xp, src, dst.dtype), np.int64(rows.size), np.int64(width)))


# ---- sparse optimizer updates -----------------------------------------------------------------

def _states_ok(values, states):
    return (values.dtype == _F32 and values.flags.c_contiguous
            and all(s.dtype in FLOATS and s.dtype == states[0].dtype and s.flags.c_contiguous for s in states))


def _scalar(xp, value):
    """A float64 device scalar for a kernel's ``const double*`` argument: ``value`` itself when it is one
    (an embedding's per-step ``hyper`` entries, which a CUDA graph of the step reads at each replay),
    else a new one holding ``value`` (a fill kernel: no host-to-device copy)."""
    if hasattr(value, "__cuda_array_interface__") and value.dtype == np.float64 and value.size == 1:
        return value
    return xp.full((), float(value), dtype=xp.float64)


# Every update op that takes the reduced gradient g, but LazyGlobal Adam (below): its passes over
# kernels/sparse_update.cu, (pass, rule) in the reference's order -- "rows" over the touched rows, "all"
# over the table -- and the hyper-parameters that are its rule's constants c0..c2. The rules compute
# their float32 factors from lr, step and the constants as the references' float32 expressions round them.
_RULES = {
    "sparse_sgd_update": ((("rows", "Sgd"),), ()),
    "sparse_momentum_sgd_update": ((("rows", "Momentum"),), ("momentum_factor",)),
    "sparse_momentum_sgd_global_update": ((("rows", "MomentumGlobal"), ("all", "MomentumGlobal")),
                                          ("momentum_factor",)),
    "sparse_nesterov_update": ((("rows", "Nesterov"),), ("momentum_factor",)),
    "sparse_nesterov_global_update": ((("all", "NesterovGlobal"), ("rows", "NesterovGlobal")),
                                      ("momentum_factor",)),
    "sparse_adam_update": ((("rows", "Adam"),), ("beta1", "beta2", "epsilon")),
    "sparse_adam_global_update": ((("rows", "AdamGlobal"), ("all", "AdamGlobal")), ("beta1", "beta2", "epsilon")),
    "sparse_adagrad_update": ((("rows", "AdaGrad"),), ("epsilon",)),
}


def _update(name, args, states):
    """The wrapper of update op ``name``, ``args`` its arguments (``locals()``): its passes with the
    reduced gradient ``args["g"]``, or the reference for arrays the kernels do not take."""
    if not _states_ok(args["values"], states) or args["g"].dtype != _F32:
        return reference(name, **args)
    _passes(name, args["xp"], args["values"], states, args["rows"], args, (_c(args["xp"], args["g"]),))


def _passes(name, xp, values, states, rows, hparams, gradient):
    """Launch the passes of update op ``name`` over ``values`` (V, E) and ``states`` for the touched
    ``rows`` (U,). ``hparams``: lr and step (numbers or float64 device scalars; no step: 0) and the
    rule's constants by name. ``gradient``: ``(g,)``, the reduced gradient (U, E) float32, or
    ``(partial, chunk_offsets, scaler)`` from the reduction's first pass (``_chunk_sums``), whose second
    pass the rows pass then runs itself (``hctr_sparse_reduce_update_rows``): g never reaches memory."""
    passes, constant_names = _RULES[name]
    vec = values.shape[1]
    state_type = ctype(states[0].dtype) if states else "float"
    pointers = (tuple(states) + (NULL, NULL))[:2]
    rule_args = (_scalar(xp, hparams["lr"]), _scalar(xp, hparams.get("step", 0)),
                 *(np.float64(hparams[n]) for n in constant_names), *(np.float64(0),) * (3 - len(constant_names)))
    rows = _c(xp, rows, _I64)
    for pass_, rule in passes:
        template = f"<hctr::{rule}, {state_type}>"
        if pass_ == "all":
            launch("sparse_update.cu", "hctr_sparse_update_all" + template, values.size,
                   (values, *pointers, np.int64(values.size), *rule_args))
        elif len(gradient) == 1:
            launch("sparse_update.cu", "hctr_sparse_update_rows" + template, rows.size * vec,
                   (values, *pointers, rows, gradient[0], np.int64(rows.size), np.int32(vec), *rule_args))
        else:
            partial, chunk_offsets, scaler = gradient
            launch("sparse_update.cu", "hctr_sparse_reduce_update_rows" + template, rows.size * vec,
                   (values, *pointers, rows, partial, chunk_offsets, np.float32(scaler), np.int64(rows.size),
                    np.int32(vec), *rule_args))


@kernel_op("sparse_sgd_update")
def sparse_sgd_update(xp, values, rows, g, lr):
    _update("sparse_sgd_update", locals(), ())


@kernel_op("sparse_momentum_sgd_update")
def sparse_momentum_sgd_update(xp, values, momentum, rows, g, lr, momentum_factor):
    _update("sparse_momentum_sgd_update", locals(), (momentum,))


@kernel_op("sparse_momentum_sgd_global_update")
def sparse_momentum_sgd_global_update(xp, values, momentum, rows, g, lr, momentum_factor):
    _update("sparse_momentum_sgd_global_update", locals(), (momentum,))


@kernel_op("sparse_nesterov_update")
def sparse_nesterov_update(xp, values, accumulator, rows, g, lr, momentum_factor):
    _update("sparse_nesterov_update", locals(), (accumulator,))


@kernel_op("sparse_nesterov_global_update")
def sparse_nesterov_global_update(xp, values, accumulator, rows, g, lr, momentum_factor):
    _update("sparse_nesterov_global_update", locals(), (accumulator,))


@kernel_op("sparse_adam_update")
def sparse_adam_update(xp, values, m, v, rows, g, lr, beta1, beta2, epsilon, step):
    _update("sparse_adam_update", locals(), (m, v))


@kernel_op("sparse_adam_global_update")
def sparse_adam_global_update(xp, values, m, v, rows, g, lr, beta1, beta2, epsilon, step):
    _update("sparse_adam_global_update", locals(), (m, v))


@kernel_op("sparse_adagrad_update")
def sparse_adagrad_update(xp, values, accumulator, rows, g, lr, epsilon):
    _update("sparse_adagrad_update", locals(), (accumulator,))


@kernel_op("sparse_reduce_update")
def sparse_reduce_update(xp, update_op, wgrad, row_ids, inverse, scaler, values, *arrays, **hparams):
    if not arrays:   # the reference names what is missing
        return reference("sparse_reduce_update", xp, update_op, wgrad, row_ids, inverse, scaler, values, **hparams)
    *states, rows = arrays
    if update_op == "sparse_adam_lazy_global_update":   # its kernel takes a row per thread: the two ops
        g = embedding_reduce_grad(xp, wgrad, row_ids, inverse, rows.size, scaler)
        return sparse_adam_lazy_global_update(xp, values, *arrays, g, **hparams)
    if update_op not in _RULES or wgrad.dtype not in FLOATS or not _states_ok(values, states):
        return reference("sparse_reduce_update", xp, update_op, wgrad, row_ids, inverse, scaler, values, *arrays,
                         **hparams)
    if inverse.size == 0 or rows.size == 0:   # nothing to reduce: g is zero, or there is no row to touch
        gradient = (embedding_reduce_grad(xp, wgrad, row_ids, inverse, rows.size, scaler),)
    else:
        gradient = (*_chunk_sums(xp, wgrad, row_ids, inverse, rows.size), scaler)
    _passes(update_op, xp, values, states, rows, hparams, gradient)


@kernel_op("sparse_sgd_atomic_update")
def sparse_sgd_atomic_update(xp, values, rows, row_ids, wgrad, lr_over_scaler):
    if values.dtype != _F32 or not values.flags.c_contiguous or wgrad.dtype not in FLOATS:
        return reference("sparse_sgd_atomic_update", **locals())
    vec = values.shape[1]
    width = vector_width(vec, (values,))   # 128-bit atomics on aligned rows
    launch("sparse_update.cu", f"hctr_sparse_sgd_atomic_update<{ctype(wgrad.dtype)}, {width}>", rows.size * vec // width,
           (values, _c(xp, rows, _I64), _c(xp, row_ids, _I64), _c(xp, wgrad), np.int64(rows.size), np.int32(vec),
            _scalar(xp, lr_over_scaler)))


@kernel_op("sparse_adam_lazy_global_update")
def sparse_adam_lazy_global_update(xp, values, m, v, prev_time, rows, g, lr, beta1, beta2, epsilon, step):
    if not _states_ok(values, (m, v)) or g.dtype != _F32 or prev_time.dtype != _I64 or not prev_time.flags.c_contiguous:
        return reference("sparse_adam_lazy_global_update", **locals())
    launch("sparse_update.cu", f"hctr_sparse_adam_lazy_update<{ctype(m.dtype)}>", rows.size,
           (values, m, v, prev_time, _c(xp, rows, _I64), _c(xp, g), np.int64(rows.size), np.int32(values.shape[1]),
            _scalar(xp, lr), _scalar(xp, step), np.float64(beta1), np.float64(beta2),
            *f32(1 - beta1, 1 - beta2, epsilon)))


# ---- hash table ---------------------------------------------------------------------------------

_KEYS = (np.dtype(np.uint32), _I64)


def _table_ok(slot_keys, slot_rows, keys):
    return (keys.dtype == slot_keys.dtype and keys.dtype in _KEYS and slot_rows.dtype == _I64
            and slot_keys.flags.c_contiguous and slot_rows.flags.c_contiguous and slot_keys.size < (1 << 32))


@kernel_op("hash_table_lookup")
def hash_table_lookup(xp, slot_keys, slot_rows, keys):
    if not _table_ok(slot_keys, slot_rows, keys):
        return reference("hash_table_lookup", xp, slot_keys, slot_rows, keys)
    out = xp.empty(keys.shape, dtype=xp.int64)
    launch("hash_table.cu", f"hctr_hash_table_lookup<{ctype(keys.dtype)}>", keys.size,
           (slot_keys, slot_rows, np.int64(slot_keys.size), _c(xp, keys), out, np.int64(keys.size)))
    return out


@kernel_op("hash_table_lookup_insert")
def hash_table_lookup_insert(xp, slot_keys, slot_rows, counters, keys, capacity):
    if (not _table_ok(slot_keys, slot_rows, keys) or counters.dtype != _I64 or counters.size != 3
            or not counters.flags.c_contiguous):
        return reference("hash_table_lookup_insert", xp, slot_keys, slot_rows, counters, keys, capacity)
    k, n, key_t = keys.size, slot_keys.size, ctype(keys.dtype)
    if k == 0:
        return tuple(xp.empty(0, dtype=xp.int64) for _ in range(4))
    keys = _c(xp, keys)
    m = 2 * k + 64   # the batch's distinct-key set
    scratch_keys = xp.full(m, sentinel_key(keys.dtype), dtype=keys.dtype)
    scratch_first = xp.full(m, np.iinfo(np.int64).max, dtype=xp.int64)
    rows0, scratch_slot, first, is_new, new_rows, rows, is_first, inverse = (
        xp.empty(k, dtype=xp.int64) for _ in range(8))
    unique_rows = xp.full(k, -1, dtype=xp.int64)
    n_, k_, m_, cap, room = (np.int64(v) for v in (n, k, m, capacity, refused_room(n, capacity)))
    launch("hash_table.cu", f"hctr_hash_table_probe<{key_t}>", k,
           (slot_keys, slot_rows, n_, keys, k_, scratch_keys, scratch_first, m_, rows0, scratch_slot))
    launch("hash_table.cu", "hctr_hash_table_first", k, (scratch_first, scratch_slot, rows0, k_, first, is_new))
    new_incl = xp.cumsum(is_new)
    launch("hash_table.cu", f"hctr_hash_table_insert<{key_t}>", k,
           (slot_keys, slot_rows, n_, keys, k_, is_new, new_incl, counters, cap, room, rows0, new_rows))
    launch("hash_table.cu", "hctr_hash_table_resolve", k,
           (rows0, first, k_, new_incl, counters, cap, room, rows, is_first))
    first_incl = xp.cumsum(is_first)
    launch("hash_table.cu", "hctr_hash_table_unique", k, (rows, first, first_incl, k_, inverse, unique_rows))
    return rows, unique_rows, inverse, new_rows
