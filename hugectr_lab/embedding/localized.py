"""LocalizedSlotSparseEmbeddingHash: every slot lives whole on one device."""

from __future__ import annotations

import math

import numpy as np

from .base import INIT_BOUND, SparseEmbedding, _uniform


class LocalizedSlotSparseEmbeddingHash(SparseEmbedding):
    """Slot s lives on device s mod G (device g owns slots g, g+G, ... in that order). Forward: every
    device looks up and combines its slots for the whole global batch, an all-to-all sends each device
    the rows of its b samples, and they are put back in global slot order. Backward: the reverse.

    Needs ``max_vocabulary_size_per_gpu`` or ``slot_size_array``; with the latter a device has
    V = max over devices of the sizes of the slots it owns, and its table starts with one region per
    owned slot, drawn Uniform(-sqrt(1/size), sqrt(1/size)) (rows past the regions: Uniform(-0.05, 0.05)).
    Keys still get rows in order of first appearance, whatever their slot. Each row records the slot
    of the key that was inserted into it (the first occurrence's slot) for the model file.
    """

    type_name = "LocalizedSlotSparseEmbeddingHash"
    has_slot_ids = True

    def _check_config(self):
        if self.slot_size_array is None:
            if self.max_vocabulary_size_per_gpu is None:
                raise ValueError(f"embedding '{self.name}': {self.type_name} needs max_vocabulary_size_per_gpu "
                                 "or slot_size_array")
            return
        if len(self.slot_size_array) != self.slot_num:
            raise ValueError(f"embedding '{self.name}': slot_size_array has {len(self.slot_size_array)} entries "
                             f"but the input has {self.slot_num} slots")
        if min(self.slot_size_array) < 1:
            raise ValueError(f"embedding '{self.name}': slot_size_array entries must be >= 1, "
                             f"got {list(self.slot_size_array)}")

    def owned_slots(self, device):
        """Global slot ids held by ``device``, in order."""
        return range(device, self.slot_num, self.num_devices)

    def _owned_size(self, device):
        return sum(self.slot_size_array[s] for s in self.owned_slots(device))

    def _vocabulary_size(self, device):
        if self.slot_size_array is None:
            return self.max_vocabulary_size_per_gpu
        return max(self._owned_size(g) for g in range(self.num_devices))

    def _init_values(self, device, rng):
        if self.slot_size_array is None:
            return super()._init_values(device, rng)
        values = np.empty((self._vocabulary_size(device), self.embedding_vec_size), dtype=np.float32)
        start = 0
        for s in self.owned_slots(device):
            size = self.slot_size_array[s]
            values[start:start + size] = _uniform(rng, (size, self.embedding_vec_size), math.sqrt(1.0 / size))
            start += size
        values[start:] = _uniform(rng, values[start:].shape, INIT_BOUND)
        return values

    def _route(self, row_offsets, keys, row_ids):
        xp = self.backend.xp
        batch = (row_offsets.size - 1) // self.slot_num
        sample, slot = row_ids // self.slot_num, row_ids % self.slot_num
        shards = []
        for g in range(self.num_devices):
            num_slots = len(self.owned_slots(g))
            sel = xp.flatnonzero(slot % self.num_devices == g)
            # device row = sample * (slots of g) + local slot index; local index of slot s is s // G
            local_rows = sample[sel] * num_slots + slot[sel] // self.num_devices
            shards.append(self._shard(keys[sel], local_rows, batch * num_slots, slots=slot[sel]))
        return shards

    def _place(self, keys, slot_ids):
        if slot_ids is None:
            raise ValueError(f"embedding '{self.name}': {self.type_name} needs the slot id of every key to "
                             "place it on a device")
        if slot_ids.size and (int(slot_ids.min()) < 0 or int(slot_ids.max()) >= self.slot_num):
            raise ValueError(f"embedding '{self.name}': slot ids must lie in [0, {self.slot_num}), got "
                             f"{int(slot_ids.min())}..{int(slot_ids.max())}")
        return slot_ids % self.num_devices, slot_ids

    def _exchange_forward(self, partials):
        xp, G, E = self.backend.xp, self.num_devices, self.embedding_vec_size
        batch = partials[0].shape[0] // len(self.owned_slots(0))   # device 0 always owns slot 0
        b = batch // G
        sends = [[p.reshape(batch, -1, E)[d * b:(d + 1) * b] for d in range(G)] for p in partials]
        received = self.comm.all_to_all(sends)   # received[d][g]: (b, slots of g, E)
        outputs = []
        for d in range(G):
            out = xp.empty((b, self.slot_num, E), dtype=self.compute_dtype)   # (b, S, E)
            for g in range(G):
                out[:, g::G] = received[d][g]
            outputs.append(out)
        return outputs

    def _exchange_backward(self, d_outputs):
        xp, G, E = self.backend.xp, self.num_devices, self.embedding_vec_size
        sends = [[xp.ascontiguousarray(d[:, g::G]) for g in range(G)] for d in d_outputs]
        received = self.comm.all_to_all(sends)   # received[g][d]: (b, slots of g, E)
        return [xp.concatenate(received[g], axis=0).reshape(-1, E) for g in range(G)]   # (B*S_g, E)
