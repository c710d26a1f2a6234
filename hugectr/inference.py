"""``hugectr.inference``: HugeCTR v3.0's inference API over ``hugectr_lab.inference``.

    from hugectr.inference import CreateParameterServer, CreateEmbeddingCache, InferenceSession
"""

from hugectr_lab.inference import (CreateEmbeddingCache, CreateParameterServer, EmbeddingCacheInterface,
                                   InferenceSession, InferType, ParameterServerBase)

__all__ = ["CreateParameterServer", "CreateEmbeddingCache", "InferenceSession", "InferType", "ParameterServerBase",
           "EmbeddingCacheInterface"]
