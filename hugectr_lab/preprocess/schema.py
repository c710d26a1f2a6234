"""What the two engines and the writer exchange: the Criteo columns, the reserved category codes, the
pipeline's parameters (``CriteoPipeline``), what fitting found (``Fitted``) and transformed rows
(``Chunk``). The operators themselves are described in ``criteo``; this module sits below both
``criteo`` (the writer) and ``engines`` so neither imports the other's caller."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABEL = "label"
DENSE = tuple(f"I{i}" for i in range(1, 14))
CATS = tuple(f"C{i}" for i in range(1, 27))
COLUMNS = (LABEL,) + DENSE + CATS
RESERVED_CODES = 3  # 0 unused (padding), 1 missing, 2 out of vocabulary
NULL_CODE, OOV_CODE = 1, 2


@dataclass(frozen=True)
class CriteoPipeline:
    """The operators and their parameters (see the module docstring). Defaults are HugeCTR's Criteo
    pipelines: missing → 0, clip at 0, log, no normalisation, categories seen fewer than 6 times → OOV."""

    freq_threshold: int = 6
    fill_value: float = 0.0
    clip_min: float | None = 0.0
    log: bool = True
    normalize: bool = False

    def __post_init__(self):
        if self.freq_threshold < 0:
            raise ValueError(f"freq_threshold must be >= 0, got {self.freq_threshold}")


@dataclass
class Fitted:
    """What fitting on the training split found: each categorical column's vocabulary size and the
    Normalize statistics (None without Normalize). ``state`` is the engine's own."""

    vocab_sizes: list  # per categorical column, codes 3.. (without the reserved codes)
    means: np.ndarray | None = None  # (13,) float64
    stds: np.ndarray | None = None
    state: object = None

    @property
    def slot_size_array(self) -> list:
        return [RESERVED_CODES + int(v) for v in self.vocab_sizes]


@dataclass
class Chunk:
    """Transformed rows: labels (n,) float32, dense (n, 13) float32 (float64 when the engine ran without
    LogOp, for Raw's integer dense), codes (n, 26) int64."""

    labels: np.ndarray
    dense: np.ndarray
    codes: np.ndarray

    def __len__(self):
        return len(self.labels)


def chunk_concat(chunks):
    if len(chunks) == 1:
        return chunks[0]
    return Chunk(*(np.concatenate([getattr(c, name) for c in chunks]) for name in ("labels", "dense", "codes")))


def chunk_take(chunk, start, stop):
    return Chunk(chunk.labels[start:stop], chunk.dense[start:stop], chunk.codes[start:stop])
