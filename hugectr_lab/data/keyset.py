"""Keyset files: a raw little-endian array of keys (uint32 for I32, int64 for I64), no header.

A keyset names the unique keys that occur in one file list; the model oversubscriber loads the
embedding rows of exactly those keys before training on that file list.
"""

from __future__ import annotations

import os

import numpy as np

from ..fileio import naming_os_errors
from .batch import as_keys, key_dtype
from .errors import DataError, check_data_file


def write_keyset(path, keys, key_type) -> None:
    """Write ``keys`` (any integer array-like, written in the given order) as a keyset file."""
    dtype = key_dtype(key_type)
    with naming_os_errors(path):
        as_keys(keys, dtype).astype(dtype.newbyteorder("<"), copy=False).tofile(path)


def read_keyset(path, key_type) -> np.ndarray:
    """The keys of the keyset file at ``path``.  # (K,) uint32 | int64"""
    dtype = key_dtype(key_type)
    check_data_file(path, "keyset file")
    size = os.path.getsize(path)
    if size % dtype.itemsize:
        raise DataError(path, size - size % dtype.itemsize,
                        f"keyset size {size} bytes is not a multiple of {dtype.itemsize} ({dtype} keys)")
    return np.fromfile(path, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
