"""CUDA graph replay of a step's device work: what the solver's ``use_cuda_graph`` turns on.

A Python training step launches hundreds of kernels, and CuPy spends ~18 µs of host time on each
(measured on an H200 host); one graph launch replaces them all (a 300-kernel graph launches in ~23 µs).
``CapturedCall(fn, name)`` runs ``fn()`` eagerly on its first call (kernels compile, cuBLAS handles and
the memory pool fill up), captures it into a graph on its second call, and from then on launches the
graph. What makes a replay equal to a call:

* ``fn``'s arrays come from a memory pool of the graph's own, so no other work reuses the addresses the
  graph writes; the arrays ``fn`` returned when captured are rewritten by every launch. The pool must
  outlive every array allocated from it (CuPy frees a pool's memory with the pool): an owner that drops
  a CapturedCall keeps its ``pool`` and may release its free blocks (``whole_step.WholeStep``).
* ``fn`` runs (and is captured) on a stream of its own, joined to the caller's current stream by events
  in both directions; the graph is launched on the caller's stream, which orders it with the work around
  it (and CUDA orders the launches of one graph among themselves). The capture stream is non-blocking: a blocking one would be joined implicitly to the legacy default stream, and
  work another thread puts there while this one captures (an ``asarray`` of a request) would invalidate
  the capture (seen on an H100 with ``predict`` from several threads).
* no cyclic garbage collection runs while a capture is open (``collector.no_cyclic_collection``): a finalizer
  that synchronises the device would invalidate it.
* ``fn`` reads every per-call value from device memory (inputs copied into fixed buffers, Dropout's
  seed written by ``Layer.prepare``): its Python runs only while it is captured.

A capture that fails (``fn`` waits for the device, e.g. a reference op reads a value on the host) is
logged once, with the reason, and ``fn`` then runs eagerly on every call. ``fn`` may call ``mark(what)``
after each part of its work (the training step does, per phase and per layer): the reason then names the
last part after which the capture was still valid and the first after which it was found invalidated --
an operation on another stream can invalidate a capture without raising, so that the error surfaces
only at a later call.
"""

from __future__ import annotations

import contextlib
import logging

import cupy

from .collector import no_cyclic_collection

_log = logging.getLogger("hugectr_lab")
_CAPTURE_INVALIDATED = 2   # cudaStreamCaptureStatusInvalidated


class CapturedCall:
    """``fn`` (no arguments) replayed from a CUDA graph on the device current at construction."""

    def __init__(self, fn, name):
        self.fn, self.name = fn, name
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.pool = cupy.cuda.MemoryPool()
        self.graph = None        # the captured graph, once there is one
        self.failure = None      # why capturing failed, if it did
        self.calls = 0
        self._result = None
        self._capturing = False
        self._valid_after = self._invalid_after = None   # marks seen while capturing
        self._enter = cupy.cuda.Event(disable_timing=True)
        self._leave = cupy.cuda.Event(disable_timing=True)

    def __call__(self):
        caller = cupy.cuda.get_current_stream()
        if self.graph is not None:   # a replay: straight onto the caller's stream (ordered with its work,
            self.calls += 1          # and CUDA orders the launches of one graph), no events or allocator
            self.graph.launch(caller)
            return self._result
        self._enter.record(caller)
        self.stream.wait_event(self._enter)
        try:
            with self.stream, cupy.cuda.using_allocator(self.pool.malloc):
                return self._call()
        finally:
            self._leave.record(self.stream)
            caller.wait_event(self._leave)

    def _call(self):
        self.calls += 1
        if self.graph is None and (self.calls == 1 or self.failure is not None):
            return self.fn()
        if self.graph is None:
            with no_cyclic_collection():
                captured = self._capture()
            if not captured:
                return self.fn()
        self.graph.launch(self.stream)
        return self._result

    def _capture(self):
        """Capture ``fn`` into ``graph``; False (the reason logged, and kept in ``failure``) where it failed."""
        self.stream.begin_capture()
        self._capturing = True
        try:
            self._result = self.fn()
            self.graph = self.stream.end_capture()
            return True
        except Exception as error:   # anything that waits for the device fails under capture
            with contextlib.suppress(Exception):
                self.stream.end_capture()
            self.failure = f"{type(error).__name__}: {error}{self._where()}"
            _log.warning("use_cuda_graph: %s cannot be captured in a CUDA graph (%s); it runs without one",
                         self.name, self.failure)
            return False
        finally:
            self._capturing = False

    def mark(self, done):
        """``fn`` has queued the part of its work named ``done``. While capturing, note whether the capture
        is still valid (a query of the stream, no synchronisation); otherwise nothing."""
        if not self._capturing or self._invalid_after is not None:
            return
        status = cupy.cuda.runtime.streamIsCapturing(self.stream.ptr)
        if status == _CAPTURE_INVALIDATED:
            self._invalid_after = done
        else:
            self._valid_after = done

    def _where(self):
        if self._invalid_after is not None:
            return (f"; the capture was found invalidated after {self._invalid_after}"
                    + (f" (still valid after {self._valid_after})" if self._valid_after else ""))
        return f"; raised after {self._valid_after}" if self._valid_after else ""
