"""Backend objects: one per Session, so CPU and GPU runs can sit side by side in one notebook."""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from .ops import OpTable, reference_op

ENV_VAR = "HUGECTR_LAB_BACKEND"


class Backend:
    """An array module plus named ops. ``xp`` is ``numpy`` or ``cupy``."""

    name = "abstract"
    reason = "constructed directly"   # how get_backend chose it
    has_graphs = False                 # whether ``graph`` gives CUDA-graph replays

    def __init__(self, xp, use_kernels):
        self.xp = xp
        self.ops = OpTable(xp, use_kernels)
        self._holding = threading.local()   # .held: inside ``writes_together``, the writes and copies it holds

    def asarray(self, a, dtype=None):
        """Move a host (or device) array onto this backend."""
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a):
        """A NumPy copy/view of ``a``."""
        return np.asarray(a)

    def contiguous(self, a):
        """``a`` C-contiguous: itself if it is, else a copy (what a reshape of a strided view would make)."""
        return self.xp.ascontiguousarray(a)

    def copy_into(self, dst, src):
        """``dst[...] = src`` (queued on a device): how a step's inputs reach the buffers its graph reads."""
        self._put(dst, src)

    def write(self, dst, values):
        """Write up to four host numbers ``values`` into the existing contiguous array ``dst`` (as many
        elements, converted to its dtype as NumPy converts them: a 62-bit seed stays exact) without waiting
        for the device: how per-step scalars (rates, step counts, Dropout seeds) reach the buffers a CUDA
        graph of the step reads. The values are those of the call, whenever the device gets them."""
        values = np.asarray(values).reshape(-1)
        if values.size != dst.size or values.size > 4 or not dst.flags.c_contiguous or dst.itemsize > 8:
            raise ValueError(f"write: {values.size} values for an array of {dst.size} (at most 4, contiguous)")
        self._put(dst, values.astype(dst.dtype).reshape(dst.shape))

    @contextlib.contextmanager
    def writes_together(self):
        """Hold every ``write`` and ``copy_into`` made inside and send them at the end -- on a GPU one launch
        per device and stream (``cuda/writes.py``) instead of one each: how a replayed step's per-step values
        and inputs reach its buffers before the graph launch. Nothing inside may read what is written there
        (the device gets it at the end). Nested, the outermost one sends; other threads' are not held."""
        if getattr(self._holding, "held", None) is not None:
            yield
            return
        self._holding.held = held = []
        try:
            yield
        finally:
            self._holding.held = None
            if held:
                self._send(held)

    def _put(self, dst, src):
        held = getattr(self._holding, "held", None)
        if held is None:
            self.ops.write_table(dst, src)
        else:
            held.append(self._tagged(dst, src))

    def _tagged(self, dst, src):   # what ``_send`` needs to know of the moment of the call
        return dst, src

    def _send(self, held):
        self.ops.write_table(*(a for dst_src in held for a in dst_src))

    def synchronize(self):
        """Wait for queued device work (no-op on NumPy)."""

    def device(self, device_id):
        """Context in which GPU ``device_id`` is current (no-op on NumPy, where devices are logical)."""
        return contextlib.nullcontext()

    def graph(self, fn, name):
        """``fn`` (no arguments; returns arrays) as a callable replayed from a CUDA graph of the current
        device (``cuda/graphs.py``), or None where the backend has no graphs (NumPy). ``name`` says what
        ``fn`` is in the warning logged if it cannot be captured."""
        return None

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


@reference_op
def write_table(xp, *pairs):
    """``dst[...] = src`` for each (dst, src) of ``pairs`` = (dst0, src0, dst1, src1, ...): a host ``src`` of at
    most 32 bytes is written (on a GPU its bytes travel in the launch), a device one copied. The destinations
    must not overlap one another or the sources (a GPU does them all at once). ``Backend.write``,
    ``copy_into`` and ``writes_together`` go through it."""
    for dst, src in zip(pairs[::2], pairs[1::2]):
        dst[...] = src


class NumpyBackend(Backend):
    """The reference backend: every op is its NumPy reference. Runs anywhere."""

    name = "numpy"

    def __init__(self):
        super().__init__(np, use_kernels=False)


class CupyBackend(Backend):
    """GPU backend: CUDA kernels where registered, otherwise the references run on ``cupy`` arrays."""

    name = "cupy"
    has_graphs = True

    def __init__(self, device_ids=None):
        import cupy

        from .cuda import load

        load()   # registers the CUDA wrappers under their reference names
        super().__init__(cupy, use_kernels=True)
        self.device_ids = list(device_ids) if device_ids is not None else [0]

    def to_host(self, a):
        return self.xp.asnumpy(a) if isinstance(a, self.xp.ndarray) else np.asarray(a)

    def contiguous(self, a):
        from .cuda.rows import contiguous

        return contiguous(self.xp, a)   # a row-strided view through a row-walking kernel, not CuPy's copy

    def _tagged(self, dst, src):   # + the device and stream of the call (CuPy's null stream has no device)
        return dst, src, self.xp.cuda.runtime.getDevice(), self.xp.cuda.get_current_stream()

    def _send(self, held):
        cuda = self.xp.cuda
        here = cuda.runtime.getDevice(), cuda.get_current_stream()
        groups = {}
        for dst, src, device, stream in held:
            groups.setdefault((device, stream.ptr), (device, stream, []))[2].extend((dst, src))
        for device, stream, pairs in groups.values():
            if (device, stream.ptr) == (here[0], here[1].ptr):
                self.ops.write_table(*pairs)
            else:
                with cuda.Device(device), stream:
                    self.ops.write_table(*pairs)

    def synchronize(self):
        self.xp.cuda.get_current_stream().synchronize()

    def device(self, device_id):
        return self.xp.cuda.Device(device_id)

    def graph(self, fn, name):
        from .cuda.graphs import CapturedCall

        return CapturedCall(fn, name)


def visible_gpu_count():
    """Number of usable CUDA devices, 0 when CuPy or a driver is missing."""
    return probe_gpus()[0]


def probe_gpus():
    """``(number of usable CUDA devices, what was found)``, e.g. ``(0, "CuPy is not installed")``."""
    try:
        import cupy
    except ImportError:
        return 0, "CuPy is not installed"
    try:
        if not cupy.cuda.is_available():
            return 0, "CuPy finds no CUDA driver or device"
        count = cupy.cuda.runtime.getDeviceCount()
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        name = name.decode() if isinstance(name, bytes) else name
        return count, f"{count} GPU(s), GPU 0 is {name}"
    except Exception as error:  # a CUDA driver error when probing
        return 0, f"probing the GPUs failed: {error}"


def get_backend(name=None, device_ids=None):
    """Resolve ``"numpy" | "cupy" | "auto"`` (default: ``$HUGECTR_LAB_BACKEND`` or ``"auto"``).

    ``"auto"`` picks CuPy when CuPy imports and a usable CUDA GPU exists, else NumPy, so an unchanged
    HugeCTR script runs on the GPU wherever there is one. ``backend.name`` is the choice and
    ``backend.reason`` says how it was made (e.g. ``"auto: 4 GPU(s), GPU 0 is NVIDIA H100 80GB HBM3"``).
    ``device_ids`` are checked against the visible GPUs for CuPy.
    """
    if isinstance(name, Backend):
        return name
    source = "argument" if name else ("$" + ENV_VAR if os.environ.get(ENV_VAR) else "default")
    name = (name or os.environ.get(ENV_VAR) or "auto").lower()
    reason = source
    probe = probe_gpus() if name in ("auto", "cupy") else None
    if name == "auto":
        name = "cupy" if probe[0] > 0 else "numpy"
        reason = f"auto: {probe[1]}"
    if name == "numpy":
        backend = NumpyBackend()
    elif name == "cupy":
        count, found = probe
        if count == 0:
            raise RuntimeError(f"backend='cupy' needs CuPy and a CUDA GPU; none is usable here ({found}; "
                               "install hugectr-lab[gpu] on a GPU machine, or use backend='numpy')")
        bad = [d for d in (device_ids or [0]) if not 0 <= d < count]
        if bad:
            raise ValueError(f"vvgpu names GPU ids {bad} but the visible GPUs are {list(range(count))}")
        backend = CupyBackend(device_ids)
    else:
        raise ValueError(f"backend must be 'numpy', 'cupy' or 'auto', got {name!r}")
    backend.reason = reason
    return backend


def backend_object(backend, owner):
    """The Backend a building block (layer context, embedding, hash table) runs on: the object its owner
    resolved with ``get_backend``, or a NumPy backend for None. Only the entry points (Session,
    InferenceSession, the CLI) resolve names, once; ``owner`` names the receiver in the TypeError."""
    if backend is None:
        return NumpyBackend()
    if not isinstance(backend, Backend):
        raise TypeError(f"{owner}: backend must be a Backend object, e.g. hugectr_lab.get_backend({backend!r}); "
                        f"got {backend!r}")
    return backend


def array_module(xp=None):
    """The array module named by ``xp``: an array module, a Backend (anything with ``.xp``) or None (numpy)."""
    if xp is None:
        return np
    return getattr(xp, "xp", xp)


def address(a):
    """The address of a NumPy or CuPy array's first element (host or device memory)."""
    data = a.data   # CuPy: a MemoryPointer (reading it is cheap, unlike building __cuda_array_interface__)
    return data.ptr if hasattr(data, "ptr") else a.__array_interface__["data"][0]


def to_host(a):
    """A NumPy array for a NumPy or CuPy array."""
    return a if isinstance(a, np.ndarray) else a.get()
