"""G = 1 and G = 2, 3, 4 logical devices: same outputs, same tables after training; the exchanges used."""

import numpy as np
import pytest
from embedding_cases import ALL_TYPES, batch_for, make_embedding, sorted_dump

from hugectr_lab.backend import InProcessCommunicator
from hugectr_lab.embedding import (DistributedSlotSparseEmbeddingHash, LocalizedSlotSparseEmbeddingHash,
                                   LocalizedSlotSparseEmbeddingOneHot, SparseAdam, SparseMomentumSGD, SparseSGD)

SLOTS, VEC, VOCAB, BATCH = 3, 4, 12, 12
OPTIMIZERS = {
    "adam-global": lambda: SparseAdam(0.05, "Global"),
    "adam-lazy": lambda: SparseAdam(0.05, "LazyGlobal"),
    "momentum-local": lambda: SparseMomentumSGD(0.05, "Local", 0.9),
    "sgd-atomic": lambda: SparseSGD(0.05, "Global", atomic_update=True),
}


def train(cls, G, optimizer, combiner, steps=3, **kwargs):
    """Same initial table (loaded), same batches, same top gradients for any G; returns outputs per step."""
    rng = np.random.default_rng(7)
    emb = make_embedding(cls, slots=SLOTS, vec=VEC, vocab=VOCAB, G=G, combiner=combiner, optimizer=optimizer,
                         **kwargs)
    keys = np.arange(SLOTS * VOCAB)
    emb.load(keys, rng.uniform(-0.1, 0.1, (keys.size, VEC)), keys // VOCAB)
    outputs = []
    for _ in range(steps):
        row_offsets, batch_keys = batch_for(cls, rng, BATCH, slots=SLOTS, vocab=VOCAB, max_nnz=3)
        out = emb.forward(row_offsets, batch_keys, training=True)
        outputs.append(np.concatenate(out).astype(np.float32))
        top = (rng.standard_normal((BATCH, SLOTS, VEC)) * emb.scaler).astype(emb.compute_dtype)
        emb.backward(np.split(top, G))
        emb.update()
    return emb, outputs


CASES = [(cls, opt) for cls in (DistributedSlotSparseEmbeddingHash, LocalizedSlotSparseEmbeddingHash)
         for opt in OPTIMIZERS] + [(LocalizedSlotSparseEmbeddingOneHot, "sgd-atomic")]


@pytest.mark.parametrize("cls, opt", CASES, ids=[f"{c.__name__[:14]}-{o}" for c, o in CASES])
@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_device_count_does_not_change_results(cls, opt, combiner):
    one, outputs_one = train(cls, 1, OPTIMIZERS[opt](), combiner)
    for G in (2, 3, 4):
        many, outputs_many = train(cls, G, OPTIMIZERS[opt](), combiner)
        for a, b in zip(outputs_one, outputs_many):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        keys_one, vectors_one, slots_one = sorted_dump(one)
        keys_many, vectors_many, slots_many = sorted_dump(many)
        np.testing.assert_array_equal(keys_many, keys_one)
        if slots_one is not None:
            np.testing.assert_array_equal(slots_many, slots_one)
        np.testing.assert_allclose(vectors_many, vectors_one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ALL_TYPES)
def test_device_count_parity_in_mixed_precision(cls):
    opt = (lambda: SparseSGD(0.05, atomic_update=True)) if cls is LocalizedSlotSparseEmbeddingOneHot else \
        (lambda: SparseAdam(0.05, "Global"))
    _, outputs_one = train(cls, 1, opt(), "mean", mixed_precision=True, scaler=64)
    _, outputs_two = train(cls, 2, opt(), "mean", mixed_precision=True, scaler=64)
    for a, b in zip(outputs_one, outputs_two):
        np.testing.assert_allclose(b, a, rtol=2e-3, atol=2e-4)


class RecordingCommunicator(InProcessCommunicator):
    """Counts which collectives an embedding uses."""

    def __init__(self, size):
        super().__init__(size)
        self.calls = []

    def __getattribute__(self, name):
        if name in ("all_reduce", "reduce_scatter", "all_gather", "all_to_all", "broadcast"):
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)


@pytest.mark.parametrize("cls, expected", [
    (DistributedSlotSparseEmbeddingHash, ["reduce_scatter", "all_gather"]),
    (LocalizedSlotSparseEmbeddingHash, ["all_to_all", "all_to_all"]),
    (LocalizedSlotSparseEmbeddingOneHot, ["all_to_all", "all_to_all"]),
])
def test_exchanges_go_through_the_communicator(cls, expected):
    comm = RecordingCommunicator(2)
    emb = make_embedding(cls, G=comm, vocab=VOCAB)
    row_offsets, keys = batch_for(cls, np.random.default_rng(0), 4, vocab=VOCAB)
    outputs = emb.forward(row_offsets, keys)
    emb.backward([np.ones_like(o) for o in outputs])
    assert comm.calls == expected
