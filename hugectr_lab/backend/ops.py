"""Named array operations: a NumPy reference per name, a CUDA wrapper per name on the CuPy backend.

A reference is a plain function ``name(xp, *arrays, **params)`` written against the array module
``xp``; it is the specification of the operation. ``@reference_op`` registers it under its function
name, next to the layer or embedding that uses it. A CUDA implementation registered with
``@kernel_op("name")`` must keep the same signature; ``Backend.ops.name`` picks the kernel on CuPy
and the reference otherwise, with ``xp`` already bound.
"""

from __future__ import annotations

import functools

REFERENCES: dict = {}
KERNELS: dict = {}


def reference_op(fn):
    """Register ``fn`` as the NumPy reference of the operation named ``fn.__name__``."""
    if fn.__name__ in REFERENCES and REFERENCES[fn.__name__] is not fn:
        raise ValueError(f"reference op {fn.__name__!r} is defined twice "
                         f"({REFERENCES[fn.__name__].__module__} and {fn.__module__})")
    REFERENCES[fn.__name__] = fn
    return fn


def kernel_op(name):
    """Register a CUDA-backed implementation of the reference op ``name`` (CuPy backend only)."""

    def wrap(fn):
        KERNELS[name] = fn
        return fn

    return wrap


class OpTable:
    """``backend.ops``: attribute access resolves an op name to a callable with ``xp`` bound."""

    def __init__(self, xp, use_kernels):
        self._xp = xp
        self._use_kernels = use_kernels
        self._cache = {}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._cache[name]
        except KeyError:
            pass
        impl = KERNELS.get(name) if self._use_kernels else None
        if impl is None:
            impl = REFERENCES.get(name)
        if impl is None:
            raise AttributeError(f"no operation named {name!r} (known: {', '.join(sorted(REFERENCES))})")
        bound = functools.partial(impl, self._xp)
        self._cache[name] = bound
        return bound

    def implementation(self, name):
        """``"kernel"`` or ``"reference"``: which implementation ``ops.name`` runs (for reports)."""
        getattr(self, name)
        return "kernel" if self._use_kernels and name in KERNELS else "reference"
