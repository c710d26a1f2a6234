"""``hugectr.v31.inference``: the names of ``hugectr.inference`` (v3.1's ``InferenceParams`` and
``CreateInferenceSession`` live there too), so ``hugectr.inference.X`` works after ``import hugectr.v31 as hugectr``."""

from hugectr.inference import (CreateEmbeddingCache, CreateInferenceSession, CreateParameterServer,  # noqa: F401
                               EmbeddingCacheInterface, InferenceParams, InferenceSession, InferType,
                               ParameterServerBase, __all__)
