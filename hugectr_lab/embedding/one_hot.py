"""LocalizedSlotSparseEmbeddingOneHot: localized placement without a hash table, one key per slot."""

from __future__ import annotations

import numpy as np

from .base import Device, Shard
from .hash_table import Lookup
from .localized import LocalizedSlotSparseEmbeddingHash
from .sparse_optimizers import SparseSGD


class LocalizedSlotSparseEmbeddingOneHot(LocalizedSlotSparseEmbeddingHash):
    """Slot placement and exchanges as the localized hash embedding, but keys are already offset per
    slot (slot s uses keys [offset_s, offset_s + size_s), offset = prefix sum of ``slot_size_array``)
    and the row is computed: key - offset_s + (rows of the device's earlier slots). Every (sample, slot)
    holds exactly one key. Only SGD with ``atomic_update`` is supported; there is no optimizer state.
    """

    type_name = "LocalizedSlotSparseEmbeddingOneHot"
    uses_hash_table = False

    def _check_config(self):
        if self.slot_size_array is None:
            raise ValueError(f"embedding '{self.name}': {self.type_name} needs slot_size_array")
        super()._check_config()
        if not (isinstance(self.optimizer, SparseSGD) and self.optimizer.atomic_update):
            raise ValueError(f"embedding '{self.name}': {self.type_name} supports only SGD with "
                             f"atomic_update=true, got {self.optimizer!r}")
        sizes = np.asarray(self.slot_size_array, dtype=np.int64)
        self._slot_size = sizes
        self._slot_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])   # first key of each slot
        self._slot_row = np.zeros_like(sizes)                              # first row of each slot on its device
        for g in range(self.num_devices):
            owned = list(self.owned_slots(g))
            self._slot_row[owned] = np.concatenate([[0], np.cumsum(sizes[owned])[:-1]])
        self._row_shift = {}   # device -> (S,) row - key of each slot, on the device (built with the tables)

    def _vocabulary_size(self, device):
        return self._owned_size(device)

    def _build_device(self, device, rng):
        dev: Device = super()._build_device(device, rng)
        owned = list(self.owned_slots(device))
        dev.slot_ids[...] = self.backend.asarray(np.repeat(owned, self._slot_size[owned]))
        self._row_shift[device] = self.backend.asarray(self._slot_row - self._slot_offset)
        return dev

    def num_keys(self):
        return sum(self._owned_size(g) for g in range(self.num_devices))

    def check_overflow(self):
        """Nothing can overflow: every key has its row."""

    def _check_batch(self, row_offsets, keys):
        super()._check_batch(row_offsets, keys)
        xp = self.backend.xp if hasattr(keys, "__cuda_array_interface__") else np
        counts = xp.diff(xp.asarray(row_offsets).reshape(-1))
        bad = xp.flatnonzero(counts != 1)
        if bad.size:
            r = int(bad[0])
            raise ValueError(f"embedding '{self.name}': {self.type_name} needs exactly one key per slot; sample "
                             f"{r // self.slot_num} slot {r % self.slot_num} has {int(counts[r])} keys")
        keys = xp.asarray(keys).reshape(-1, self.slot_num).astype(xp.int64)   # (B, S)
        offset, size = xp.asarray(self._slot_offset), xp.asarray(self._slot_size)
        outside = xp.argwhere((keys < offset) | (keys >= offset + size))
        if outside.size:
            i, s = (int(v) for v in outside[0])
            raise ValueError(f"embedding '{self.name}': key {int(keys[i, s])} in slot {s} is outside the slot's key "
                             f"range [{self._slot_offset[s]}, {self._slot_offset[s] + self._slot_size[s]}) "
                             "(one-hot keys must be offset by the preceding slots' sizes)")

    def _route(self, device, row_offsets, keys):
        xp, G = self.backend.xp, self.num_devices
        batch = (row_offsets.size - 1) // self.slot_num
        keys = keys.reshape(batch, self.slot_num)[:, device::G].reshape(-1)   # (B*S_g,), static selection
        rows = xp.arange(keys.size, dtype=xp.int64)
        offsets = xp.arange(keys.size + 1, dtype=xp.int64)
        slots = xp.tile(xp.arange(device, self.slot_num, G, dtype=xp.int64), batch)
        return Shard(keys, offsets, rows, None, slots)   # one key per row: the mean is the key itself

    def _partial(self, device, combined):
        return combined

    def _shard_rows(self, device, shard, wgrad):
        return wgrad

    def _lookup(self, device, keys, slots, insert):
        """Rows by arithmetic; ``_check_batch`` (forward) and ``_place`` (loading) checked the key ranges."""
        rows = keys.astype(self.backend.xp.int64) + self._row_shift[device][slots]
        return Lookup(rows, None, None)

    def _keys_and_rows(self, device):
        xp = self.backend.xp
        slots = self._dev(device).slot_ids
        rows = xp.arange(slots.size, dtype=xp.int64)
        return (rows - self._row_shift[device][slots]).astype(self.key_dtype), rows

    def _place(self, keys, slot_ids):
        keys = keys.astype(np.int64)
        total = int(self._slot_size.sum())
        if keys.size and (int(keys.min()) < 0 or int(keys.max()) >= total):
            raise ValueError(f"embedding '{self.name}': one-hot keys must lie in [0, {total}) "
                             f"(the sum of slot_size_array), got {int(keys.min())}..{int(keys.max())}")
        slots = np.searchsorted(self._slot_offset, keys, side="right") - 1
        return slots % self.num_devices, slots
