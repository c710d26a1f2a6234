"""Preprocessing: the Criteo pipeline (TSV → Norm, Raw or Parquet plus keyset files) with two engines,
NVTabular (CPU mode) and pyarrow, that write identical files. See ``criteo``, ``engines`` and
``schema`` (what they exchange)."""

from .criteo import FORMATS, PreprocessSummary, SplitOutput, preprocess_criteo
from .engines import ArrowEngine, NVTabularEngine, get_engine
from .schema import CATS, COLUMNS, DENSE, LABEL, Chunk, CriteoPipeline, Fitted

__all__ = ["CATS", "COLUMNS", "DENSE", "FORMATS", "LABEL", "Chunk", "CriteoPipeline", "Fitted", "PreprocessSummary",
           "SplitOutput", "preprocess_criteo", "ArrowEngine", "NVTabularEngine", "get_engine"]
