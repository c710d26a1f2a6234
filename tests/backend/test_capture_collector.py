"""``backend/cuda/collector.no_cyclic_collection``: no cyclic garbage collection while any capture is open,
in any thread, and the collector's switch restored as found (CPU: the module needs no CuPy)."""

import gc
import threading

import pytest

from hugectr_lab.backend.cuda.collector import no_cyclic_collection


class _Cycle:
    """Cyclic garbage that notes when the collector frees it."""

    def __init__(self, freed):
        self.freed, self.myself = freed, self

    def __del__(self):
        self.freed.append(True)


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_collects_first_then_holds_off_until_the_capture_closes():
    freed = []
    _Cycle(freed)
    with no_cyclic_collection():
        assert freed == [True]                  # collected before the capture opened
        assert not gc.isenabled()
        _Cycle(freed)
        for _ in range(10_000):                 # allocations that would trigger the collector
            [object()]
        assert freed == [True]
    assert gc.isenabled()
    gc.collect()
    assert freed == [True, True]


def test_a_disabled_collector_stays_disabled():
    gc.disable()
    with no_cyclic_collection():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_an_error_inside_still_restores_the_collector():
    with pytest.raises(RuntimeError):
        with no_cyclic_collection():
            raise RuntimeError("capture failed")
    assert gc.isenabled()


def test_overlapping_captures_in_two_threads_keep_it_off_until_the_last_closes():
    first_open, second_open, first_closed = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with no_cyclic_collection():
            first_open.set()
            second_open.wait(5)
        first_closed.set()

    def second():
        first_open.wait(5)
        with no_cyclic_collection():
            second_open.set()
            first_closed.wait(5)
            seen["while the second is open"] = gc.isenabled()
        seen["after both"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"while the second is open": False, "after both": True}
