"""Forward: combine against a plain loop, eval on unseen keys, initialisation, mixed precision, errors."""

import math

import numpy as np
import pytest
from embedding_cases import (ALL_TYPES, HASH_TYPES, batch_for, make_embedding, random_csr, reference_forward,
                             vector_lookup)

from hugectr_lab.embedding import (DistributedSlotSparseEmbeddingHash, LocalizedSlotSparseEmbeddingHash,
                                   LocalizedSlotSparseEmbeddingOneHot, SparseAdam, SparseEmbedding)


@pytest.mark.parametrize("cls", ALL_TYPES)
@pytest.mark.parametrize("combiner", ["sum", "mean"])
@pytest.mark.parametrize("G", [1, 2, 3])
def test_forward_matches_loop_reference(cls, combiner, G):
    rng = np.random.default_rng(G)
    emb = make_embedding(cls, G=G, combiner=combiner, vocab=6)   # few keys per slot: many repeats
    row_offsets, keys = batch_for(cls, rng, 6 * G, vocab=6, max_nnz=4)
    outputs = emb.forward(row_offsets, keys, training=True)
    assert [o.shape for o in outputs] == [(6, 3, 4)] * G and outputs[0].dtype == np.float32
    expected = reference_forward(row_offsets, keys, 3, vector_lookup(emb), combiner, 4)
    np.testing.assert_allclose(np.concatenate(outputs), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", HASH_TYPES)
def test_same_key_in_two_slots_shares_a_row_on_one_device(cls):
    emb = make_embedding(cls, slots=2)
    emb.forward(np.array([0, 1, 2]), np.array([7, 7], dtype=np.uint32))
    assert emb.num_keys() == 1


@pytest.mark.parametrize("cls", HASH_TYPES)
@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_eval_does_not_insert_and_unseen_keys_are_zero(cls, combiner):
    emb = make_embedding(cls, G=2, combiner=combiner)
    rng = np.random.default_rng(0)
    row_offsets, keys = random_csr(rng, 4, 3, vocab=10)
    emb.forward(row_offsets, keys, training=True)
    seen = emb.num_keys()
    vector_of = vector_lookup(emb)
    new_offsets, new_keys = random_csr(rng, 4, 3, vocab=20)      # keys 10..19 of each slot are unseen
    outputs = emb.forward(new_offsets, new_keys, training=False)
    assert emb.num_keys() == seen
    expected = reference_forward(new_offsets, new_keys, 3, vector_of, combiner, 4)
    np.testing.assert_allclose(np.concatenate(outputs), expected, rtol=1e-6, atol=1e-7)
    only_unseen = np.array([0, 1, 1, 1, 1, 1, 1], dtype=np.int64)   # B=2; sample 0 slot 0: one unseen key
    out = emb.forward(only_unseen, np.array([19], dtype=np.uint32), training=False)
    assert not np.any(out[0]) and not np.any(out[1])


def test_forward_in_eval_leaves_the_training_batch_for_backward():
    emb = make_embedding(DistributedSlotSparseEmbeddingHash, slots=1, vec=2)
    emb.forward(np.array([0, 1, 2]), np.array([1, 2], dtype=np.uint32), training=True)
    emb.forward(np.array([0, 1, 1]), np.array([5], dtype=np.uint32), training=False)
    emb.backward([np.ones((2, 1, 2), np.float32)])
    emb.update()
    assert emb.num_keys() == 2 and emb.step == 1


@pytest.mark.parametrize("cls", ALL_TYPES)
def test_mixed_precision_outputs_are_fp16_within_tolerance(cls):
    rng = np.random.default_rng(5)
    row_offsets, keys = batch_for(cls, rng, 8, max_nnz=4)
    fp32 = make_embedding(cls, G=2, combiner="mean", seed=3)
    fp16 = make_embedding(cls, G=2, combiner="mean", seed=3, mixed_precision=True, scaler=128)
    out32, out16 = (np.concatenate(e.forward(row_offsets, keys)) for e in (fp32, fp16))
    assert out16.dtype == np.float16 and fp16.devices[0].values.dtype == np.float32
    np.testing.assert_allclose(out16.astype(np.float32), out32, rtol=2e-3, atol=2e-4)


def test_initial_values_are_uniform_and_seeded_per_device():
    emb = make_embedding(DistributedSlotSparseEmbeddingHash, G=2, vocab=500, seed=11)
    again = make_embedding(DistributedSlotSparseEmbeddingHash, G=2, vocab=500, seed=11)
    v0, v1 = emb.devices[0].values, emb.devices[1].values
    assert v0.shape == (1500, 4) and np.abs(v0).max() <= 0.05 and np.abs(v0).max() > 0.049
    assert abs(float(v0.mean())) < 0.005 and not np.array_equal(v0, v1)
    np.testing.assert_array_equal(v0, again.devices[0].values)


@pytest.mark.parametrize("cls", [LocalizedSlotSparseEmbeddingHash, LocalizedSlotSparseEmbeddingOneHot])
def test_slot_size_array_regions(cls):
    sizes = [4, 100, 9, 2500, 16]
    emb = make_embedding(cls, slots=5, G=2, slot_size_array=sizes)
    # device 0 owns slots 0, 2, 4 (4+9+16 = 29 rows), device 1 slots 1, 3 (2600 rows)
    expected_rows = {LocalizedSlotSparseEmbeddingHash: [2600, 2600], LocalizedSlotSparseEmbeddingOneHot: [29, 2600]}
    assert [d.values.shape[0] for d in emb.devices] == expected_rows[cls]
    values = emb.devices[1].values
    for start, size in [(0, 100), (100, 2500)]:
        region = values[start:start + size]
        bound = math.sqrt(1 / size)
        assert np.abs(region).max() <= bound and np.abs(region).max() > 0.9 * bound


def test_localized_without_slot_sizes_uses_max_vocabulary():
    emb = LocalizedSlotSparseEmbeddingHash(slot_num=3, embedding_vec_size=2, max_vocabulary_size_per_gpu=7, comm=2)
    assert [d.values.shape for d in emb.devices] == [(7, 2), (7, 2)]


def test_one_hot_needs_exactly_one_key_per_slot():
    emb = make_embedding(LocalizedSlotSparseEmbeddingOneHot, slots=2)
    with pytest.raises(ValueError, match="exactly one key per slot; sample 1 slot 0 has 2 keys"):
        emb.forward(np.array([0, 1, 2, 4, 5]), np.array([1, 21, 2, 3, 22], dtype=np.uint32))
    with pytest.raises(ValueError, match=r"key 25 in slot 0 is outside the slot's key range \[0, 20\)"):
        emb.forward(np.array([0, 1, 2]), np.array([25, 22], dtype=np.uint32))


def test_one_hot_rows_follow_the_slot_offsets():
    emb = make_embedding(LocalizedSlotSparseEmbeddingOneHot, slots=3, G=2, slot_size_array=[3, 4, 5])
    keys, vectors, slot_ids = emb.dump()
    assert keys.tolist() == [0, 1, 2, 7, 8, 9, 10, 11, 3, 4, 5, 6]     # device 0: slots 0, 2; device 1: slot 1
    assert slot_ids.tolist() == [0] * 3 + [2] * 5 + [1] * 4
    np.testing.assert_array_equal(vectors[:8], emb.devices[0].values)
    assert emb.num_keys() == 12


@pytest.mark.parametrize("kwargs, message", [
    (dict(cls=DistributedSlotSparseEmbeddingHash), "needs max_vocabulary_size_per_gpu"),
    (dict(cls=LocalizedSlotSparseEmbeddingHash), "needs max_vocabulary_size_per_gpu or slot_size_array"),
    (dict(cls=LocalizedSlotSparseEmbeddingOneHot), "needs slot_size_array"),
    (dict(cls=LocalizedSlotSparseEmbeddingHash, slot_size_array=[3, 4]), "slot_size_array has 2 entries"),
    (dict(cls=LocalizedSlotSparseEmbeddingOneHot, slot_size_array=[3, 4, 5], optimizer=SparseAdam()),
     "supports only SGD with atomic_update=true"),
    (dict(cls=DistributedSlotSparseEmbeddingHash, max_vocabulary_size_per_gpu=5, embedding_vec_size=1025),
     "embedding_vec_size must be <= 1024"),
    (dict(cls=DistributedSlotSparseEmbeddingHash, max_vocabulary_size_per_gpu=5, combiner=2), "combiner must be"),
])
def test_configuration_errors(kwargs, message):
    cls = kwargs.pop("cls")
    args = dict(slot_num=3, embedding_vec_size=4, name="emb1") | kwargs
    with pytest.raises(ValueError, match=message):
        cls(**args)


def test_batch_shape_errors_name_the_embedding():
    emb = make_embedding(DistributedSlotSparseEmbeddingHash, G=2, name="sparse_embedding1")
    with pytest.raises(ValueError, match="sparse_embedding1.*expected B\\*S\\+1 with S=3"):
        emb.forward(np.zeros(5, np.int64), np.zeros(0, np.uint32))
    with pytest.raises(ValueError, match="batch size 3 is not divisible by the 2 devices"):
        emb.forward(np.zeros(10, np.int64), np.zeros(0, np.uint32))
    with pytest.raises(ValueError, match="row_offsets must run from 0 to the number of keys"):
        emb.forward(np.zeros(7, np.int64), np.zeros(2, np.uint32))


def test_overflow_error_names_embedding_and_device():
    emb = DistributedSlotSparseEmbeddingHash(slot_num=1, embedding_vec_size=2, max_vocabulary_size_per_gpu=3,
                                             comm=2, name="sparse_embedding1")
    keys = np.arange(0, 20, 2, dtype=np.uint32)                # 10 even keys, all on device 0
    outputs = emb.forward(np.arange(11), keys)
    with pytest.raises(OverflowError, match="embedding 'sparse_embedding1' on device 0: 10 keys exceed "
                                            "max_vocabulary_size_per_gpu=3"):
        emb.check_overflow()
    refused = np.concatenate(outputs)[3:, 0]                   # keys 6.. got no row: zero vectors
    assert not np.any(refused) and np.all(np.concatenate(outputs)[:3] != 0)


def test_from_spec_duck_types_config_objects():
    from types import SimpleNamespace

    opt = SimpleNamespace(type="Adam", update_type="Global", learning_rate=0.01, beta1=0.8, beta2=None,
                          epsilon=1e-6, momentum_factor=None, atomic_update=None, initial_accu_value=None)
    spec = SimpleNamespace(type="LocalizedSlotSparseEmbeddingHash", name=None, bottom="data1", top="sparse_embedding1",
                           max_vocabulary_size_per_gpu=None, embedding_vec_size=16, combiner=1,
                           slot_size_array=(10, 20), optimizer=None, plan_file=None, default_emb_vec_value=0.0)
    emb = SparseEmbedding.from_spec(spec, opt, slot_num=2, comm=2, key_type="I64")
    assert isinstance(emb, LocalizedSlotSparseEmbeddingHash) and emb.name == "sparse_embedding1"
    assert emb.combiner == "mean" and emb.key_dtype == np.int64
    assert (emb.optimizer.update_type, emb.optimizer.learning_rate, emb.optimizer.beta1, emb.optimizer.beta2) == \
        ("Global", 0.01, 0.8, 0.999)
    with pytest.raises(ValueError, match="unknown embedding type 'Nope'"):
        SparseEmbedding.from_spec(SimpleNamespace(type="Nope", name="e", top="e"), opt, slot_num=2)


def test_from_spec_with_the_config_packages_specs():
    from hugectr_lab.config import EmbeddingSpec, OptimizerSpec

    opt = OptimizerSpec(type="MomentumSGD", update_type="Global", learning_rate=0.01, momentum_factor=0.9)
    spec = EmbeddingSpec(type="LocalizedSlotSparseEmbeddingOneHot", bottom="data1", top="sparse_embedding1",
                         embedding_vec_size=8, combiner="sum", slot_size_array=(3, 4),
                         optimizer=OptimizerSpec(type="SGD", learning_rate=0.5, atomic_update=True))
    emb = SparseEmbedding.from_spec(spec, opt, slot_num=2, comm=2)
    assert isinstance(emb, LocalizedSlotSparseEmbeddingOneHot) and emb.optimizer.learning_rate == 0.5
    assert emb.num_keys() == 7
