"""The embedding cache of one model on one device (HugeCTR spec 9.3), in front of the parameter server.

Per embedding table, a set-associative cache of ``sets × 64`` entries (``cache_ops``) with
``sets = floor(floor(cache_size_percentage × table rows) / 64)`` (at least one set). A lookup gets
one key array per table; per table it

1. de-duplicates the keys (``unique``, sorted ascending),
2. queries the cache (hits get the call's stamp, so they become most recently used),
3. fetches the misses from the parameter server (unknown keys: the table's default vector),
4. measures the hit rate, 1 − misses / distinct keys (1.0 when the table has no keys this call).

After every table is looked up, if the cache is enabled and the **first** table's hit rate is below
the config's ``hit_rate_threshold``, the misses of every table are inserted (LRU eviction within a
set), as HugeCTR's refresh does. Statistics per table are kept (``stats()``) and published as
``hugectr_lab.events.CacheStats`` on ``cache.events`` after every lookup.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from ..backend import get_backend
from ..events import CacheStats, EventBus
from .cache_ops import SKETCH_DEPTH, WAYS, empty_key
from .parameter_server import InferenceConfigError, ParameterServer, load_inference_config


@dataclass
class TableLookup:
    """One table's part of a lookup: the distinct keys' vectors and where each key occurrence points."""

    values: object     # (U, E) float32 on the backend, one row per distinct key
    inverse: object    # (K,) int64 on the backend: row of ``values`` for each key occurrence
    hit_rate: float


POLICIES = ("lru", "tinylfu")
SAMPLE_FACTOR = 64


def sketch_width(rows):
    """Columns of a table's count-min sketch: the power of two at or above its rows (at least 64), so
    a column holds about one key of the table and the minimum of 4 rows is rarely inflated."""
    return 1 << max(6, int(rows - 1).bit_length())


class _Table:
    """Cache arrays and counters of one embedding table."""

    def __init__(self, xp, ps_table, num_sets, policy):
        self.ps = ps_table
        self.num_sets = num_sets
        capacity = num_sets * WAYS
        dtype = ps_table.keys.dtype
        self.keys = xp.full(capacity, empty_key(dtype), dtype=dtype) if num_sets else None   # (C,)
        self.stamps = xp.zeros(capacity, dtype=xp.int64) if num_sets else None              # (C,)
        self.values = xp.zeros((capacity, ps_table.vec_size), dtype=xp.float32) if num_sets else None  # (C, E)
        frequency = num_sets and policy == "tinylfu"
        self.sketch = xp.zeros((SKETCH_DEPTH, sketch_width(ps_table.rows)), xp.uint32) if frequency else None  # (4, W)
        # Aging: every counter halves once the sketch has counted SAMPLE_FACTOR × capacity keys since.
        self.sample_size = SAMPLE_FACTOR * capacity
        self.counted = 0
        self.now = 0
        self.calls = self.lookups = self.hits = self.insertions = self.evictions = 0
        self.occupied = self.refreshes = self.unknown_keys = 0
        self.last_hit_rate = 1.0

    @property
    def capacity(self):
        return self.num_sets * WAYS

    @property
    def halving_due(self):
        """Whether the sketch halves before it counts the next call's keys (``sample_size`` counted)."""
        return self.counted >= self.sample_size

    def age(self, keys):
        """Account ``keys`` counted keys; True when the sketch halves first (``halving_due``)."""
        halve = self.halving_due
        self.counted = (self.counted // 2 if halve else self.counted) + keys
        return halve


class EmbeddingCache:
    """``CreateEmbeddingCache(parameter_server, cuda_dev_id, use_gpu_embedding_cache, cache_size_percentage,
    model_config_path, model_name, i64_input_key)`` (``EmbeddingCacheInterface`` in HugeCTR).

    ``backend``: "auto" (default; ``HUGECTR_LAB_BACKEND`` overrides), "numpy", "cupy" or a Backend:
    where the cache's arrays live and its kernels run. With ``use_gpu_embedding_cache=False`` there is
    no cache: every lookup goes to the parameter server (statistics still count lookups).
    ``cache_policy``: "lru" (HugeCTR's) or "tinylfu" (frequency-aware admission and eviction); None
    takes the config's ``inference.cache_policy`` (default "lru").
    """

    def __init__(self, parameter_server, cuda_dev_id, use_gpu_embedding_cache, cache_size_percentage,
                 model_config_path, model_name, i64_input_key, *, backend=None, cache_policy=None):
        what = "CreateEmbeddingCache"
        if not isinstance(parameter_server, ParameterServer):
            raise TypeError(f"{what}(parameter_server=...) needs the object CreateParameterServer returned, "
                            f"got {type(parameter_server).__name__}")
        if not isinstance(cuda_dev_id, (int, np.integer)) or isinstance(cuda_dev_id, bool) or cuda_dev_id < 0:
            raise ValueError(f"{what}(cuda_dev_id=...) must be a device index >= 0, got {cuda_dev_id!r}")
        if not isinstance(use_gpu_embedding_cache, (bool, np.bool_)):
            raise TypeError(f"{what}(use_gpu_embedding_cache=...) must be True or False, "
                            f"got {use_gpu_embedding_cache!r}")
        if (not isinstance(cache_size_percentage, (int, float, np.floating, np.integer))
                or isinstance(cache_size_percentage, bool)
                or not 0.0 <= float(cache_size_percentage) <= 1.0):
            raise ValueError(f"{what}(cache_size_percentage=...) must be a fraction in [0, 1] of each table's "
                             f"rows (e.g. 0.2 for 20 %), got {cache_size_percentage!r}")
        if bool(i64_input_key) != parameter_server.i64_input_key or not isinstance(i64_input_key, (bool, np.bool_)):
            raise InferenceConfigError(f"{what}(i64_input_key={i64_input_key!r}) must match the parameter server's "
                                       f"i64_input_key={parameter_server.i64_input_key}")
        self.parameter_server = parameter_server
        self.device_id = int(cuda_dev_id)
        self.enabled = bool(use_gpu_embedding_cache)
        self.cache_size_percentage = float(cache_size_percentage)
        self.model_name = model_name
        self.i64_input_key = bool(i64_input_key)
        self.backend = get_backend(backend, [self.device_id])
        model = parameter_server.model(model_name)
        cfg = load_inference_config(model_config_path, what)
        _check_same_tables(cfg, model, model_config_path, model_name)
        self.config = cfg
        self.config_path = str(model_config_path)
        self.hit_rate_threshold = cfg.inference.hit_rate_threshold
        self.policy = cfg.inference.cache_policy if cache_policy is None else cache_policy
        if self.policy not in POLICIES:
            raise ValueError(f"{what}(cache_policy=...) must be one of {', '.join(map(repr, POLICIES))}, "
                             f"got {cache_policy!r}")
        self.events = EventBus()
        # One lookup (or one predict of a session over this cache) at a time: they change the cache.
        self.lock = threading.RLock()
        if self.backend.name == "cupy":
            from . import cuda_cache  # noqa: F401  (registers the cache kernels under the reference names)
        with self.backend.device(self.device_id):
            self._tables = [_Table(self.backend.xp, table, self._num_sets(table.rows) if self.enabled else 0,
                                   self.policy) for table in model.tables]

    def _num_sets(self, rows):
        # HugeCTR: floor(floor(percentage * rows) / 64) sets; we keep at least one.
        return max(1, math.floor(math.floor(self.cache_size_percentage * rows) / WAYS))

    @property
    def num_tables(self):
        return len(self._tables)

    def capacity(self, table_id=0):
        """Entries (sets × 64) of table ``table_id``'s cache; 0 when the cache is disabled."""
        return self._tables[table_id].capacity

    # ---- lookup ---------------------------------------------------------------------------------

    def lookup(self, table_keys):
        """``table_keys``: one (K_t,) key array per table (host or backend). Returns one ``TableLookup``
        per table and refreshes the cache when the first table's hit rate is below the threshold."""
        if len(table_keys) != len(self._tables):
            raise ValueError(f"lookup: got key arrays for {len(table_keys)} tables, model {self.model_name!r} "
                             f"has {len(self._tables)}")
        backend, xp, ops = self.backend, self.backend.xp, self.backend.ops
        results, pending = [], []
        with self.lock, backend.device(self.device_id):
            for tab, keys in zip(self._tables, table_keys):
                keys = backend.asarray(keys, dtype=tab.ps.keys.dtype).reshape(-1)
                uniq, inverse = xp.unique(keys, return_inverse=True)
                inverse = inverse.reshape(-1).astype(xp.int64, copy=False)
                if uniq.size == 0:
                    results.append(TableLookup(xp.zeros((0, tab.ps.vec_size), xp.float32), inverse, 1.0))
                    pending.append(None)
                    continue
                tab.now += 1
                if tab.num_sets and tab.occupied:
                    values, slots = ops.embedding_cache_query(tab.keys, tab.stamps, tab.values, uniq, tab.now)
                    miss = xp.flatnonzero(slots < 0)
                    miss_keys = uniq[miss]
                else:
                    values, miss, miss_keys = None, None, uniq
                if tab.sketch is not None:
                    ops.embedding_cache_sketch_update(tab.sketch, uniq, tab.age(int(uniq.size)))
                vectors, found = tab.ps.look_up(backend.to_host(miss_keys))
                fetched = backend.asarray(vectors)
                if values is None:
                    values = fetched
                elif miss.size:
                    values[miss] = fetched
                hit_rate = 1.0 - miss_keys.size / uniq.size
                tab.calls += 1
                tab.lookups += int(uniq.size)
                tab.hits += int(uniq.size - miss_keys.size)
                tab.unknown_keys += int(found.size - np.count_nonzero(found))
                tab.last_hit_rate = hit_rate
                results.append(TableLookup(values, inverse, hit_rate))
                pending.append((miss_keys, fetched))
            if self.enabled and results and results[0].hit_rate < self.hit_rate_threshold:
                for tab, item in zip(self._tables, pending):
                    if item is not None and item[0].size:
                        self._insert(tab, *item)
            self._publish()
        return results

    def _publish(self):
        if self.events._subscribers:
            for event in self.stats():
                self.events.publish(event)

    def _insert(self, tab, keys, values):
        ops = self.backend.ops
        if tab.sketch is None:
            slots, evicted = ops.embedding_cache_insert(tab.keys, tab.stamps, tab.values, keys, values, tab.now)
        else:
            slots, evicted = ops.embedding_cache_insert_tinylfu(tab.keys, tab.stamps, tab.values, tab.sketch, keys,
                                                                values, tab.now)
        inserted = int((slots >= 0).sum())
        replaced = int(((slots >= 0) & (evicted != empty_key(tab.keys.dtype))).sum())
        tab.insertions += inserted
        tab.evictions += replaced
        tab.occupied += inserted - replaced
        tab.refreshes += 1

    # ---- statistics -----------------------------------------------------------------------------

    def stats(self):
        """One ``CacheStats`` per table (current counters)."""
        return tuple(CacheStats(
            model=self.model_name, table=t, calls=tab.calls, last_hit_rate=float(tab.last_hit_rate),
            hit_rate=tab.hits / tab.lookups if tab.lookups else 1.0, lookups=tab.lookups, hits=tab.hits,
            insertions=tab.insertions, evictions=tab.evictions, occupied=tab.occupied, capacity=tab.capacity,
            refreshes=tab.refreshes, unknown_keys=tab.unknown_keys, enabled=self.enabled)
            for t, tab in enumerate(self._tables))

    def reset_stats(self):
        """Zero the counters (the cached entries stay)."""
        for tab in self._tables:
            tab.calls = tab.lookups = tab.hits = tab.insertions = tab.evictions = 0
            tab.refreshes = tab.unknown_keys = 0
            tab.last_hit_rate = 1.0

    def cached_keys(self, table_id=0):
        """The keys table ``table_id``'s cache holds now, ascending (host array)."""
        tab = self._tables[table_id]
        if not tab.num_sets:
            return np.zeros(0, tab.ps.keys.dtype)
        keys = self.backend.to_host(tab.keys)
        return np.sort(keys[keys != empty_key(keys.dtype)])

    def __repr__(self):
        state = (", ".join(f"table {t}: {tab.occupied}/{tab.capacity}" for t, tab in enumerate(self._tables))
                 if self.enabled else "disabled")
        return f"<EmbeddingCache {self.model_name!r} on {self.backend.name}:{self.device_id} ({state})>"


def _check_same_tables(cfg, model, config_path, model_name):
    """The cache's config and the parameter server's model must describe the same tables."""
    n_files, n_inputs, n_emb = len(cfg.inference.sparse_model_files), len(cfg.data.sparse), len(cfg.embeddings)
    if not n_files == n_inputs == n_emb:
        raise InferenceConfigError(f"{config_path}: inference.sparse_model_file names {n_files} files, the Data layer "
                                   f"has {n_inputs} sparse inputs and there are {n_emb} embedding layers; they "
                                   "must be equal (one table per sparse input)")
    if len(model.tables) != n_emb or any(t.vec_size != e.embedding_vec_size
                                         for t, e in zip(model.tables, cfg.embeddings)):
        raise InferenceConfigError(
            f"{config_path}: its embeddings (vec sizes {[e.embedding_vec_size for e in cfg.embeddings]}) do not match "
            f"model {model_name!r} of the parameter server (vec sizes {[t.vec_size for t in model.tables]}, from "
            f"{model.config_path})")
