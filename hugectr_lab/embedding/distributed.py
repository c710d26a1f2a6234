"""DistributedSlotSparseEmbeddingHash: keys spread over the devices by value, whatever their slot."""

from __future__ import annotations

import numpy as np

from .base import SparseEmbedding


def key_device(xp, keys, num_devices):
    """(K,) device of each key: |k mod G| with C's sign rule for negative I64 keys, as HugeCTR routes."""
    return xp.abs(xp.fmod(keys.astype(xp.int64), num_devices))


class DistributedSlotSparseEmbeddingHash(SparseEmbedding):
    """Key k lives on device |k mod G|. Forward: every device combines its own keys for every
    (sample, slot) of the global batch -- (B*S, E) partial sums -- and a reduce-scatter hands device g
    the totals of its b samples. The mean divides by the slot's key count over all devices. Backward:
    an all-gather gives every device the (B*S, E) top gradient; each updates its own keys.

    Needs ``max_vocabulary_size_per_gpu`` (rows per device, all initialised Uniform(-0.05, 0.05)).
    """

    type_name = "DistributedSlotSparseEmbeddingHash"

    def _check_config(self):
        if self.max_vocabulary_size_per_gpu is None:
            raise ValueError(f"embedding '{self.name}': {self.type_name} needs max_vocabulary_size_per_gpu")

    def _vocabulary_size(self, device):
        return self.max_vocabulary_size_per_gpu

    def _route(self, device, row_offsets, keys):
        owned = None if self.num_devices == 1 else key_device(self.backend.xp, keys, self.num_devices) == device
        return self._shard(row_offsets, keys, self._row_ids(row_offsets, keys), owned)

    def _place(self, keys, slot_ids):
        return key_device(np, keys, self.num_devices), None

    def _exchange_forward(self, partials):
        shape = (-1, self.slot_num, self.embedding_vec_size)
        if self.num_devices == 1:   # the partial sums are the totals: no copy (two, through the collective)
            return [p.reshape(shape) for p in partials]
        return [out.reshape(shape) for out in self.comm.reduce_scatter(partials)]   # (b, S, E) each

    def _exchange_backward(self, d_outputs):
        if self.num_devices == 1:   # d: a (B, S, E) view of Concat's gradient; its (B*S, E) rows copied fast
            return [self.backend.contiguous(d).reshape(-1, self.embedding_vec_size) for d in d_outputs]
        return self.comm.all_gather([d.reshape(-1, self.embedding_vec_size) for d in d_outputs])   # (B*S, E)
