"""Errors and warnings of the data package. Messages start with the file and byte offset."""

from __future__ import annotations

import numpy as np

from ..input_files import input_problem, located


class DataError(ValueError):
    """Bad input data or a data file that disagrees with the reader's configuration.

    ``path`` and ``offset`` (byte offset in that file, None if not about one place) are kept as
    attributes; the message reads ``"<path>: byte <offset>: <what>"``.
    """

    def __init__(self, path, offset, what):
        self.path = str(path)
        self.offset = offset
        self.what = what
        super().__init__(located(self.path, offset, what))


def check_data_file(path, what) -> None:
    """DataError ``"<path>: <what> is a directory, not a regular file"`` (or "not found", ...) unless
    ``path`` is a regular file a reader can open (a FIFO would block it); ``what`` names its role."""
    problem = input_problem(path)
    if problem is not None:
        raise DataError(path, None, f"{what} {problem}")


class NotInitializedError(RuntimeError):
    """A reader was asked to rewind or read without ever having been given a source."""


class DataWarning(UserWarning):
    """Data was skipped (e.g. a sample with a bad checksum was dropped); reading went on."""


def first_non_finite(labels, dense):
    """``(row, column, field)`` of the first NaN or infinity in ``labels`` (N, L) or ``dense`` (N, D),
    row-major, where ``column`` counts labels then dense values and ``field`` is the message tail
    ("dense feature 3 is nan (...)"); None when every value is finite.

    One vectorised ``isfinite`` per array on the common path, so readers can call it on every batch.
    """
    if np.isfinite(labels).all() and np.isfinite(dense).all():
        return None
    bad = ~np.hstack([np.isfinite(labels), np.isfinite(dense)])  # (N, L+D)
    row, column = (int(v) for v in np.argwhere(bad)[0])
    label_dim = labels.shape[1]
    if column < label_dim:
        field = f"label {column} is {labels[row, column]}"
    else:
        field = f"dense feature {column - label_dim} is {dense[row, column - label_dim]}"
    return row, column, field + " (NaN and infinity are refused: one would turn every weight into NaN)"
