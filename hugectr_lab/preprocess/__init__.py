"""Preprocessing: the Criteo pipeline (TSV → Norm, Raw or Parquet plus keyset files) with two engines,
NVTabular (CPU mode) and pyarrow, that write identical files. See ``criteo`` and ``engines``."""

from .criteo import (CATS, COLUMNS, DENSE, FORMATS, LABEL, Chunk, CriteoPipeline, Fitted, PreprocessSummary,
                     SplitOutput, preprocess_criteo)
from .engines import ArrowEngine, NVTabularEngine, get_engine

__all__ = ["CATS", "COLUMNS", "DENSE", "FORMATS", "LABEL", "Chunk", "CriteoPipeline", "Fitted", "PreprocessSummary",
           "SplitOutput", "preprocess_criteo", "ArrowEngine", "NVTabularEngine", "get_engine"]
