"""The whole training step of a Session replayed from CUDA graphs (the solver's ``use_cuda_graph``).

A step is a host half and a device half. The host half (``Session._prepare_step``, after
``Session.train_step`` wrote the iteration of the non-finite record) draws what changes per step and
writes it into device memory: Dropout seeds, the dense optimizers' rate (lr, Adam's alpha_t), every
embedding's lr, step and lr/S. The device half
(``Session._step(..., prepared=True)``) -- embedding forward (routing, hash-table insertion, combine,
exchange), dense forward and backward, loss, the finite check, both optimizers -- reads nothing from
the host, so it is captured once and replayed: one graph launch per step instead of hundreds of
Python launches.

What a replay needs, and how ``WholeStep`` gives it:

* **Fixed inputs.** The staged batch is copied into buffers the graph reads: the dense input and
  labels as they are, every embedding's CSR keys padded with the padding key (no row, no gradient,
  never inserted) up to the buffer's key capacity. The capacity is the first batch's key count K
  (rounded up to a multiple of the batch size B), so one-hot data (K = B * slots) is never padded;
  a batch with more keys grows it by 5 % more than needed -- at most the Data layer's
  ``max_feature_num_per_sample * B`` -- and the step is captured again, so data whose key count varies
  settles on one graph after a few batches. The host knows K from the batch: nothing is read back.
* **The addresses it captured.** A graph holds the addresses of the tables, hash-table slots, optimizer
  states and weights it was captured with. ``reset()`` (model oversubscription) or a hash table that
  grows its slots replace them: before each replay the addresses (and sizes) of the arrays the step
  keeps across steps are compared with the captured ones -- an array at the captured address is the
  one the graph should touch, whatever Python object holds it -- and a change captures anew, dropping
  every graph of a smaller capacity or other addresses. Freezing the dense part or an embedding
  changes the step itself: one graph per freeze state.
* **Memory of its own.** Each graph allocates from a pool of its own (``backend/cuda/graphs.py``).
  A dropped graph's pool is kept for the session's life -- arrays the step left behind (a first call's
  lazily built buffers, the last activations) may still point into it -- with its free blocks released.

A batch with more keys than the bound, or a backend without graphs (NumPy), runs the eager step.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .backend import address
from .rules.keys import sentinel_key

_log = logging.getLogger("hugectr_lab")
HEADROOM = 1.05   # a key capacity that must grow takes 5 % more than the batch that outgrew it


class WholeStep:
    """The device half of ``session``'s training step, replayed from CUDA graphs. Its buffers and copies
    cover every local device, and with a graph that spans them it replays a multi-device step exactly
    (tests/session/test_whole_step.py, on the host); ``Session`` builds it for one local device only, because
    a ``CapturedCall`` captures one device's stream.
    ``prepare(staged)`` readies a replay on a ``StagedBatch`` -- its batch copied into the graph's buffers
    and the host half run, both through the backend's ``write``/``copy_into`` (the caller holds them in
    ``writes_together``: one launch) -- and returns the graph's call (it returns the losses), or None when
    this batch cannot be replayed (the caller then runs the eager step)."""

    def __init__(self, session):
        self.session = session
        self.graphs = {}     # freeze state -> (CapturedCall, key capacities, captured addresses, fixed inputs)
        self._retired = []   # memory pools of dropped graphs (arrays may still point into them)
        embedded = {spec.top for spec in session.config.embeddings}
        self._feed_names = [name for name in session.train_networks[0].input_shapes if name not in embedded]
        self._bounds = [session.plan.batchsize * session.config.sparse_input(spec.bottom).max_feature_num_per_sample
                        for spec in session.config.embeddings]
        self.capacity = None   # key capacity of each embedding's fixed buffer

    def prepare(self, staged):
        s = self.session
        counts = [inputs[0][1].size for inputs in staged.embeddings]   # K of each embedding (host-side sizes)
        if not self._fit(counts):
            return None
        key = (s.frozen_dense, frozenset(s.frozen_embeddings))
        entry = self.graphs.get(key)
        binding = _addresses(s._persistent_arrays())
        if entry is None or entry[1] != self.capacity or entry[2] != binding:
            if entry is not None and entry[1] == self.capacity:
                _log.info("use_cuda_graph: the step's tables or weights were replaced (reset or rehash); "
                          "capturing the training step again")
            self._drop_stale(binding)
            entry = self._new_graph(key, binding)
            if entry is None:
                return None
        captured, _, _, inputs = entry
        self._fill(inputs, staged)
        s._prepare_step()
        return captured

    def _fit(self, counts):
        """Make the key capacities hold ``counts`` (growing them if needed); False past a bound."""
        if any(k > bound for k, bound in zip(counts, self._bounds)):
            return False
        b = self.session.plan.batchsize
        if self.capacity is None:
            self.capacity = tuple(min(bound, max(b, math.ceil(k / b) * b)) for k, bound in zip(counts, self._bounds))
        elif any(k > c for k, c in zip(counts, self.capacity)):
            self.capacity = tuple(c if k <= c else min(bound, math.ceil(k * HEADROOM / b) * b)
                                  for k, c, bound in zip(counts, self.capacity, self._bounds))
        return True

    def _drop_stale(self, binding):
        """Drop every graph of a smaller capacity or other addresses: stale for good (capacities only grow,
        replaced arrays do not come back). Their pools stay, emptied of free blocks."""
        for key, (captured, capacity, captured_binding, _) in list(self.graphs.items()):
            if capacity != self.capacity or captured_binding != binding:
                del self.graphs[key]
                captured.pool.free_all_blocks()
                self._retired.append(captured.pool)

    def _new_graph(self, key, binding):
        s = self.session
        inputs = self._allocate(self.capacity)
        # The step reports each phase and layer it has queued, so that a failed capture names where it broke.
        captured = s.backend.graph(lambda: s._step(*inputs, lambda done: captured.mark(done), prepared=True),
                                   "the training step")
        if captured is None:   # a backend without graphs
            return None
        self.graphs[key] = entry = (captured, self.capacity, binding, inputs)
        return entry

    def _allocate(self, capacity):
        """Fixed input buffers: (feeds per local device, per embedding per local device (row_offsets, keys))."""
        s = self.session
        xp = s.backend.xp
        feeds = []
        for g, net in s._local(s.train_networks):
            with s.comm.scope(g):
                feeds.append({name: xp.empty(net.input_shapes[name], net.feed_dtype(name))
                              for name in self._feed_names})
        embeddings = []
        rows = s.plan.batchsize
        for spec, emb, k in zip(s.config.embeddings, s.embeddings, capacity):
            per_device = []
            for g in s.local_devices:
                with s.comm.scope(g):
                    per_device.append((xp.empty(rows * emb.slot_num + 1, np.int64),
                                       xp.full(k, sentinel_key(emb.key_dtype), dtype=emb.key_dtype)))
            embeddings.append(per_device)
        return feeds, embeddings

    def _fill(self, inputs, staged):
        """Copy ``staged`` into the fixed buffers (device-to-device, queued; the padding stays)."""
        s = self.session
        feeds, embeddings = inputs
        copy = s.backend.copy_into
        for (g, feed), fixed in zip(s._local(staged.feeds), feeds):
            with s.comm.scope(g):
                for name in self._feed_names:   # the step adds the embeddings' outputs to ``fixed``
                    copy(fixed[name], feed[name])
        for per_device, fixed in zip(staged.embeddings, embeddings):
            for g, (row_offsets, keys), (fixed_offsets, fixed_keys) in zip(s.local_devices, per_device, fixed):
                with s.comm.scope(g):
                    copy(fixed_offsets, row_offsets)
                    copy(fixed_keys[:keys.size], keys)
                    if keys.size < fixed_keys.size:
                        fixed_keys[keys.size:] = sentinel_key(fixed_keys.dtype)


def _addresses(arrays):
    """((address, bytes), ...) of host or device arrays: what a captured graph reads and writes."""
    return tuple((address(a), a.nbytes) for a in arrays)
