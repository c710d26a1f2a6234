"""Shared builders for the embedding tests: random CSR batches and a plain-Python forward reference."""

import numpy as np

from hugectr_lab.embedding import (DistributedSlotSparseEmbeddingHash, LocalizedSlotSparseEmbeddingHash,
                                   LocalizedSlotSparseEmbeddingOneHot, SparseSGD)

HASH_TYPES = (DistributedSlotSparseEmbeddingHash, LocalizedSlotSparseEmbeddingHash)
ALL_TYPES = HASH_TYPES + (LocalizedSlotSparseEmbeddingOneHot,)


def random_csr(rng, batch, slots, *, max_nnz=3, vocab=20, key_type=np.uint32, one_hot_sizes=None):
    """Global-batch CSR with empty rows and repeated keys. Keys of slot s lie in [s*vocab, (s+1)*vocab)
    (disjoint per slot, like offset Criteo keys); with ``one_hot_sizes`` exactly one offset key per slot."""
    rows = batch * slots
    slot_of_row = np.arange(rows) % slots
    if one_hot_sizes is not None:
        sizes = np.asarray(one_hot_sizes)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        keys = offsets[slot_of_row] + rng.integers(0, sizes[slot_of_row])
        return np.arange(rows + 1, dtype=np.int64), keys.astype(key_type)
    counts = rng.integers(0, max_nnz + 1, rows)
    row_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    slot_of_key = np.repeat(slot_of_row, counts)
    keys = slot_of_key * vocab + rng.integers(0, vocab, row_offsets[-1])
    return row_offsets, keys.astype(key_type)


def reference_forward(row_offsets, keys, slots, vector_of, combiner, vec_size):
    """(B, S, E) float64 by explicit loops; ``vector_of(key, slot)`` returns a vector or None (unseen)."""
    batch = (len(row_offsets) - 1) // slots
    out = np.zeros((batch, slots, vec_size))
    for sample in range(batch):
        for slot in range(slots):
            r = sample * slots + slot
            row_keys = keys[row_offsets[r]:row_offsets[r + 1]]
            for key in row_keys:
                vector = vector_of(int(key), slot)
                if vector is not None:
                    out[sample, slot] += vector
            if combiner == "mean" and len(row_keys) > 1:
                out[sample, slot] /= len(row_keys)
    return out


def table_of(embedding):
    """{(key, device): vector} from ``embedding.dump()``."""
    keys, vectors, slot_ids = embedding.dump()
    if slot_ids is None:
        devices = np.abs(np.fmod(keys.astype(np.int64), embedding.num_devices))
    else:
        devices = slot_ids.astype(np.int64) % embedding.num_devices
    return {(int(k), int(d)): v.astype(np.float64) for k, d, v in zip(keys, devices, vectors)}


def vector_lookup(embedding):
    """``vector_of(key, slot)`` for ``reference_forward`` from the embedding's current tables."""
    table = table_of(embedding)
    G = embedding.num_devices
    localized = embedding.has_slot_ids

    def vector_of(key, slot):
        device = slot % G if localized else abs(int(np.fmod(key, G)))
        return table.get((key, device))

    return vector_of


def make_embedding(cls, *, slots=3, vec=4, vocab=20, G=1, combiner="sum", optimizer=None, **kwargs):
    """An embedding with room for ``vocab`` keys per slot (one-hot: slot sizes ``vocab``)."""
    if cls is LocalizedSlotSparseEmbeddingOneHot:
        kwargs.setdefault("slot_size_array", [vocab] * slots)
        optimizer = optimizer or SparseSGD(0.1, atomic_update=True)
    else:
        kwargs.setdefault("max_vocabulary_size_per_gpu", vocab * slots)
    return cls(slot_num=slots, embedding_vec_size=vec, combiner=combiner, optimizer=optimizer, comm=G, **kwargs)


def batch_for(cls, rng, batch, slots=3, vocab=20, **kwargs):
    """A random batch suited to ``cls`` (one key per slot for one-hot)."""
    sizes = [vocab] * slots if cls is LocalizedSlotSparseEmbeddingOneHot else None
    return random_csr(rng, batch, slots, vocab=vocab, one_hot_sizes=sizes, **kwargs)


def sorted_dump(embedding):
    """dump() as (keys, vectors, slot_ids) sorted by (slot, key), for comparisons across device counts."""
    keys, vectors, slot_ids = embedding.dump()
    order = np.lexsort((keys, slot_ids)) if slot_ids is not None else np.argsort(keys)
    return keys[order], vectors[order], None if slot_ids is None else slot_ids[order]
