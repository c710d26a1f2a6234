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

    def _route(self, device, row_offsets, keys):
        row_ids = self._row_ids(row_offsets, keys)
        slots = row_ids % self.slot_num   # the whole batch's CSR, keeping only our slots' keys
        owned = None if self.num_devices == 1 else slots % self.num_devices == device
        return self._shard(row_offsets, keys, row_ids, owned, slots)

    def _partial(self, device, combined):
        if self.num_devices == 1:
            return combined
        E = self.embedding_vec_size   # (B*S, E) -> the rows of our slots, (B*S_g, E)
        return combined.reshape(-1, self.slot_num, E)[:, device::self.num_devices].reshape(-1, E)

    def _shard_rows(self, device, shard, wgrad):
        if self.num_devices == 1:
            return wgrad
        E = self.embedding_vec_size   # (B*S_g, E) -> (B*S, E), zero on other devices' slots
        batch = (shard.row_offsets.size - 1) // self.slot_num
        full = self.backend.xp.zeros((batch, self.slot_num, E), dtype=wgrad.dtype)
        full[:, device::self.num_devices] = wgrad.reshape(full.shape[0], -1, E)
        return full.reshape(-1, E)

    def _place(self, keys, slot_ids):
        if slot_ids is None:
            raise ValueError(f"embedding '{self.name}': {self.type_name} needs the slot id of every key to "
                             "place it on a device")
        if slot_ids.size and (int(slot_ids.min()) < 0 or int(slot_ids.max()) >= self.slot_num):
            raise ValueError(f"embedding '{self.name}': slot ids must lie in [0, {self.slot_num}), got "
                             f"{int(slot_ids.min())}..{int(slot_ids.max())}")
        return slot_ids % self.num_devices, slot_ids

    def _slot_shapes(self, b):
        """(b, slots of g, E) for every global device g."""
        return [(b, len(self.owned_slots(g)), self.embedding_vec_size) for g in range(self.num_devices)]

    def _exchange_forward(self, partials):
        xp, G, E = self.backend.xp, self.num_devices, self.embedding_vec_size
        if G == 1:   # the combined rows are already (B*S, E) in slot order: no copy
            return [p.reshape(-1, self.slot_num, E) for p in partials]
        batch = partials[0].shape[0] // len(self.owned_slots(self.local_devices[0]))
        b = batch // G
        sends = [[p.reshape(batch, -1, E)[d * b:(d + 1) * b] for d in range(G)] for p in partials]
        shapes = self._slot_shapes(b)
        received = self.comm.all_to_all(sends, [shapes] * len(partials))   # received[i][g]: (b, slots of g, E)
        outputs = []
        for d, parts in zip(self.local_devices, received):
            with self.comm.scope(d):
                out = xp.empty((b, self.slot_num, E), dtype=self.compute_dtype)   # (b, S, E)
                for g in range(G):
                    out[:, g::G] = parts[g]
            outputs.append(out)
        return outputs

    def _exchange_backward(self, d_outputs):
        xp, G, E = self.backend.xp, self.num_devices, self.embedding_vec_size
        if G == 1:   # d: a (B, S, E) view of Concat's gradient; its (B*S, E) rows copied fast
            return [self.backend.contiguous(d).reshape(-1, E) for d in d_outputs]
        b = d_outputs[0].shape[0]
        sends = []
        for d, grad in zip(self.local_devices, d_outputs):
            with self.comm.scope(d):
                sends.append([xp.ascontiguousarray(grad[:, g::G]) for g in range(G)])
        shapes = self._slot_shapes(b)
        received = self.comm.all_to_all(sends, [[shapes[g]] * G for g in self.local_devices])
        wgrads = []   # received[i][d]: (b, slots of local device i, E) from device d
        for g, parts in zip(self.local_devices, received):
            with self.comm.scope(g):
                wgrads.append(xp.concatenate(parts, axis=0).reshape(-1, E))   # (B*S_g, E)
        return wgrads
