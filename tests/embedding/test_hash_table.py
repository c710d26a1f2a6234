"""HashTable: sequential rows in first-occurrence order, get vs get_insert, capacity, sentinel keys."""

import numpy as np
import pytest

from hugectr_lab.embedding import EmbeddingOverflowError, HashTable
from hugectr_lab.embedding import hash_table as hash_table_module


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
    assert lookup.unique_rows.tolist() == [1, 0]          # distinct keys ascending: 3, 8
    assert lookup.unique_rows[lookup.inverse].tolist() == lookup.rows.tolist() == [0, 1, 0, 0]


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


@pytest.mark.parametrize("key_type, sentinel", [("I32", 2**32 - 1), ("I64", 2**63 - 1)])
def test_sentinel_key_is_rejected(key_type, sentinel):
    table = HashTable(10, key_type)
    keys = np.array([1, sentinel], dtype=np.uint32 if key_type == "I32" else np.int64)
    with pytest.raises(ValueError, match=f"key {sentinel} is reserved"):
        table.get_insert(keys)
    assert table.get(keys).tolist() == [-1, -1]


def test_keys_outside_the_key_type_are_rejected():
    with pytest.raises(ValueError, match="key -1 does not fit key type I32"):
        HashTable(10, "I32").get_insert(np.array([3, -1]))
    with pytest.raises(ValueError, match="key 4294967296 does not fit key type I32"):
        HashTable(10, "I32").get(np.array([2**32]))
    assert HashTable(10, "I64").get_insert(np.array([-5, 2**40])).tolist() == [0, 1]


def test_matches_a_dict_across_index_merges(monkeypatch):
    monkeypatch.setattr(hash_table_module, "_MIN_DELTA", 8)   # merge the delta index often
    rng = np.random.default_rng(1)
    table, reference = HashTable(5000, "I64"), {}
    for _ in range(40):
        keys = rng.integers(-3000, 3000, rng.integers(0, 200))
        for k in keys:
            reference.setdefault(int(k), len(reference))
        assert table.get_insert(keys).tolist() == [reference[int(k)] for k in keys]
        probe = rng.integers(-4000, 4000, 50)
        assert table.get(probe).tolist() == [reference.get(int(k), -1) for k in probe]
    keys, rows = table.keys_and_rows()
    assert dict(zip(keys.tolist(), rows.tolist())) == reference


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        HashTable(0)
