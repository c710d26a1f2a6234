"""Backends (NumPy, CuPy), named ops with NumPy references, and collectives over logical devices."""

from .backends import (Backend, CupyBackend, NumpyBackend, address, array_module, backend_object, get_backend,
                       to_host, visible_gpu_count)
from .comm import Communicator, InProcessCommunicator
from .ops import KERNELS, REFERENCES, kernel_op, reference_op

__all__ = [
    "Backend", "CupyBackend", "NumpyBackend", "address", "array_module", "backend_object", "get_backend", "to_host", "visible_gpu_count",
    "Communicator", "InProcessCommunicator", "KERNELS", "REFERENCES", "kernel_op", "reference_op",
]
