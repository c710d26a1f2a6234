"""HashTable: sequential rows in first-occurrence order, get vs get_insert, capacity, padding keys,
the fixed-size distinct-key view; on NumPy always and on CuPy in the gpu lane."""

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.embedding import DistributedSlotSparseEmbeddingHash, EmbeddingOverflowError, HashTable
from hugectr_lab.embedding.hash_table import as_keys, sentinel_key

BACKENDS = ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)]


def host(a):
    return a if isinstance(a, np.ndarray) else a.get()


def test_new_keys_get_sequential_rows_in_first_occurrence_order():
    table = HashTable(10, "I64")
    assert table.get_insert(np.array([50, 30, 50, 90, 30])).tolist() == [0, 1, 0, 2, 1]
    assert table.get_insert(np.array([90, 11, 50, 7, 11])).tolist() == [2, 3, 0, 4, 3]
    assert len(table) == 5
    keys, rows = table.keys_and_rows()
    assert keys.tolist() == [50, 30, 90, 11, 7] and rows.tolist() == [0, 1, 2, 3, 4]


def test_get_does_not_insert():
    table = HashTable(10, "I32")
    table.get_insert(np.array([4, 5], dtype=np.uint32))
    assert table.get(np.array([5, 6, 4], dtype=np.uint32)).tolist() == [1, -1, 0]
    assert len(table) == 2
    assert table.get_insert(np.array([6], dtype=np.uint32)).tolist() == [2]


def test_lookup_gives_distinct_keys_and_inverse():
    table = HashTable(10, "I64")
    lookup = table.lookup(np.array([8, 3, 8, 8]), insert=True)
    assert lookup.rows.tolist() == [0, 1, 0, 0]
    assert lookup.unique_rows.tolist() == [0, 1, -1, -1]     # distinct keys by first occurrence: 8, 3; padded
    assert lookup.inverse.tolist() == [0, 1, 0, 0]
    assert lookup.unique_rows[lookup.inverse].tolist() == lookup.rows.tolist()


def test_capacity_overflow_refuses_and_counts_distinct_keys():
    table = HashTable(3, "I64")
    assert table.get_insert(np.array([1, 2, 3, 4, 5, 4])).tolist() == [0, 1, 2, -1, -1, -1]
    assert table.get_insert(np.array([5, 6, 1])).tolist() == [-1, -1, 0]
    assert len(table) == 3 and table.overflow == 3          # 4, 5, 6 refused, each counted once
    with pytest.raises(EmbeddingOverflowError, match=r"emb on device 0: 6 keys exceed max_vocabulary_size_per_gpu=3"):
        table.check_overflow("emb on device 0")
    table.clear()
    table.check_overflow()
    assert table.get_insert(np.array([6])).tolist() == [0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key_type, sentinel", [("I32", 2**32 - 1), ("I64", 2**63 - 1)])
def test_sentinel_key_is_padding_in_the_table(backend, key_type, sentinel):
    dtype = np.uint32 if key_type == "I32" else np.int64
    assert sentinel_key(dtype) == sentinel
    table = HashTable(2, key_type, get_backend(backend))
    keys = table.backend.asarray(np.array([sentinel, 7, sentinel, 9, 7, 8, sentinel], dtype=dtype))
    lookup = table.lookup(keys, insert=True)
    assert host(lookup.rows).tolist() == [-1, 0, -1, 1, 0, -1, -1]          # 8 is refused: capacity 2
    assert host(lookup.unique_rows).tolist() == [0, 1, -1, -1, -1, -1, -1]
    assert host(lookup.inverse).tolist() == [-1, 0, -1, 1, 0, -1, -1]
    assert len(table) == 2 and table.overflow == 1                          # padding is never counted
    assert host(table.get(keys)).tolist() == [-1, 0, -1, 1, 0, -1, -1]
    assert host(table.keys_and_rows()[0]).tolist() == [7, 9]
    only_padding = table.backend.asarray(np.full(5, sentinel, dtype=dtype))
    assert host(table.get_insert(only_padding)).tolist() == [-1] * 5 and table.overflow == 1
    with pytest.raises(EmbeddingOverflowError, match="3 keys exceed max_vocabulary_size_per_gpu=2"):
        table.check_overflow()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key_type, sentinel", [("I32", 2**32 - 1), ("I64", 2**63 - 1)])
def test_sentinel_key_from_the_host_is_rejected_before_upload(backend, key_type, sentinel):
    dtype = np.uint32 if key_type == "I32" else np.int64
    be = get_backend(backend)
    with pytest.raises(ValueError, match=f"key {sentinel} is reserved as the empty-key marker for key type {key_type}"):
        as_keys(be, np.array([1, sentinel], dtype=dtype), np.dtype(dtype))
    emb = DistributedSlotSparseEmbeddingHash(slot_num=1, embedding_vec_size=2, max_vocabulary_size_per_gpu=4,
                                             key_type=key_type, backend=be)
    with pytest.raises(ValueError, match=f"key {sentinel} is reserved"):
        emb.forward(np.array([0, 1, 2]), np.array([3, sentinel], dtype=dtype))
    with pytest.raises(ValueError, match=f"key {sentinel} is reserved"):
        emb.load(np.array([sentinel], dtype=dtype), np.zeros((1, 2), np.float32))
    assert emb.num_keys() == 0


def test_keys_outside_the_key_type_are_rejected():
    with pytest.raises(ValueError, match="key -1 does not fit key type I32"):
        HashTable(10, "I32").get_insert(np.array([3, -1]))
    with pytest.raises(ValueError, match="key 4294967296 does not fit key type I32"):
        HashTable(10, "I32").get(np.array([2**32]))
    assert HashTable(10, "I64").get_insert(np.array([-5, 2**40])).tolist() == [0, 1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key_type", ["I32", "I64"])
def test_matches_a_dict_over_many_batches(backend, key_type):
    rng = np.random.default_rng(1)
    dtype = np.uint32 if key_type == "I32" else np.int64
    low = 0 if key_type == "I32" else -3000
    table, reference = HashTable(5000, key_type, get_backend(backend)), {}
    xp = table.backend.xp
    for _ in range(40):
        keys = rng.integers(low, 3000, rng.integers(0, 200)).astype(dtype)
        for k in keys:
            reference.setdefault(int(k), len(reference))
        lookup = table.lookup(keys, insert=True)
        assert host(lookup.rows).tolist() == [reference[int(k)] for k in keys]
        distinct = list(dict.fromkeys(int(k) for k in keys))           # by first occurrence
        unique_rows, inverse = host(lookup.unique_rows), host(lookup.inverse)
        assert unique_rows.tolist() == [reference[k] for k in distinct] + [-1] * (keys.size - len(distinct))
        assert unique_rows[inverse].tolist() == host(lookup.rows).tolist()
        probe = rng.integers(low - 1000, 4000, 50).astype(dtype)
        assert host(table.get(xp.asarray(probe))).tolist() == [reference.get(int(k), -1) for k in probe]
    keys, rows = table.keys_and_rows()
    assert dict(zip(host(keys).tolist(), host(rows).tolist())) == reference
    assert len(table) == len(reference) and table.overflow == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_refused_keys_are_counted_once_while_the_table_remembers_them(backend):
    table = HashTable(4, "I64", get_backend(backend))
    room = 3 * table.num_slots // 4 - 4                       # refused keys the table remembers
    table.get_insert(np.arange(4))
    batch = np.arange(100, 100 + room + 10)                   # 10 more refused keys than it remembers
    assert (host(table.get_insert(batch)) == -1).all()
    assert table.overflow == room + 10                        # within a batch every key counts once
    table.get_insert(batch[:room])                            # remembered: not counted again
    assert table.overflow == room + 10
    table.get_insert(batch[room:])                            # not remembered: counted again
    assert table.overflow == room + 20 and len(table) == 4


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        HashTable(0)
