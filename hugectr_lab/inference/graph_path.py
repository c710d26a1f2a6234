"""The captured predict path: one CUDA graph per padded batch, no allocation and little Python per call.

``GraphPredictor(session).predict_chunk(dense, parts, n)`` gives the same predictions, cache contents
and statistics as ``InferenceSession``'s eager path (``EmbeddingCache.lookup`` + combine + forward).
On CuPy (``inference.cuda_graph``) each bucket's device work is replayed from a CUDA graph; on NumPy
the same code runs the operations' references directly, which is how the CPU tests check the
references, the staging and the accounting against the eager path.

Per padded batch (a bucket) it keeps

* a staging buffer (pinned host memory on CuPy) and its device twin holding every input of a call: a
  header per table (the lookup stamp ``now``, the sketch's halving flag, the key count), the keys of each
  table (padded with the empty key), the dense features (padding rows zero), and last the row offsets of
  each table (padding rows empty, one extra row holding the padding keys, dropped after the combiner); one
  host→device copy moves it (none on NumPy, where the two are one array);
* the device work (``backend.graph``, ``backend/cuda/graphs.py``), its first node that copy and its last
  the outputs' copy, so a call launches one graph: every table's ``infer_begin`` (its de-duplication set
  emptied; its row offsets in order and inside the keys, no key the reserved one, the dense features
  finite, else the call is rejected: no key is taken), then per table ``infer_dedupe``, ``infer_lookup``
  (a cache hit, else the parameter server's row, found through
  ``ps_index`` -- on CuPy read from page-locked host memory -- so a miss is answered in the same call,
  from the source of truth) and the combiner; then the dense network and, beside it on a side stream
  (a parallel branch of the graph), per table ``infer_insert``, the refresh, so the next call finds the
  misses (``graph_ops``, ``kernels/embedding_cache.cu``);
* an output buffer: the predictions, the 5 counters of each table and the rejection flag (the last two
  zeroed by one fill at the start of the device work), one device→host copy.

A bucket has two variants of its device work, each captured when first used: the general one, and the
one-hot one for calls whose every row holds one key (as the Criteo samples' do; checked from
``ONE_HOT_MIN_ROWS`` rows, where the upload it saves outweighs the host's check): its copy stops before
the row offsets, and it reads constant ones (0, 1, 2, ..., each padding row one padding key, which
combines to the zero vector an empty row gives).

What keeps a replay equal to a call: Python writes every per-call value into the staging buffer
before the copy and reads results only after the stream is synchronised, never inside the device
work; every array the graph uses outside its own memory pool (staging, outputs, the cache's arrays,
the parameter server's copies) is allocated once, only ever written in place, and held for as long as
the graph lives -- a cache whose arrays were replaced drops its graphs (``_TableState.current``).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..embedding.combine import mean_row_scale
from .cache_ops import empty_key
from .graph_ops import COUNTERS, hit_rate, hit_rate_below, ps_index, set_size


# Rows ((sample, slot) pairs) from which a call is checked for one-hot rows. The host's comparison with
# 0, 1, 2, ... costs about 1.5x its copy of the offsets into the staging buffer, which a one-hot call saves
# along with their upload (8 bytes a row): a gain only where the upload is long (DCN: from batch 158).
ONE_HOT_MIN_ROWS = 4096


def _pinned(nbytes):
    """A NumPy uint8 array in page-locked host memory (kept alive by the array's base). It comes from
    CuPy's pinned memory pool and may hold what an earlier user of the block wrote."""
    import cupy

    mem = cupy.cuda.alloc_pinned_memory(max(nbytes, 8))
    return np.frombuffer(mem, np.uint8, max(nbytes, 8))


def mapped_copy(array):
    """A CuPy array over a page-locked host copy of the NumPy ``array``, which kernels read over the bus
    (the parameter server's vectors: host memory, as HugeCTR keeps them, yet no copy call per miss)."""
    import cupy

    host = _pinned(array.nbytes)[:array.nbytes].view(array.dtype).reshape(array.shape)
    host[...] = array
    attributes = cupy.cuda.runtime.pointerGetAttributes(host.ctypes.data)
    if not attributes.devicePointer:
        raise RuntimeError("page-locked host memory is not mapped into the device's address space")
    memory = cupy.cuda.UnownedMemory(attributes.devicePointer, max(host.nbytes, 8), host,
                                     cupy.cuda.runtime.getDevice())
    return cupy.ndarray(host.shape, host.dtype, cupy.cuda.MemoryPointer(memory, 0))


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


class _Staging:
    """A host buffer and its device twin, one copy each way: pinned memory and a device array on CuPy,
    one NumPy array for both on NumPy."""

    def __init__(self, backend, layout):
        self.layout, self.cuda = layout, backend.name == "cupy"
        self.host = _pinned(layout.size) if self.cuda else np.empty(max(layout.size, 8), np.uint8)
        self.host.fill(0)   # padding rows' dense features start zero (the pool's blocks are not)
        self.device = backend.xp.zeros(self.host.size, np.uint8) if self.cuda else self.host
        self.h, self.d = layout.views(self.host), layout.views(self.device)

    def upload(self, stream, nbytes=None):
        """The host buffer's first ``nbytes`` (all of it: None) to the device."""
        if self.cuda:
            import cupy
            runtime = cupy.cuda.runtime
            runtime.memcpyAsync(self.device.data.ptr, self.host.ctypes.data,
                                self.layout.size if nbytes is None else nbytes, runtime.memcpyHostToDevice,
                                stream.ptr)

    def download(self, stream):
        if self.cuda:
            import cupy
            runtime = cupy.cuda.runtime
            runtime.memcpyAsync(self.host.ctypes.data, self.device.data.ptr, self.layout.size,
                                runtime.memcpyDeviceToHost, stream.ptr)


class _TableState:
    """A table's parameter server for the graph (a key -> row index on the device, ``graph_ops.ps_index``;
    vectors on CuPy in pinned host memory, mapped for the kernels) and the cache arrays its graphs were
    captured with."""

    def __init__(self, backend, tab):
        ps = tab.ps
        self.tab = tab
        self.vec = ps.vec_size
        self.default = float(ps.default_value)
        self.index = ps_index(backend.xp, backend.ops, backend.asarray(ps.keys))   # ((Q,) keys, (Q,) rows)
        # (R, E) float32; on CuPy read over the bus
        self.ps_vectors = mapped_copy(ps.vectors) if backend.name == "cupy" else ps.vectors
        self.heads = backend.xp.full(tab.num_sets, -1, np.int64)   # (num_sets,) infer_insert's scratch, kept -1
        self.arrays = self.cache_arrays()

    def cache_arrays(self):
        tab = self.tab
        return (tab.keys, tab.stamps, tab.values, tab.sketch)

    def current(self):
        """Whether the cache still holds the arrays the graphs write (it never replaces them today)."""
        return all(a is b for a, b in zip(self.arrays, self.cache_arrays()))


class _Bucket:
    """The buffers and the device work of one padded batch size."""

    def __init__(self, predictor, batch):
        s = predictor.session
        self.p, self.batch = predictor, batch
        inputs = _Layout()
        inputs.add("header", np.int64, (len(s._tables), 3))   # per table: now, halving flag, keys
        for t in range(len(s._tables)):
            inputs.add(f"keys{t}", s.key_dtype, (batch * predictor.max_features[t],))
        inputs.add("dense", np.float32, (batch, s.dense_dim))
        for t, (_, slots, _) in enumerate(s._tables):   # last: a one-hot call does not upload them
            # one row more than the batch's: the padding keys' row (their inverse is -1), so the CSR covers every key
            inputs.add(f"offsets{t}", np.int64, (batch * slots + 2,))
        outputs = _Layout()
        outputs.add("predictions", np.float32, (batch, s.label_dim))
        # per table the 5 counters, then the flag infer_begin sets: one array, so one fill clears both
        outputs.add("status", np.int64, (len(s._tables) * len(COUNTERS) + 1,))
        self.inputs, self.outputs = _Staging(s.backend, inputs), _Staging(s.backend, outputs)
        self.h = self.inputs.h
        for t in range(len(s._tables)):
            self.h[f"keys{t}"][...] = empty_key(s.key_dtype)
            self.h[f"offsets{t}"][-1] = self.h[f"keys{t}"].size    # the padding keys' row ends at the last key
        self.used = [0] * len(s._tables)      # keys staged per table by the last call
        self.rows = 0                         # samples staged by the last call
        self.net = s._network(batch)
        self.calls = {}   # one_hot -> the device work (a CapturedCall on CuPy), made on first use
        if self.inputs.cuda:   # the refresh's stream and the events that fork and join it (_branch)
            import cupy
            self._side = cupy.cuda.Stream(non_blocking=True)
            self._fork, self._join = (cupy.cuda.Event(disable_timing=True) for _ in range(2))
        self.one_hot = False
        # One-hot calls (every row of every table holds one key, as in the Criteo samples) upload no offsets: the
        # graph reads constant ones, every row one key (a padding row one padding key: a zero vector, as empty).
        # Possible where a table's keys have room for one per slot.
        self.one_hot_offsets = None
        if all(slots <= limit for (_, slots, _), limit in zip(s._tables, predictor.max_features)):
            xp = s.backend.xp
            self.one_hot_offsets = [xp.asarray(np.append(np.arange(batch * slots + 1), batch * limit))
                                    for (_, slots, _), limit in zip(s._tables, predictor.max_features)]
            self.one_hot_bytes = inputs.fields["offsets0"][0]
            self.arange = np.arange(batch * max(slots for _, slots, _ in s._tables) + 1)

    # -- device work (captured on CuPy) -------------------------------------------------------

    def _device_work(self, one_hot):
        p, s, d, out = self.p, self.p.session, self.inputs.d, self.outputs.d
        ops, xp = s.backend.ops, s.backend.xp
        cache = s.embedding_cache
        stream = self._stream()   # the capture stream while captured: the copies become graph nodes
        self.inputs.upload(stream, self.one_hot_bytes if one_hot else None)
        offsets = self.one_hot_offsets if one_hot else [d[f"offsets{t}"] for t in range(len(p.tables))]
        status = out["status"]
        status.fill(0)
        counters, rejected = status[:-1].reshape(len(p.tables), len(COUNTERS)), status[-1:]
        feed = {s.config.data.dense.top: d["dense"]}
        set_keys_of = [xp.empty(set_size(d[f"keys{t}"].size), s.key_dtype) for t in range(len(p.tables))]  # (P_t,)
        for t, set_keys in enumerate(set_keys_of):   # every table's inputs checked before any key is taken
            ops.infer_begin(offsets[t], d[f"keys{t}"], None if t else d["dense"], d["header"], t, rejected, set_keys)
        sets = []
        for t, (spec, (_, slots, combiner), state) in enumerate(zip(s.config.embeddings, s._tables, p.tables)):
            tab, keys, header, set_keys = state.tab, d[f"keys{t}"], d["header"][t], set_keys_of[t]
            inverse = xp.empty(keys.size, xp.int64)           # (K,)
            ops.infer_dedupe(keys, set_keys, inverse, rejected)
            set_values = xp.empty((set_keys.size, state.vec), xp.float32)   # (P, E)
            set_miss = xp.empty(set_keys.size, xp.uint8)                    # (P,)
            ops.infer_lookup(set_keys, tab.keys, tab.stamps, tab.values, *state.index, state.ps_vectors,
                             state.default, tab.sketch, header, set_values, set_miss, counters[t])
            rows = offsets[t]
            scale = mean_row_scale(xp, rows[1:] - rows[:-1]) if combiner == "mean" else None
            combined = ops.embedding_combine_fwd(set_values, inverse, rows, scale, s.compute_dtype)[:-1]
            feed[spec.top] = combined.reshape(self.batch, slots, spec.embedding_vec_size)   # (b, S_t, E_t)
            sets.append((set_keys, set_miss, set_values))
        # The refresh reads only the lookups' results and writes only the cache and its counters: on CuPy it
        # runs on a side stream beside the dense network (parallel branches of the graph), joined before the copy.
        with self._branch() as side:
            with side:
                for t, (state, (set_keys, set_miss, set_values)) in enumerate(zip(p.tables, sets)):
                    tab = state.tab
                    if cache.enabled and tab.num_sets:
                        ops.infer_insert(set_keys, set_miss, set_values, counters[0], cache.hit_rate_threshold,
                                         tab.keys, tab.stamps, tab.values, tab.sketch, d["header"][t], counters[t],
                                         state.heads)
            preds = self.net.predict(feed)
            out["predictions"][...] = preds.reshape(out["predictions"].shape)
        self.outputs.download(stream)

    @contextlib.contextmanager
    def _branch(self):
        """On CuPy the bucket's side stream, forked from the current one here (it runs after what that has
        queued so far) and joined back when the block ends, also when it raises: an unjoined fork would break a
        capture's end and leave the refresh unordered with the next call. On NumPy a no-op context."""
        if not self.inputs.cuda:
            yield contextlib.nullcontext()
            return
        import cupy
        main = cupy.cuda.get_current_stream()
        self._fork.record(main)
        self._side.wait_event(self._fork)
        try:
            yield self._side
        finally:
            self._join.record(self._side)
            main.wait_event(self._join)

    # -- host side ----------------------------------------------------------------------------

    def run(self, dense, parts, n, out):
        """Stage one chunk, launch, read back its predictions into ``out`` (n, L) float32 and update the
        cache's statistics; False, with nothing written or looked up, where the device rejected the call's
        values (``infer_begin``)."""
        self.stage(dense, parts, n)
        self.launch()
        self.wait()
        return self.finish(parts, n, out)

    def stage(self, dense, parts, n):
        """Write one chunk's inputs into the pinned staging buffer (host work only)."""
        s, h = self.p.session, self.h
        if n > self.batch:
            raise ValueError(f"predict graph of batch {self.batch}: got a chunk of {n} samples")
        header = h["header"]
        self.one_hot = self.one_hot_offsets is not None and n * s.slot_num >= ONE_HOT_MIN_ROWS and all(
            keys.size == offsets.size - 1 and (offsets == self.arange[:offsets.size]).all() for keys, offsets in parts)
        for t, ((keys, offsets), state) in enumerate(zip(parts, self.p.tables)):
            tab, k = state.tab, keys.size
            header[t] = tab.now + 1 if k else tab.now, bool(k) and tab.sketch is not None and tab.halving_due, k
            staged = h[f"keys{t}"]
            if k > staged.size:
                raise ValueError(f"predict graph of batch {self.batch}: table {t} got {k} keys, room for "
                                 f"{staged.size}")
            staged[:k] = keys
            if self.used[t] > k:
                staged[k:self.used[t]] = empty_key(s.key_dtype)
            self.used[t] = k
            if not self.one_hot:
                staged_offsets = h[f"offsets{t}"]
                staged_offsets[:offsets.size] = offsets
                staged_offsets[offsets.size:-1] = k
        staged_dense = h["dense"]
        staged_dense[:n] = dense
        if self.rows > n:
            staged_dense[n:self.rows] = 0
        self.rows = n

    def _stream(self):
        return self.p.session.backend.xp.cuda.get_current_stream() if self.inputs.cuda else None

    def launch(self):
        """Enqueue the device work of the staged call -- the staged inputs' copy, the lookup and the network,
        the outputs' copy: one graph launch once captured (returns at once on CuPy)."""
        call = self.calls.get(self.one_hot)
        if call is None:
            def work(one_hot=self.one_hot):
                self._device_work(one_hot)
            name = f"the predict graph of batch {self.batch}{' (one-hot)' if self.one_hot else ''}"
            call = self.calls[self.one_hot] = self.p.session.backend.graph(work, name) or work
        call()

    def wait(self):
        """Block until the launched work and the outputs' copy are done."""
        stream = self._stream()
        if stream is not None:
            stream.synchronize()

    def finish(self, parts, n, out):
        """After ``wait``: the predictions into ``out`` (n, L) float32 and the cache's statistics updated
        from the counters -- True; or False where the device rejected the call (it took no key)."""
        status = self.outputs.h["status"].tolist()   # Python ints: one conversion, not one per counter
        if status[-1]:
            return False
        w = len(COUNTERS)
        self._account([keys.size for keys, _ in parts], [status[i:i + w] for i in range(0, len(status) - 1, w)])
        self.p.session.embedding_cache._publish()
        out[...] = self.outputs.h["predictions"][:n]
        return True

    def _account(self, key_counts, counters):
        """The eager path's statistics (EmbeddingCache.lookup) from this call's counters (a list per table)."""
        cache = self.p.session.embedding_cache
        for k, state, (distinct, hits, unknown, _, _) in zip(key_counts, self.p.tables, counters):
            if not k:
                continue
            tab = state.tab
            tab.now += 1
            if tab.sketch is not None:
                tab.age(distinct)
            tab.calls += 1
            tab.lookups += distinct
            tab.hits += hits
            tab.unknown_keys += unknown
            tab.last_hit_rate = hit_rate((distinct, hits))
        # the first table's counters are zero when it had no keys: rate 1.0, as the eager path's
        if cache.enabled and hit_rate_below(counters[0], cache.hit_rate_threshold):
            for k, state, (distinct, hits, _, inserted, replaced) in zip(key_counts, self.p.tables, counters):
                if k and distinct > hits and state.tab.num_sets:
                    tab = state.tab
                    tab.insertions += inserted
                    tab.evictions += replaced
                    tab.occupied += inserted - replaced
                    tab.refreshes += 1


class GraphPredictor:
    """The graph path of one ``InferenceSession`` (module docstring). Create and call it on the
    session's device, holding the embedding cache's lock (``InferenceSession.predict_array`` does)."""

    def __init__(self, session):
        self.session = session
        cfg = session.config
        self.max_features = [cfg.sparse_input(e.bottom).max_feature_num_per_sample for e in cfg.embeddings]
        self.tables = [_TableState(session.backend, tab) for tab in session.embedding_cache._tables]
        self.buckets = {}

    def fits(self, parts, n):
        """Whether a chunk fits the staging buffers: at most ``max_batchsize`` samples, and each table's
        keys at most n × the table's max_feature_num_per_sample."""
        return n <= self.session.max_batchsize and all(
            keys.size <= n * limit for (keys, _), limit in zip(parts, self.max_features))

    def predict_chunk(self, dense, parts, n, out):
        """Write the (n, L) float32 predictions of a chunk that ``fits`` into ``out``: ``dense`` (n, D)
        float32, ``parts`` one (keys (K_t,), row offsets (n*S_t + 1,)) per table. False where the device
        rejected the call's values (``infer_begin``: a non-finite dense feature, the reserved key, row offsets
        outside [0, K_t] or descending): then nothing was written, looked up or counted, and the caller says
        what is wrong."""
        return self.bucket(n).run(dense, parts, n, out)

    def bucket(self, n):
        """The bucket (padded batch) a chunk of n samples runs in, made on first use."""
        if not all(state.current() for state in self.tables):
            self.buckets.clear()    # graphs captured over replaced cache arrays would write freed memory
            for state in self.tables:
                state.arrays = state.cache_arrays()
        batch = self.session._padded(n)
        bucket = self.buckets.get(batch)
        if bucket is None:
            bucket = self.buckets[batch] = _Bucket(self, batch)
        return bucket

    def captured(self):
        """Per bucket (padded batch): "graph" once its device work (each variant used: general, one-hot) replays
        from a CUDA graph, "eager" before its capture (first call) or on NumPy, else why capturing failed."""
        status = {}
        for batch, bucket in sorted(self.buckets.items()):
            states = ["graph" if getattr(call, "graph", None) is not None else (getattr(call, "failure", None) or "eager")
                      for call in bucket.calls.values()]
            status[batch] = next((state for state in states if state != "graph"), "graph" if states else "eager")
        return status
