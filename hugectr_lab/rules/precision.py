"""HugeCTR's precision rule: mixed precision computes in float16 and keeps float32 masters.

Activations, gradients and the embedding outputs are in the *compute* dtype; dense master weights,
embedding tables and optimizer states are stored in float32 (``STORAGE_DTYPE``) in both modes.
"""

from __future__ import annotations

import numpy as np

STORAGE_DTYPE = np.dtype(np.float32)


def compute_dtype(mixed_precision) -> np.dtype:
    """float16 with ``mixed_precision`` (use_mixed_precision), else float32."""
    return np.dtype(np.float16 if mixed_precision else np.float32)
