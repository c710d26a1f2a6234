"""Collectives over the devices of a Session, within one process and across MPI processes.

``vvgpu`` names G devices, one node list per process (HugeCTR: one MPI process per node). Device
ids are *global*: node lists enumerated in order, devices in list order. A process holds the
devices of its node list, ``comm.local_devices`` (global ids, ascending).

Every device-level collective takes one array per *local* device and returns one per local device,
so model code is the same whether the devices are emulated in one process (``InProcessCommunicator``,
NumPy or one GPU), real GPUs under NCCL (``NcclCommunicator``, one process or several), or CPU
processes under MPI (``MPICommunicator``). The in-process and MPI communicators sum in global device
order, so a run split over processes gives the same bits as the same devices in one process.

Host-level bookkeeping (losses, metrics, model dumps, seeds) goes through ``comm.group``, a
``ProcessGroup`` (one process) or ``MPIProcessGroup`` (mpi4py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from abc import ABC, abstractmethod

# Set by MPI launchers (MPICH/Hydra and Intel MPI: PMI_SIZE; Open MPI: OMPI_COMM_WORLD_SIZE; PMIx).
MPI_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")


# ---- processes ----------------------------------------------------------------------------------

class ProcessGroup:
    """The processes of a run, for host-level Python objects. This one is a single process."""

    rank = 0
    size = 1

    def allgather(self, obj):
        """``[obj of process 0, obj of process 1, ...]`` on every process."""
        return [obj]

    def bcast(self, obj, root=0):
        """``obj`` of process ``root`` on every process."""
        return obj

    def alltoall(self, objs):
        """``objs[q]`` goes to process q; returns what every process sent to this one, by sender."""
        return list(objs)

    def barrier(self):
        """Wait for every process."""

    def __repr__(self):
        return f"<{type(self).__name__} rank {self.rank} of {self.size}>"


class MPIProcessGroup(ProcessGroup):
    """Processes of an MPI communicator (mpi4py ``COMM_WORLD`` by default)."""

    def __init__(self, mpi_comm=None):
        if mpi_comm is None:
            from mpi4py import MPI

            mpi_comm = MPI.COMM_WORLD
        self.mpi = mpi_comm
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        _abort_on_uncaught_exception(mpi_comm)

    def allgather(self, obj):
        return self.mpi.allgather(obj)

    def bcast(self, obj, root=0):
        return self.mpi.bcast(obj, root=root)

    def alltoall(self, objs):
        return self.mpi.alltoall(objs)

    def barrier(self):
        self.mpi.Barrier()


def _abort_on_uncaught_exception(mpi_comm):
    """An exception that ends one process would leave the others waiting in a collective forever:
    print it, then abort every process (what ``python -m mpi4py script.py`` does)."""
    if getattr(sys.excepthook, "_hugectr_lab_abort", False):
        return
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(1.0)   # let the launcher forward this traceback (and the other processes' own) first
        mpi_comm.Abort(1)

    hook._hugectr_lab_abort = True
    sys.excepthook = hook


def launched_processes(environ=None):
    """Number of processes an MPI launcher started this one among (1 when not under MPI)."""
    environ = os.environ if environ is None else environ
    for var in MPI_SIZE_VARS:
        value = environ.get(var, "")
        if value.isdigit() and int(value) > 1:
            return int(value)
    return 1


def process_group():
    """``MPIProcessGroup`` when an MPI launcher started several processes, else ``ProcessGroup``."""
    launched = launched_processes()
    if launched == 1:
        return ProcessGroup()
    try:
        return MPIProcessGroup()
    except ImportError:
        raise RuntimeError(f"this process was launched by MPI as one of {launched} processes, but mpi4py is "
                           "not installed: pip install 'hugectr-lab[mpi]'") from None


def mpiexec_command(processes, argv):
    """``(command, environment)`` that runs ``argv`` as ``processes`` MPI processes: the ``mpiexec`` beside
    this Python (the ``mpich`` wheel) or else ``mpiexec``/``mpirun`` on PATH, with Open MPI's consent to
    run as root (containers). None when no launcher is installed."""
    beside = Path(sys.executable).parent / "mpiexec"
    launcher = str(beside) if beside.exists() else shutil.which("mpiexec") or shutil.which("mpirun")
    if launcher is None:
        return None
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return [launcher, "-n", str(processes), *argv], env


# ---- devices ------------------------------------------------------------------------------------

class Communicator(ABC):
    """G devices in all, ``local_devices`` of them in this process; subclasses implement the collectives.

    ``scope(g)`` is a context manager that makes global device g current (a GPU on CuPy).
    """

    size = 1
    local_devices = (0,)
    group = ProcessGroup()

    def scope(self, device):
        """Context in which global device ``device``'s arrays are made and used."""
        return contextlib.nullcontext()

    @property
    def local_size(self):
        return len(self.local_devices)

    def local_index(self, device):
        """Position of global device ``device`` among this process's devices."""
        return self.local_devices.index(device)

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
    def all_to_all(self, sends, recv_shapes=None):
        """``sends[i][dst]``: what local device i sends to global device dst. Returns ``recv[i][src]``:
        what local device i received from global device src. ``recv_shapes[i][src]`` (needed by NCCL)
        is the shape of that array."""

    @abstractmethod
    def broadcast(self, arrays, root=0):
        """Every device receives a copy of global device ``root``'s array."""

    def _check(self, arrays):
        if len(arrays) != self.local_size:
            raise ValueError(f"collective over {self.local_size} devices got {len(arrays)} arrays")

    def __repr__(self):
        return (f"<{type(self).__name__}: devices {list(self.local_devices)} of {self.size}, "
                f"process {self.group.rank} of {self.group.size}>")


def _sum(arrays):
    """Sum in device order (deterministic)."""
    total = arrays[0].copy()
    for a in arrays[1:]:
        total += a
    return total


def _rows_per_device(rows, size):
    if rows % size:
        raise ValueError(f"reduce_scatter of {rows} rows over {size} devices: rows must divide evenly")
    return rows // size


class InProcessCommunicator(Communicator):
    """All G devices in this process: NumPy logical devices, or CuPy arrays on one GPU.

    ``scope``: optional ``device -> context manager`` (the Session passes the GPU's for CuPy).
    """

    def __init__(self, size, scope=None):
        if size < 1:
            raise ValueError(f"a communicator needs at least one device, got {size}")
        self.size = size
        self.local_devices = tuple(range(size))
        self._scope = scope

    def scope(self, device):
        return self._scope(device) if self._scope is not None else contextlib.nullcontext()

    def _everything(self, arrays):
        """All G devices' arrays in global device order, given this process's."""
        self._check(arrays)
        return list(arrays)

    def all_reduce(self, arrays):
        total = _sum(self._everything(arrays))
        return [total.copy() for _ in arrays]

    def reduce_scatter(self, arrays):
        total = _sum(self._everything(arrays))
        b = _rows_per_device(total.shape[0], self.size)
        return [total[g * b:(g + 1) * b].copy() for g in self.local_devices]

    def all_gather(self, arrays):
        everything = self._everything(arrays)
        gathered = _array_module(everything[0]).concatenate(everything, axis=0)
        return [gathered.copy() for _ in arrays]

    def all_to_all(self, sends, recv_shapes=None):
        self._check(sends)
        for src, row in enumerate(sends):
            if len(row) != self.size:
                raise ValueError(f"all_to_all: device {src} sends to {len(row)} devices, expected {self.size}")
        return [[sends[src][dst].copy() for src in range(self.size)] for dst in range(self.size)]

    def broadcast(self, arrays, root=0):
        value = self._everything(arrays)[root]
        return [value.copy() for _ in arrays]


class MPICommunicator(InProcessCommunicator):
    """Host arrays (NumPy backend) of several MPI processes, each holding the devices of its node list.

    ``node_sizes``: devices per process, in rank order. The collectives gather every device's array
    through mpi4py and reduce in global device order, so results equal ``InProcessCommunicator``'s
    bit for bit (simple and exact; the NumPy backend is the reference, not the fast path).
    """

    def __init__(self, node_sizes, group=None):
        self.group = group if group is not None else MPIProcessGroup()
        if len(node_sizes) != self.group.size:
            raise ValueError(f"{len(node_sizes)} node lists for {self.group.size} MPI processes")
        first = sum(node_sizes[:self.group.rank])
        self.size = sum(node_sizes)
        self.local_devices = tuple(range(first, first + node_sizes[self.group.rank]))
        self._owner = [p for p, n in enumerate(node_sizes) for _ in range(n)]   # process of each device
        self._scope = None

    def _everything(self, arrays):
        self._check(arrays)
        return [a for part in self.group.allgather(list(arrays)) for a in part]

    def all_to_all(self, sends, recv_shapes=None):
        self._check(sends)
        # to process q: for each of my devices, what it sends to each of q's devices
        payloads = [[{dst: row[dst] for dst in range(self.size) if self._owner[dst] == q} for row in sends]
                    for q in range(self.group.size)]
        received = self.group.alltoall(payloads)   # received[p][j][dst]: from p's j-th device
        from_each = [part for per_process in received for part in per_process]   # in global source order
        return [[from_each[src][dst] for src in range(self.size)] for dst in self.local_devices]


class NcclCommunicator(Communicator):
    """CuPy arrays on real GPUs, one NCCL communicator over all G of them (rank = global id).

    ``device_ids``: this process's GPUs, in the order of its ``local_devices``. In one process the
    communicators come from ``ncclCommInitAll``; across MPI processes rank 0 creates the NCCL unique
    id and broadcasts it (HugeCTR's bootstrap). Collectives are grouped NCCL calls on each GPU's
    current stream, so they queue without blocking the host.
    """

    def __init__(self, device_ids, local_devices, size, group=None):
        import cupy
        from cupy.cuda import nccl

        self._cupy, self._nccl = cupy, nccl
        self.group = group if group is not None else ProcessGroup()
        self.device_ids = list(device_ids)
        self.local_devices = tuple(local_devices)
        self.size = size
        if len(set(self.device_ids)) != len(self.device_ids):
            raise ValueError(f"NCCL needs distinct GPUs per process, got GPU ids {self.device_ids}")
        if self.group.size == 1:
            self._comms = nccl.NcclCommunicator.initAll(self.device_ids)
        else:
            uid = self.group.bcast(nccl.get_unique_id() if self.group.rank == 0 else None)
            self._comms = []
            nccl.groupStart()
            for gpu, rank in zip(self.device_ids, self.local_devices):
                with cupy.cuda.Device(gpu):
                    self._comms.append(nccl.NcclCommunicator(size, uid, rank))
            nccl.groupEnd()

    def scope(self, device):
        return self._cupy.cuda.Device(self.device_ids[self.local_index(device)])

    def _dtype(self, a):
        try:
            return _NCCL_DTYPES[a.dtype.name](self._nccl)
        except KeyError:
            raise TypeError(f"NCCL collectives do not take {a.dtype} arrays") from None

    def _grouped(self, calls):
        """Run ``calls[i](comm, stream_ptr)`` for local device i inside one NCCL group."""
        nccl = self._nccl
        nccl.groupStart()
        try:
            for comm, gpu, call in zip(self._comms, self.device_ids, calls):
                with self._cupy.cuda.Device(gpu):
                    call(comm, self._cupy.cuda.get_current_stream().ptr)
        finally:
            nccl.groupEnd()

    def _empty(self, i, shape, dtype):
        with self._cupy.cuda.Device(self.device_ids[i]):
            return self._cupy.empty(shape, dtype=dtype)

    def _collective(self, arrays, out_shape, call):
        """``call(comm, send, recv, stream)`` for every local device, into new arrays of ``out_shape(send)``."""
        self._check(arrays)
        arrays = [self._cupy.ascontiguousarray(a) for a in arrays]
        outs = [self._empty(i, out_shape(a), a.dtype) for i, a in enumerate(arrays)]
        self._grouped([lambda c, s, a=a, o=o: call(c, a, o, s) for a, o in zip(arrays, outs)])
        return outs

    def all_reduce(self, arrays):
        return self._collective(arrays, lambda a: a.shape, lambda c, a, o, s: c.allReduce(
            a.data.ptr, o.data.ptr, a.size, self._dtype(a), self._nccl.NCCL_SUM, s))

    def reduce_scatter(self, arrays):
        b = _rows_per_device(arrays[0].shape[0], self.size) if arrays else 0
        return self._collective(arrays, lambda a: (b,) + a.shape[1:], lambda c, a, o, s: c.reduceScatter(
            a.data.ptr, o.data.ptr, o.size, self._dtype(a), self._nccl.NCCL_SUM, s))

    def all_gather(self, arrays):
        return self._collective(arrays, lambda a: (a.shape[0] * self.size,) + a.shape[1:],
                                lambda c, a, o, s: c.allGather(a.data.ptr, o.data.ptr, a.size, self._dtype(a), s))

    def all_to_all(self, sends, recv_shapes=None):
        self._check(sends)
        if recv_shapes is None:
            raise ValueError("NcclCommunicator.all_to_all needs recv_shapes")
        sends = [[self._cupy.ascontiguousarray(a) for a in row] for row in sends]
        dtype = sends[0][0].dtype
        recv = [[self._empty(i, shape, dtype) for shape in recv_shapes[i]] for i in range(self.local_size)]

        def exchange(i):
            def call(comm, stream):
                for peer in range(self.size):
                    a, r = sends[i][peer], recv[i][peer]
                    comm.send(a.data.ptr, a.size, self._dtype(a), peer, stream)
                    comm.recv(r.data.ptr, r.size, self._dtype(r), peer, stream)
            return call

        self._grouped([exchange(i) for i in range(self.local_size)])
        return recv

    def broadcast(self, arrays, root=0):
        return self._collective(arrays, lambda a: a.shape, lambda c, a, o, s: c.broadcast(
            a.data.ptr, o.data.ptr, a.size, self._dtype(a), root, s))


_NCCL_DTYPES = {
    "float16": lambda nccl: nccl.NCCL_FLOAT16, "float32": lambda nccl: nccl.NCCL_FLOAT32,
    "float64": lambda nccl: nccl.NCCL_FLOAT64, "int32": lambda nccl: nccl.NCCL_INT32,
    "int64": lambda nccl: nccl.NCCL_INT64, "uint8": lambda nccl: nccl.NCCL_UINT8,
}


def node_gpu_ids(vvgpu, group):
    """The GPU ids this process drives: node list ``group.rank`` under MPI, every list otherwise."""
    nodes = [list(node) for node in vvgpu]
    if group.size == 1:
        return [d for node in nodes for d in node]
    if group.size != len(nodes):
        raise ValueError(f"MPI total rank doesn't match the node count: {group.size} processes, but vvgpu "
                         f"{nodes} has {len(nodes)} node lists (launch one process per node list)")
    return nodes[group.rank]


def create_communicator(vvgpu, backend, group=None):
    """The communicator for ``vvgpu`` (node lists of GPU ids) on ``backend``.

    Under an MPI launcher the number of processes must equal the number of node lists and process p
    takes node list p. In a single process every node list's devices are local (emulated nodes).
    """
    nodes = [list(node) for node in vvgpu]
    group = group if group is not None else process_group()
    gpus = node_gpu_ids(nodes, group)
    size = sum(len(node) for node in nodes)
    first = sum(len(node) for node in nodes[:group.rank]) if group.size > 1 else 0
    local = range(first, first + len(gpus))
    if backend.name == "cupy":
        # this process's first GPU becomes current, so work outside a device scope stays on our GPUs
        backend.device(gpus[0]).use()
        if group.size == 1 and size == 1:
            return InProcessCommunicator(1, scope=lambda g: backend.device(gpus[0]))
        return NcclCommunicator(gpus, local, size, group)
    if group.size == 1:
        return InProcessCommunicator(size)
    return MPICommunicator([len(node) for node in nodes], group)


def _array_module(a):
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy
    import numpy

    return numpy
