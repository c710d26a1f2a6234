"""Keyset files and file lists."""

from pathlib import Path

import numpy as np
import pytest

from hugectr_lab.data import (DataError, read_file_list, read_keyset, resolve_data_path, resolve_file_list,
                              write_file_list, write_keyset)


@pytest.mark.parametrize("key_type, dtype", [("I32", np.uint32), ("I64", np.int64)])
def test_keyset_round_trip(tmp_path, key_type, dtype):
    keys = np.array([5, 0, np.iinfo(dtype).max, 17], dtype)
    write_keyset(tmp_path / "k.keyset", keys, key_type)
    assert (tmp_path / "k.keyset").stat().st_size == 4 * np.dtype(dtype).itemsize
    got = read_keyset(tmp_path / "k.keyset", key_type)
    assert got.dtype == dtype and np.array_equal(got, keys)


def test_keyset_bytes_are_raw_little_endian(tmp_path):
    write_keyset(tmp_path / "k.keyset", [1, 258], "I32")
    assert (tmp_path / "k.keyset").read_bytes() == bytes.fromhex("01000000 02010000")


def test_keyset_errors(tmp_path):
    (tmp_path / "odd.keyset").write_bytes(bytes(12))
    with pytest.raises(DataError, match=r"odd.keyset: byte 8: keyset size 12 bytes is not a multiple of 8"):
        read_keyset(tmp_path / "odd.keyset", "I64")
    with pytest.raises(ValueError, match="out of range"):
        write_keyset(tmp_path / "neg.keyset", [-1], "I32")


def test_file_list_round_trip(tmp_path):
    write_file_list(tmp_path / "list.txt", ["a.data", "sub/b.data"])
    assert (tmp_path / "list.txt").read_text() == "2\na.data\nsub/b.data\n"
    assert read_file_list(tmp_path / "list.txt") == ["a.data", "sub/b.data"]


def test_file_list_tolerates_crlf_and_ignores_extra_lines(tmp_path):
    (tmp_path / "list.txt").write_bytes(b"2\r\nx.data \r\ny.data\r\nz.data\r\n")
    assert read_file_list(tmp_path / "list.txt") == ["x.data", "y.data"]


@pytest.mark.parametrize("text, message", [("", "line 1 must be the number of data files"),
                                           ("two\na\nb\n", "line 1 must be the number of data files, got 'two'"),
                                           ("0\n", "the number of data files must be > 0"),
                                           ("3\na\nb\n", "announces 3 data files but only 2 follow"),
                                           ("2\na\n\n", "line 3: empty data file path")])
def test_bad_file_lists(tmp_path, text, message):
    (tmp_path / "list.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        read_file_list(tmp_path / "list.txt")


def test_relative_paths_resolve_against_the_cwd_first_then_the_list(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.data").write_bytes(b"list dir")
    (tmp_path / "x.data").write_bytes(b"cwd")
    write_file_list(tmp_path / "data" / "list.txt", ["x.data", "data/x.data"])
    monkeypatch.chdir(tmp_path)
    assert [Path(p).read_bytes() for p in resolve_file_list("data/list.txt")] == [b"cwd", b"list dir"]
    monkeypatch.chdir(tmp_path / "data")
    assert Path(resolve_data_path("x.data", "list.txt")).read_bytes() == b"list dir"
    with pytest.raises(DataError, match="data file 'data/x.data' not found"):
        resolve_file_list("list.txt")
