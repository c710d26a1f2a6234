"""Parquet format: datasets written by an independent pyarrow implementation of the spec are read
right, ours are read right by it, the reader's worker order and epoch mode, and errors that name the
file, row and column."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hugectr_lab.data import (DataError, DataReader32, DataReader64, ParquetLayout, read_file_list, read_parquet_file,
                              write_file_list, write_parquet_dataset)
from hugectr_lab.data.batch import CSR, Samples

SIZES = (4, 6, 3)  # offsets 0, 4, 10


def spec_dataset(folder, rows_per_file, seed=0, label_dtype="float32"):
    """Written from the spec alone: columns in a shuffled order, float32 label/dense, int64 cats holding
    values without slot offsets, _metadata.json naming each column's index, _file_list.txt."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    order = ["C2", "label", "I1", "C3", "I2", "C1"]
    stats, expected = [], []
    for f, n in enumerate(rows_per_file):
        cols = {"label": rng.integers(0, 2, n).astype(label_dtype), "I1": rng.random(n).astype("float32"),
                "I2": rng.random(n).astype("float32")}
        for s, size in enumerate(SIZES):
            cols[f"C{s + 1}"] = rng.integers(0, size, n).astype("int64")
        pq.write_table(pa.table({name: cols[name] for name in order}), folder / f"part_{f}.parquet")
        stats.append({"file_name": f"part_{f}.parquet", "num_rows": n})
        keys = np.stack([cols[f"C{s + 1}"] + off for s, off in enumerate((0, 4, 10))], axis=1)
        expected.append((cols["label"].astype(np.float32)[:, None], np.stack([cols["I1"], cols["I2"]], 1), keys))
    meta = {"file_stats": stats,
            "cats": [{"col_name": c, "index": order.index(c)} for c in ("C1", "C2", "C3")],
            "conts": [{"col_name": c, "index": order.index(c)} for c in ("I1", "I2")],
            "labels": [{"col_name": "label", "index": 1}]}
    (folder / "_metadata.json").write_text(json.dumps(meta))
    write_file_list(folder / "_file_list.txt", [str(folder / s["file_name"]) for s in stats])
    return str(folder / "_file_list.txt"), expected


def spec_read(list_path):
    """Read a dataset as the spec says, with pyarrow only: (labels, dense, keys with offsets) per file."""
    files = read_file_list(list_path)
    meta = json.loads((Path(files[0]).parent / "_metadata.json").read_text())
    assert [s["file_name"] for s in meta["file_stats"]] == [Path(f).name for f in files]
    out = []
    for name in files:
        table = pq.read_table(name)
        assert all(table.column_names[e["index"]] == e["col_name"] for r in ("cats", "conts", "labels")
                   for e in meta[r])

        def col(entry):
            return table.column(entry["index"]).to_numpy()
        keys = np.stack([col(e) + off for e, off in zip(meta["cats"], (0, 4, 10))], axis=1)
        out.append((np.stack([col(e) for e in meta["labels"]], 1), np.stack([col(e) for e in meta["conts"]], 1), keys))
    return out


def samples_of(expected, key_dtype=np.int64):
    labels, dense, keys = (np.concatenate(x) for x in zip(*expected))
    return Samples(labels.astype(np.float32), dense.astype(np.float32),
                   (CSR(np.arange(keys.size + 1, dtype=np.int64), keys.reshape(-1).astype(key_dtype)),))


LAYOUT = ParquetLayout(1, 2, (3,), "I64", SIZES)


def test_reads_a_dataset_written_straight_from_the_spec(tmp_path):
    list_path, expected = spec_dataset(tmp_path / "pq", [5, 3])
    want = samples_of(expected)
    got = Samples.concat([read_parquet_file(p, LAYOUT) for p in read_file_list(list_path)])
    for a, b in ((got.labels, want.labels), (got.dense, want.dense), (got.sparse[0].keys, want.sparse[0].keys),
                 (got.sparse[0].row_offsets, want.sparse[0].row_offsets)):
        np.testing.assert_array_equal(a, b)
    # integer label columns (NVTabular leaves labels int64) are read as float
    list_path, expected = spec_dataset(tmp_path / "pq_int", [4], label_dtype="int64")
    np.testing.assert_array_equal(read_parquet_file(read_file_list(list_path)[0], LAYOUT).labels,
                                  expected[0][0])


@pytest.mark.parametrize("key_type", ["I32", "I64"])
def test_our_datasets_are_read_right_by_the_spec_reader(tmp_path, key_type):
    _, expected = spec_dataset(tmp_path / "src", [7, 2])
    samples = samples_of(expected, np.uint32 if key_type == "I32" else np.int64)
    layout = ParquetLayout(1, 2, (3,), key_type, SIZES)
    list_path = write_parquet_dataset(tmp_path / "ours", [samples.take(0, 7), samples.take(7, 9)], layout)
    meta = json.loads((tmp_path / "ours" / "_metadata.json").read_text())
    assert meta["file_stats"] == [{"file_name": "part_0.parquet", "num_rows": 7},
                                  {"file_name": "part_1.parquet", "num_rows": 2}]
    assert pq.read_schema(tmp_path / "ours" / "part_0.parquet").field("C1").type == \
        (pa.int32() if key_type == "I32" else pa.int64())
    for (la, de, ke), (lb, db, kb) in zip(spec_read(list_path), expected):
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(de, db)
        np.testing.assert_array_equal(ke, kb)


def id_dataset(folder, sizes):
    """Rows whose label is the global row id (file f starts at 100 f)."""
    parts = []
    for f, n in enumerate(sizes):
        ids = np.arange(100 * f, 100 * f + n)
        parts.append(Samples(ids[:, None].astype(np.float32), np.zeros((n, 2), np.float32),
                             (CSR(np.arange(3 * n + 1, dtype=np.int64), np.tile([0, 4, 10], n).astype(np.int64)),)))
    return write_parquet_dataset(folder, parts, LAYOUT)


def ids(reader):
    return [b.labels[:b.size, 0].astype(int).tolist() for b in reader]


def test_reader_interleaves_workers_like_norm_and_supports_epochs_and_set_source(tmp_path):
    a = id_dataset(tmp_path / "a", [5, 3, 2])
    reader = DataReader64(2, 1, 2, [3], [3], format="Parquet", slot_size_array=SIZES, num_workers=2)
    reader.set_source(a)
    # worker 0: files 0 and 2 (ids 0-4, 200-201); worker 1: file 1 (100-102); round-robin batches
    assert ids(reader) == [[0, 1], [100, 101], [2, 3], [102], [4, 200], [201]]
    assert reader.read_a_batch() is None
    b = id_dataset(tmp_path / "b", [1])
    reader.set_source(b)  # HugeCTR v3.0 refuses set_source for Parquet; we read the next list
    assert ids(reader) == [[100 * 0]]
    reader.close()
    with DataReader64(4, 1, 2, [3], format="Parquet", slot_size_array=SIZES, num_workers=1, repeat=True,
                      source=b) as reader:
        assert [reader.read_a_batch().size for _ in range(3)] == [4, 4, 4]  # the stream wraps around
    with DataReader32(8, 1, 2, [3], format="Parquet", slot_size_array=SIZES, num_workers=1, source=a) as reader:
        batch = reader.read_a_batch()
        assert batch.sparse[0].keys.dtype == np.uint32 and batch.sparse[0].keys[:3].tolist() == [0, 4, 10]


def break_dataset(tmp_path, how):
    list_path, _ = spec_dataset(tmp_path / how, [4])
    folder = tmp_path / how
    meta_path = folder / "_metadata.json"
    meta = json.loads(meta_path.read_text())
    if how == "no_meta":
        meta_path.unlink()
    elif how == "rows":
        meta["file_stats"][0]["num_rows"] = 5
    elif how == "name":
        meta["cats"][0]["col_name"] = "C9"
    elif how == "roles":
        meta["conts"] = meta["conts"][:1]
    elif how in ("null", "string", "range"):
        table = pq.read_table(folder / "part_0.parquet")
        i = table.column_names.index("C3")
        column = {"null": pa.array([1, None, 2, 0], pa.int64()), "string": pa.array(["a", "b", "c", "d"]),
                  "range": pa.array([0, 1, 2, 3], pa.int64())}[how]
        pq.write_table(table.set_column(i, "C3", column), folder / "part_0.parquet")
    elif how == "garbage":
        (folder / "part_0.parquet").write_bytes(b"not parquet at all")
    elif how == "dropped":  # the file lacks one column; the later ones shift left
        pq.write_table(pq.read_table(folder / "part_0.parquet").drop(["C2"]), folder / "part_0.parquet")
    if how != "no_meta":
        meta_path.write_text(json.dumps(meta))
    return read_file_list(list_path)[0]


@pytest.mark.parametrize("how, message", [
    ("no_meta", r"_metadata\.json: not found"),
    ("rows", r"part_0\.parquet: holds 4 rows but .*_metadata\.json says 5"),
    ("name", r"part_0\.parquet: .*_metadata\.json names column 'C9' \(cats\) that the file does not have"),
    ("roles", r"_metadata\.json: lists 1 conts columns but the Data layer's dense_dim is 2"),
    ("null", r"part_0\.parquet: row 1, column 'C3': null value"),
    ("string", r"part_0\.parquet: column 'C3' \(cats\) has type string; it must be an integer column"),
    ("range", r"part_0\.parquet: row 3, column 'C3' \(slot 2\): value 3 is outside \[0, 3\)"),
    ("garbage", r"part_0\.parquet: not a readable Parquet file"),
    ("dropped", r"part_0\.parquet: .*_metadata\.json names column 'C2' \(cats\) that the file does not have "
                r"\(its 5 columns: label, I1, C3, I2, C1\)"),
])
def test_corrupt_datasets_give_errors_naming_file_row_and_column(tmp_path, how, message):
    path = break_dataset(tmp_path, how)
    with pytest.raises(DataError, match=message):
        read_parquet_file(path, LAYOUT)
