"""The CuPy predict path: one CUDA graph per padded batch, no allocation and little Python per call.

``GraphPredictor(session).predict_chunk(dense, parts, n)`` gives the same predictions, cache contents
and statistics as ``InferenceSession``'s eager path (``EmbeddingCache.lookup`` + combine + forward).
Per padded batch (a bucket) it keeps

* a pinned host buffer and its device twin holding every input of a call: a header (per table the
  lookup stamp ``now`` and the sketch's halving flag), the row offsets and keys of each table (keys
  padded with the empty key, padding rows empty) and the dense features (padding rows zero); one
  host→device copy moves it;
* a ``CapturedCall`` (``backend/cuda/graphs.py``) of the device work: per table de-duplicate, look up
  (cache hit, else the parameter server's row read from pinned host memory -- so a miss is answered
  in the same call, from the source of truth), combine; the dense network; then the refresh, which
  inserts the misses into the cache when the first table's hit rate is below the threshold, so the
  next call finds them (``kernels/embedding_cache.cu``, "The predict graph's lookup");
* a pinned output buffer: the predictions and 5 counters per table, one device→host copy.

The parameter server's keys are copied to the device once (sorted, for a binary search), its vectors
to pinned host memory, which kernels read directly (unified addressing).
"""

from __future__ import annotations

import cupy
import numpy as np

from ..backend.cuda.loader import launch, launch_grid, multiprocessors
from ..embedding.combine import mean_row_scale
from .cache_ops import WAYS, empty_key

FILE = "embedding_cache.cu"
_CTYPE = {np.dtype(np.uint32): "unsigned int", np.dtype(np.int64): "long long"}
_H2D, _D2H = 1, 2             # cudaMemcpyKind
COUNTERS = 5                  # distinct keys, hits, unknown keys, insertions, replaced entries


def _pinned(nbytes):
    """A NumPy uint8 view of page-locked host memory (kept alive by the view's base)."""
    mem = cupy.cuda.alloc_pinned_memory(max(nbytes, 8))
    return np.frombuffer(mem, np.uint8, max(nbytes, 8))


class _Layout:
    """Byte offsets of named arrays in one buffer (each 16-byte aligned)."""

    def __init__(self):
        self.fields, self.size = {}, 0

    def add(self, name, dtype, shape):
        count = int(np.prod(shape))
        self.fields[name] = (self.size, np.dtype(dtype), shape)
        self.size += -(-count * np.dtype(dtype).itemsize // 16) * 16

    def views(self, buffer):
        """name -> array view of ``buffer`` (a NumPy or CuPy uint8 array)."""
        return {name: buffer[start:start + int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape)
                for name, (start, dtype, shape) in self.fields.items()}


class _TableState:
    """A table's parameter server copy for the graph: sorted keys on the device, vectors pinned."""

    def __init__(self, tab):
        ps = tab.ps
        self.tab = tab
        self.vec = ps.vec_size
        self.default = np.float32(ps.default_value)
        self.rows = ps.rows
        self.ps_keys = cupy.asarray(ps.keys) if ps.rows else cupy.zeros(1, ps.keys.dtype)
        host = _pinned(ps.vectors.nbytes)
        self.ps_vectors = host[:ps.vectors.nbytes].view(np.float32).reshape(ps.vectors.shape)
        self.ps_vectors[...] = ps.vectors
        self.ps_pointer = np.uint64(self.ps_vectors.ctypes.data)


class _Bucket:
    """The buffers and the captured device work of one padded batch size."""

    def __init__(self, predictor, batch):
        s = predictor.session
        self.p, self.batch = predictor, batch
        inputs = _Layout()
        inputs.add("header", np.int64, (len(s._tables), 2))
        for t, (spec, (_, slots, _)) in enumerate(zip(s.config.embeddings, s._tables)):
            inputs.add(f"offsets{t}", np.int64, (batch * slots + 1,))
            inputs.add(f"keys{t}", s.key_dtype, (batch * predictor.max_features[t],))
        inputs.add("dense", np.float32, (batch, s.dense_dim))
        self.inputs = inputs
        self.host_in = _pinned(inputs.size)
        self.dev_in = cupy.zeros(inputs.size, np.uint8)
        self.h = inputs.views(self.host_in)
        self.d = inputs.views(self.dev_in)
        for t in range(len(s._tables)):
            self.h[f"keys{t}"][...] = empty_key(s.key_dtype)
        self.h["dense"][...] = 0
        self.used = [0] * len(s._tables)      # keys staged per table by the last call
        self.rows = 0                         # samples staged by the last call
        outputs = _Layout()
        outputs.add("predictions", np.float32, (batch, s.label_dim))
        outputs.add("counters", np.int64, (len(s._tables), COUNTERS))
        self.outputs = outputs
        self.host_out = _pinned(outputs.size)
        self.dev_out = cupy.zeros(outputs.size, np.uint8)
        self.ho = outputs.views(self.host_out)
        self.do = outputs.views(self.dev_out)
        self.net = s._network(batch)
        self.call = s.backend.graph(self._device_work, f"the predict graph of batch {batch}")

    # -- device work (captured) ---------------------------------------------------------------

    def _device_work(self):
        p, s, d = self.p, self.p.session, self.d
        ops, xp = s.backend.ops, cupy
        cache = s.embedding_cache
        counters = self.do["counters"]
        counters.fill(0)
        grid = 4 * multiprocessors(xp.cuda.runtime.getDevice())
        feed = {s.config.data.dense.top: d["dense"]}
        sets = []
        for t, (spec, (_, slots, combiner), state) in enumerate(zip(s.config.embeddings, s._tables, p.tables)):
            tab, kt = state.tab, _CTYPE[s.key_dtype]
            keys = d[f"keys{t}"]
            size = 1 << max(6, int(2 * keys.size - 1).bit_length())    # open-addressing set, half full at most
            set_keys = xp.full(size, empty_key(s.key_dtype), s.key_dtype)
            inverse = xp.empty(keys.size, xp.int64)
            launch(FILE, f"hctr_infer_dedupe<{kt}>", keys.size, (keys, np.int64(keys.size), set_keys, np.int64(size),
                                                                    inverse))
            header = d["header"][t]
            if tab.sketch is not None:
                launch_grid(FILE, "hctr_infer_sketch_halve", grid, 256, (tab.sketch, np.int64(tab.sketch.size),
                                                                          header[1:]))
            set_values = xp.empty((size, state.vec), xp.float32)
            set_miss = xp.empty(size, xp.uint8)
            cached = tab.num_sets > 0
            null = np.uint64(0)
            launch_grid(FILE, f"hctr_infer_lookup<{kt}>", min(-(-size * 32 // 256), 32 * grid), 256,
                        (set_keys, np.int64(size), tab.keys if cached else null, tab.stamps if cached else null,
                         tab.values if cached else null, np.int64(tab.num_sets), header[0:],
                         state.ps_keys, np.int64(state.rows), state.ps_pointer, state.default,
                         tab.sketch if tab.sketch is not None else null,
                         np.int64(tab.sketch.shape[1] if tab.sketch is not None else 0), np.int32(state.vec),
                         set_values, set_miss, counters[t]))
            offsets = d[f"offsets{t}"]
            scale = mean_row_scale(xp, offsets[1:] - offsets[:-1]) if combiner == "mean" else None
            out = ops.embedding_combine_fwd(set_values, inverse, offsets, scale, s.compute_dtype)
            feed[spec.top] = out.reshape(self.batch, slots, spec.embedding_vec_size)   # (b, S_t, E_t)
            sets.append((set_keys, set_miss, set_values, size))
        preds = self.net.predict(feed)
        self.do["predictions"][...] = preds.reshape(self.do["predictions"].shape)
        threshold = np.float64(cache.hit_rate_threshold)
        for t, (state, (set_keys, set_miss, set_values, size)) in enumerate(zip(p.tables, sets)):
            tab, kt = state.tab, _CTYPE[s.key_dtype]
            if not (cache.enabled and tab.num_sets):
                continue
            heads = xp.full(tab.num_sets, -1, xp.int64)
            chained = xp.empty(size, xp.int64)
            launch(FILE, f"hctr_infer_link<{kt}>", size, (set_keys, set_miss, np.int64(size), np.int64(tab.num_sets),
                                                          counters[0], threshold, heads, chained))
            null = np.uint64(0)
            launch_grid(FILE, f"hctr_infer_insert<{kt}>", min(size, 8 * grid), WAYS,
                        (set_keys, set_miss, set_values, np.int64(size), heads, chained, counters[0], threshold,
                         tab.keys, tab.stamps, tab.values, np.int64(tab.num_sets), np.int32(state.vec),
                         tab.sketch if tab.sketch is not None else null,
                         np.int64(tab.sketch.shape[1] if tab.sketch is not None else 0), d["header"][t, 0:],
                         counters[t]))

    # -- host side ----------------------------------------------------------------------------

    def run(self, dense, parts, n):
        """Stage one chunk, launch, read back: (n, L) float32 predictions; updates the cache's statistics."""
        s, h = self.p.session, self.h
        tables = self.p.tables
        header = h["header"]
        for t, ((keys, offsets), state) in enumerate(zip(parts, tables)):
            tab, k = state.tab, keys.size
            header[t, 0] = tab.now + 1 if k else tab.now
            header[t, 1] = bool(k) and tab.sketch is not None and tab.counted >= tab.sample_size
            staged = h[f"keys{t}"]
            staged[:k] = keys
            if self.used[t] > k:
                staged[k:self.used[t]] = empty_key(s.key_dtype)
            self.used[t] = k
            rows = offsets.size
            staged_offsets = h[f"offsets{t}"]
            staged_offsets[:rows] = offsets
            staged_offsets[rows:] = k
        staged_dense = h["dense"]
        staged_dense[:n] = dense
        if self.rows > n:
            staged_dense[n:self.rows] = 0
        self.rows = n
        stream = cupy.cuda.get_current_stream()
        cupy.cuda.runtime.memcpyAsync(self.dev_in.data.ptr, self.host_in.ctypes.data, self.inputs.size, _H2D,
                                      stream.ptr)
        self.call()
        cupy.cuda.runtime.memcpyAsync(self.host_out.ctypes.data, self.dev_out.data.ptr, self.outputs.size, _D2H,
                                      stream.ptr)
        stream.synchronize()
        self._account([keys.size for keys, _ in parts])
        s.embedding_cache._publish()
        return self.ho["predictions"][:n].copy()

    def _account(self, key_counts):
        """The eager path's statistics (EmbeddingCache.lookup) from this call's counters."""
        cache = self.p.session.embedding_cache
        counters = self.ho["counters"]
        first = 1.0
        for t, (k, state) in enumerate(zip(key_counts, self.p.tables)):
            if not k:
                continue
            tab = state.tab
            distinct, hits, unknown = (int(c) for c in counters[t, :3])
            tab.now += 1
            if tab.sketch is not None:
                tab.age(distinct)
            rate = 1.0 - (distinct - hits) / distinct
            tab.calls += 1
            tab.lookups += distinct
            tab.hits += hits
            tab.unknown_keys += unknown
            tab.last_hit_rate = rate
            if t == 0:
                first = rate
        if cache.enabled and first < cache.hit_rate_threshold:
            for t, (k, state) in enumerate(zip(key_counts, self.p.tables)):
                distinct, hits, _, inserted, replaced = (int(c) for c in counters[t])
                if k and distinct > hits and state.tab.num_sets:
                    tab = state.tab
                    tab.insertions += inserted
                    tab.evictions += replaced
                    tab.occupied += inserted - replaced
                    tab.refreshes += 1


class GraphPredictor:
    """The graph path of one ``InferenceSession`` on the CuPy backend (module docstring)."""

    def __init__(self, session):
        self.session = session
        cfg = session.config
        self.max_features = [cfg.sparse_input(e.bottom).max_feature_num_per_sample for e in cfg.embeddings]
        self.tables = [_TableState(tab) for tab in session.embedding_cache._tables]
        self.buckets = {}

    def fits(self, parts, n):
        """Whether each table's keys fit its staging buffer (n × the table's max_feature_num_per_sample)."""
        return all(keys.size <= n * limit for (keys, _), limit in zip(parts, self.max_features))

    def predict_chunk(self, dense, parts, n):
        batch = self.session._padded(n)
        bucket = self.buckets.get(batch)
        if bucket is None:
            bucket = self.buckets[batch] = _Bucket(self, batch)
        return bucket.run(dense, parts, n)
