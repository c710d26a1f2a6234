"""DataReader: HugeCTR's batch order, epoch/repeat, set_source, errors that surface, no hangs."""

import gc
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from hugectr_lab.data import (CSR, DataError, DataReader, DataReader32, DataReader64, DataWarning, NotInitializedError,
                              Samples, write_file_list, write_norm_file)

TIMEOUT = 20  # seconds; a reader that needs longer is hung


def within(fn, timeout=TIMEOUT):
    """Run ``fn`` in a thread; fail (rather than hang the suite) if it does not finish in time."""
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as error:  # re-raised below, in the test's thread
            result["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"no result within {timeout} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


def id_samples(ids, slot_nums=(2,), dtype=np.uint32):
    """Samples whose label, dense value and keys encode the sample id; sample i has i % 3 keys per slot."""
    ids = np.asarray(ids)
    sparse = []
    for j, s in enumerate(slot_nums):
        nnz = np.repeat(ids % 3, s)  # (N*S,)
        offsets = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
        sparse.append(CSR(offsets, (np.repeat(np.repeat(ids, s), nnz) * 10 + j).astype(dtype)))
    return Samples(ids[:, None].astype(np.float32), np.stack([ids, -ids], axis=1).astype(np.float32), tuple(sparse))


def make_dataset(folder, file_sizes, *, check="Sum", slot_nums=(2,), key_type="I32", name="list.txt"):
    """Files of consecutive sample ids (file f starts at 1000 * f); returns the list path and per-file ids."""
    dtype = np.uint32 if key_type == "I32" else np.int64
    paths, ids = [], []
    for f, size in enumerate(file_sizes):
        file_ids = list(range(1000 * f, 1000 * f + size))
        path = folder / f"part{f}.data"
        write_norm_file(path, id_samples(file_ids, slot_nums, dtype) if size else
                        Samples.empty(0, 1, 2, slot_nums, dtype), check=check, key_type=key_type, slot_nums=slot_nums)
        paths.append(str(path))
        ids.append(file_ids)
    write_file_list(folder / name, paths)
    return str(folder / name), ids


def expected_order(file_ids, batchsize, workers, repeat, batches):
    """HugeCTR's order, modelled directly: worker w reads files w, w+W, ...; batches round-robin."""
    n = len(file_ids)

    def stream(w):
        k = w
        while repeat or k < n:
            yield from file_ids[k % n]
            k += workers

    streams = [stream(w) for w in range(workers)]
    active, out = list(range(workers)), []
    while active and len(out) < batches:
        for w in list(active):
            batch = [x for _, x in zip(range(batchsize), streams[w])]
            if len(batch) < batchsize:
                active.remove(w)
            if batch and len(out) < batches:
                out.append(batch)
    return out


def reader_for(source, batchsize, **options):
    options.setdefault("num_workers", 1)
    return DataReader32(batchsize, 1, 2, [2], [6], source=source, **options)


def read_ids(reader, limit=1000):
    """Sample ids of each batch until the end (or ``limit`` batches)."""
    def collect():
        out = []
        while len(out) < limit and (batch := reader.read_a_batch()) is not None:
            out.append(batch.labels[:batch.size, 0].astype(int).tolist())
        return out
    return within(collect)


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
@pytest.mark.parametrize("batchsize", [1, 4, 7])
def test_epoch_order_matches_hugectr(tmp_path, workers, batchsize):
    source, ids = make_dataset(tmp_path, [5, 9, 0, 6, 3])
    with reader_for(source, batchsize, num_workers=workers) as reader:
        assert read_ids(reader) == expected_order(ids, batchsize, workers, repeat=False, batches=10**6)
        assert reader.read_a_batch() is None  # and it stays at the end


@pytest.mark.parametrize("workers", [1, 2, 4, 7])
def test_repeat_order_wraps_around(tmp_path, workers):
    source, ids = make_dataset(tmp_path, [5, 9, 6])
    with reader_for(source, 4, num_workers=workers, repeat=True) as reader:
        assert read_ids(reader, limit=30) == expected_order(ids, 4, workers, repeat=True, batches=30)


def test_batch_contents_and_padding(tmp_path):
    source, _ = make_dataset(tmp_path, [5], slot_nums=(2, 1), key_type="I64")
    with DataReader64(4, 1, 2, [2, 1], [6, 3], source=source, num_workers=1) as reader:
        batches = within(lambda: list(reader))
    assert [b.size for b in batches] == [4, 1]
    last = batches[1]
    assert last.labels.shape == (4, 1) and last.dense.shape == (4, 2)
    assert np.array_equal(last.labels[:, 0], [4, 0, 0, 0]) and np.array_equal(last.dense[:, 1], [-4, 0, 0, 0])
    expected = id_samples([4], (2, 1), np.int64)
    for csr, want, s in zip(last.sparse, expected.sparse, (2, 1)):
        assert csr.keys.dtype == np.int64
        assert len(csr.row_offsets) == 4 * s + 1  # padding rows are empty
        assert np.array_equal(csr.row_offsets[:s + 1], want.row_offsets) and np.all(csr.row_offsets[s:] == want.nnz)
        assert np.array_equal(csr.keys, want.keys)


@pytest.mark.parametrize("check", ["Sum", "None"])
def test_batches_span_files_and_chunks(tmp_path, check):
    """Small read chunks and batches across file boundaries give the same samples as one big read."""
    source, ids = make_dataset(tmp_path, [50, 31, 44], check=check)
    with reader_for(source, 16, chunk_bytes=100, check=check) as reader:
        assert read_ids(reader) == expected_order(ids, 16, 1, repeat=False, batches=10**6)


def test_set_source_rewinds_and_switches(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    source_a, ids_a = make_dataset(tmp_path / "a", [6])
    source_b, ids_b = make_dataset(tmp_path / "b", [3, 3])
    reader = reader_for(None, 4)
    with pytest.raises(NotInitializedError):
        reader.set_source()
    with pytest.raises(NotInitializedError):
        reader.start()
    reader.set_source(source_a)
    assert within(reader.read_a_batch).labels[0, 0] == 0
    reader.set_source()  # rewind: queued batches are dropped
    assert read_ids(reader) == [[0, 1, 2, 3], [4, 5]]
    reader.set_source()
    assert read_ids(reader) == [[0, 1, 2, 3], [4, 5]]
    reader.set_source(source_b)
    assert reader.source == source_b
    assert read_ids(reader) == [[0, 1, 2, 1000], [1001, 1002]]
    reader.close()


def test_from_data_spec(tmp_path):
    source, ids = make_dataset(tmp_path, [3, 4], key_type="I64")
    data = SimpleNamespace(format="Norm", source=source, eval_source="", check="Sum", num_workers=2,
                           label=SimpleNamespace(label_dim=1), dense=SimpleNamespace(dense_dim=2),
                           sparse=[SimpleNamespace(slot_num=2, max_feature_num_per_sample=4)])
    with DataReader64.from_data_spec(data, 2) as reader:
        assert reader.key_type == np.int64 and reader.num_workers == 2
        assert read_ids(reader) == expected_order(ids, 2, 2, repeat=False, batches=100)
    with pytest.raises(ValueError, match="I64"):
        DataReader64.from_data_spec(data, 2, key_type="I32")


def test_checksum_mismatch_drops_and_counts(tmp_path):
    source, _ = make_dataset(tmp_path, [6])
    data = bytearray((tmp_path / "part0.data").read_bytes())
    data[-3] ^= 0x10  # a key byte of the last sample
    (tmp_path / "part0.data").write_bytes(bytes(data))
    with reader_for(source, 4) as reader:
        with pytest.warns(DataWarning, match=r"part0.data: byte \d+: sample 5: checksum mismatch"):
            assert read_ids(reader) == [[0, 1, 2, 3], [4]]
        assert reader.dropped_samples == 1


def corrupt_second_file(tmp_path, how):
    source, _ = make_dataset(tmp_path, [4, 4, 4])
    path = tmp_path / "part1.data"
    data = path.read_bytes()
    path.write_bytes(data[:-7] if how == "truncate" else b"\xff" * 8 + data[8:])
    return source


@pytest.mark.parametrize("how, message", [("truncate", r"part1.data: byte \d+: file ends inside sample 3"),
                                           ("header", r"part1.data: byte 0: not a Norm data file")])
@pytest.mark.parametrize("repeat", [False, True])
def test_errors_surface_in_the_consumer_and_stick(tmp_path, how, message, repeat):
    source = corrupt_second_file(tmp_path, how)
    with reader_for(source, 2, repeat=repeat) as reader:
        with pytest.raises(DataError, match=message):
            read_ids(reader)
        with pytest.raises(DataError, match=message):  # the reader stays failed until set_source
            within(reader.read_a_batch)


def test_header_that_disagrees_with_the_reader(tmp_path):
    source, _ = make_dataset(tmp_path, [4], check="None")
    with reader_for(source, 2, check="Sum") as reader:
        with pytest.raises(DataError, match="written with check None but the reader expects check Sum"):
            read_ids(reader)
    with DataReader32(2, 1, 2, [3], source=source, check="None") as reader:
        with pytest.raises(DataError, match="header slot_num 2 != the configured total slot count 3"):
            read_ids(reader)


def test_too_many_keys_is_an_error(tmp_path):
    source, _ = make_dataset(tmp_path, [4])
    with DataReader32(2, 1, 2, [2], [3], source=source) as reader:  # sample 2 has 2 + 2 keys
        with pytest.raises(DataError, match="sample 2: sparse input 0 has 4 keys, more than its "
                                            "max_feature_num_per_sample 3"):
            read_ids(reader)


def test_missing_data_file_is_named_at_set_source(tmp_path):
    write_file_list(tmp_path / "list.txt", ["nowhere.data"])
    reader = reader_for(None, 2)
    with pytest.raises(DataError, match=r"list.txt: data file 'nowhere.data' not found"):
        reader.set_source(str(tmp_path / "list.txt"))


def test_repeat_over_files_without_samples_does_not_spin(tmp_path):
    source, _ = make_dataset(tmp_path, [0, 0])
    with reader_for(source, 2, repeat=True) as reader:
        with pytest.raises(DataError, match="found no sample in any of its files"):
            read_ids(reader)


def test_close_stops_the_thread_and_reading_starts_again(tmp_path):
    source, _ = make_dataset(tmp_path, [20])
    reader = reader_for(source, 2, repeat=True, prefetch=1)
    within(reader.read_a_batch)
    thread = reader._thread
    within(reader.close)
    assert not thread.is_alive()
    assert read_ids(reader, limit=1) == [[0, 1]]  # read_a_batch starts again from the beginning
    reader.close()


def test_an_abandoned_reader_stops_its_thread(tmp_path):
    source, _ = make_dataset(tmp_path, [20])
    reader = reader_for(source, 2, repeat=True, prefetch=1)
    within(reader.read_a_batch)
    thread = reader._thread
    del reader
    gc.collect()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_key_type_of_the_named_readers():
    assert DataReader32(2, 1, 0, [1]).key_type == np.uint32
    assert DataReader64(2, 1, 0, [1]).key_type == np.int64
    assert DataReader(2, 1, 0, [1]).key_type == np.uint32  # HugeCTR's default input_key_type is I32
    with pytest.raises(ValueError):
        DataReader32(2, 1, 0, [1], key_type="I64")
