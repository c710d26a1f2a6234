"""Key types (HugeCTR's ``TypeKey``), the hash table's empty-key marker and its room for refused keys.

``"I32"`` keys are uint32 and ``"I64"`` keys int64 everywhere: readers, hash tables, model files and
the CUDA kernels (kernels/hctr_common.cuh's ``hctr_empty_key`` is ``sentinel_key``).
"""

from __future__ import annotations

import numpy as np

KEY_DTYPES = {"I32": np.dtype(np.uint32), "I64": np.dtype(np.int64)}


def key_dtype(key_type) -> np.dtype:
    """The key dtype for ``"I32"`` / ``"I64"`` (HugeCTR's ``input_key_type``) or a uint32/int64 dtype."""
    if isinstance(key_type, str) and key_type.upper() in KEY_DTYPES:
        return KEY_DTYPES[key_type.upper()]
    try:
        dtype = np.dtype(key_type)
    except TypeError:
        dtype = None
    if dtype not in KEY_DTYPES.values():
        raise ValueError(f"key type must be 'I32' (uint32) or 'I64' (int64), got {key_type!r}")
    return dtype


def key_type_name(dtype) -> str:
    """``"I32"`` or ``"I64"`` for a key dtype."""
    return "I32" if key_dtype(dtype) == KEY_DTYPES["I32"] else "I64"


def sentinel_key(dtype) -> int:
    """The empty-key marker of HugeCTR's hash table (max of TypeKey); that key value is unusable."""
    return int(np.iinfo(dtype).max)


def refused_room(num_slots, capacity) -> int:
    """How many refused keys a hash table of ``num_slots`` slots remembers: up to a load of 3/4."""
    return max(0, 3 * num_slots // 4 - capacity)
