"""Raw format: byte layout against an independent struct implementation, conversions, the batch order
(seeded shuffle), epoch/repeat/partial batches, and errors that name file, offset and field."""

import math
import struct

import numpy as np
import pytest

from hugectr_lab.data import (DataError, DataReader32, DataReader64, RawLayout, RawRecords, Samples, read_raw_file,
                              read_raw_records, write_raw_file)
from hugectr_lab.data.batch import CSR

SIZES = (5, 7, 3)  # slot_size_array of the test layout: offsets 0, 5, 12


def records(n, seed=0, floats=False):
    rng = np.random.default_rng(seed)
    if floats:
        labels = rng.random((n, 1)).astype(np.float32)
        dense = rng.normal(size=(n, 2)).astype(np.float32)
    else:
        labels = rng.integers(0, 2, (n, 1)).astype(np.int32)
        dense = rng.integers(0, 100, (n, 2)).astype(np.int32)
    keys = np.stack([rng.integers(0, s, n) for s in SIZES], axis=1).astype(np.int32)
    return RawRecords(labels, dense, keys)


def struct_raw_bytes(recs, float_label_dense):
    """A Raw file written straight from the spec: per record L+D int32 (or float32), then S int32 keys."""
    value = "f" if float_label_dense else "i"
    out = b""
    for label, dense, keys in zip(*recs):
        out += struct.pack("<" + value * (len(label) + len(dense)) + "i" * len(keys),
                           *(float(v) if float_label_dense else int(v) for v in list(label) + list(dense)),
                           *(int(k) for k in keys))
    return out


def struct_raw_decode(data, n, float_label_dense, sizes):
    """The spec's conversion, written independently: labels as float, dense ln(x+1) in float, keys + offsets."""
    offsets = [sum(sizes[:k]) for k in range(len(sizes))]
    fmt = "<" + ("f" if float_label_dense else "i") * 3 + "i" * len(sizes)
    labels, dense, keys = [], [], []
    for i in range(n):
        values = struct.unpack_from(fmt, data, i * struct.calcsize(fmt))
        labels.append(float(values[0]))
        dense.append([v if float_label_dense else np.log(np.float32(v) + np.float32(1)) for v in values[1:3]])
        keys += [k + o for k, o in zip(values[3:], offsets)]
    return np.array(labels, np.float32)[:, None], np.array(dense, np.float32), np.array(keys)


@pytest.mark.parametrize("float_label_dense", [False, True])
def test_bytes_match_an_independent_struct_implementation(tmp_path, float_label_dense):
    recs = records(9, floats=float_label_dense)
    layout = RawLayout(1, 2, (3,), "I32", float_label_dense, SIZES)
    assert layout.record_bytes == 24
    write_raw_file(tmp_path / "ours.bin", recs, layout)
    theirs = struct_raw_bytes(recs, float_label_dense)
    assert (tmp_path / "ours.bin").read_bytes() == theirs
    # files written by the independent writer read back as the spec says
    (tmp_path / "theirs.bin").write_bytes(theirs)
    samples = read_raw_file(tmp_path / "theirs.bin", layout)
    labels, dense, keys = struct_raw_decode(theirs, 9, float_label_dense, SIZES)
    np.testing.assert_array_equal(samples.labels, labels)
    np.testing.assert_array_equal(samples.dense, dense)
    np.testing.assert_array_equal(samples.sparse[0].keys, keys)
    np.testing.assert_array_equal(samples.sparse[0].row_offsets, np.arange(28))
    assert samples.sparse[0].keys.dtype == np.uint32
    back = read_raw_records(tmp_path / "theirs.bin", layout)
    for a, b in zip(back, recs):
        np.testing.assert_array_equal(a, b)


def test_dense_is_ln_x_plus_one_and_labels_are_cast():
    layout = RawLayout(1, 2, (3,), "I64", False, SIZES)
    words = layout.encode(RawRecords(np.array([[1]]), np.array([[0, 1]]), np.array([[4, 6, 2]])))
    samples = layout.decode(words)
    assert samples.labels.tolist() == [[1.0]]
    assert samples.dense.dtype == np.float32 and samples.dense[0, 0] == 0.0
    assert math.isclose(samples.dense[0, 1], math.log(2), rel_tol=1e-6)
    assert samples.sparse[0].keys.tolist() == [4, 11, 14] and samples.sparse[0].keys.dtype == np.int64


def test_samples_round_trip_and_several_sparse_inputs(tmp_path):
    layout = RawLayout(1, 2, (2, 1), "I32", True, SIZES)
    recs = records(6, floats=True)
    write_raw_file(tmp_path / "a.bin", recs, layout)
    samples = read_raw_file(tmp_path / "a.bin", layout)
    assert [csr.num_rows for csr in samples.sparse] == [12, 6]
    assert samples.sparse[1].keys.tolist() == (recs.keys[:, 2] + 12).tolist()
    write_raw_file(tmp_path / "b.bin", samples, layout)  # Samples are written with offsets subtracted
    assert (tmp_path / "b.bin").read_bytes() == (tmp_path / "a.bin").read_bytes()
    with pytest.raises(ValueError, match="exactly one key per slot"):
        bad = Samples(samples.labels, samples.dense, (CSR(np.zeros(13, np.int64), np.zeros(0, np.uint32)),
                                                      samples.sparse[1]))
        layout.encode(bad)
    with pytest.raises(ValueError, match="int32 values"):
        RawLayout(1, 2, (2, 1), "I32", False, SIZES).encode(samples)


def id_raw(path, n, layout=None):
    """Sample i has label i and keys (0, 0, 0): batches can be identified by their labels."""
    layout = layout or RawLayout(1, 2, (3,), "I32", False, SIZES)
    recs = RawRecords(np.arange(n)[:, None], np.zeros((n, 2), np.int32), np.zeros((n, 3), np.int32))
    write_raw_file(path, recs, layout)
    return str(path)


def batch_ids(reader):
    return [batch.labels[:batch.size, 0].astype(int).tolist() for batch in reader]


def raw_reader(batchsize=4, **kw):
    return DataReader32(batchsize, 1, 2, [3], [3], format="Raw", slot_size_array=SIZES, **kw)


def test_reader_cuts_the_file_into_batches_in_file_order(tmp_path):
    path = id_raw(tmp_path / "a.bin", 10)
    for workers in (1, 3):
        with raw_reader(num_workers=workers, source=path) as reader:
            assert batch_ids(reader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with raw_reader(source=path) as reader:
        reader.start()
        *_, last = list(reader)
        assert last.size == 2 and last.labels.shape == (4, 1) and last.sparse[0].num_rows == 12
        assert last.sparse[0].nnz == 6  # padding samples have no keys
    with raw_reader(source=path, num_samples=6) as reader:  # the Data layer's num_samples: a prefix
        assert batch_ids(reader) == [[0, 1, 2, 3], [4, 5]]


def test_training_shuffle_is_seeded_per_set_source(tmp_path):
    path = id_raw(tmp_path / "a.bin", 22)
    epochs = []
    for seed in (1, 1, 2):
        with raw_reader(shuffle=True, seed=seed) as reader:
            reader.set_source(path)
            first = batch_ids(reader)
            reader.set_source()  # a new epoch draws a new order
            epochs.append((first, batch_ids(reader)))
    assert epochs[0] == epochs[1] and epochs[0] != epochs[2]
    first, second = epochs[0]
    assert first != second
    for order in (first, second):  # whole batches move; samples inside a batch keep file order
        assert sorted(order) == [list(range(s, min(s + 4, 22))) for s in range(0, 22, 4)]
    with raw_reader(shuffle=True, seed=1) as reader:
        reader.shuffle = False
        reader.set_source(path)
        assert batch_ids(reader)[0] == [0, 1, 2, 3]


def test_repeat_wraps_and_set_source_switches_files(tmp_path):
    a, b = id_raw(tmp_path / "a.bin", 6), id_raw(tmp_path / "b.bin", 3)
    with raw_reader(repeat=True, source=a) as reader:
        got = [reader.read_a_batch() for _ in range(5)]
        assert [g.labels[:g.size, 0].astype(int).tolist() for g in got] == [[0, 1, 2, 3], [4, 5], [0, 1, 2, 3],
                                                                               [4, 5], [0, 1, 2, 3]]
    with raw_reader(source=a) as reader:
        assert len(batch_ids(reader)) == 2 and reader.read_a_batch() is None
        reader.set_source(b)
        assert batch_ids(reader) == [[0, 1, 2]]


def test_i64_keys_and_float_label_dense_through_the_reader(tmp_path):
    layout = RawLayout(1, 2, (3,), "I64", True, SIZES)
    recs = records(5, floats=True)
    write_raw_file(tmp_path / "f.bin", recs, layout)
    with DataReader64(8, 1, 2, [3], format="Raw", slot_size_array=SIZES, float_label_dense=True,
                      source=str(tmp_path / "f.bin")) as reader:
        batch = reader.read_a_batch()
    assert batch.size == 5 and batch.sparse[0].keys.dtype == np.int64
    np.testing.assert_array_equal(batch.dense[:5], recs.dense)
    np.testing.assert_array_equal(batch.sparse[0].keys[:15], (recs.keys + [0, 5, 12]).ravel())


def test_errors_name_the_file_offset_and_field(tmp_path):
    layout = RawLayout(1, 2, (3,), "I32", False, SIZES)
    path = id_raw(tmp_path / "a.bin", 4)
    with pytest.raises(DataError, match=r"a\.bin: byte 96: file ends inside sample 4.*num_samples is 5"):
        read_raw_file(path, layout, num_samples=5)
    (tmp_path / "odd.bin").write_bytes(b"\0" * 30)
    with pytest.raises(DataError, match=r"odd\.bin: byte 24: file size 30 is not a multiple of the record size 24"):
        read_raw_file(tmp_path / "odd.bin", layout)
    bad = RawRecords(np.zeros((3, 1)), np.array([[0, 0], [0, 0], [0, -2]]), np.zeros((3, 3)))
    write_raw_file(tmp_path / "neg.bin", bad, layout)
    with pytest.raises(DataError, match=r"neg\.bin: byte 56: sample 2: dense feature 1 is -2"):
        read_raw_file(tmp_path / "neg.bin", layout)
    bad = RawRecords(np.zeros((2, 1)), np.zeros((2, 2)), np.array([[0, 0, 0], [0, 7, 0]]))
    write_raw_file(tmp_path / "key.bin", bad, RawLayout(1, 2, (3,), "I32", False, None))
    with pytest.raises(DataError, match=r"key\.bin: byte 40: sample 1: slot 1 key 7 must lie in \[0, 7\)"):
        read_raw_file(tmp_path / "key.bin", layout)
    with raw_reader(source=str(tmp_path / "key.bin")) as reader:  # the reader raises the same error
        with pytest.raises(DataError, match="slot 1 key 7"):
            reader.read_a_batch()
    with pytest.raises(DataError, match="not found"):
        raw_reader().set_source(str(tmp_path / "missing.bin"))
    with pytest.raises(ValueError, match="max_feature_num_per_sample >= 3"):
        DataReader32(4, 1, 2, [3], [2], format="Raw")
