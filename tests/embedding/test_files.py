"""Sparse model files (v3.0 file, v3.1 directory), per-key optimizer state, reset and load."""

import os
import struct

import numpy as np
import pytest
from embedding_cases import ALL_TYPES, batch_for, make_embedding, sorted_dump

from hugectr_lab.embedding import (DistributedSlotSparseEmbeddingHash, LocalizedSlotSparseEmbeddingHash,
                                   EmbeddingOverflowError, SparseAdam, SparseModelFileError, SparseSGD,
                                   load_sparse_model, load_sparse_optimizer_state, read_sparse_model_file,
                                   save_sparse_model, save_sparse_optimizer_state)

KEY_FORMATS = {"I32": "I", "I64": "q"}


def trained(cls, key_type, G=2, steps=2, optimizer=None, seed=0):
    rng = np.random.default_rng(seed)
    emb = make_embedding(cls, G=G, key_type=key_type, optimizer=optimizer, seed=seed)
    for _ in range(steps):
        row_offsets, keys = batch_for(cls, rng, 4, key_type=np.uint32 if key_type == "I32" else np.int64)
        outputs = emb.forward(row_offsets, keys)
        emb.backward([rng.standard_normal(o.shape).astype(np.float32) for o in outputs])
        emb.update()
    return emb


def struct_rows(path, key_type, vec, with_slot_id):
    """Independent reader of v3.0 rows: (key, [slot_id,] *vector) tuples."""
    fmt = "<" + KEY_FORMATS[key_type] + ("Q" if with_slot_id else "") + f"{vec}f"
    data = open(path, "rb").read()
    assert len(data) % struct.calcsize(fmt) == 0
    return [struct.unpack_from(fmt, data, offset) for offset in range(0, len(data), struct.calcsize(fmt))]


def assert_same_model(a, b):
    for x, y in zip(sorted_dump(a), sorted_dump(b)):
        if x is None:
            assert y is None
        else:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("cls", ALL_TYPES)
@pytest.mark.parametrize("key_type", ["I32", "I64"])
def test_v30_file_round_trip(cls, key_type, tmp_path):
    emb = trained(cls, key_type)
    path = tmp_path / "0_sparse_100.model"
    save_sparse_model(emb, path)
    keys, vectors, slot_ids = emb.dump()
    rows = struct_rows(path, key_type, 4, emb.has_slot_ids)
    assert [r[0] for r in rows] == keys.tolist()
    if emb.has_slot_ids:
        assert [r[1] for r in rows] == slot_ids.tolist()
    np.testing.assert_array_equal(np.array([r[-4:] for r in rows], np.float32), vectors)
    fresh = make_embedding(cls, G=3, key_type=key_type)       # another device count reads it too
    load_sparse_model(fresh, path)
    assert_same_model(emb, fresh)


@pytest.mark.parametrize("cls", ALL_TYPES)
@pytest.mark.parametrize("key_type", ["I32", "I64"])
def test_v31_directory_round_trip(cls, key_type, tmp_path):
    emb = trained(cls, key_type)
    path = tmp_path / "0_sparse_100.model"
    save_sparse_model(emb, path, directory=True)
    keys, vectors, slot_ids = emb.dump()
    names = sorted(os.listdir(path))
    assert names == (["emb_vector", "key", "slot_id"] if emb.has_slot_ids else ["emb_vector", "key"])
    raw_keys = (path / "key").read_bytes()
    assert list(struct.unpack(f"<{keys.size}q", raw_keys)) == keys.tolist()   # int64 even for I32
    raw_vectors = struct.unpack(f"<{vectors.size}f", (path / "emb_vector").read_bytes())
    np.testing.assert_array_equal(np.array(raw_vectors, np.float32).reshape(vectors.shape), vectors)
    if emb.has_slot_ids:
        assert list(struct.unpack(f"<{keys.size}Q", (path / "slot_id").read_bytes())) == slot_ids.tolist()
    fresh = make_embedding(cls, G=1, key_type=key_type)
    load_sparse_model(fresh, path)
    assert_same_model(emb, fresh)


def test_file_size_must_be_whole_rows(tmp_path):
    path = tmp_path / "broken.model"
    path.write_bytes(b"\0" * (4 + 64) * 3 + b"\0\0")
    with pytest.raises(SparseModelFileError, match=r"broken.model: 206 bytes is not a multiple of the row size "
                                                   r"68 for key type I32 and vec 16"):
        read_sparse_model_file(path, key_type="I32", vec_size=16, with_slot_id=False)


def test_directory_sizes_are_checked(tmp_path):
    emb = trained(DistributedSlotSparseEmbeddingHash, "I64")
    save_sparse_model(emb, tmp_path / "m", directory=True)
    with open(tmp_path / "m" / "emb_vector", "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(SparseModelFileError, match=r"emb_vector: \d+ bytes, expected \d+ \(\d+ keys, vec 4\)"):
        load_sparse_model(make_embedding(DistributedSlotSparseEmbeddingHash, key_type="I64"), tmp_path / "m")


def test_i32_embedding_rejects_wide_keys_in_a_directory(tmp_path):
    emb = make_embedding(DistributedSlotSparseEmbeddingHash, key_type="I64", vocab=100)
    emb.load(np.array([5, 2**40]), np.zeros((2, 4)))
    save_sparse_model(emb, tmp_path / "m", directory=True)
    with pytest.raises(SparseModelFileError, match="key 1099511627776 does not fit key type I32"):
        load_sparse_model(make_embedding(DistributedSlotSparseEmbeddingHash, key_type="I32"), tmp_path / "m")


def test_writes_replace_atomically_without_leftovers(tmp_path):
    emb = trained(LocalizedSlotSparseEmbeddingHash, "I32")
    for directory in (False, True):
        path = tmp_path / f"model{int(directory)}"
        save_sparse_model(make_embedding(LocalizedSlotSparseEmbeddingHash), path, directory)   # empty model
        save_sparse_model(emb, path, directory)
        fresh = make_embedding(LocalizedSlotSparseEmbeddingHash)
        load_sparse_model(fresh, path)
        assert fresh.num_keys() == emb.num_keys()
    assert sorted(os.listdir(tmp_path)) == ["model0", "model1"]


def test_load_beyond_capacity_is_an_overflow_error():
    emb = DistributedSlotSparseEmbeddingHash(slot_num=1, embedding_vec_size=2, max_vocabulary_size_per_gpu=2,
                                             comm=2, name="sparse_embedding1")
    with pytest.raises(EmbeddingOverflowError, match="sparse_embedding1' on device 1 \\(loading a sparse model\\): "
                                                     "3 keys exceed max_vocabulary_size_per_gpu=2"):
        emb.load(np.array([1, 3, 5, 2]), np.zeros((4, 2)))


def lazy_adam():
    return SparseAdam(0.05, "LazyGlobal")


def ids(keys, slot_ids):
    """(key, slot id or None) per dumped row: the identity of a table entry whatever its device."""
    return list(zip(keys.tolist(), [None] * keys.size if slot_ids is None else slot_ids.tolist()))


def vectors_by_key(emb):
    keys, vectors, slot_ids = emb.dump()
    return dict(zip(ids(keys, slot_ids), vectors))


def states_by_key(emb):
    keys, _, slot_ids = emb.dump()
    return {n: dict(zip(ids(keys, slot_ids), a.tolist())) for n, a in emb.dump_optimizer_state().items()}


@pytest.mark.parametrize("cls", [DistributedSlotSparseEmbeddingHash, LocalizedSlotSparseEmbeddingHash])
def test_optimizer_state_follows_keys_through_files(cls, tmp_path):
    emb = trained(cls, "I64", optimizer=lazy_adam(), steps=3)
    save_sparse_model(emb, tmp_path / "sparse.model")
    save_sparse_optimizer_state(emb, tmp_path / "opt_sparse.model")
    assert sorted(os.listdir(tmp_path / "opt_sparse.model")) == sorted(
        ["meta.json", "key", "m", "v", "prev_time"] + (["slot_id"] if emb.has_slot_ids else []))

    fresh = make_embedding(cls, G=3, key_type="I64", optimizer=lazy_adam())
    # insert the keys in another order first, so every key sits on a different internal row
    keys, vectors, slot_ids = emb.dump()
    order = np.random.default_rng(1).permutation(keys.size)
    fresh.load(keys[order], np.zeros_like(vectors), None if slot_ids is None else slot_ids[order])
    load_sparse_model(fresh, tmp_path / "sparse.model")
    load_sparse_optimizer_state(fresh, tmp_path / "opt_sparse.model")
    assert fresh.step == emb.step == 3
    assert states_by_key(fresh) == states_by_key(emb)

    rng = np.random.default_rng(9)
    row_offsets, batch_keys = batch_for(cls, rng, 6, key_type=np.int64)
    top = rng.standard_normal((6, 3, 4)).astype(np.float32)
    for e in (emb, fresh):
        e.forward(row_offsets, batch_keys)
        e.backward(np.split(top, e.num_devices))
        e.update()
    after, after_fresh = vectors_by_key(emb), vectors_by_key(fresh)
    for key in ids(keys, slot_ids):   # keys new in the last batch start from different random values
        np.testing.assert_allclose(after_fresh[key], after[key], rtol=1e-6, atol=1e-7)


def test_state_loaded_before_its_key_applies_on_insertion():
    emb = trained(DistributedSlotSparseEmbeddingHash, "I32", optimizer=lazy_adam())
    keys, vectors, _ = emb.dump()
    fresh = make_embedding(DistributedSlotSparseEmbeddingHash, G=2, optimizer=lazy_adam())
    fresh.load_optimizer_state(keys, emb.dump_optimizer_state(), step=emb.step)
    assert fresh.num_keys() == 0
    fresh.load(keys[::-1], vectors[::-1])
    assert states_by_key(fresh) == states_by_key(emb)


def test_reset_redraws_values_clears_keys_and_keeps_state_per_key():
    emb = trained(LocalizedSlotSparseEmbeddingHash, "I32", optimizer=lazy_adam())
    keys, vectors, slot_ids = emb.dump()
    before_state = states_by_key(emb)
    before_values = [d.values.copy() for d in emb.devices]
    emb.reset()
    assert emb.num_keys() == 0 and emb.dump()[0].size == 0
    assert all(not np.array_equal(a, d.values) for a, d in zip(before_values, emb.devices))
    assert all(not np.any(d.state["m"]) for d in emb.devices)
    order = np.arange(keys.size)[::-1]
    emb.load(keys[order], vectors[order], slot_ids[order])
    assert states_by_key(emb) == before_state


def test_optimizer_state_mismatches_are_clear(tmp_path):
    emb = trained(DistributedSlotSparseEmbeddingHash, "I32", optimizer=lazy_adam())
    save_sparse_optimizer_state(emb, tmp_path / "opt")
    sgd = make_embedding(DistributedSlotSparseEmbeddingHash, optimizer=SparseSGD(0.1))
    with pytest.raises(SparseModelFileError, match="holds Adam state but embedding 'sparse_embedding' uses SGD"):
        load_sparse_optimizer_state(sgd, tmp_path / "opt")
    local_adam = make_embedding(DistributedSlotSparseEmbeddingHash, optimizer=SparseAdam(0.1, "Local"))
    with pytest.raises(ValueError, match=r"optimizer state has arrays \['m', 'prev_time', 'v'\]"):
        load_sparse_optimizer_state(local_adam, tmp_path / "opt")
    with pytest.raises(SparseModelFileError, match="not a sparse optimizer-state directory"):
        load_sparse_optimizer_state(local_adam, tmp_path)
