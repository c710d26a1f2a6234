"""Collectives over the logical devices of a Session.

Every call takes one array per local device (a list of length G) and returns one per device, so model
code is the same whether the devices are emulated in one process (``InProcessCommunicator``), real GPUs
under NCCL, or processes under MPI. Sums are taken in device order, so results are deterministic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Communicator(ABC):
    """Interface: ``size`` devices; subclasses implement the collectives below."""

    size = 1

    @abstractmethod
    def all_reduce(self, arrays):
        """Sum over devices; every device receives the total."""

    @abstractmethod
    def reduce_scatter(self, arrays):
        """Sum over devices of ``(B, ...)`` arrays; device g receives rows ``g*b:(g+1)*b`` (b = B/G)."""

    @abstractmethod
    def all_gather(self, arrays):
        """Concatenate ``(b, ...)`` arrays along axis 0 in device order; every device receives ``(B, ...)``."""

    @abstractmethod
    def all_to_all(self, sends):
        """``sends[src][dst]`` is what src sends to dst; returns ``recv[dst][src]``."""

    @abstractmethod
    def broadcast(self, arrays, root=0):
        """Every device receives a copy of ``arrays[root]``."""


class InProcessCommunicator(Communicator):
    """G logical devices in one process (NumPy backend, or CuPy arrays on one GPU)."""

    def __init__(self, size):
        if size < 1:
            raise ValueError(f"a communicator needs at least one device, got {size}")
        self.size = size

    def _check(self, arrays):
        if len(arrays) != self.size:
            raise ValueError(f"collective over {self.size} devices got {len(arrays)} arrays")

    def _sum(self, arrays):
        self._check(arrays)
        total = arrays[0].copy()
        for a in arrays[1:]:
            total += a
        return total

    def all_reduce(self, arrays):
        total = self._sum(arrays)
        return [total.copy() for _ in range(self.size)]

    def reduce_scatter(self, arrays):
        total = self._sum(arrays)
        rows = total.shape[0]
        if rows % self.size:
            raise ValueError(f"reduce_scatter of {rows} rows over {self.size} devices: rows must divide evenly")
        b = rows // self.size
        return [total[g * b:(g + 1) * b].copy() for g in range(self.size)]

    def all_gather(self, arrays):
        self._check(arrays)
        xp = _array_module(arrays[0])
        gathered = xp.concatenate(arrays, axis=0)
        return [gathered.copy() for _ in range(self.size)]

    def all_to_all(self, sends):
        self._check(sends)
        for src, row in enumerate(sends):
            if len(row) != self.size:
                raise ValueError(f"all_to_all: device {src} sends to {len(row)} devices, expected {self.size}")
        return [[sends[src][dst].copy() for src in range(self.size)] for dst in range(self.size)]

    def broadcast(self, arrays, root=0):
        self._check(arrays)
        return [arrays[root].copy() for _ in range(self.size)]


def _array_module(a):
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy
    import numpy

    return numpy
