"""The dashboards over a CuPy-backend Session (the gpu lane: pytest -m gpu on the GPU machine)."""

import numpy as np
import pytest

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.session import Session

from session_helpers import dnn_config, write_config

pytestmark = pytest.mark.gpu


def test_training_dashboard_and_embedding_inspector_on_cupy(workdir):
    from hugectr_lab.widgets import EmbeddingInspector, TrainingDashboard

    sess = Session(solver_parser_helper(batchsize=64, batchsize_eval=64, max_eval_batches=2, seed=3),
                   write_config(workdir / "c.json", dnn_config()), backend="cupy")
    assert sess.backend.name == "cupy"
    dash = TrainingDashboard(sess, max_iter=8, eval_interval=4, save_prefix=str(workdir / "m"))
    dash.start()
    assert dash.join(60) and dash.state == "finished", dash.status.value
    assert len(dash.history) == 8 and [e["iteration"] for e in dash.eval_history] == [4, 8]
    assert all(np.isfinite(h["loss"]) for h in dash.history)
    dash.save_button.click()
    assert dash.saved[0].iteration == 8
    inspector = EmbeddingInspector(sess, scan_batches=2)
    keys, vectors, _ = sess.embeddings[0].dump()
    np.testing.assert_array_equal(inspector.lookup([int(keys[0])])[int(keys[0])], vectors[0])
    assert sum(s["keys"] for s in inspector.slot_stats) == sess.embeddings[0].num_keys()
