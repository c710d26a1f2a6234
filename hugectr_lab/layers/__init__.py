"""Dense and loss layers keyed by HugeCTR type names, and the Network that wires them.

``LAYERS["InnerProduct"]`` etc. are classes with explicit forward/backward (see ``base.Layer``);
importing this package registers all of them and their reference ops (``backend.ops.name``).
"""

from . import (activations,  # noqa: F401  (importing registers the layers and their ops)
               batch_norm, cast, concat_slice, dropout, elementwise, fm_order2, inner_product,
               interaction, losses, multi_cross, reductions, reshape, weight_multiply)
from .base import BuildContext, Layer, LayerError
from .initializers import INITIALIZER_NAMES
from .network import Network, TrainStep, WeightSlot, network_inputs
from .registry import LAYERS, create_layer, register_layer

__all__ = ["LAYERS", "BuildContext", "INITIALIZER_NAMES", "Layer", "LayerError", "Network", "TrainStep", "WeightSlot",
           "create_layer", "network_inputs", "register_layer"]
