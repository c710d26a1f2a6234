"""InferenceInspector: CacheStats events of an InferenceSession's embedding cache."""

import os
import sys

import numpy as np
import pytest

from hugectr_lab.inference import CreateEmbeddingCache, CreateParameterServer, InferenceSession
from hugectr_lab.widgets import InferenceInspector

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "inference"))
from inference_helpers import table, tiny_model  # noqa: E402


@pytest.fixture
def session(tmp_path):
    config = tiny_model(tmp_path, [table(640), table(640, vec=2, seed=1)])
    ps = CreateParameterServer([config], ["tiny"], False)
    cache = CreateEmbeddingCache(ps, 0, True, 0.1, config, "tiny", False)
    return InferenceSession(config, 0, cache)


def predict(session, keys0, keys1):
    keys = np.array([*keys0, *keys1], np.int64)  # one sample per call: 2 slots per table
    row_ptrs = [0, 1, 2, 2 + len(keys1) - 1, 2 + len(keys1)]
    return session.predict([0.1, 0.2], keys.tolist(), row_ptrs)


def test_every_lookup_is_recorded_and_plotted(session):
    view = InferenceInspector(session)
    assert view.history == {0: [], 1: []} and view.latest[0].calls == 0
    predict(session, [1, 2], [3, 4])
    predict(session, [1, 2], [5, 6])
    assert [len(v) for v in view.history.values()] == [2, 2]
    assert view.latest[0] == session.embedding_cache.stats()[0]
    view.refresh()   # lines follow the (throttled) redraws; refresh() forces one
    assert list(view.hit_lines[0].get_ydata()) == [0.0, 1.0]
    assert list(view.cumulative_lines[0].get_ydata()) == [0.0, 0.5]
    assert list(view.hit_lines[1].get_xdata()) == [1, 2]
    assert "occupancy" in view.table.value and view.plot.widget.value[:4] == b"\x89PNG"
    assert "hugectr-lab-inference-inspector" in view.widget._dom_classes


def test_refresh_after_reset_and_close(session):
    view = InferenceInspector(session.embedding_cache)
    predict(session, [1, 2], [3, 4])
    session.embedding_cache.reset_stats()
    view.refresh_button.click()
    assert view.latest[0].lookups == 0
    view.close()
    predict(session, [7, 8], [9, 10])
    assert len(view.history[0]) == 1
