"""HugeCTR's Parquet datasets (NVTabular's layout): Parquet files, ``_file_list.txt`` and ``_metadata.json``.

A dataset directory holds Parquet files, a file list in the Norm file-list format naming them, and
``_metadata.json`` (next to the Parquet files) telling which columns are what::

    {"file_stats": [{"file_name": "part_0.parquet", "num_rows": 1000}, ...],
     "cats":   [{"col_name": "C1", "index": 13}, ...],      # categorical columns, in slot order
     "conts":  [{"col_name": "I1", "index": 0}, ...],       # dense columns, in dense order
     "labels": [{"col_name": "label", "index": 39}]}        # label columns

``index`` is the column's position in the Parquet file. One key per slot per row (v3.0 is one-hot):
``key = column value + slot offset``, the offsets being the exclusive prefix sums of ``slot_size_array``.

Reading needs pyarrow (``pip install "hugectr-lab[parquet]"``); it is imported on first use.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from .batch import Samples, SlotLayout
from ..input_files import input_problem, read_text
from .errors import DataError, check_data_file, first_non_finite

METADATA_FILE = "_metadata.json"
FILE_LIST = "_file_list.txt"
DEFAULT_BATCH_ROWS = 1 << 16


def pyarrow_modules():
    """``(pyarrow, pyarrow.parquet)``; ImportError with the install hint when pyarrow is missing."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ImportError('the Parquet format needs pyarrow: pip install "hugectr-lab[parquet]"') from None
    return pyarrow, pyarrow.parquet


@dataclass(frozen=True)
class ParquetLayout(SlotLayout):
    """What a reader expects of every row: the Data layer's side of the format."""

    label_dim: int
    dense_dim: int
    slot_nums: tuple
    key_type: object = "I64"
    slot_size_array: tuple | None = None  # per slot over all inputs; None: no offsets, no range check

    def __post_init__(self):
        self._normalize_slots()

    def default_names(self):
        """NVTabular-style column names: (labels, dense, cats)."""
        labels = ["label"] if self.label_dim == 1 else [f"label{i}" for i in range(self.label_dim)]
        return labels, [f"I{i + 1}" for i in range(self.dense_dim)], [f"C{i + 1}" for i in range(self.slot_num)]


@dataclass
class ParquetMetadata:
    """The content of ``_metadata.json``: rows per file and (name, index) of every column role."""

    file_stats: dict = field(default_factory=dict)  # file name -> num_rows
    cats: list = field(default_factory=list)  # [(col_name, index)] in slot order
    conts: list = field(default_factory=list)  # in dense order
    labels: list = field(default_factory=list)

    def to_json(self) -> dict:
        def columns(pairs):
            return [{"col_name": name, "index": int(index)} for name, index in pairs]
        return {"file_stats": [{"file_name": name, "num_rows": int(rows)} for name, rows in self.file_stats.items()],
                "cats": columns(self.cats), "conts": columns(self.conts), "labels": columns(self.labels)}

    @classmethod
    def from_json(cls, obj, path="_metadata.json") -> ParquetMetadata:
        if not isinstance(obj, dict):
            raise DataError(path, None, "must hold a JSON object")
        try:
            stats = {str(s["file_name"]): int(s["num_rows"]) for s in obj.get("file_stats", [])}
            roles = {role: [(str(c["col_name"]), int(c["index"])) for c in obj[role]]
                     for role in ("cats", "conts", "labels")}
        except KeyError as err:
            raise DataError(path, None, f"missing key {err} (expected file_stats, cats, conts and labels, each "
                                        "entry with col_name and index)") from None
        except (TypeError, ValueError) as err:
            raise DataError(path, None, f"malformed entry ({err})") from None
        return cls(stats, **roles)


def read_parquet_metadata(path) -> ParquetMetadata:
    """``_metadata.json`` at ``path`` (a directory means the file inside it)."""
    if os.path.isdir(path):
        path = os.path.join(path, METADATA_FILE)
    if input_problem(path) == "not found":
        raise DataError(path, None, "not found: a Parquet dataset needs _metadata.json next to its Parquet files "
                                    "(NVTabular writes it with to_parquet(..., cats=, conts=, labels=))")
    text = read_text(path, "Parquet metadata file", lambda offset, what: DataError(path, offset, what))
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise DataError(path, None, f"not valid JSON ({err})") from None
    return ParquetMetadata.from_json(obj, path)


def write_parquet_metadata(directory, metadata: ParquetMetadata) -> str:
    """Write ``<directory>/_metadata.json`` (one line, as NVTabular writes it); returns its path."""
    path = os.path.join(directory, METADATA_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(metadata.to_json(), f)
    return path


# --- reading -------------------------------------------------------------------------------------

def _check_roles(meta: ParquetMetadata, layout: ParquetLayout, meta_path):
    for role, want, what in (("labels", layout.label_dim, "label_dim"), ("conts", layout.dense_dim, "dense_dim"),
                             ("cats", layout.slot_num, "the total slot count")):
        have = len(getattr(meta, role))
        if have != want:
            raise DataError(meta_path, None, f"lists {have} {role} columns but the Data layer's {what} is {want}")


def _column_kind(pa, dtype):
    if pa.types.is_integer(dtype):
        return "int"
    if pa.types.is_floating(dtype):
        return "float"
    return None


class ParquetFileReader:
    """One Parquet file of a dataset, checked against its ``_metadata.json`` and the layout."""

    def __init__(self, path, layout: ParquetLayout, metadata: ParquetMetadata | None = None):
        pa, pq = pyarrow_modules()
        self.path, self.layout = str(path), layout
        meta_path = os.path.join(os.path.dirname(os.path.abspath(self.path)), METADATA_FILE)
        self.metadata = read_parquet_metadata(meta_path) if metadata is None else metadata
        _check_roles(self.metadata, layout, meta_path)
        check_data_file(self.path, "Parquet file")
        try:
            self._file = pq.ParquetFile(self.path)
        except (OSError, pa.ArrowException) as err:
            raise DataError(self.path, None, f"not a readable Parquet file ({err})") from None
        self.num_rows = self._file.metadata.num_rows
        name = os.path.basename(self.path)
        if name not in self.metadata.file_stats:
            raise DataError(meta_path, None, f"file_stats has no entry for {name!r}")
        if self.metadata.file_stats[name] != self.num_rows:
            raise DataError(self.path, None, f"holds {self.num_rows} rows but {meta_path} says "
                                             f"{self.metadata.file_stats[name]}")
        schema = self._file.schema_arrow
        roles = (("labels", self.metadata.labels), ("conts", self.metadata.conts), ("cats", self.metadata.cats))
        missing = [f"{name!r} ({role})" for role, pairs in roles for name, _ in pairs if name not in schema.names]
        if missing:  # named first: a missing column shifts the others, whose index checks would blame them
            raise DataError(self.path, None, f"{meta_path} names column{'s' if len(missing) > 1 else ''} "
                                             f"{', '.join(missing)} that the file does not have (its "
                                             f"{len(schema)} columns: {', '.join(schema.names)})")
        for role, pairs in roles:
            for name, index in pairs:
                if not 0 <= index < len(schema):
                    raise DataError(self.path, None, f"column {name!r} ({role}): index {index} is outside the "
                                                     f"file's {len(schema)} columns")
                if schema.names[index] != name:
                    raise DataError(self.path, None, f"column {index} is named {schema.names[index]!r}, but "
                                                     f"{METADATA_FILE} calls it {name!r} ({role})")
                kind = _column_kind(pa, schema.types[index])
                if kind is None or (role == "cats" and kind != "int"):
                    want = "an integer" if role == "cats" else "a numeric (float32 or integer)"
                    raise DataError(self.path, None, f"column {name!r} ({role}) has type {schema.types[index]}; "
                                                     f"it must be {want} column")
        self._labels = [i for _, i in self.metadata.labels]
        self._conts = [i for _, i in self.metadata.conts]
        self._cats = [i for _, i in self.metadata.cats]

    def iter_samples(self, batch_rows=DEFAULT_BATCH_ROWS):
        """Yield ``Samples`` for successive stretches of rows, in file order."""
        pa, _ = pyarrow_modules()
        first = 0
        for group in range(self._file.num_row_groups):
            try:
                table = self._file.read_row_group(group)
            except (OSError, pa.ArrowException) as err:  # a corrupt page: arrow says what, not where
                raise DataError(self.path, None, f"row group {group} (rows from {first}) is unreadable ({err})") \
                    from None
            for start in range(0, table.num_rows, batch_rows):
                yield self._decode(table.slice(start, batch_rows), first + start)
            first += table.num_rows

    def _column(self, table, index, first_row, dtype):
        column = table.column(index)
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(self.path, None, f"row {first_row + row}, column {table.column_names[index]!r}: null "
                                             "value (HugeCTR's Parquet reader takes no nulls)")
        return column.to_numpy().astype(dtype, copy=False)

    def _decode(self, table, first_row) -> Samples:
        n = table.num_rows
        lay = self.layout
        labels = np.empty((n, lay.label_dim), np.float32)
        for j, i in enumerate(self._labels):
            labels[:, j] = self._column(table, i, first_row, np.float32)
        dense = np.empty((n, lay.dense_dim), np.float32)
        for j, i in enumerate(self._conts):
            dense[:, j] = self._column(table, i, first_row, np.float32)
        found = first_non_finite(labels, dense)
        if found is not None:
            r, column, what = found
            index = (self._labels + self._conts)[column]
            raise DataError(self.path, None, f"row {first_row + r}, column {table.column_names[index]!r}: {what}")
        keys = np.empty((n, lay.slot_num), np.int64)
        for s, i in enumerate(self._cats):
            keys[:, s] = self._column(table, i, first_row, np.int64)
        info = np.iinfo(lay.key_type)
        if lay.slot_size_array is not None:
            bad = (keys < 0) | (keys >= np.asarray(lay.slot_size_array))
        else:
            bad = (keys < info.min) | (keys > info.max)
        if bad.any():
            r, s = np.argwhere(bad)[0]
            limit = (f"[0, {lay.slot_size_array[s]}) (slot_size_array[{s}])" if lay.slot_size_array is not None
                     else f"the {lay.key_type} key range")
            raise DataError(self.path, None, f"row {first_row + r}, column {table.column_names[self._cats[s]]!r} "
                                             f"(slot {s}): value {int(keys[r, s])} is outside {limit}")
        keys += lay.slot_offsets
        if keys.size and keys.max() > info.max:
            raise DataError(self.path, None, f"key {int(keys.max())} (value + slot offset) does not fit "
                                             f"{lay.key_type} keys")
        return Samples(labels, dense, lay.split_keys(keys))


def iter_parquet_file(path, layout: ParquetLayout, *, batch_rows=DEFAULT_BATCH_ROWS):
    """Yield ``(samples, dropped)`` for successive stretches of the Parquet file (``dropped`` is always
    empty: the interface of ``iter_norm_file``)."""
    for samples in ParquetFileReader(path, layout).iter_samples(batch_rows):
        yield samples, []


def read_parquet_file(path, layout: ParquetLayout) -> Samples:
    """All samples of one Parquet file of a dataset (its ``_metadata.json`` is next to it)."""
    parts = [s for s in ParquetFileReader(path, layout).iter_samples() if len(s)]
    if not parts:
        return Samples.empty(0, layout.label_dim, layout.dense_dim, layout.slot_nums, layout.key_type)
    return Samples.concat(parts)


# --- writing -------------------------------------------------------------------------------------

def parquet_table(samples: Samples, layout: ParquetLayout, names=None, cat_dtype=None):
    """A pyarrow Table of one-hot ``samples``: dense columns, then categorical, then labels (NVTabular's
    order), float32 labels/dense and integer categorical values = key - slot offset.

    ``names``: (label names, dense names, cat names), default ``label``, ``I1..``, ``C1..``.
    ``cat_dtype``: int32 for I32 keys and int64 for I64 by default (the key type's width, as HugeCTR
    reads them).
    """
    pa, _ = pyarrow_modules()
    label_names, dense_names, cat_names = names or layout.default_names()
    n = len(samples)
    columns = []
    for csr, s in zip(samples.sparse, layout.slot_nums):
        if csr.num_rows != n * s or (csr.row_nnz() != 1).any():
            raise ValueError("the Parquet format (HugeCTR v3.0) holds exactly one key per slot")
        columns.append(np.asarray(csr.keys, np.int64).reshape(n, s))
    values = np.hstack(columns + [np.zeros((n, 0), np.int64)]) - layout.slot_offsets
    if (values < 0).any() or (layout.slot_size_array is not None and
                               (values >= np.asarray(layout.slot_size_array)).any()):
        raise ValueError("a key lies outside its slot's range [offset, offset + slot_size)")
    cat_dtype = np.dtype(cat_dtype or (np.int32 if layout.key_type == np.uint32 else np.int64))
    arrays = ([pa.array(samples.dense[:, j].astype(np.float32)) for j in range(layout.dense_dim)] +
              [pa.array(values[:, s].astype(cat_dtype)) for s in range(layout.slot_num)] +
              [pa.array(samples.labels[:, j].astype(np.float32)) for j in range(layout.label_dim)])
    return pa.Table.from_arrays(arrays, names=list(dense_names) + list(cat_names) + list(label_names))


class ParquetDatasetWriter:
    """Writes one Parquet dataset directory: ``part_<k>.parquet`` per ``write`` call, then (``close``)
    ``_metadata.json`` and a file list.

    ``list_path`` (default ``<directory>/_file_list.txt``) gets entries ``os.path.join(directory, name)``
    in the form ``directory`` was given (NVTabular's convention: relative paths are relative to the
    working directory).
    """

    def __init__(self, directory, layout: ParquetLayout, *, list_path=None, names=None, cat_dtype=None,
                 row_group_size=None, prefix="part_"):
        self.directory, self.layout = str(directory), layout
        self.list_path = str(list_path) if list_path else os.path.join(self.directory, FILE_LIST)
        self.names = names or layout.default_names()
        self.cat_dtype, self.row_group_size, self.prefix = cat_dtype, row_group_size, prefix
        self.files = []  # entries as written to the file list
        self._stats = {}
        os.makedirs(self.directory, exist_ok=True)

    def write(self, samples: Samples) -> str:
        """Write ``samples`` as the next Parquet file; returns its file-list entry."""
        _, pq = pyarrow_modules()
        name = f"{self.prefix}{len(self.files)}.parquet"
        table = parquet_table(samples, self.layout, self.names, self.cat_dtype)
        pq.write_table(table, os.path.join(self.directory, name), row_group_size=self.row_group_size)
        self._stats[name] = len(samples)
        entry = os.path.join(self.directory, name)
        self.files.append(entry)
        return entry

    def metadata(self) -> ParquetMetadata:
        label_names, dense_names, cat_names = self.names
        D, S = self.layout.dense_dim, self.layout.slot_num
        return ParquetMetadata(dict(self._stats), cats=[(n, D + s) for s, n in enumerate(cat_names)],
                               conts=[(n, j) for j, n in enumerate(dense_names)],
                               labels=[(n, D + S + j) for j, n in enumerate(label_names)])

    def close(self, write_list=True) -> str:
        """Write ``_metadata.json`` and (unless ``write_list`` is false) the file list; returns the list's path."""
        from .file_list import write_file_list

        write_parquet_metadata(self.directory, self.metadata())
        if write_list:
            write_file_list(self.list_path, self.files)
        return self.list_path


def write_parquet_dataset(directory, parts, layout: ParquetLayout, **options) -> str:
    """Write each ``Samples`` of ``parts`` as one Parquet file of a dataset; returns the file list's path."""
    writer = ParquetDatasetWriter(directory, layout, **options)
    for samples in parts:
        writer.write(samples)
    return writer.close()
