"""The Criteo pipeline: Criteo-format TSV → Norm, Raw or Parquet data plus keyset files.

Input: text files with one sample per line, tab-separated: ``label``, 13 integer columns ``I1..I13``
and 26 categorical columns ``C1..C26`` (hex strings in the Criteo click logs); any value but the label
may be empty (missing).

Operators (NVTabular's names and semantics; the two engines implement the same ones):

* dense: ``FillMissing(fill_value)`` → ``Clip(min_value=clip_min)`` → ``LogOp`` (log(x + 1) in float32)
  → ``Normalize`` ((x - mean) / std over the training split, optional; mean and sample std (ddof=1)
  summed exactly and rounded once, the division in float64; see ``moments``) → float32;
* categorical: ``Categorify(freq_threshold)`` fitted on the training split. Codes: 1 = missing,
  2 = out of vocabulary (seen fewer than ``freq_threshold`` times, or not at all), 3, 4, ... = the
  vocabulary by descending count, ties broken by ascending value (NVTabular's own tie order depends on
  the pandas version; we fix it in both engines). Code 0 is never used (NVTabular reserves it).
  A column's cardinality, its ``slot_size_array`` entry, is 3 + its vocabulary size.

Keys: ``code + slot offset`` (offsets = exclusive prefix sums of ``slot_size_array``). Norm files hold
the keys; Raw and Parquet hold the codes and the Data layer's ``slot_size_array`` adds the offsets.
Keyset files always hold keys.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..data import (CSR, DataError, ParquetDatasetWriter, ParquetLayout, RawLayout, RawRecords, Samples,
                    write_file_list, write_keyset, write_norm_file)
from ..data.batch import key_dtype
from ..fileio import naming_os_errors
from ..input_files import input_problem
from .engines import get_engine
from .schema import CATS, DENSE, LABEL, Chunk, CriteoPipeline, chunk_concat, chunk_take

FORMATS = ("norm", "raw", "parquet")


# --- output ----------------------------------------------------------------------------------------

@dataclass
class SplitOutput:
    """What was written for one split."""

    name: str
    samples: int = 0
    files: list = field(default_factory=list)
    source: str = ""  # file list (Norm, Parquet) or data file (Raw, without groups)
    keyset: str = ""
    parts: list = field(default_factory=list)  # [(file list or Raw data file, keyset)] per group


class _SplitWriter:
    """Writes one split (``train`` / ``val``) in one format: data files of ``samples_per_file`` samples,
    file lists (whole + groups of ``file_list_length`` files) and keysets."""

    def __init__(self, fmt, directory, name, slot_sizes, *, samples_per_file, file_list_length, key_type, check,
                 float_label_dense):
        self.fmt, self.directory, self.out = fmt, directory, SplitOutput(name)
        self.slot_sizes = list(slot_sizes)
        self.offsets = np.cumsum([0] + self.slot_sizes[:-1]).astype(np.int64)
        self.samples_per_file, self.group = int(samples_per_file), int(file_list_length)
        self.key_type, self.check, self.float_label_dense = key_dtype(key_type), check, float_label_dense
        self.buffer, self.buffered = [], 0
        self.all_keys = np.zeros(0, self.key_type)
        self.group_keys, self.group_files = np.zeros(0, self.key_type), []
        os.makedirs(directory, exist_ok=True)
        if fmt == "parquet":
            self.parquet = ParquetDatasetWriter(directory, ParquetLayout(1, len(DENSE), (len(CATS),), self.key_type,
                                                                         tuple(self.slot_sizes)),
                                                names=([LABEL], list(DENSE), list(CATS)), cat_dtype=np.int64)
        self.raw_layout = RawLayout(1, len(DENSE), (len(CATS),), self.key_type, float_label_dense,
                                    tuple(self.slot_sizes))
        self.raw_file = None

    def add(self, chunk: Chunk):
        self.buffer.append(chunk)
        self.buffered += len(chunk)
        while self.buffered >= self.samples_per_file:
            self._write(self.samples_per_file)

    def close(self) -> SplitOutput:
        if self.buffered:
            self._write(self.buffered)
        self._end_group()
        if self.raw_file is not None:
            self.raw_file.close()
        stem = "_file_list" if self.fmt == "parquet" else "file_list"
        if self.fmt == "parquet":
            self.parquet.close(write_list=False)
        if self.fmt != "raw":
            self.out.source = os.path.join(self.directory, f"{stem}.txt")
            if self.out.files:
                write_file_list(self.out.source, self.out.files)
            self.out.keyset = os.path.join(self.directory, f"{stem}.keyset")
        elif not self.group:
            self.out.source = os.path.join(self.directory, "data.bin")
            self.out.keyset = os.path.join(self.directory, "data.keyset")
            if not os.path.exists(self.out.source):
                open(self.out.source, "wb").close()
            self.out.files = [self.out.source]
        if self.out.keyset:
            write_keyset(self.out.keyset, self.all_keys, self.key_type)
        return self.out

    def _take(self, n) -> Chunk:
        whole = chunk_concat(self.buffer)
        rest = chunk_take(whole, n, len(whole))
        self.buffer, self.buffered = ([rest] if len(rest) else []), len(rest)
        return chunk_take(whole, 0, n)

    def _write(self, n):
        chunk = self._take(n)
        keys = chunk.codes + self.offsets  # (n, S)
        if keys.size and keys.max() > np.iinfo(self.key_type).max:
            raise ValueError(f"key {int(keys.max())} does not fit {self.key_type} keys; use key type I64")
        unique = np.unique(keys).astype(self.key_type)
        self.all_keys = np.union1d(self.all_keys, unique)
        self.group_keys = np.union1d(self.group_keys, unique)
        if self.fmt == "raw":
            self._write_raw(chunk)
        else:
            samples = Samples(chunk.labels[:, None].astype(np.float32), chunk.dense.astype(np.float32),
                              (CSR(np.arange(keys.size + 1, dtype=np.int64), keys.reshape(-1).astype(self.key_type)),))
            if self.fmt == "norm":
                path = os.path.join(self.directory, f"part_{len(self.out.files)}.data")
                write_norm_file(path, samples, check=self.check, key_type=self.key_type)
            else:
                path = self.parquet.write(samples)
            self.out.files.append(path)
            self.group_files.append(path)
        self.out.samples += n
        if self.group and len(self.group_files) == self.group:
            self._end_group()

    def _write_raw(self, chunk):
        dense = chunk.dense
        if not self.float_label_dense:
            if dense.size and not np.array_equal(dense, np.round(dense)):
                raise ValueError("Raw without float_label_dense stores integer dense values (the reader takes "
                                 "ln(x + 1)); the pipeline produced non-integers (fill_value/clip_min must be "
                                 "integers)")
        records = RawRecords(chunk.labels[:, None], dense, chunk.codes)
        data = self.raw_layout.encode(records).tobytes()
        if self.raw_file is None:
            name = f"data.{len(self.out.parts)}.bin" if self.group else "data.bin"
            self.raw_path = os.path.join(self.directory, name)
            self.raw_file = open(self.raw_path, "wb")
        with naming_os_errors(self.raw_path):
            self.raw_file.write(data)
        self.group_files.append(self.raw_path)

    def _end_group(self):
        if not self.group or not self.group_files:
            self.group_files, self.group_keys = [], np.zeros(0, self.key_type)
            return
        n = len(self.out.parts)
        if self.fmt == "raw":
            self.raw_file.close()
            self.raw_file = None
            self.out.files.append(self.raw_path)
            entry = self.raw_path
            keyset = os.path.join(self.directory, f"data.{n}.keyset")
        else:
            stem = "_file_list" if self.fmt == "parquet" else "file_list"
            entry = os.path.join(self.directory, f"{stem}.{n}.txt")
            write_file_list(entry, self.group_files)
            keyset = os.path.join(self.directory, f"{stem}.{n}.keyset")
        write_keyset(keyset, self.group_keys, self.key_type)
        self.out.parts.append((entry, keyset))
        self.group_files, self.group_keys = [], np.zeros(0, self.key_type)


@dataclass
class PreprocessSummary:
    """What ``preprocess_criteo`` wrote; ``data_layer`` is a HugeCTR Data layer for it."""

    out_dir: str
    format: str
    engine: str
    key_type: str
    slot_size_array: list
    splits: dict  # name -> SplitOutput
    pipeline: CriteoPipeline
    data_layer: dict
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"out_dir": self.out_dir, "format": self.format, "engine": self.engine, "key_type": self.key_type,
                "slot_size_array": self.slot_size_array, "pipeline": asdict(self.pipeline),
                "splits": {k: asdict(v) for k, v in self.splits.items()}, "data_layer": self.data_layer,
                "seconds": round(self.seconds, 3)}

    def __str__(self):
        lines = [f"{self.format} data from the {self.engine} engine in {self.out_dir} ({self.seconds:.1f} s); "
                 f"keys {self.key_type}; slot_size_array sums to {sum(self.slot_size_array)}"]
        for name, split in self.splits.items():
            lines.append(f"{name}: {split.samples} samples in {len(split.files)} files; source {split.source or '-'}"
                         + (f"; {len(split.parts)} keyset/file-list pairs" if split.parts else ""))
        return "\n".join(lines)


def data_layer(fmt, splits, slot_sizes, check, float_label_dense):
    """A HugeCTR Data layer (JSON) reading the written data."""
    train, evaluation = splits.get("train"), splits.get("val")
    layer = {"name": "data", "type": "Data", "format": {"norm": "Norm", "raw": "Raw", "parquet": "Parquet"}[fmt],
             "source": train.source if train else "", "check": check if fmt == "norm" else "None",
             "label": {"top": "label", "label_dim": 1}, "dense": {"top": "dense", "dense_dim": len(DENSE)},
             "sparse": [{"top": "data1", "type": "DistributedSlot", "max_feature_num_per_sample": len(CATS),
                         "slot_num": len(CATS)}]}
    if evaluation is not None:
        layer["eval_source"] = evaluation.source
    if fmt != "norm":
        layer["slot_size_array"] = list(slot_sizes)
    if fmt == "raw":
        layer.update(num_samples=train.samples if train else 0,
                     eval_num_samples=evaluation.samples if evaluation else 0,
                     float_label_dense=bool(float_label_dense))
    return layer


def preprocess_criteo(out_dir, train, eval=(), *, format="norm", engine="pyarrow", pipeline=None,
                      samples_per_file=40960, file_list_length=0, key_type=None, check="Sum", float_label_dense=False,
                      chunk_bytes=64 << 20, progress=None, overwrite=False) -> PreprocessSummary:
    """Preprocess Criteo-format TSV files into ``out_dir``.

    ``train`` / ``eval``: input paths (statistics and vocabularies come from ``train`` only).
    ``format``: "norm", "raw" or "parquet". ``engine``: "pyarrow" (alias "pandas") or "nvtabular"
    (NVTabular 23.8 in CPU mode); both write identical files. ``pipeline``: a ``CriteoPipeline``.
    ``samples_per_file``: samples per data file (HugeCTR's criteo2hugectr: 40960).
    ``file_list_length`` > 0: also groups of that many files, each with a file list and keyset
    (``file_list.<n>.txt`` + ``file_list.<n>.keyset``; Raw: ``data.<n>.bin`` + ``data.<n>.keyset``
    instead of one ``data.bin``), for the model oversubscriber. ``key_type``: "I32" / "I64" (default
    I64 for Parquet, else I32). ``float_label_dense``: Raw stores float labels/dense (else int32 and the
    reader takes ln(x + 1), so the pipeline must log and not normalise). ``chunk_bytes``: input read
    per step (memory stays bounded by it and by the vocabularies). Writes ``out_dir/<split>/...`` and
    ``out_dir/preprocess.json`` (this summary, with a ready Data layer).
    """
    start = time.perf_counter()
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    pipeline = pipeline or CriteoPipeline()
    key_type = key_type or ("I64" if fmt == "parquet" else "I32")
    train, evaluation = [str(p) for p in _as_list(train)], [str(p) for p in _as_list(eval)]
    if not train:
        raise ValueError("preprocess needs at least one training file")
    for path in train + evaluation:
        problem = input_problem(path)
        if problem == "not found":
            raise FileNotFoundError(f"input file {path} does not exist")
        if problem is not None:
            raise DataError(path, None, f"input file {problem}")
    raw_int = fmt == "raw" and not float_label_dense
    if raw_int and (not pipeline.log or pipeline.normalize):
        raise ValueError("Raw without float_label_dense stores integers and the reader takes ln(x + 1): use the "
                         "pipeline's log (and no normalize), or float_label_dense=True")
    run = CriteoPipeline(**{**asdict(pipeline), "log": False}) if raw_int else pipeline
    out_dir = str(out_dir)
    if os.path.exists(os.path.join(out_dir, "preprocess.json")) and not overwrite:
        raise FileExistsError(f"{out_dir} holds a preprocessed dataset; pass overwrite=True to replace it")
    for split in ("train", "val"):
        shutil.rmtree(os.path.join(out_dir, split), ignore_errors=True)
    os.makedirs(out_dir, exist_ok=True)

    eng = get_engine(engine, chunk_bytes=chunk_bytes, progress=progress)
    fitted = eng.fit(train, run)
    slot_sizes = fitted.slot_size_array
    splits = {}
    try:
        for name, paths in (("train", train), ("val", evaluation)):
            if not paths:
                continue
            writer = _SplitWriter(fmt, os.path.join(out_dir, name), name, slot_sizes,
                                  samples_per_file=samples_per_file, file_list_length=file_list_length,
                                  key_type=key_type, check=check, float_label_dense=float_label_dense)
            for chunk in eng.transform(paths, fitted, run):
                writer.add(chunk)
            splits[name] = writer.close()
    finally:
        eng.close(fitted)
    summary = PreprocessSummary(out_dir, fmt, eng.name, key_type, slot_sizes, splits, pipeline,
                                data_layer(fmt, splits, slot_sizes, check, float_label_dense),
                                time.perf_counter() - start)
    path = os.path.join(out_dir, "preprocess.json")
    with naming_os_errors(path), open(path, "w", encoding="utf-8") as f:
        json.dump(summary.to_json(), f, indent=1)
    return summary


def _as_list(paths):
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    return list(paths)
