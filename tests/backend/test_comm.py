"""Collectives across processes: MPICommunicator over a thread-backed process group equals the
in-process communicator bit for bit for any split of the devices; node lists vs processes."""

import threading

import numpy as np
import pytest

from hugectr_lab.backend import InProcessCommunicator, get_backend
from hugectr_lab.backend.comm import (MPICommunicator, ProcessGroup, create_communicator, launched_processes,
                                      node_gpu_ids)


class ThreadGroup(ProcessGroup):
    """One thread per "process"; objects are exchanged through a shared board and a barrier."""

    def __init__(self, rank, size, board, barrier):
        self.rank, self.size, self._board, self._barrier = rank, size, board, barrier

    def _exchange(self, obj):
        self._barrier.wait()
        self._board[self.rank] = obj
        self._barrier.wait()
        everything = list(self._board)
        self._barrier.wait()
        return everything

    def allgather(self, obj):
        return self._exchange(obj)

    def bcast(self, obj, root=0):
        return self._exchange(obj)[root]

    def alltoall(self, objs):
        return [sent[self.rank] for sent in self._exchange(objs)]


def run_split(node_sizes, body):
    """Run ``body(comm)`` in one thread per process; returns the results by process."""
    size = len(node_sizes)
    board, barrier, results, errors = [None] * size, threading.Barrier(size), [None] * size, []

    def work(rank):
        try:
            results[rank] = body(MPICommunicator(node_sizes, ThreadGroup(rank, size, board, barrier)))
        except Exception as error:   # reported below; a dead thread would only hang the barrier
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def collectives(comm, data):
    """Every collective on this process's devices' share of ``data`` (one entry per global device)."""
    mine = lambda key: [data[key][g] for g in comm.local_devices]   # noqa: E731
    sends = [[data["a2a"][src][dst] for dst in range(comm.size)] for src in comm.local_devices]
    return {"all_reduce": comm.all_reduce(mine("full")), "reduce_scatter": comm.reduce_scatter(mine("full")),
            "all_gather": comm.all_gather(mine("part")), "all_to_all": comm.all_to_all(sends),
            "broadcast": comm.broadcast(mine("part"), root=comm.size - 1)}


@pytest.mark.parametrize("node_sizes", [[1, 1], [2, 2], [1, 3], [3, 1, 1]])
def test_mpi_collectives_equal_in_process_bit_for_bit(node_sizes):
    G, rng = sum(node_sizes), np.random.default_rng(sum(node_sizes))
    data = {"full": [rng.normal(size=(G * 3, 5)).astype(np.float32) for _ in range(G)],
            "part": [rng.normal(size=(3, 2)) for _ in range(G)],
            "a2a": [[rng.normal(size=(src + 1, dst + 2)) for dst in range(G)] for src in range(G)]}
    expected = collectives(InProcessCommunicator(G), data)
    per_process = run_split(node_sizes, lambda comm: (comm.local_devices, collectives(comm, data)))
    devices = [g for local, _ in per_process for g in local]
    assert devices == list(range(G))
    for local, got in per_process:
        for name, arrays in got.items():
            assert len(arrays) == len(local), name
            for i, g in enumerate(local):
                want = expected[name][g]
                if name == "all_to_all":
                    for src in range(G):
                        np.testing.assert_array_equal(arrays[i][src], want[src])
                else:
                    np.testing.assert_array_equal(arrays[i], want, err_msg=name)


def test_node_lists_must_match_the_processes():
    class Two(ProcessGroup):
        rank, size = 1, 2

    assert node_gpu_ids([[0, 1], [1, 2]], Two()) == [1, 2]
    assert node_gpu_ids([[0, 1], [1, 2]], ProcessGroup()) == [0, 1, 1, 2]   # one process emulates both nodes
    with pytest.raises(ValueError, match=r"MPI total rank doesn't match the node count: 2 processes, but vvgpu "
                                         r"\[\[0, 1, 2\]\] has 1 node lists"):
        node_gpu_ids([[0, 1, 2]], Two())
    comm = create_communicator([[0, 1], [2]], get_backend("numpy"), ProcessGroup())
    assert isinstance(comm, InProcessCommunicator) and comm.local_devices == (0, 1, 2)


def test_mpi_launch_is_detected_from_the_launchers_environment():
    assert launched_processes({}) == 1
    assert launched_processes({"PMI_SIZE": "1"}) == 1
    assert launched_processes({"PMI_SIZE": "4"}) == 4
    assert launched_processes({"OMPI_COMM_WORLD_SIZE": "2"}) == 2
