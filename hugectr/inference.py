"""``hugectr.inference``: HugeCTR v3.0's inference API over ``hugectr_lab.inference``.

    from hugectr.inference import CreateParameterServer, CreateEmbeddingCache, InferenceSession

v3.1's ``InferenceParams`` and ``CreateInferenceSession`` are here too (their names collide with nothing),
so a v3.1 script's ``from hugectr.inference import ...`` line needs no change.
"""

from hugectr_lab.api.inference import CreateInferenceSession, InferenceParams
from hugectr_lab.inference import (CreateEmbeddingCache, CreateParameterServer, EmbeddingCacheInterface,
                                   InferenceSession, InferType, ParameterServerBase)

__all__ = ["InferenceParams", "CreateInferenceSession", "CreateParameterServer", "CreateEmbeddingCache",
           "InferenceSession", "InferType", "ParameterServerBase", "EmbeddingCacheInterface"]
