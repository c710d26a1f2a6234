"""Atomic file writes: a reader never sees a half-written file under the final name."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def naming_os_errors(path):
    """Give an OSError raised inside the block that names no file (a write's ENOSPC "No space left on
    device", EFBIG, EIO) ``path`` as its file name, so the message says which file could not be written."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, os.fspath(path)) from e
        raise


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one rename.

    On error the temporary file is removed and any existing ``path`` is left as it was.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with naming_os_errors(path), os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data):
    """Write ``data`` (bytes or a NumPy array's raw buffer) to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data if isinstance(data, (bytes, bytearray, memoryview)) else memoryview(data).cast("B"))


def write_dir_atomic(path, files):
    """Write ``files`` (name -> array or bytes) into a temporary sibling directory, then swap it in."""
    path = os.fspath(path).rstrip(os.sep)
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path}: exists and is not a directory")
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=os.path.dirname(path) or ".")
    try:
        for name, content in files.items():
            with naming_os_errors(os.path.join(path, name)), open(os.path.join(tmp, name), "wb") as f:
                f.write(content if isinstance(content, bytes) else np.ascontiguousarray(content).tobytes())
        if os.path.isdir(path):
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
