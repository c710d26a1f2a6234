"""Norm files: byte layout, round trips, and errors that name the file and byte offset.

The reference writer/reader below are written straight from the byte description with ``struct``
and share no code with the package.
"""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hugectr_lab.data import (CSR, DataError, DataWarning, NormLayout, Samples, encode_norm, iter_norm_file,
                              read_norm_file, read_norm_header, write_norm_file)

KEY_FORMAT = {"I32": "I", "I64": "q"}


# --- reference implementation (independent of the package) ---------------------------------------

def ref_record(payload: bytes, check: str) -> bytes:
    if check == "None":
        return payload
    checksum = struct.pack("<b", struct.unpack("<b", bytes([sum(payload) % 256]))[0])
    return struct.pack("<i", len(payload)) + payload + checksum


def ref_encode(labels, dense, slots, check, key_type) -> bytes:
    """labels/dense: lists of per-sample lists of floats; slots: per sample, list over all slots of key lists."""
    slot_num = len(slots[0]) if slots else 0
    header = struct.pack("<8q", 1 if check == "Sum" else 0, len(labels), len(labels[0]) if labels else 0,
                         len(dense[0]) if dense else 0, slot_num, 0, 0, 0)
    out = ref_record(header, check)
    for lab, den, sample_slots in zip(labels, dense, slots):
        payload = struct.pack(f"<{len(lab) + len(den)}f", *lab, *den)
        for keys in sample_slots:
            payload += struct.pack("<i", len(keys)) + struct.pack(f"<{len(keys)}{KEY_FORMAT[key_type]}", *keys)
        out += ref_record(payload, check)
    return out


def ref_decode(data: bytes, key_type, label_dim, dense_dim, slot_num):
    """The inverse of ``ref_encode``; asserts every checksum."""
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    def open_record(check):
        """Read a Sum record's length; returns it and where the payload starts."""
        return (take("<i")[0], pos) if check == "Sum" else (None, None)

    def close_record(check, length, begin):
        if check == "Sum":
            assert pos == begin + length
            stored = take("<b")[0]
            assert stored == struct.unpack("<b", bytes([sum(data[begin:begin + length]) % 256]))[0]

    check = "Sum" if struct.unpack_from("<i", data, 0)[0] == 64 else "None"
    length, begin = open_record(check)
    header = take("<8q")
    close_record(check, length, begin)
    assert header[2] + header[3] == label_dim + dense_dim and header[4] == slot_num
    labels, dense, slots = [], [], []
    for _ in range(header[1]):
        length, begin = open_record(check)
        floats = take(f"<{label_dim + dense_dim}f")
        labels.append(list(floats[:label_dim]))
        dense.append(list(floats[label_dim:]))
        sample_slots = []
        for _ in range(slot_num):
            nnz = take("<i")[0]
            sample_slots.append(list(take(f"<{nnz}{KEY_FORMAT[key_type]}")))
        slots.append(sample_slots)
        close_record(check, length, begin)
    return labels, dense, slots


# --- from the reference's lists to the package's arrays ----------------------------------------

def from_lists(labels, dense, slots, slot_nums, key_type):
    """Samples from per-sample lists (``slots[i]``: the key lists of all slots of sample i)."""
    dtype = np.uint32 if key_type == "I32" else np.int64
    n, sparse, first = len(labels), [], 0
    for s in slot_nums:
        rows = [slots[i][first + k] for i in range(n) for k in range(s)]
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows], dtype=np.int64)]).astype(np.int64)
        sparse.append(CSR(offsets, np.array([k for r in rows for k in r], dtype=dtype)))
        first += s
    return Samples(np.array(labels, np.float32).reshape(n, -1), np.array(dense, np.float32).reshape(n, -1),
                   tuple(sparse))


def assert_same(a: Samples, b: Samples):
    assert a.labels.shape == b.labels.shape and a.dense.shape == b.dense.shape
    assert np.array_equal(a.labels.view(np.uint32), b.labels.view(np.uint32))  # bitwise, NaNs included
    assert np.array_equal(a.dense.view(np.uint32), b.dense.view(np.uint32))
    assert len(a.sparse) == len(b.sparse)
    for x, y in zip(a.sparse, b.sparse):
        assert x.keys.dtype == y.keys.dtype
        assert np.array_equal(x.row_offsets, y.row_offsets) and np.array_equal(x.keys, y.keys)


# --- strategies --------------------------------------------------------------------------------

@st.composite
def datasets(draw, min_samples=1, max_samples=6):
    key_type = draw(st.sampled_from(["I32", "I64"]))
    check = draw(st.sampled_from(["Sum", "None"]))
    n = draw(st.integers(min_samples, max_samples))
    label_dim, dense_dim = draw(st.integers(1, 3)), draw(st.integers(0, 4))
    slot_nums = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    fixed_nnz = draw(st.one_of(st.none(), st.integers(0, 2)))  # fixed nnz takes the fixed-stride fast path
    key = st.integers(0, 2**32 - 1) if key_type == "I32" else st.integers(-2**63, 2**63 - 1)
    floats = st.floats(width=32, allow_nan=False, allow_infinity=False)  # readers refuse NaN/inf (tests/data/test_non_finite.py)
    labels = [[draw(floats) for _ in range(label_dim)] for _ in range(n)]
    dense = [[draw(floats) for _ in range(dense_dim)] for _ in range(n)]
    nnz = st.integers(0, 3) if fixed_nnz is None else st.just(fixed_nnz)
    slots = [[draw(st.lists(key, min_size=k, max_size=k)) for k in [draw(nnz) for _ in range(sum(slot_nums))]]
             for _ in range(n)]
    return dict(labels=labels, dense=dense, slots=slots, slot_nums=slot_nums, key_type=key_type, check=check)


def layout_of(d):
    return NormLayout(len(d["labels"][0]), len(d["dense"][0]), d["slot_nums"], d["key_type"], d["check"])


# --- round trips -------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(d=datasets())
def test_package_writes_exactly_the_reference_bytes(d, tmp_path_factory):
    samples = from_lists(d["labels"], d["dense"], d["slots"], d["slot_nums"], d["key_type"])
    expected = ref_encode(d["labels"], d["dense"], d["slots"], d["check"], d["key_type"])
    assert encode_norm(samples, check=d["check"], key_type=d["key_type"]) == expected


@settings(max_examples=60, deadline=None)
@given(d=datasets())
def test_reference_file_reads_back_through_the_public_api(d, tmp_path_factory):
    path = tmp_path_factory.mktemp("norm") / "ref.data"
    path.write_bytes(ref_encode(d["labels"], d["dense"], d["slots"], d["check"], d["key_type"]))
    got = read_norm_file(path, d["key_type"], slot_nums=d["slot_nums"])
    assert_same(got, from_lists(d["labels"], d["dense"], d["slots"], d["slot_nums"], d["key_type"]))


@settings(max_examples=60, deadline=None)
@given(d=datasets())
def test_package_file_reads_back_through_the_reference(d, tmp_path_factory):
    path = tmp_path_factory.mktemp("norm") / "pkg.data"
    samples = from_lists(d["labels"], d["dense"], d["slots"], d["slot_nums"], d["key_type"])
    write_norm_file(path, samples, check=d["check"], key_type=d["key_type"])
    labels, dense, slots = ref_decode(path.read_bytes(), d["key_type"], len(d["labels"][0]), len(d["dense"][0]),
                                      sum(d["slot_nums"]))
    assert_same(from_lists(labels, dense, slots, d["slot_nums"], d["key_type"]), samples)


@settings(max_examples=60, deadline=None)
@given(d=datasets(max_samples=12), chunk_bytes=st.integers(1, 300))
def test_records_split_across_read_chunks(d, chunk_bytes, tmp_path_factory):
    path = tmp_path_factory.mktemp("norm") / "chunks.data"
    samples = from_lists(d["labels"], d["dense"], d["slots"], d["slot_nums"], d["key_type"])
    write_norm_file(path, samples, check=d["check"], key_type=d["key_type"])
    parts = [s for s, dropped in iter_norm_file(path, layout_of(d), chunk_bytes=chunk_bytes) if s is not None]
    assert_same(Samples.concat(parts), samples)


@pytest.mark.parametrize("check", ["Sum", "None"])
def test_empty_file_round_trip(tmp_path, check):
    empty = Samples.empty(0, 1, 2, (3,), np.uint32)
    write_norm_file(tmp_path / "e.data", empty, check=check, slot_nums=(3,))
    header = read_norm_header(tmp_path / "e.data")
    fields = (header.check, header.num_records, header.label_dim, header.dense_dim, header.slot_num)
    assert fields == (check, 0, 1, 2, 3)
    assert len(read_norm_file(tmp_path / "e.data")) == 0


def test_worked_example_bytes():
    """The example of docs/formats.md: label 1.0, dense 0.5, slot 0 keys [7, 9], slot 1 empty, I32."""
    sample = Samples(np.array([[1.0]], np.float32), np.array([[0.5]], np.float32),
                     (CSR(np.array([0, 2, 2]), np.array([7, 9], np.uint32)),))
    payload = bytes.fromhex("0000803f 0000003f 02000000 07000000 09000000 00000000")
    header = bytes.fromhex("0000000000000000 0100000000000000 0100000000000000 0100000000000000"
                           "0200000000000000 0000000000000000 0000000000000000 0000000000000000")
    assert encode_norm(sample, check="None", key_type="I32") == header + payload
    framed_header = bytes.fromhex("40000000") + b"\x01" + header[1:] + bytes.fromhex("06")
    framed = bytes.fromhex("18000000") + payload + bytes.fromhex("10")
    assert encode_norm(sample, check="Sum", key_type="I32") == framed_header + framed
    wide = bytes.fromhex("0000803f 0000003f 02000000 0700000000000000 0900000000000000 00000000")
    assert encode_norm(sample, check="None", key_type="I64") == header + wide


def test_keys_that_do_not_fit_the_key_type_are_refused(tmp_path):
    sample = Samples(np.zeros((1, 1), np.float32), np.zeros((1, 0), np.float32),
                     (CSR(np.array([0, 1]), np.array([-1], np.int64)),))
    with pytest.raises(ValueError, match="out of range"):
        write_norm_file(tmp_path / "x.data", sample, key_type="I32")


# --- bad data ---------------------------------------------------------------------------------

def small_file(tmp_path, check, n=4, nnz=(1, 2), key_type="I32"):
    """n samples, label = sample index, one dense value, 2 slots with the given nnz; returns path, bytes."""
    labels = [[float(i)] for i in range(n)]
    dense = [[0.25] for _ in range(n)]
    slots = [[[10 * i + k for k in range(nnz[0])], [1000 + k for k in range(nnz[1])]] for i in range(n)]
    data = ref_encode(labels, dense, slots, check, key_type)
    path = tmp_path / f"small_{check}.data"
    path.write_bytes(data)
    return path, data


def record_offsets(data, check, n):
    """Byte offset of each sample record (for the small_file layout)."""
    header = 69 if check == "Sum" else 64
    size = (len(data) - header) // n
    return [header + i * size for i in range(n)]


def test_bad_checksum_drops_the_sample_with_a_warning(tmp_path):
    path, data = small_file(tmp_path, "Sum")
    offsets = record_offsets(data, "Sum", 4)
    broken = bytearray(data)
    broken[offsets[2] + 4 + 8] ^= 0x01  # sample 2's first nnz: 1 -> 0, which only the checksum notices
    path.write_bytes(bytes(broken))
    with pytest.warns(DataWarning, match=rf"small_Sum.data: byte {offsets[2]}: sample 2: checksum mismatch"):
        got = read_norm_file(path, slot_nums=[1, 1])
    assert got.labels[:, 0].tolist() == [0.0, 1.0, 3.0]


@pytest.mark.parametrize("check", ["Sum", "None"])
def test_truncated_file_names_the_record_offset(tmp_path, check):
    path, data = small_file(tmp_path, check)
    offsets = record_offsets(data, check, 4)
    path.write_bytes(data[:offsets[3] + 9])
    with pytest.raises(DataError, match=rf"byte {offsets[3]}: file ends inside sample 3 \(the header announces 4"):
        read_norm_file(path, slot_nums=[2])


def test_header_check_mode_mismatch(tmp_path):
    path, _ = small_file(tmp_path, "Sum")
    with pytest.raises(DataError, match=r"byte 0: file is written with check Sum but the reader expects check None"):
        read_norm_file(path, check="None")
    path, _ = small_file(tmp_path, "None")
    with pytest.raises(DataError, match=r"byte 0: file is written with check None but the reader expects check Sum"):
        read_norm_file(path, check="Sum")


@pytest.mark.parametrize("check, field_base", [("Sum", 4), ("None", 0)])
def test_header_layout_mismatch(tmp_path, check, field_base):
    path, _ = small_file(tmp_path, check)
    with pytest.raises(DataError, match=rf"byte {field_base + 32}: header slot_num 2 != the configured total slot "
                                        r"count 3"):
        read_norm_file(path, slot_nums=[2, 1])
    with pytest.raises(DataError, match=rf"byte {field_base + 16}: header label_dim \+ dense_dim = 1 \+ 1"):
        read_norm_file(path, label_dim=1, dense_dim=2)


def test_label_and_dense_split_is_taken_from_the_reader(tmp_path):
    """As in HugeCTR only label_dim + dense_dim must match the header; the reader's split wins."""
    path, _ = small_file(tmp_path, "None")
    got = read_norm_file(path, label_dim=2, dense_dim=0)
    assert got.labels.shape == (4, 2) and got.dense.shape == (4, 0)


def test_not_a_norm_file(tmp_path):
    (tmp_path / "junk.data").write_bytes(b"\x07" * 100)
    with pytest.raises(DataError, match=r"junk.data: byte 0: not a Norm data file"):
        read_norm_file(tmp_path / "junk.data")
    (tmp_path / "short.data").write_bytes(bytes(10))
    with pytest.raises(DataError, match=r"byte 10: file ends inside the 64-byte header"):
        read_norm_file(tmp_path / "short.data")


@pytest.mark.parametrize("check", ["Sum", "None"])
def test_too_many_keys_for_max_feature_num(tmp_path, check):
    path, data = small_file(tmp_path, check, nnz=(1, 3))
    offsets = record_offsets(data, check, 4)
    with pytest.raises(DataError, match=rf"byte {offsets[0]}: sample 0: sparse input 1 has 3 keys, more than its "
                                        r"max_feature_num_per_sample 2"):
        read_norm_file(path, slot_nums=[1, 1], max_feature_nums=[2, 2])
    # a single slot beyond the whole read buffer (the sum over inputs) is named with the slot's offset
    slot1 = offsets[0] + (4 if check == "Sum" else 0) + 8 + 4 + 4
    with pytest.raises(DataError, match=rf"byte {slot1}: sample 0, slot 1: nnz 3 exceeds 2"):
        read_norm_file(path, slot_nums=[1, 1], max_feature_nums=[1, 1])


def test_negative_nnz_is_an_error(tmp_path):
    path, data = small_file(tmp_path, "None")
    offsets = record_offsets(data, "None", 4)
    broken = bytearray(data)
    slot0 = offsets[1] + 8
    broken[slot0:slot0 + 4] = struct.pack("<i", -2)
    path.write_bytes(bytes(broken))
    with pytest.raises(DataError, match=rf"byte {slot0}: sample 1, slot 0: nnz -2 is negative"):
        read_norm_file(path, slot_nums=[2])


def test_huge_nnz_in_unframed_data_is_not_mistaken_for_a_cut_off_record(tmp_path):
    path, data = small_file(tmp_path, "None")
    offsets = record_offsets(data, "None", 4)
    broken = bytearray(data)
    slot0 = offsets[3] + 8
    broken[slot0:slot0 + 4] = struct.pack("<i", 10**9)
    path.write_bytes(bytes(broken))
    with pytest.raises(DataError, match=rf"byte {slot0}: sample 3, slot 0: nnz 1000000000 exceeds"):
        read_norm_file(path, slot_nums=[2], max_feature_nums=[30])


def test_bad_length_field(tmp_path):
    path, data = small_file(tmp_path, "Sum")
    offsets = record_offsets(data, "Sum", 4)
    broken = bytearray(data)
    broken[offsets[1]:offsets[1] + 4] = struct.pack("<i", 7)
    path.write_bytes(bytes(broken))
    with pytest.raises(DataError, match=rf"byte {offsets[1]}: sample 1: length field 7 is not a valid sample record"):
        read_norm_file(path, slot_nums=[2])


def test_length_field_that_disagrees_with_the_slots(tmp_path):
    """A record whose checksum is right but whose nnz do not add up to its length."""
    labels, dense = [[1.0]], [[0.0]]
    payload = struct.pack("<2f", 1.0, 0.0) + struct.pack("<iI", 1, 5) + struct.pack("<iI", 0, 99)  # stray key word
    data = ref_encode(labels, dense, [[[5], []]], "Sum", "I32")
    header = data[:69]
    record = ref_record(payload, "Sum")
    (tmp_path / "x.data").write_bytes(header + record)
    with pytest.raises(DataError, match=r"byte 69: sample 0: the length field says 24 payload bytes but the slots' "
                                        r"nnz make 20"):
        read_norm_file(tmp_path / "x.data", slot_nums=[2])


def test_bytes_after_the_last_record_are_ignored(tmp_path):
    path, data = small_file(tmp_path, "None")
    path.write_bytes(data + b"\x01\x02\x03")
    assert len(read_norm_file(path, slot_nums=[2])) == 4
