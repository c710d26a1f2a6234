"""File lists: a text file whose first line is the number of data files N (> 0), then N paths.

Relative paths are resolved against the current working directory, as HugeCTR does; when that names no
file, against the file list's own directory (so a dataset folder can be moved or read from elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..fileio import naming_os_errors
from ..input_files import input_problem, read_text
from .errors import DataError


def read_file_list(path) -> list[str]:
    """The N entries of the file list at ``path``, as written (trailing whitespace stripped)."""
    lines = read_text(path, "file list", lambda offset, what: DataError(path, offset, what)).splitlines()
    count_text = lines[0].strip() if lines else ""
    try:
        count = int(count_text)
    except ValueError:
        raise DataError(path, None, f"line 1 must be the number of data files, got {count_text!r}") from None
    if count <= 0:
        raise DataError(path, None, f"line 1: the number of data files must be > 0, got {count}")
    entries = [line.rstrip() for line in lines[1:count + 1]]
    if len(entries) < count:
        raise DataError(path, None, f"line 1 announces {count} data files but only {len(entries)} follow")
    for number, entry in enumerate(entries, start=2):
        if not entry:
            raise DataError(path, None, f"line {number}: empty data file path")
    return entries


def write_file_list(path, data_paths) -> None:
    """Write a file list naming ``data_paths`` (written as given, one per line)."""
    data_paths = [str(p) for p in data_paths]
    if not data_paths:
        raise ValueError("a file list needs at least one data file")
    with naming_os_errors(path):
        Path(path).write_text("".join(f"{line}\n" for line in [str(len(data_paths))] + data_paths), encoding="utf-8")


def resolve_data_path(entry: str, list_path) -> str:
    """Where the file-list entry ``entry`` points: as is if absolute or present relative to the CWD,
    else relative to the file list's directory; DataError if neither exists."""
    if os.path.isabs(entry) or os.path.exists(entry):
        candidate = entry
    else:
        candidate = os.path.join(os.path.dirname(os.path.abspath(list_path)), entry)
    problem = input_problem(candidate)
    if problem == "not found":
        raise DataError(list_path, None, f"data file {entry!r} not found (relative to the working directory "
                                         f"{os.getcwd()!r} nor to the file list's directory)")
    if problem is not None:
        raise DataError(list_path, None, f"data file {entry!r} ({candidate}) {problem}")
    return candidate


def resolve_file_list(path) -> list[str]:
    """The data files of the file list at ``path``, resolved (see ``resolve_data_path``)."""
    return [resolve_data_path(entry, path) for entry in read_file_list(path)]
