"""CUDA wrappers of the embedding cache's operations (kernels/embedding_cache.cu), registered with
``@kernel_op`` under the names and signatures of the references in ``cache_ops``. Importing this
module needs CuPy; ``EmbeddingCache`` imports it when it runs on the CuPy backend."""

from __future__ import annotations

import numpy as np

from ..backend.cuda.common import reference
from ..backend.cuda.loader import launch, launch_grid, multiprocessors
from ..backend.ops import kernel_op
from .cache_ops import SKETCH_DEPTH, WAYS, empty_key

FILE = "embedding_cache.cu"
_KEY_CTYPE = {np.dtype(np.uint32): "unsigned int", np.dtype(np.int64): "long long"}
_F32, _I64 = np.dtype(np.float32), np.dtype(np.int64)


def _ok(cache_keys, cache_stamps, cache_values, keys):
    return (cache_keys.dtype in _KEY_CTYPE and keys.dtype == cache_keys.dtype and cache_stamps.dtype == _I64
            and cache_values.dtype == _F32 and all(a.flags.c_contiguous for a in (cache_keys, cache_stamps,
                                                                                   cache_values)))


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
    if not _ok(cache_keys, cache_stamps, cache_values, keys) or values.dtype != _F32:
        return reference("embedding_cache_insert", xp, cache_keys, cache_stamps, cache_values, keys, values, now)
    n = keys.size
    slots = xp.full(n, -1, dtype=xp.int64)
    evicted = xp.full(n, empty_key(cache_keys.dtype), dtype=cache_keys.dtype)
    if n == 0:
        return slots, evicted
    keys = xp.ascontiguousarray(keys)
    order, offsets, group_sets = _groups(xp, keys, cache_keys.size // WAYS)
    device = xp.cuda.runtime.getDevice()
    launch_grid(FILE, f"hctr_embedding_cache_insert<{_KEY_CTYPE[keys.dtype]}>",
                min(group_sets.size, 32 * multiprocessors(device)), WAYS,
                (cache_keys, cache_stamps, cache_values, np.int32(cache_values.shape[1]), keys,
                 xp.ascontiguousarray(values), order, offsets, group_sets, np.int64(group_sets.size),
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


def _sketch_ok(sketch, keys):
    return (sketch.dtype == np.uint32 and sketch.ndim == 2 and sketch.shape[0] == SKETCH_DEPTH
            and sketch.flags.c_contiguous and keys.dtype in _KEY_CTYPE)


@kernel_op("embedding_cache_sketch_update")
def embedding_cache_sketch_update(xp, sketch, keys, halve):
    if not _sketch_ok(sketch, keys):
        return reference("embedding_cache_sketch_update", xp, sketch, keys, halve)
    if halve:
        launch(FILE, "hctr_embedding_cache_sketch_halve", sketch.size, (sketch, np.int64(sketch.size)))
    launch(FILE, f"hctr_embedding_cache_sketch_update<{_KEY_CTYPE[keys.dtype]}>", keys.size,
           (sketch, np.int64(sketch.shape[1]), xp.ascontiguousarray(keys), np.int64(keys.size)))


@kernel_op("embedding_cache_frequency")
def embedding_cache_frequency(xp, sketch, keys):
    if not _sketch_ok(sketch, keys):
        return reference("embedding_cache_frequency", xp, sketch, keys)
    out = xp.zeros(keys.size, dtype=xp.uint32)
    launch(FILE, f"hctr_embedding_cache_frequency<{_KEY_CTYPE[keys.dtype]}>", keys.size,
           (sketch, np.int64(sketch.shape[1]), xp.ascontiguousarray(keys), np.int64(keys.size), out))
    return out


@kernel_op("embedding_cache_insert_tinylfu")
def embedding_cache_insert_tinylfu(xp, cache_keys, cache_stamps, cache_values, sketch, keys, values, now):
    if not _ok(cache_keys, cache_stamps, cache_values, keys) or values.dtype != _F32 or not _sketch_ok(sketch, keys):
        return reference("embedding_cache_insert_tinylfu", xp, cache_keys, cache_stamps, cache_values, sketch, keys,
                         values, now)
    n = keys.size
    slots = xp.full(n, -1, dtype=xp.int64)
    evicted = xp.full(n, empty_key(cache_keys.dtype), dtype=cache_keys.dtype)
    if n == 0:
        return slots, evicted
    keys = xp.ascontiguousarray(keys)
    order, offsets, group_sets = _groups(xp, keys, cache_keys.size // WAYS)
    freqs = embedding_cache_frequency(xp, sketch, keys)
    device = xp.cuda.runtime.getDevice()
    launch_grid(FILE, f"hctr_embedding_cache_insert_tinylfu<{_KEY_CTYPE[keys.dtype]}>",
                min(group_sets.size, 32 * multiprocessors(device)), WAYS,
                (cache_keys, cache_stamps, cache_values, np.int32(cache_values.shape[1]), sketch,
                 np.int64(sketch.shape[1]), keys, freqs, xp.ascontiguousarray(values), order, offsets, group_sets,
                 np.int64(group_sets.size), np.int64(now), slots, evicted))
    return slots, evicted
