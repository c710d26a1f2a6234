"""Locating, checking and decoding Norm sample records in a byte buffer, vectorised over records.

Records have variable length (nnz varies per slot), so where record i+1 starts depends on record i.
With check Sum the length field gives it in one step per record; with check None a record must be
walked slot by slot. Both first guess that every record is as long as the first one and verify the
guess vectorised, so fixed-nnz data (e.g. one key per slot) costs no Python loop per record;
otherwise a short Python loop finds the record starts. Decoding then walks the slots of all located
records at once (one vectorised step per slot) and gathers floats and keys with fancy indexing.
Framed (Sum) payloads are first copied together, which makes every value 4-byte aligned.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .batch import CSR, Samples
from .errors import DataError, first_non_finite

_INT32 = struct.Struct("<i")


@dataclass(frozen=True)
class DroppedSample:
    """A sample record whose checksum did not match (HugeCTR drops it and reads the next one)."""

    path: str
    offset: int  # byte offset of the record (its length field) in the file
    index: int  # record number in the file, from 0

    def message(self) -> str:
        return f"{self.path}: byte {self.offset}: sample {self.index}: checksum mismatch, sample dropped"


@dataclass(frozen=True)
class ParsedRecords:
    """What ``parse_records`` consumed from the head of a buffer."""

    samples: Samples | None  # the decoded samples (None if there are none, e.g. all dropped)
    records: int  # records consumed, dropped ones included
    bytes: int  # bytes consumed
    dropped: list  # of DroppedSample


@dataclass(frozen=True)
class _Walk:
    """Where each slot of each record sits, in 4-byte words of the payload buffer (slot-major)."""

    pos: np.ndarray  # (S, m) int64: word of the slot's nnz
    nnz: np.ndarray  # (S, m) int64 (0 where the slot lies past the end of the buffer)
    ends: np.ndarray  # (m,) int64: word after the record


def checksums(data, begins, ends) -> np.ndarray:
    """Sum of the bytes ``data[begins[i]:ends[i]]`` modulo 256 (HugeCTR's int8 checksum, as a byte),
    for non-empty, non-overlapping, ascending ranges.  # (m,) uint8"""
    index = np.empty(2 * len(begins), np.int64)
    index[0::2], index[1::2] = begins, ends
    # reduceat sums data[index[k]:index[k+1]] (uint8 arithmetic wraps modulo 256, as wanted);
    # the odd entries are the gaps between ranges
    return np.add.reduceat(data[:index[-1]], index[:-1], dtype=np.uint8)[0::2]


def frame_records(payload, starts) -> np.ndarray:
    """Check-Sum framing of records ``payload[starts[i]:starts[i+1]]``: each becomes
    ``int32 length | bytes | checksum``.  # (len(payload) + 5*m,) uint8"""
    starts = np.asarray(starts, np.int64)
    m = len(starts) - 1
    if m == 0:
        return np.zeros(0, np.uint8)
    lengths = np.diff(starts)
    framed_start = starts[:-1] + 5 * np.arange(m)
    length_pos = framed_start[:, None] + np.arange(4)  # (m, 4)
    sum_pos = framed_start + 4 + lengths
    out = np.empty(len(payload) + 5 * m, np.uint8)
    is_payload = np.ones(len(out), bool)
    is_payload[length_pos] = is_payload[sum_pos] = False
    out[length_pos] = lengths.astype("<i4").view(np.uint8).reshape(m, 4)
    out[sum_pos] = checksums(payload, starts[:-1], starts[1:])
    out[is_payload] = payload
    return out


def key_word_positions(row_pos, row_offsets, key_words) -> np.ndarray:
    """Word index of each 4-byte word of each key, given every row's nnz-word position.  # (K, key_words)"""
    nnz = np.diff(row_offsets)
    first = np.repeat(row_pos + 1 - key_words * row_offsets[:-1], nnz) + key_words * np.arange(row_offsets[-1])
    return first[:, None] + np.arange(key_words)


def parse_records(buf, layout, *, path, offset, first_index, max_records) -> ParsedRecords:
    """Decode up to ``max_records`` whole sample records from the head of ``buf`` (uint8).

    ``offset`` is where ``buf`` starts in the file and ``first_index`` the number of its first record
    (both for messages). A record cut off by the end of ``buf`` is left unconsumed; a malformed one
    raises DataError naming the file and byte offset.
    """
    parse = _parse_framed if layout.check == "Sum" else _parse_unframed
    return parse(buf, layout, path, offset, first_index, max_records)


def _parse_unframed(buf, layout, path, offset, first_index, max_records):
    words = buf[:len(buf) // 4 * 4].view("<i4")
    starts, walk = _locate_unframed(words, layout, max_records)
    offsets = offset + 4 * starts
    if len(starts) == 0:
        if len(words) and max_records:
            # nothing whole: either cut off (wait for more bytes) or broken (say where)
            head = np.zeros(1, np.int64)
            _raise_first_error(_walk(words, head, layout), head, layout, path, offsets=[offset],
                               payload_offsets=[offset], indices=[first_index])
        return ParsedRecords(None, 0, 0, [])
    indices = first_index + np.arange(len(starts))
    _raise_first_error(walk, starts, layout, path, offsets=offsets, payload_offsets=offsets, indices=indices)
    samples = _decode(words, starts, walk, layout)
    _raise_non_finite(samples, path, payload_offsets=offsets, indices=indices)
    return ParsedRecords(samples, len(starts), 4 * int(walk.ends[-1]), [])


def _locate_unframed(words, layout, max_records):
    """Starts (in words) of the whole records at the head of ``words``, and their walk."""
    n = len(words)
    none = np.zeros(0, np.int64)
    if n == 0 or max_records == 0:
        return none, _walk(words, none, layout)
    stride = int(_walk(words, np.zeros(1, np.int64), layout).ends[0])
    if stride <= n:
        guess = np.arange(min(max_records, n // stride), dtype=np.int64) * stride
        walk = _walk(words, guess, layout)
        if np.array_equal(walk.ends, guess + stride):
            return guess, walk
    starts = _scan_unframed(words, layout, max_records)
    return starts, _walk(words, starts, layout)


def _scan_unframed(words, layout, max_records):
    """Record starts found one record at a time (variable-length records, check None)."""
    mv = memoryview(words.view(np.int32))  # native format: the fast indexing path
    n, skip, slots, kw = len(words), layout.float_words, layout.slot_num, layout.key_words
    starts, p = [], 0
    try:
        while len(starts) < max_records:
            q = p + skip
            for _ in range(slots):
                q += 1 + kw * mv[q]
            if not p < q <= n:  # cut off, or a negative nnz: the vectorised checks say which
                break
            starts.append(p)
            p = q
    except IndexError:  # cut off (or garbage nnz) inside the record at p
        pass
    return np.array(starts, np.int64)


def _parse_framed(buf, layout, path, offset, first_index, max_records):
    least, most = layout.payload_bytes_range()
    records, lengths = _locate_framed(buf, max_records, least, most)
    if len(records) == 0:
        if len(buf) >= 4 and max_records:
            length = _INT32.unpack_from(buf, 0)[0]
            if not (least <= length <= most and length % 4 == 0):
                raise DataError(path, offset, f"sample {first_index}: length field {length} is not a valid sample "
                                              f"record length (a multiple of 4 from {least} to {most} bytes)")
        return ParsedRecords(None, 0, 0, [])
    begins = records + 4
    ends = begins + lengths
    ok = checksums(buf, begins, ends) == buf[ends]
    dropped = [DroppedSample(str(path), offset + int(records[i]), first_index + int(i)) for i in np.flatnonzero(~ok)]
    samples = None
    if ok.any():
        kept = lengths[ok] // 4
        words = _gather_ranges(buf, begins[ok], lengths[ok]).view("<i4")
        starts = np.zeros(len(kept), np.int64)
        np.cumsum(kept[:-1], out=starts[1:])
        walk = _walk(words, starts, layout)
        _raise_first_error(walk, starts, layout, path, offsets=offset + records[ok],
                           payload_offsets=offset + begins[ok], indices=first_index + np.flatnonzero(ok),
                           expected_ends=starts + kept)
        samples = _decode(words, starts, walk, layout)
        _raise_non_finite(samples, path, payload_offsets=offset + begins[ok], indices=first_index + np.flatnonzero(ok))
    return ParsedRecords(samples, len(records), int(ends[-1]) + 1, dropped)


def _locate_framed(buf, max_records, least, most):
    """Starts (bytes) and payload lengths of the whole framed records at the head of ``buf``, stopping
    before a cut-off record or an invalid length field."""
    n = len(buf)
    if n < 4:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    length = _INT32.unpack_from(buf, 0)[0]
    if least <= length <= most and length % 4 == 0:
        guess = np.arange(min(max_records, n // (length + 5)), dtype=np.int64) * (length + 5)
        if np.all(buf[guess[:, None] + np.arange(4)].view("<i4") == length):
            return guess, np.full(len(guess), length, np.int64)
    unpack, mv = _INT32.unpack_from, memoryview(buf)
    starts, p = [], 0
    try:
        for _ in range(max_records):
            length = unpack(mv, p)[0]
            if not (least <= length <= most and length % 4 == 0) or p + length + 5 > n:
                break
            starts.append(p)
            p += length + 5
    except struct.error:  # fewer than 4 bytes left
        pass
    starts = np.array(starts, np.int64)
    return starts, buf[starts[:, None] + np.arange(4)].view("<i4").reshape(-1).astype(np.int64)


def _gather_ranges(buf, begins, lengths):
    """``buf[begins[i]:begins[i]+lengths[i]]`` for all i, concatenated (ascending, disjoint ranges)."""
    step = int(begins[1] - begins[0]) if len(begins) > 1 else 0
    if np.all(lengths == lengths[0]) and np.all(np.diff(begins) == step):  # fixed-length records
        return np.lib.stride_tricks.as_strided(buf[begins[0]:], (len(begins), int(lengths[0])), (step, 1)).ravel()
    runs = np.empty(2 * len(begins) + 1, np.int64)  # alternating gap and range lengths
    runs[0] = begins[0]
    runs[1:-1:2] = lengths
    runs[2:-1:2] = begins[1:] - begins[:-1] - lengths[:-1]
    runs[-1] = len(buf) - begins[-1] - lengths[-1]
    return buf[np.repeat(np.arange(len(runs)) % 2 == 1, runs)]


def _walk(words, starts, layout) -> _Walk:
    """Walk the slots of the records starting at ``starts``: all records at once, one slot at a time."""
    n, kw = len(words), layout.key_words
    pos = np.empty((layout.slot_num, len(starts)), np.int64)
    nnz = np.zeros((layout.slot_num, len(starts)), np.int64)
    cursor = starts + layout.float_words
    for s in range(layout.slot_num):
        pos[s] = cursor
        if n:
            nnz[s] = words.take(cursor, mode="clip")  # a cursor past the end only matters for cut-off records
        cursor = cursor + 1 + kw * np.maximum(nnz[s], 0)
    if len(starts) and cursor.max() > n:
        nnz[pos >= n] = 0  # slots of cut-off records that are not in the buffer yet
    return _Walk(pos, nnz, cursor)


def _raise_first_error(walk, starts, layout, path, *, offsets, payload_offsets, indices, expected_ends=None):
    """DataError for the first record with a negative or oversized nnz, more keys than its sparse input's
    max_feature_num_per_sample, or (framed) a length field that disagrees with its slots."""
    nnz, cap, limits = walk.nnz, layout.slot_nnz_cap, layout.max_feature_nums
    bounds = np.cumsum((0,) + layout.slot_nums)
    per_input = np.array([nnz[a:b].sum(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
    per_input = per_input.reshape(-1, len(starts))  # (J, m) keys of each sparse input
    fine = (nnz.size == 0 or (nnz.min() >= 0 and (cap is None or nnz.max() <= cap))) and \
        (limits is None or per_input.size == 0 or (per_input.max(axis=1) <= limits).all()) and \
        (expected_ends is None or np.array_equal(walk.ends, expected_ends))
    if fine:
        return
    slot_bad = (nnz < 0) if cap is None else (nnz < 0) | (nnz > cap)  # (S, m)
    input_bad = per_input > np.array(limits)[:, None] if limits is not None else np.zeros(per_input.shape, bool)
    length_bad = walk.ends != expected_ends if expected_ends is not None else np.zeros(len(starts), bool)
    i = int(np.argmax(slot_bad.any(axis=0) | input_bad.any(axis=0) | length_bad))
    where = f"sample {indices[i]}"
    if slot_bad[:, i].any():
        s = int(np.argmax(slot_bad[:, i]))
        why = "is negative" if nnz[s, i] < 0 else f"exceeds {cap}, the sum of max_feature_num_per_sample"
        raise DataError(path, int(payload_offsets[i] + 4 * (walk.pos[s, i] - starts[i])),
                        f"{where}, slot {s}: nnz {nnz[s, i]} {why}")
    if input_bad[:, i].any():
        j = int(np.argmax(input_bad[:, i]))
        raise DataError(path, int(offsets[i]), f"{where}: sparse input {j} has {per_input[j, i]} keys, more than "
                                               f"its max_feature_num_per_sample {limits[j]}")
    raise DataError(path, int(offsets[i]), f"{where}: the length field says {4 * (expected_ends[i] - starts[i])} "
                                           f"payload bytes but the slots' nnz make {4 * (walk.ends[i] - starts[i])}")


def _raise_non_finite(samples, path, *, payload_offsets, indices):
    """DataError naming the first NaN or infinity among the decoded labels and dense values (a float's
    byte offset: its record's payload start + 4 * its position, labels first)."""
    found = first_non_finite(samples.labels, samples.dense)
    if found is not None:
        i, column, what = found
        raise DataError(path, int(payload_offsets[i]) + 4 * column, f"sample {indices[i]}: {what}")


def _decode(words, starts, walk, layout) -> Samples:
    """Samples from located, checked, back-to-back records (``starts[0] == 0``)."""
    float_pos = starts[:, None] + np.arange(layout.float_words)  # (m, L+D)
    floats = words.view("<f4")[float_pos]
    # every word of a record that is neither a float nor an nnz is a key word, in (sample, slot) order
    is_key = np.ones(int(walk.ends[-1]), bool)
    is_key[float_pos] = False
    is_key[walk.pos] = False
    keys = words.view("<u4")[:len(is_key)][is_key].view(layout.key_type.newbyteorder("<"))
    keys = keys.astype(layout.key_type, copy=False)  # (K,) all sparse inputs
    row_nnz = walk.nnz.T  # (m, S)
    owner = None
    if len(layout.slot_nums) > 1:
        slot_owner = np.repeat(np.arange(len(layout.slot_nums)), layout.slot_nums)  # (S,)
        owner = np.repeat(np.broadcast_to(slot_owner, row_nnz.shape).ravel(), row_nnz.ravel())  # (K,)
    sparse, first = [], 0
    for j, s in enumerate(layout.slot_nums):
        row_offsets = np.zeros(len(starts) * s + 1, np.int64)
        np.cumsum(row_nnz[:, first:first + s].ravel(), out=row_offsets[1:])
        sparse.append(CSR(row_offsets, keys if owner is None else keys[owner == j]))
        first += s
    return Samples(np.ascontiguousarray(floats[:, :layout.label_dim]).astype(np.float32, copy=False),
                   np.ascontiguousarray(floats[:, layout.label_dim:]).astype(np.float32, copy=False), tuple(sparse))
