"""HugeCTR's Norm data files: a 64-byte header, then one record per sample (see docs/formats.md).

A sample record is ``label_dim + dense_dim`` float32 values (labels first), then for every slot (slots of
sparse input 0 first) an int32 nnz followed by nnz keys (uint32 for I32, int64 for I64). With check
``"Sum"`` every record, the header included, is framed as ``int32 length | payload | int8 checksum``
where the checksum is the sum of the payload bytes modulo 256. All values are little-endian.

Reading and writing are vectorised over samples; see ``norm_parse`` for how records are located.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..fileio import naming_os_errors
from .batch import Samples, as_keys, key_dtype
from .errors import DataError, DataWarning, check_data_file
from .norm_parse import checksums, frame_records, key_word_positions, parse_records

HEADER_BYTES = 64
HEADER_FIELDS = ("error_check", "number_of_records", "label_dim", "dense_dim", "slot_num")
CHECK_MODES = {"None": 0, "Sum": 1}  # check mode -> the header's error_check value
FIRST_FIELD = {"None": 0, "Sum": 4}  # byte offset of the header's first field (after a Sum length field)
DEFAULT_CHUNK_BYTES = 2 << 20


def check_mode(value) -> str:
    """``"Sum"`` or ``"None"`` (HugeCTR's ``check`` / ``Check_t``), case-insensitive."""
    for name in CHECK_MODES:
        if str(value).lower() == name.lower():
            return name
    raise ValueError(f"check must be 'Sum' or 'None', got {value!r}")


@dataclass(frozen=True)
class NormHeader:
    """The header record of a Norm file (its three reserved int64 fields are always 0)."""

    check: str
    num_records: int
    label_dim: int
    dense_dim: int
    slot_num: int

    def to_bytes(self) -> bytes:
        """The 64 header bytes, unframed."""
        values = [CHECK_MODES[self.check], self.num_records, self.label_dim, self.dense_dim, self.slot_num, 0, 0, 0]
        return np.array(values, "<i8").tobytes()


@dataclass(frozen=True)
class NormLayout:
    """What a reader expects of every record: the Data layer's side of the format.

    ``max_feature_nums`` (one per sparse input, or None for no limit) bounds the keys of one sample in
    one sparse input, as ``max_feature_num_per_sample`` does in HugeCTR.
    """

    label_dim: int
    dense_dim: int
    slot_nums: tuple
    key_type: object = "I32"  # "I32" / "I64" or a key dtype; stored as the numpy dtype
    check: str = "Sum"
    max_feature_nums: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "slot_nums", tuple(int(s) for s in self.slot_nums))
        object.__setattr__(self, "key_type", key_dtype(self.key_type))
        object.__setattr__(self, "check", check_mode(self.check))
        if self.max_feature_nums is not None:
            object.__setattr__(self, "max_feature_nums", tuple(int(m) for m in self.max_feature_nums))
            if len(self.max_feature_nums) != len(self.slot_nums):
                raise ValueError("max_feature_nums needs one entry per sparse input")
        if self.label_dim < 0 or self.dense_dim < 0 or min(self.slot_nums, default=0) < 0:
            raise ValueError("label_dim, dense_dim and slot counts must be >= 0")
        if self.float_words + self.slot_num == 0:
            raise ValueError("a sample needs at least one label, dense value or slot")

    @property
    def slot_num(self) -> int:
        """Slots over all sparse inputs."""
        return sum(self.slot_nums)

    @property
    def float_words(self) -> int:
        return self.label_dim + self.dense_dim

    @property
    def key_words(self) -> int:
        """4-byte words per key: 1 for uint32, 2 for int64."""
        return self.key_type.itemsize // 4

    @property
    def slot_nnz_cap(self):
        """Largest nnz of one slot HugeCTR's worker buffer takes (sum of max_feature_nums), or None."""
        return None if self.max_feature_nums is None else sum(self.max_feature_nums)

    def payload_bytes_range(self) -> tuple:
        """Smallest and largest payload a sample record can announce, in bytes (the largest lets every
        slot fill the read buffer; the per-input limits are checked on the decoded nnz)."""
        least = 4 * (self.float_words + self.slot_num)
        if self.max_feature_nums is None:
            return least, 2**31 - 1
        return least, least + self.key_type.itemsize * self.slot_num * self.slot_nnz_cap


# --- writing -------------------------------------------------------------------------------------

def _payload_words(samples: Samples, layout: NormLayout):
    """All sample payloads back to back as little-endian 4-byte words, and each record's first word.

    Returns ``(words (T,) uint32, record_starts (N+1,) int64)``.
    """
    n, kw = len(samples), layout.key_words
    nnz = np.hstack([csr.row_nnz().reshape(n, s) for csr, s in zip(samples.sparse, layout.slot_nums)] +
                    [np.zeros((n, 0), np.int64)])  # (N, S)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(layout.float_words + layout.slot_num + kw * nnz.sum(axis=1), out=starts[1:])
    words = np.empty(starts[-1], "<u4")

    floats = np.hstack([samples.labels, samples.dense]).astype("<f4")  # (N, L+D)
    words[starts[:-1, None] + np.arange(layout.float_words)] = floats.view("<u4")

    # each slot's nnz word sits after the floats and the previous slots of its sample
    slot_words = 1 + kw * nnz
    slot_pos = starts[:-1, None] + layout.float_words + np.cumsum(slot_words, axis=1) - slot_words  # (N, S)
    words[slot_pos] = nnz.astype("<i4").view("<u4")

    first_slot = 0
    for csr, s in zip(samples.sparse, layout.slot_nums):
        positions = key_word_positions(slot_pos[:, first_slot:first_slot + s].ravel(), csr.row_offsets, kw)
        keys = as_keys(csr.keys, layout.key_type).astype(layout.key_type.newbyteorder("<"), copy=False)
        words[positions] = keys.view("<u4").reshape(-1, kw)
        first_slot += s
    return words, starts


def _validate_samples(samples: Samples, slot_nums):
    n = len(samples)
    if samples.labels.ndim != 2 or samples.dense.ndim != 2 or len(samples.dense) != n:
        raise ValueError(f"labels and dense must be (N, L) and (N, D) arrays, got {samples.labels.shape} "
                         f"and {samples.dense.shape}")
    if len(slot_nums) != len(samples.sparse):
        raise ValueError(f"{len(slot_nums)} slot counts for {len(samples.sparse)} sparse inputs")
    for i, (csr, s) in enumerate(zip(samples.sparse, slot_nums)):
        if csr.num_rows != n * s or csr.row_offsets[0] != 0 or csr.nnz != len(csr.keys):
            raise ValueError(f"sparse input {i}: expected {n * s} rows with row_offsets[0] == 0 and "
                             f"row_offsets[-1] == len(keys)")


def encode_norm(samples: Samples, *, check="Sum", key_type="I32", slot_nums=None) -> bytes:
    """The bytes of a Norm file holding ``samples``.

    ``slot_nums`` (slots per sparse input) is only needed when ``samples`` is empty.
    """
    slot_nums = samples.slot_nums if slot_nums is None else tuple(slot_nums)
    _validate_samples(samples, slot_nums)
    layout = NormLayout(samples.labels.shape[1], samples.dense.shape[1], slot_nums, key_type, check)
    header = NormHeader(layout.check, len(samples), layout.label_dim, layout.dense_dim, layout.slot_num).to_bytes()
    words, starts = _payload_words(samples, layout)
    if layout.check == "None":
        return header + words.tobytes()
    framed_header = frame_records(np.frombuffer(header, np.uint8), np.array([0, HEADER_BYTES]))
    return framed_header.tobytes() + frame_records(words.view(np.uint8), 4 * starts).tobytes()


def write_norm_file(path, samples: Samples, *, check="Sum", key_type="I32", slot_nums=None) -> int:
    """Write ``samples`` as a Norm file; returns the number of bytes written.

    Keys are cast to the key type's dtype (an error if any does not fit). ``slot_nums`` is only needed
    when ``samples`` is empty.
    """
    data = encode_norm(samples, check=check, key_type=key_type, slot_nums=slot_nums)
    with naming_os_errors(path), open(path, "wb") as f:
        f.write(data)
    return len(data)


# --- reading -------------------------------------------------------------------------------------

def _open_data_file(path):
    """``path`` opened for reading; DataError for a missing or special file (a FIFO would block)."""
    check_data_file(path, "Norm data file")
    return open(path, "rb")


def read_header(f, path):
    """Read the header record from the start of the open binary file ``f``.

    Returns ``(NormHeader, header_bytes)`` where ``header_bytes`` is 64 (check None) or 69 (framed).
    The check mode is recognised from the bytes: an unframed header starts with error_check = 0,
    a framed one with its length 64.
    """
    head = f.read(HEADER_BYTES + 5)
    first_word = int.from_bytes(head[:4], "little") if len(head) >= 4 else None
    if len(head) >= 8 and int.from_bytes(head[:8], "little") == 0:
        check, body, size = "None", head[:HEADER_BYTES], HEADER_BYTES
    elif first_word == HEADER_BYTES:
        check, body, size = "Sum", head[4:4 + HEADER_BYTES], HEADER_BYTES + 5
    else:
        raise DataError(path, 0, "not a Norm data file: it starts with neither error_check = 0 (check None) "
                                 "nor a header record framed with length 64 (check Sum)")
    if len(head) < size:
        raise DataError(path, len(head), f"file ends inside the {size}-byte header")
    if check == "Sum" and checksums(np.frombuffer(body, np.uint8), [0], [HEADER_BYTES])[0] != head[size - 1]:
        raise DataError(path, size - 1, "header checksum mismatch")
    values = np.frombuffer(body, "<i8")
    if check == "Sum" and values[0] != CHECK_MODES["Sum"]:
        raise DataError(path, 4, f"framed header with error_check = {values[0]} (expected 1)")
    for field, value in zip(HEADER_FIELDS[1:], values[1:5]):
        if value < 0:
            raise DataError(path, FIRST_FIELD[check] + 8 * HEADER_FIELDS.index(field), f"header {field} = {value} < 0")
    return NormHeader(check, *(int(v) for v in values[1:5])), size


def check_header(header: NormHeader, layout: NormLayout, path) -> None:
    """DataError if the header disagrees with what the reader expects (checked as HugeCTR does:
    check mode, total slot count, and label_dim + dense_dim as a sum)."""
    field = FIRST_FIELD[header.check]
    if header.check != layout.check:
        raise DataError(path, 0, f"file is written with check {header.check} but the reader expects check "
                                 f"{layout.check}")
    if header.slot_num != layout.slot_num:
        raise DataError(path, field + 32, f"header slot_num {header.slot_num} != the configured total slot "
                                          f"count {layout.slot_num} (slot_nums {list(layout.slot_nums)})")
    if header.label_dim + header.dense_dim != layout.float_words:
        raise DataError(path, field + 16, f"header label_dim + dense_dim = {header.label_dim} + {header.dense_dim}"
                                          f" != configured {layout.label_dim} + {layout.dense_dim}")


def iter_norm_file(path, layout: NormLayout, *, chunk_bytes=DEFAULT_CHUNK_BYTES):
    """Yield ``(samples, dropped)`` for successive stretches of the Norm file at ``path``.

    ``samples`` is a ``Samples`` (None when every record of the stretch was dropped), ``dropped`` a list
    of ``DroppedSample`` (records whose checksum did not match). Structural problems raise DataError
    naming the byte offset. Bytes after the announced number of records are ignored, as in HugeCTR.
    """
    with _open_data_file(path) as f:
        header, offset = read_header(f, path)
        check_header(header, layout, path)
        f.seek(offset)
        index, remaining = 0, header.num_records
        buf, eof = np.zeros(0, np.uint8), False
        while remaining:
            if not eof:
                fresh = np.empty(chunk_bytes, np.uint8)
                got = f.readinto(fresh)
                eof = got == 0
                buf = np.concatenate([buf, fresh[:got]]) if len(buf) else fresh[:got]
            chunk = parse_records(buf, layout, path=path, offset=offset, first_index=index, max_records=remaining)
            if chunk.records == 0:
                if eof:
                    raise DataError(path, offset, f"file ends inside sample {index} (the header announces "
                                                  f"{header.num_records} samples)")
                continue
            yield chunk.samples, chunk.dropped
            remaining -= chunk.records
            index += chunk.records
            offset += chunk.bytes
            buf = buf[chunk.bytes:]


def read_norm_header(path) -> NormHeader:
    """The header of the Norm file at ``path``."""
    with _open_data_file(path) as f:
        return read_header(f, path)[0]


def read_norm_file(path, key_type="I32", *, slot_nums=None, max_feature_nums=None, check=None,
                   label_dim=None, dense_dim=None) -> Samples:
    """All samples of the Norm file at ``path``.

    The key type is not stored in the file, so it must be given. Every other argument defaults to what
    the header says (``slot_nums`` to one sparse input with all slots); given ones are checked against
    the header. Samples with a bad checksum are dropped with a ``DataWarning``.
    """
    header = read_norm_header(path)
    label_dim = header.label_dim if label_dim is None else label_dim
    dense_dim = header.label_dim + header.dense_dim - label_dim if dense_dim is None else dense_dim
    layout = NormLayout(label_dim, dense_dim, (header.slot_num,) if slot_nums is None else slot_nums, key_type,
                        header.check if check is None else check, max_feature_nums)
    parts = []
    for samples, dropped in iter_norm_file(path, layout):
        for record in dropped:
            warnings.warn(record.message(), DataWarning, stacklevel=2)
        if samples is not None and len(samples):
            parts.append(samples)
    if not parts:
        return Samples.empty(0, layout.label_dim, layout.dense_dim, layout.slot_nums, layout.key_type)
    return Samples.concat(parts)

