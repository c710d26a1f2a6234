"""Naming the input line of a bad Criteo TSV row.

The engines read whole blocks (pyarrow) or dask partitions (NVTabular), which know no line numbers.
When an engine finds a problem — a line it cannot parse, a label other than 0 or 1, a dense value the
operators turn into NaN or infinity — ``bad_line_error`` scans the files line by line up to the first
bad line and returns a DataError naming the file and line. Only the error path pays for the scan, and
it stops at the first bad line.
"""

from __future__ import annotations

import numpy as np

from ..data import DataError
from .schema import COLUMNS, DENSE, CriteoPipeline

DENSE_OPS = "FillMissing, Clip and LogOp"


def dense_after_ops(x, pipeline: CriteoPipeline):
    """FillMissing → Clip → LogOp on dense values (NaN = missing), as both engines apply them.  # like x"""
    x = np.where(np.isnan(x), pipeline.fill_value, x)
    if pipeline.clip_min is not None:
        x[x < pipeline.clip_min] = pipeline.clip_min
    if pipeline.log:
        x = np.log(x.astype(np.float32) + 1)  # float32, as LogOp
    return x


def line_problem(fields, pipeline: CriteoPipeline) -> str | None:
    """What is wrong with one line split at tabs (bytes fields), or None."""
    if len(fields) != len(COLUMNS):
        return (f"{len(fields)} tab-separated fields, expected {len(COLUMNS)} (label, I1-I13, C1-C26)")
    label = fields[0].decode("utf-8", "replace")
    if label not in ("0", "1"):
        return "no label (column 1 must be 0 or 1)" if not label else f"label {label!r}: it must be 0 or 1"
    values = np.full(len(DENSE), np.nan)
    for j, (name, text) in enumerate(zip(DENSE, fields[1:1 + len(DENSE)])):
        if text:
            try:
                values[j] = float(text)
            except ValueError:
                return f"{name} is {text.decode('utf-8', 'replace')!r}, not a number"
    with np.errstate(all="ignore"):
        after = dense_after_ops(values, pipeline)
    if not np.isfinite(after).all():
        j = int(np.flatnonzero(~np.isfinite(after))[0])
        return (f"{DENSE[j]} is {fields[1 + j].decode()!r}, which {DENSE_OPS} turn into {after[j]} (a value below "
                "-1 or an infinity; keep Clip's min_value above -1 or fix the input)")
    for name, text in zip(COLUMNS[1 + len(DENSE):], fields[1 + len(DENSE):]):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            return f"{name} is not UTF-8 text"
    return None


def first_bad_line(path, pipeline: CriteoPipeline):
    """``(line number, problem)`` of the first bad line of ``path`` (empty lines are skipped, as the CSV
    readers skip them), or None."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip(b"\r\n")
            if line:
                problem = line_problem(line.split(b"\t"), pipeline)
                if problem is not None:
                    return number, problem
    return None


def bad_line_error(paths, pipeline: CriteoPipeline, fallback: str) -> DataError:
    """A DataError naming the first bad line of ``paths`` (in order), or ``fallback`` about the first file
    when no line is found bad (the engine's own message, without a line)."""
    for path in paths:
        found = first_bad_line(path, pipeline)
        if found is not None:
            return DataError(path, None, f"line {found[0]}: {found[1]}")
    return DataError(paths[0], None, fallback)
