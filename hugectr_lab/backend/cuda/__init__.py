"""CUDA kernels of the CuPy backend: a loader for ``kernels/*.cu`` and the ``@kernel_op`` wrappers.

Every wrapper has exactly the signature of the NumPy reference of the same name and falls back to
that reference (run on CuPy arrays) for inputs the kernel does not cover (e.g. float64 verification
runs). ``sources`` is importable without CuPy (the CPU compile check uses it); ``load()`` imports
the wrappers, which registers them, and needs CuPy. ``CupyBackend`` calls it on construction.
"""


def load():
    """Register every CUDA wrapper with ``@kernel_op`` (idempotent; imports CuPy)."""
    from . import embedding_ops, layer_ops, numerics_ops, optimizer_ops, writes  # noqa: F401  (importing registers)
