"""InferenceSession: the evaluation graph of an inference config fed by an embedding cache (spec 9.4).

``predict(dense_feature, embeddingcolumns, row_ptrs[, i64_input_key])`` takes N samples:

* ``dense_feature``    (N*D,) floats, sample-major;
* ``row_ptrs``         (N*S+1,) a CSR over (sample, slot) pairs, sample-major, S = all slots of the
  Data layer's sparse inputs in their order (so the slots of table t form a contiguous block of
  every sample's slots); ``row_ptrs[0] == 0``, non-decreasing, ``row_ptrs[-1] == len(embeddingcolumns)``;
* ``embeddingcolumns`` (K,) raw keys (no slot offsets are added);

and returns the N*L outputs of the graph's last layer (the Sigmoid probabilities) as a list of floats.

Per chunk of at most ``max_batchsize`` samples (a larger N is split into chunks, each predicted as
its own batch -- results are the same as one big batch): keys are split per table, looked up in the
cache (one ``EmbeddingCache.lookup``, which may refresh the cache), combined per (sample, slot) --
sum, or mean over the slot's keys -- and the dense graph runs in eval mode (Dropout is the identity,
BatchNorm uses the running statistics of ``<dense_model_file>.ntp.json``). Every table's combiner is
wired to its own table (HugeCTR 3.0 wires all to table 0: quirk 23). Chunks are padded to the next
power of two (at most ``max_batchsize``) and one graph is kept per padded size, so a small request
does not pay for ``max_batchsize`` rows.
"""

from __future__ import annotations

import json
import logging
import os
import warnings

import numpy as np

from ..backend import get_backend
from ..embedding.combine import mean_row_scale
from ..embedding.hash_table import key_dtype, sentinel_key
from ..fileio import check_snapshot_file
from ..layers import BuildContext, Network, network_inputs
from ..rules import precision
from .cache import EmbeddingCache, _check_same_tables
from .parameter_server import InferenceConfigError, load_inference_config, resolve_model_path


_log = logging.getLogger("hugectr_lab")


class PredictInputError(ValueError):
    """``predict`` arguments that do not describe a batch of the config's shape (HugeCTR: WrongInput)."""


class InferenceSession:
    """``InferenceSession(config_file, device_id, embedding_cache)``.

    ``backend``: None (the embedding cache's backend), or "numpy" / "cupy" / "auto" / a Backend, which
    must then be the cache's. ``session.backend.name`` says which runs and ``session.backend.reason`` why
    (also logged).
    """

    def __init__(self, config_file, device_id, embedding_cache, *, backend=None):
        what = "InferenceSession"
        if not isinstance(embedding_cache, EmbeddingCache):
            raise TypeError(f"{what}(embedding_cache=...) needs the object CreateEmbeddingCache returned, "
                            f"got {type(embedding_cache).__name__}")
        if not isinstance(device_id, (int, np.integer)) or isinstance(device_id, bool):
            raise TypeError(f"{what}(device_id=...) must be an int, got {device_id!r}")
        if int(device_id) != embedding_cache.device_id:
            raise InferenceConfigError(f"{what}(device_id={device_id}) must be the embedding cache's device "
                                       f"(cuda_dev_id={embedding_cache.device_id})")
        self.device_id = int(device_id)
        self.embedding_cache = embedding_cache
        self.backend = embedding_cache.backend if backend is None else get_backend(backend, [self.device_id])
        if self.backend.name != embedding_cache.backend.name:
            raise InferenceConfigError(f"{what}(backend={self.backend.name!r}) differs from the embedding cache's "
                                       f"backend {embedding_cache.backend.name!r}; create both on one backend")
        self.config_file = str(config_file)
        _log.info("InferenceSession %s: backend %s, chosen by %s", os.path.basename(self.config_file),
                  self.backend.name, self.backend.reason)
        self.config = cfg = load_inference_config(config_file, what)
        ps_model = embedding_cache.parameter_server.model(embedding_cache.model_name)
        _check_same_tables(cfg, ps_model, config_file, embedding_cache.model_name)
        inf, data = cfg.inference, cfg.data
        self.max_batchsize = inf.max_batchsize
        self.key_type = inf.input_key_type
        self.key_dtype = key_dtype(self.key_type)
        info = np.iinfo(self.key_dtype)
        self._key_range = (int(info.min), int(info.max))   # what every predict's checks compare with
        self._reserved_key = self.key_dtype.type(sentinel_key(self.key_dtype))   # max(TypeKey)
        self.dense_dim = data.dense.dense_dim
        self.label_dim = data.label.label_dim
        self.slot_num = data.total_slot_num
        self.max_feature_num_per_sample = sum(s.max_feature_num_per_sample for s in data.sparse)
        self.compute_dtype = precision.compute_dtype(inf.use_mixed_precision)
        starts = dict(zip((s.top for s in data.sparse), np.cumsum([0] + [s.slot_num for s in data.sparse])))
        # Per table (embedding-layer order): first slot in the sample's slots, slots, combiner.
        self._tables = [(int(starts[e.bottom]), cfg.sparse_input(e.bottom).slot_num, e.combiner)
                        for e in cfg.embeddings]
        self._unsplit = len(self._tables) == 1 and self._tables[0][1] == self.slot_num   # one table, every slot
        self._dense_path = resolve_model_path(inf.dense_model_file, config_file)
        self._networks = {}
        with self.backend.device(self.device_id):
            first = self._build(1)
            self._weights, self._state = self._read_dense_model(first)
            self._load(first)
        self._networks[1] = first
        self.events = embedding_cache.events
        # CuPy with inference.cuda_graph (the default): the captured predict path (graph_path.py).
        self._graph = None
        if self.backend.name == "cupy" and inf.cuda_graph:
            from .graph_path import GraphPredictor
            with self.backend.device(self.device_id):
                self._graph = GraphPredictor(self)

    # ---- graph ----------------------------------------------------------------------------------

    def _build(self, batch):
        cfg, data = self.config, self.config.data
        # the label is an input only where a loss layer was left in (it is never fed)
        shapes = network_inputs(cfg, batch, label=any(data.label.top in spec.bottoms for spec in cfg.layers))
        ctx = BuildContext(backend=self.backend, compute_dtype=self.compute_dtype,
                           scaler=cfg.inference.scaler, training=False,
                           fp32_gemm=cfg.inference.fp32_gemm if self.backend.name == "cupy" else "fp32")
        return Network(cfg.layers, shapes, ctx, first_index=1 + len(cfg.embeddings))

    def _read_dense_model(self, net):
        path = self._dense_path
        if not os.path.isfile(path):
            raise FileNotFoundError(f"inference.dense_model_file {self.config.inference.dense_model_file!r} not found "
                                    f"(in {self.config_file})")
        check_snapshot_file(path)
        weights = np.fromfile(path, dtype="<f4")
        if weights.size < net.num_params:
            raise InferenceConfigError(f"dense model file {path}: holds {weights.size} float32 values, the graph of "
                                       f"{self.config_file} has {net.num_params} dense parameters")
        state = None
        if net.has_state:
            ntp = path + ".ntp.json"
            if os.path.exists(ntp):
                with open(ntp) as f:
                    state = json.load(f)
            else:
                warnings.warn(f"{ntp} not found: BatchNorm running statistics stay at mean 0 / variance 1",
                              RuntimeWarning, stacklevel=3)
        return weights[:net.num_params], state

    def _load(self, net):
        net.load_weights(self._weights)
        if self._state is not None:
            net.load_state(self._state)

    def _network(self, batch):
        net = self._networks.get(batch)
        if net is None:
            net = self._networks[batch] = self._build(batch)
            self._load(net)
        return net

    def _padded(self, n):
        """The batch a chunk of n samples runs as: the next power of two, at most max_batchsize."""
        return min(self.max_batchsize, 1 << max(0, int(n - 1).bit_length()))

    # ---- predict --------------------------------------------------------------------------------

    def predict(self, dense_feature, embeddingcolumns, row_ptrs, i64_input_key=None):
        """Predictions for the samples (a list of N*L floats); see the module docstring for the layout."""
        return self.predict_array(dense_feature, embeddingcolumns, row_ptrs, i64_input_key).reshape(-1).tolist()

    def predict_array(self, dense_feature, embeddingcolumns, row_ptrs, i64_input_key=None):
        """As ``predict``, returning a (N, L) float32 NumPy array. Safe to call from several threads:
        calls on one session (or one embedding cache) run one at a time."""
        dense, keys, row_ptrs = self._validate(dense_feature, embeddingcolumns, row_ptrs, i64_input_key)
        n = (row_ptrs.size - 1) // self.slot_num
        one_graph_call = self._graph_checks_values(n, keys, row_ptrs)   # then one chunk that fits its bucket
        if not one_graph_call:
            self._check_values(dense, keys, row_ptrs)
        out = np.empty((n, self.label_dim), dtype=np.float32)
        S = self.slot_num
        with self.embedding_cache.lock, self.backend.device(self.device_id):
            for start in range(0, n, self.max_batchsize):
                stop = min(n, start + self.max_batchsize)
                ptrs = row_ptrs[start * S:stop * S + 1]
                first = int(ptrs[0])
                self._predict_chunk(dense[start:stop], keys[first:ptrs[-1]], ptrs - first if first else ptrs,
                                    out[start:stop], one_graph_call)
        return out

    def _predict_chunk(self, dense, keys, row_ptrs, out, fits=False):
        """Write a chunk's (n, L) predictions into ``out``; ``fits``: known to fit the predict graph's bucket."""
        n = dense.shape[0]
        parts = self._split_tables(keys, row_ptrs, n)
        if self._graph is not None and (fits or self._graph.fits(parts, n)):
            if not self._graph.predict_chunk(dense, parts, n, out):
                self._check_values(dense, keys, row_ptrs)
                raise RuntimeError("predict(): the predict graph rejected a request that the host finds valid "
                                   "(a bug: the two checks must agree; please report it)")
            return
        batch = self._padded(n)
        backend, xp, ops = self.backend, self.backend.xp, self.backend.ops
        lookups = self.embedding_cache.lookup([k for k, _ in parts])
        data = self.config.data
        padded_dense = np.zeros((batch, self.dense_dim), dtype=np.float32)
        padded_dense[:n] = dense
        feed = {data.dense.top: padded_dense}
        for spec, (slot_start, slots, combiner), (_, offsets), found in zip(self.config.embeddings, self._tables,
                                                                            parts, lookups):
            offsets = np.concatenate([offsets, np.full((batch - n) * slots, offsets[-1], dtype=np.int64)])
            offsets = backend.asarray(offsets)            # (batch*S_t + 1,), padding rows are empty
            scale = mean_row_scale(xp, offsets[1:] - offsets[:-1]) if combiner == "mean" else None
            combined = ops.embedding_combine_fwd(found.values, found.inverse, offsets, scale, self.compute_dtype)
            feed[spec.top] = combined.reshape(batch, slots, spec.embedding_vec_size)   # (b, S_t, E_t)
        preds = self._network(batch).predict(feed)
        out[...] = backend.to_host(preds)[:n]

    def _split_tables(self, keys, row_ptrs, n):
        """Per table (embedding order): its keys and its (n*S_t + 1,) row offsets."""
        S = self.slot_num
        if self._unsplit:
            return [(keys, row_ptrs)]
        nnz = np.diff(row_ptrs).reshape(n, S)                               # (n, S)
        key_slot = np.repeat(np.tile(np.arange(S), n), nnz.reshape(-1))     # (K,) slot of each key
        parts = []
        for slot_start, slots, _ in self._tables:
            counts = nnz[:, slot_start:slot_start + slots].reshape(-1)
            offsets = np.zeros(counts.size + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            mask = (key_slot >= slot_start) & (key_slot < slot_start + slots)
            parts.append((keys[mask], offsets))
        return parts

    # ---- validation (spec 9.4, with messages that name the argument) ---------------------------

    def _validate(self, dense_feature, embeddingcolumns, row_ptrs, i64_input_key):
        config_i64 = self.key_type == "I64"
        if i64_input_key is None:
            if config_i64:
                raise PredictInputError(f"predict(): {self.config_file} has input_key_type I64; call "
                                        "predict(dense_feature, embeddingcolumns, row_ptrs, True)")
        elif not isinstance(i64_input_key, (bool, np.bool_)):
            raise PredictInputError(f"predict(i64_input_key=...) must be True or False, got {i64_input_key!r}")
        elif bool(i64_input_key) != config_i64:
            raise PredictInputError(f"predict(i64_input_key={i64_input_key}) does not match {self.config_file}'s "
                                    f"input_key_type {self.key_type}")
        S, D = self.slot_num, self.dense_dim
        row_ptrs = _integers(row_ptrs, "row_ptrs")
        if row_ptrs.size < 1 or (row_ptrs.size - 1) % S:
            raise PredictInputError(f"predict(): row_ptrs has {row_ptrs.size} entries; expected num_samples × "
                                    f"slot_num + 1 with slot_num = {S} (e.g. {2 * S + 1} for 2 samples)")
        n = (row_ptrs.size - 1) // S
        how = f"num_samples = (len(row_ptrs) - 1) / slot_num = ({row_ptrs.size} - 1) / {S} = {n}"
        dense = _floats(dense_feature, "dense_feature")
        if dense.size != n * D:
            raise PredictInputError(f"predict(): dense_feature has {dense.size} values; expected num_samples × "
                                    f"dense_dim = {n} × {D} = {n * D} ({how})")
        keys = _integers(embeddingcolumns, "embeddingcolumns")
        limit = n * self.max_feature_num_per_sample
        if keys.size > limit:
            raise PredictInputError(f"predict(): embeddingcolumns has {keys.size} keys; expected at most "
                                    f"num_samples × max_feature_num_per_sample = {n} × "
                                    f"{self.max_feature_num_per_sample} = {limit} ({how})")
        if int(row_ptrs[0]) != 0:
            raise PredictInputError(f"predict(): row_ptrs[0] must be 0, got {int(row_ptrs[0])}")
        if int(row_ptrs[-1]) != keys.size:
            raise PredictInputError(f"predict(): row_ptrs[-1] = {int(row_ptrs[-1])} but embeddingcolumns has "
                                    f"{keys.size} keys; the last row pointer must equal the number of keys")
        return dense.reshape(n, D), self._keys(keys), row_ptrs.astype(np.int64, copy=False)

    def _graph_checks_values(self, n, keys, row_ptrs):
        """Whether the predict graph alone checks the request's values -- the dense features finite, no key
        the reserved one, row_ptrs non-decreasing (``infer_begin``, while the host waits): a request of one
        chunk that fits a bucket (``GraphPredictor.fits``), its keys not split by table (the split reads the
        order). Elsewhere the host checks them (``_check_values``) before anything runs."""
        return self._graph is not None and self._unsplit and self._graph.fits([(keys, row_ptrs)], n)

    def _check_values(self, dense, keys, row_ptrs):
        """The request's value checks, in this order: ``dense`` (n, D) finite, no key of ``keys`` the reserved
        one, ``row_ptrs`` non-decreasing (reductions first: a predict's hot path; the element-wise search only
        to name the culprit)."""
        flat, D = dense.reshape(-1), self.dense_dim
        finite = np.isfinite(flat)
        if not finite.all():
            i = int(np.argmin(finite))
            raise PredictInputError(f"predict(): dense_feature[{i}] = {flat[i]} (sample {i // D}, dense feature "
                                    f"{i % D}) is not finite; {int(finite.size - finite.sum())} of {flat.size} "
                                    "values are NaN or infinite")
        reserved = self._reserved_key    # max(TypeKey): present iff it is the largest key
        if keys.size and keys.max() == reserved:
            i = int(np.argmax(keys == reserved))
            raise PredictInputError(f"predict(): embeddingcolumns[{i}] = {int(keys[i])} is the reserved key "
                                    f"max({self.key_type}), which no table can hold")
        descending = row_ptrs[1:] < row_ptrs[:-1]     # (one pass, no differences array)
        if descending.any():
            i = int(np.argmax(descending)) + 1
            raise PredictInputError(f"predict(): row_ptrs must be non-decreasing; row_ptrs[{i}] = {int(row_ptrs[i])} "
                                    f"< row_ptrs[{i - 1}] = {int(row_ptrs[i - 1])}")

    def _keys(self, keys):
        """``keys`` in the config's key dtype, C-contiguous; keys of another integer dtype must fit it."""
        dtype = self.key_dtype
        if keys.size and keys.dtype != dtype:
            low, high = self._key_range
            if int(keys.min()) < low or int(keys.max()) > high:
                i = int(np.argmax((keys < low) | (keys > high)))
                raise PredictInputError(f"predict(): embeddingcolumns[{i}] = {int(keys[i])} does not fit the config's "
                                        f"input_key_type {self.key_type} ({low}..{high - 1})")
        return np.ascontiguousarray(keys, dtype=dtype)

    def __repr__(self):
        return (f"<InferenceSession {os.path.basename(self.config_file)}: {len(self._tables)} tables, "
                f"max_batchsize {self.max_batchsize}, {self.compute_dtype} on {self.backend.name}:{self.device_id}>")


def _host(value):
    return value.get() if hasattr(value, "get") and not isinstance(value, (list, tuple, dict)) else value


def _floats(value, name):
    try:
        return np.asarray(_host(value), dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as e:
        raise PredictInputError(f"predict(): {name} must be a list of numbers ({e})") from None


def _integers(value, name):
    array = np.asarray(_host(value))
    if array.size == 0:
        return array.reshape(-1).astype(np.int64)
    if array.dtype.kind not in "iu":
        if array.dtype.kind == "f" and np.all(np.floor(array) == array):
            return array.reshape(-1).astype(np.int64)
        raise PredictInputError(f"predict(): {name} must be a list of integers, got {array.dtype} values")
    return array.reshape(-1)
