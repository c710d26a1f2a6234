import dataclasses
import os

import pytest

from hugectr_lab.events import EventBus, IterationEnd
from hugectr_lab.fileio import atomic_write, write_bytes_atomic


def test_events_are_frozen_and_delivered_in_order():
    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    events = [IterationEnd(i, 0.5, 1e-3, 100.0, 16) for i in (1, 2)]
    for e in events:
        bus.publish(e)
    assert seen == events
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].loss = 0.0
    bus.unsubscribe(seen.append)
    bus.publish(events[0])
    assert len(seen) == 2


def test_failing_subscriber_warns_once_and_others_still_receive():
    bus, seen = EventBus(), []

    def broken(event):
        raise RuntimeError("view bug")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    with pytest.warns(RuntimeWarning, match="view bug"):
        bus.publish(IterationEnd(1, 0.1, 0.1, 1.0, 1))
    bus.publish(IterationEnd(2, 0.1, 0.1, 1.0, 1))
    assert [e.iteration for e in seen] == [1, 2]
    with pytest.raises(TypeError):
        bus.subscribe(42)


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "model.bin"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_atomic_write_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_bytes_atomic(tmp_path / "nope" / "x.bin", b"")
