"""The Model API: HugeCTR's Python front ends over the JSON config specs and the Session.

* ``hugectr_lab.api.preview`` -- v3.0's preview API (``hugectr.Model``, ``Input``, ``SparseEmbedding``,
  ``DenseLayer``, ``hugectr.optimizer.CreateOptimizer``);
* ``hugectr_lab.api.v31`` -- v3.1's API (``CreateSolver``, ``DataReaderParams``, ``CreateOptimizer``,
  ``CreateMOS``, ``Model(solver, reader, optimizer[, mos])``) and its inference session.

Both build the JSON ``layers`` list of a HugeCTR config, parse it with ``parse_config`` and train it with a
``Session``; see docs/model_api.md.
"""

from .layers import DenseLayer
from .model import ModelBase, ModelNotCompiledError

__all__ = ["DenseLayer", "ModelBase", "ModelNotCompiledError"]
