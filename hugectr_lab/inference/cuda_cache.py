"""CUDA wrappers of the embedding cache's operations and of the predict graph's lookup
(kernels/embedding_cache.cu), registered with ``@kernel_op`` under the names and signatures of the
references in ``cache_ops`` and ``graph_ops``. Importing this module needs CuPy; ``EmbeddingCache``
imports it when it runs on the CuPy backend.

The ``infer_*`` wrappers only launch kernels on arrays they are given (or allocate scratch of fixed
size), read nothing back and take every per-call value from device memory, so a CUDA graph can
capture them (``graph_path``)."""

from __future__ import annotations

import numpy as np

from ..backend.cuda.common import reference
from ..backend.cuda.loader import BLOCK, NULL, launch, launch_grid, multiprocessors
from ..backend.cuda.sources import CACHE_POLICY
from ..backend.ops import kernel_op
from .cache_ops import SKETCH_DEPTH, WAYS, empty_key, insert_with_policy
from .graph_ops import check_dedupe, check_index

FILE = "embedding_cache.cu"
_KEY_CTYPE = {np.dtype(np.uint32): "unsigned int", np.dtype(np.int64): "long long"}
_F32, _I32, _I64, _U8 = np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.uint8)


def _contiguous(*arrays):
    return all(a is None or a.flags.c_contiguous for a in arrays)


def _ok(cache_keys, cache_stamps, cache_values, keys):
    return (cache_keys.dtype in _KEY_CTYPE and keys.dtype == cache_keys.dtype and cache_stamps.dtype == _I64
            and cache_values.dtype == _F32 and _contiguous(cache_keys, cache_stamps, cache_values))


def _sketch_ok(sketch, keys):
    return (sketch is None or (sketch.dtype == np.uint32 and sketch.ndim == 2 and sketch.shape[0] == SKETCH_DEPTH
                               and sketch.flags.c_contiguous)) and keys.dtype in _KEY_CTYPE


def _blocks(xp, per_sm):
    return per_sm * multiprocessors(xp.cuda.runtime.getDevice())


def _set_index(xp, keys, num_sets):
    out = xp.empty(keys.size, dtype=xp.int64)
    launch(FILE, f"hctr_embedding_cache_set_index<{_KEY_CTYPE[keys.dtype]}>", keys.size,
           (xp.ascontiguousarray(keys), np.int64(keys.size), np.int64(num_sets), out))
    return out


@kernel_op("embedding_cache_set_index")
def embedding_cache_set_index(xp, keys, num_sets):
    if keys.dtype not in _KEY_CTYPE:
        return reference("embedding_cache_set_index", xp, keys, num_sets)
    return _set_index(xp, keys, num_sets)


@kernel_op("embedding_cache_query")
def embedding_cache_query(xp, cache_keys, cache_stamps, cache_values, keys, now):
    if not _ok(cache_keys, cache_stamps, cache_values, keys):
        return reference("embedding_cache_query", xp, cache_keys, cache_stamps, cache_values, keys, now)
    n, vec = keys.size, cache_values.shape[1]
    values = xp.empty((n, vec), dtype=xp.float32)    # (U, E)
    slots = xp.empty(n, dtype=xp.int64)             # (U,)
    launch(FILE, f"hctr_embedding_cache_query<{_KEY_CTYPE[keys.dtype]}>", n * 32,
           (cache_keys, cache_stamps, cache_values, np.int64(cache_keys.size // WAYS), xp.ascontiguousarray(keys),
            np.int64(n), np.int32(vec), np.int64(now), values, slots))
    return values, slots


@kernel_op("embedding_cache_insert")
def embedding_cache_insert(xp, cache_keys, cache_stamps, cache_values, keys, values, now):
    return _insert(xp, cache_keys, cache_stamps, cache_values, None, keys, values, now)


@kernel_op("embedding_cache_insert_tinylfu")
def embedding_cache_insert_tinylfu(xp, cache_keys, cache_stamps, cache_values, sketch, keys, values, now):
    return _insert(xp, cache_keys, cache_stamps, cache_values, sketch, keys, values, now)


def _insert(xp, cache_keys, cache_stamps, cache_values, sketch, keys, values, now):
    """Both insert ops: ``hctr_embedding_cache_insert<Key, Policy>``, LRU where ``sketch`` is None."""
    if not (_ok(cache_keys, cache_stamps, cache_values, keys) and values.dtype == _F32 and _sketch_ok(sketch, keys)):
        return insert_with_policy(xp, cache_keys, cache_stamps, cache_values, sketch, keys, values, now)
    n = keys.size
    slots = xp.full(n, -1, dtype=xp.int64)
    evicted = xp.full(n, empty_key(cache_keys.dtype), dtype=cache_keys.dtype)
    if n == 0:
        return slots, evicted
    keys = xp.ascontiguousarray(keys)
    order, offsets, group_sets = _groups(xp, keys, cache_keys.size // WAYS)
    if sketch is None:
        policy, sketch_arg, width, freqs = CACHE_POLICY["lru"], NULL, 0, NULL
    else:
        policy, sketch_arg, width = CACHE_POLICY["tinylfu"], sketch, sketch.shape[1]
        freqs = embedding_cache_frequency(xp, sketch, keys)
    launch_grid(FILE, f"hctr_embedding_cache_insert<{_KEY_CTYPE[keys.dtype]}, {policy}>",
                min(group_sets.size, _blocks(xp, 32)), WAYS,
                (cache_keys, cache_stamps, cache_values, np.int32(cache_values.shape[1]), sketch_arg, np.int64(width),
                 keys, freqs, xp.ascontiguousarray(values), order, offsets, group_sets, np.int64(group_sets.size),
                 np.int64(now), slots, evicted))
    return slots, evicted


def _groups(xp, keys, num_sets):
    """The keys grouped by set, input order within a set: ``order`` (N,), ``offsets`` (G+1,), ``sets`` (G,)."""
    n = keys.size
    sets = _set_index(xp, keys, num_sets)
    # set*N + i is a distinct sort key, so any sort agrees.
    order = xp.argsort(sets * n + xp.arange(n, dtype=xp.int64))
    sorted_sets = sets[order]
    first = xp.ones(n, dtype=bool)
    first[1:] = sorted_sets[1:] != sorted_sets[:-1]
    starts = xp.flatnonzero(first)
    offsets = xp.empty(starts.size + 1, dtype=xp.int64)
    offsets[:-1] = starts
    offsets[-1] = n
    return order, offsets, sorted_sets[starts]


def _halve(sketch, flag):
    """Halve every counter of ``sketch``; with ``flag`` (a device int64 array) only where flag[0] != 0."""
    launch(FILE, "hctr_embedding_cache_sketch_halve", sketch.size, (sketch, np.int64(sketch.size), flag))


@kernel_op("embedding_cache_sketch_update")
def embedding_cache_sketch_update(xp, sketch, keys, halve):
    if sketch is None or not _sketch_ok(sketch, keys):
        return reference("embedding_cache_sketch_update", xp, sketch, keys, halve)
    if halve:
        _halve(sketch, NULL)
    launch(FILE, f"hctr_embedding_cache_sketch_update<{_KEY_CTYPE[keys.dtype]}>", keys.size,
           (sketch, np.int64(sketch.shape[1]), xp.ascontiguousarray(keys), np.int64(keys.size)))


@kernel_op("embedding_cache_frequency")
def embedding_cache_frequency(xp, sketch, keys):
    if sketch is None or not _sketch_ok(sketch, keys):
        return reference("embedding_cache_frequency", xp, sketch, keys)
    out = xp.zeros(keys.size, dtype=xp.uint32)
    launch(FILE, f"hctr_embedding_cache_frequency<{_KEY_CTYPE[keys.dtype]}>", keys.size,
           (sketch, np.int64(sketch.shape[1]), xp.ascontiguousarray(keys), np.int64(keys.size), out))
    return out


# ---- the predict graph's lookup (references: graph_ops.py) ------------------------------------------

@kernel_op("infer_begin")
def infer_begin(xp, offsets, keys, dense, header, table, rejected, set_keys):
    if not (offsets.dtype == _I64 and offsets.size >= 2 and header.dtype == _I64 and header.ndim == 2
            and header.shape[1] >= 3 and rejected.dtype == _I64 and set_keys.dtype in _KEY_CTYPE
            and keys.dtype == set_keys.dtype and (dense is None or dense.dtype == _F32)
            and _contiguous(offsets, keys, dense, header, rejected, set_keys)):
        return reference("infer_begin", xp, offsets, keys, dense, header, table, rejected, set_keys)
    dense_size = 0 if dense is None else dense.size
    launch(FILE, f"hctr_infer_begin<{_KEY_CTYPE[set_keys.dtype]}>", max(offsets.size - 1, set_keys.size, keys.size,
                                                                      dense_size),
           (offsets, np.int64(offsets.size), keys, NULL if dense is None else dense, np.int64(dense_size), header,
            np.int64(header.shape[0]), np.int64(header.shape[1]), np.int64(table), rejected, set_keys,
            np.int64(set_keys.size)))


@kernel_op("infer_dedupe")
def infer_dedupe(xp, keys, set_keys, inverse, rejected):
    check_dedupe(keys, set_keys, inverse)
    if (keys.dtype not in _KEY_CTYPE or inverse.dtype != _I64 or not _contiguous(set_keys, inverse)
            or not (rejected is None or rejected.dtype == _I64)):
        return reference("infer_dedupe", xp, keys, set_keys, inverse, rejected)
    launch(FILE, f"hctr_infer_dedupe<{_KEY_CTYPE[keys.dtype]}>", keys.size,
           (xp.ascontiguousarray(keys), np.int64(keys.size), set_keys, np.int64(set_keys.size), inverse,
            NULL if rejected is None else rejected))


def _graph_arrays_ok(set_keys, set_values, set_miss, header, counters):
    return (set_keys.dtype in _KEY_CTYPE and set_values.dtype == _F32 and set_miss.dtype == _U8
            and header.dtype == _I64 and header.size >= 2 and counters.dtype == _I64 and counters.size >= 5
            and _contiguous(set_keys, set_values, set_miss, header, counters))


@kernel_op("infer_lookup")
def infer_lookup(xp, set_keys, cache_keys, cache_stamps, cache_values, index_keys, index_rows, ps_vectors,
                 default_value, sketch, header, set_values, set_miss, counters):
    check_index(index_keys, index_rows)
    cached = cache_keys is not None
    if not (_graph_arrays_ok(set_keys, set_values, set_miss, header, counters)
            and (not cached or _ok(cache_keys, cache_stamps, cache_values, set_keys))
            and _sketch_ok(sketch, set_keys) and index_keys.dtype == set_keys.dtype and index_rows.dtype == _I32
            and ps_vectors.dtype == _F32
            and _contiguous(index_keys, index_rows, ps_vectors)):
        return reference("infer_lookup", xp, set_keys, cache_keys, cache_stamps, cache_values, index_keys, index_rows,
                         ps_vectors, default_value, sketch, header, set_values, set_miss, counters)
    if sketch is not None:
        _halve(sketch, header[1:])
    size = set_keys.size
    launch_grid(FILE, f"hctr_infer_lookup<{_KEY_CTYPE[set_keys.dtype]}>",
                min(-(-size * 32 // BLOCK), _blocks(xp, 128)), BLOCK,
                (set_keys, np.int64(size), cache_keys if cached else NULL, cache_stamps if cached else NULL,
                 cache_values if cached else NULL, np.int64(cache_keys.size // WAYS if cached else 0), header,
                 index_keys, index_rows, np.int64(index_keys.size), ps_vectors if ps_vectors.size else NULL,
                 np.float32(default_value), NULL if sketch is None else sketch,
                 np.int64(0 if sketch is None else sketch.shape[1]), np.int32(set_values.shape[1]),
                 set_values, set_miss, counters))


@kernel_op("infer_insert")
def infer_insert(xp, set_keys, set_miss, set_values, first_counters, threshold, cache_keys, cache_stamps,
                 cache_values, sketch, header, counters, heads):
    size, num_sets = set_keys.size, cache_keys.size // WAYS
    if not (_graph_arrays_ok(set_keys, set_values, set_miss, header, counters)
            and _ok(cache_keys, cache_stamps, cache_values, set_keys) and _sketch_ok(sketch, set_keys)
            and first_counters.dtype == _I64 and _contiguous(first_counters, heads) and heads.dtype == _I64
            and heads.shape == (num_sets,)):
        return reference("infer_insert", xp, set_keys, set_miss, set_values, first_counters, threshold, cache_keys,
                         cache_stamps, cache_values, sketch, header, counters, heads)
    kt = _KEY_CTYPE[set_keys.dtype]
    chained = xp.empty(size, xp.int64)          # (P,) the next miss of the same set
    threshold = np.float64(threshold)
    launch(FILE, f"hctr_infer_link<{kt}>", size,
           (set_keys, set_miss, np.int64(size), np.int64(num_sets), first_counters, threshold, heads, chained))
    policy = CACHE_POLICY["lru" if sketch is None else "tinylfu"]
    try:
        launch_grid(FILE, f"hctr_infer_insert<{kt}, {policy}>", min(size, _blocks(xp, 32)), WAYS,
                    (set_keys, set_miss, set_values, np.int64(size), heads, chained, first_counters, threshold,
                     cache_keys, cache_stamps, cache_values, np.int64(num_sets), np.int32(set_values.shape[1]),
                     NULL if sketch is None else sketch, np.int64(0 if sketch is None else sketch.shape[1]), header,
                     counters))
    except BaseException:   # (the kernel's first compile, say): the linked chains must not outlive this call
        heads.fill(-1)
        raise
