"""The layer interface, the build context, and small array helpers shared by the layers.

Life cycle of a layer (the Network drives it; tests drive it directly):

1. ``Layer(**params)`` only stores the params (the fields of the config's params dataclass).
2. ``build(input_shapes, ctx) -> output_shapes`` checks shapes (errors name the layer) and decides
   the weight shapes. Shapes include the batch dimension.
3. ``weight_shapes()`` / ``weight_names()`` in HugeCTR's dense-model-file order;
   ``init_weights(rng)`` draws them as float32 host arrays.
4. ``bind(weights, grads)`` hands over views into the network's flat buffers; ``weights_changed()``
   follows every write of the weights through the Network (what a layer derives from them follows).
5. ``prepare(training)`` (host-drawn values, outside CUDA graphs), ``forward(inputs, training) ->
   outputs`` and ``backward(d_outputs) -> d_inputs``; backward writes
   weight gradients into the bound grad views, accumulating (``+=``) except for the names listed in
   ``grad_overwrites`` (``=``), as HugeCTR does.

Arrays passed to ``forward``/``backward`` are read-only by convention: a layer never writes into an
array it did not create (results may be views of its inputs, e.g. Reshape).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..backend import backend_object
from ..config.specs import FP32_GEMMS


class LayerError(ValueError):
    """A bad layer configuration or shape; the message starts with the layer's label."""


@dataclass
class BuildContext:
    """What layers need to know about the network they are built into.

    ``compute_dtype`` is float32 (FP32 mode), float16 (mixed precision: fp16 activations and
    gradients, fp32 master weights) or float64 (verification only: finite-difference checks).
    ``scaler`` is the loss scaler S, ``device_count`` the number of logical devices G (losses divide
    their gradient by G), ``rng`` feeds Dropout, ``training`` says whether backward will run.
    ``tf32`` is accepted for parity with ``enable_tf32_compute``; it has no effect on NumPy.
    ``backend`` is the Backend object the owner resolved (None: NumPy); names are not resolved here.
    ``fuse_epilogues`` lets a Network run ``InnerProduct -> ReLU [-> Dropout]`` chains as one GEMM and one
    element-wise pass (``layers/fusion.py``; same bits); default on, off with ``HUGECTR_LAB_FUSE_EPILOGUES=0``.
    ``fp32_gemm`` is how float32 inference FC GEMMs run: ``"fp32"`` (plain float32) or ``"tf32x3"``
    (float32-accurate on TF32 tensor cores, each operand split in two: ``layers/inner_product.py``; only for
    ``training`` off, fused epilogues, ``tf32`` off and batch and outputs at least ``TF32X3_MIN_EXTENT``).
    """

    backend: Any = None
    compute_dtype: Any = np.float32
    scaler: float = 1.0
    device_count: int = 1
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    training: bool = True
    tf32: bool = False
    fuse_epilogues: bool = field(default_factory=lambda: os.environ.get("HUGECTR_LAB_FUSE_EPILOGUES", "1") != "0")
    fp32_gemm: str = "fp32"

    def __post_init__(self):
        self.backend = backend_object(self.backend, "BuildContext")
        self.compute_dtype = np.dtype(self.compute_dtype)
        if self.compute_dtype not in (np.float16, np.float32, np.float64):
            raise ValueError(f"compute_dtype must be float16, float32 or float64, got {self.compute_dtype}")
        if self.fp32_gemm not in FP32_GEMMS:
            raise ValueError(f"fp32_gemm must be one of {', '.join(map(repr, FP32_GEMMS))}, got {self.fp32_gemm!r}")

    @property
    def xp(self):
        return self.backend.xp

    @property
    def mixed_precision(self):
        return self.compute_dtype == np.float16

    @property
    def master_dtype(self):
        """Dtype of master weights and labels: float32, or float64 in verification mode."""
        return np.dtype(np.float64) if self.compute_dtype == np.float64 else np.dtype(np.float32)


class Layer(ABC):
    """Base class. Subclasses implement ``_build``, ``forward``, ``backward``."""

    type_name: ClassVar[str] = "Layer"  # set by @register_layer
    # (min, max) input tensors, None = unbounded; set by @register_layer from config.LAYER_KINDS
    num_inputs: ClassVar[tuple[int, int | None]] = (1, 1)
    is_loss: ClassVar[bool] = False
    # BatchNorm keeps fp32 weights in mixed precision: it binds to the master buffer, not the fp16 copy.
    uses_master_weights: ClassVar[bool] = False

    label: str | None = None  # e.g. 'layers[7] (Reshape "reshape1")', set by the Network

    def error(self, message) -> LayerError:
        return LayerError(f"{self.label or self.type_name}: {message}")

    # -- build -------------------------------------------------------------------------------

    def build(self, input_shapes, ctx: BuildContext):
        """Check ``input_shapes`` (tuples incl. batch), decide weight shapes; return output shapes."""
        lo, hi = self.num_inputs
        n = len(input_shapes)
        if n < lo or (hi is not None and n > hi):
            expected = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi else f"at least {lo}"
            raise self.error(f"takes {expected} input tensors, got {n}")
        self.ctx = ctx
        self.xp = ctx.xp
        self.dtype = ctx.compute_dtype
        self.input_shapes = [tuple(int(d) for d in s) for s in input_shapes]
        self._weight_specs = []  # [(name, shape)], filled by _build
        self.output_shapes = [tuple(s) for s in self._build(self.input_shapes)]
        return self.output_shapes

    @abstractmethod
    def _build(self, shapes):
        """Output shapes for input ``shapes``; declares the weights with ``_add_weight``."""

    def _add_weight(self, name, shape):
        self._weight_specs.append((name, tuple(shape)))

    def _require_rank(self, shape, ranks, what="input"):
        if len(shape) not in ranks:
            want = " or ".join(f"{r}-D" for r in ranks)
            raise self.error(f"{what} must be {want}, got shape {list(shape)}")

    # -- weights -----------------------------------------------------------------------------

    def weight_shapes(self):
        """Shapes of the weight tensors in dense-model-file order."""
        return [shape for _, shape in self._weight_specs]

    def weight_names(self):
        return [name for name, _ in self._weight_specs]

    def init_weights(self, rng):
        """Float32 host arrays, one per ``weight_shapes()`` entry, drawn from ``rng`` in order."""
        return []

    def bind(self, weights, grads):
        """Views into the network's flat weight and gradient buffers, in ``weight_shapes()`` order."""
        self.weights = list(weights)
        self.grads = list(grads)

    def weights_changed(self):
        """Rebuild in place what the layer derives from its bound weights (InnerProduct's 3xTF32 operand).
        The Network calls it after writing them (``init_weights``, ``load_weights``, ``copy_weights_from``),
        not after an optimizer's in-place update: derive only in networks that are not trained."""

    @property
    def grad_overwrites(self):
        """Names of weights whose gradient backward overwrites instead of accumulating."""
        return ()

    def _write_grad(self, i, d_w, into=None):
        """Accumulate ``d_w`` into grad ``i``, or overwrite it where HugeCTR does; ``into``: a view that
        stands for grad ``i`` (several grads of one kind written at once: MultiCross's w_l)."""
        target = self.grads[i] if into is None else into
        if self._weight_specs[i][0] in self.grad_overwrites:
            target[...] = d_w
        else:
            target += d_w

    # -- compute -----------------------------------------------------------------------------

    def prepare(self, training):
        """Draw the next forward's host-side values (Dropout's seed) into device buffers. The Network
        calls it before every forward and outside any CUDA graph, which replays forward without Python."""

    @abstractmethod
    def forward(self, inputs, training):
        """Output arrays for the input arrays (``training`` selects dropout / batch statistics)."""

    @abstractmethod
    def backward(self, d_outputs):
        """Input gradients for the output gradients of the last forward; writes the weight gradients."""

    def __repr__(self):
        return f"<{self.type_name} {self.label or ''}>"


# -- helpers (array methods only, so they work on numpy and cupy arrays alike) -------------------


def matmul(a, b):
    """``a @ b``; fp16 operands are multiplied with fp32 accumulation, as tensor cores do."""
    if a.dtype == np.float16:
        return (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16)
    return a @ b


def sum_rows(a, axis=0, keepdims=True):
    """Sum over ``axis`` (default: the batch), accumulated in fp32 for fp16 arrays."""
    return widen(a).sum(axis=axis, keepdims=keepdims).astype(a.dtype, copy=False)


def widen(a):
    """fp16 arrays as float32 (the kernels accumulate fp16 data in fp32); other dtypes unchanged."""
    return a.astype(np.float32) if a.dtype == np.float16 else a
