"""``RunPlan``: what a Session derives once from its solver and backend, handed to everything it builds.

The Session makes one plan (``RunPlan.derive``) and its readers, networks, embeddings and the
benchmarks take their devices, per-device batch, dtypes, loss scale, backend and key type from it
instead of working them out again from the solver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rules.keys import key_dtype
from .rules.precision import STORAGE_DTYPE, compute_dtype


def flatten_vvgpu(vvgpu):
    """``[[0, 1], [2, 3]]`` → ``[0, 1, 2, 3]`` (global device order); duplicates within a node are an error."""
    nodes = [list(node) for node in vvgpu]
    for n, node in enumerate(nodes):
        if len(set(node)) != len(node):
            raise ValueError(f"vvgpu[{n}] lists a GPU twice: {node}")
    devices = [d for node in nodes for d in node]
    if not devices:
        raise ValueError("vvgpu names no device")
    return devices


@dataclass(frozen=True)
class RunPlan:
    """One run's fixed settings. ``devices``: the global device ids (vvgpu flattened, G of them);
    ``batchsize`` / ``batchsize_eval``: global batches B, divisible by G; ``compute_dtype``: float16 in
    mixed precision, else float32; ``storage_dtype``: float32 (master weights, tables, optimizer
    states); ``loss_scale``: the initial loss scale S (1 without mixed precision; dynamic loss scaling
    changes the Session's, not the plan's); ``backend``: the Backend object (None in a plan that only
    sizes a run, as the memory estimate's); ``key_type``: "I32" / "I64"."""

    devices: tuple
    batchsize: int
    batchsize_eval: int
    compute_dtype: np.dtype
    storage_dtype: np.dtype
    loss_scale: float
    backend: object
    key_type: str

    def __post_init__(self):
        for name in ("batchsize", "batchsize_eval"):
            if getattr(self, name) % len(self.devices):
                raise ValueError(f"RunPlan: {name} {getattr(self, name)} is not divisible by the "
                                 f"{len(self.devices)} devices")

    @classmethod
    def derive(cls, solver, backend=None):
        """The plan of a ``SolverParser`` (batch sizes, vvgpu, precision, scaler, key type) on ``backend``."""
        mixed = bool(solver.use_mixed_precision)
        return cls(devices=tuple(flatten_vvgpu(solver.vvgpu)), batchsize=int(solver.batchsize), batchsize_eval=int(solver.batchsize_eval),
                   compute_dtype=compute_dtype(mixed), storage_dtype=STORAGE_DTYPE,
                   loss_scale=float(solver.scaler) if mixed else 1.0, backend=backend,
                   key_type="I64" if solver.i64_input_key else "I32")

    @property
    def num_devices(self) -> int:
        """G."""
        return len(self.devices)

    @property
    def mixed_precision(self) -> bool:
        return self.compute_dtype == np.float16

    @property
    def key_dtype(self) -> np.dtype:
        return key_dtype(self.key_type)

    def device_batch(self, eval=False) -> int:
        """b = B // G of the training (``eval``: evaluation) batch."""
        return (self.batchsize_eval if eval else self.batchsize) // self.num_devices
