"""``hugectr.v31.inference``: the same names as ``hugectr.inference`` (v3.1's ``InferenceParams`` and
``CreateInferenceSession`` live there too), so ``hugectr.inference.X`` works after ``import hugectr.v31 as hugectr``."""

from hugectr.inference import *  # noqa: F401,F403
from hugectr.inference import __all__  # noqa: F401
