"""EmbeddingInspector: key lookup, per-slot norms and key frequencies of a trained Session."""

import numpy as np

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.data import DataReader32
from hugectr_lab.session import Session
from hugectr_lab.widgets import EmbeddingInspector

from session_helpers import SLOTS, dnn_config, write_config


def trained(workdir, embedding="DistributedSlotSparseEmbeddingHash", steps=3):
    sess = Session(solver_parser_helper(batchsize=64, batchsize_eval=64, seed=3),
                   write_config(workdir / "c.json", dnn_config(embedding=embedding)))
    sess.start_data_reading()
    for _ in range(steps):
        assert sess.train()
    return sess


def reference_counts(sess, batches):
    reader = DataReader32.from_data_spec(sess.config.data, 64, repeat=False, eval=False)
    counts = {}
    with reader:
        reader.start()
        for _ in range(batches):
            batch = reader.read_a_batch()
            for k in batch.sparse[0].keys.tolist():
                counts[k] = counts.get(k, 0) + 1
    return counts


def test_lookup_by_raw_key(workdir):
    sess = trained(workdir)
    inspector = EmbeddingInspector(sess, scan_batches=3)
    keys, vectors, _ = sess.embeddings[0].dump()
    found = inspector.lookup([int(keys[0]), int(keys[-1]), 10**9])
    np.testing.assert_array_equal(found[int(keys[0])], vectors[0])
    np.testing.assert_array_equal(found[int(keys[-1])], vectors[-1])
    assert found[10**9] is None
    inspector.key_text.value = f"{int(keys[0])}, 1000000000"
    inspector.lookup_button.click()
    assert "not in the table" in inspector.lookup_html.value and str(int(keys[0])) in inspector.lookup_html.value


def test_most_frequent_keys_match_a_count_of_the_training_batches(workdir):
    sess = trained(workdir)
    inspector = EmbeddingInspector(sess, scan_batches=3, top_k=5)
    counts = reference_counts(sess, 3)
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert inspector.top_keys == expected
    assert str(expected[0][0]) in inspector.top_html.value


def test_per_slot_norm_statistics(workdir):
    sess = trained(workdir)
    inspector = EmbeddingInspector(sess, scan_batches=3)
    assert {s["slot"] for s in inspector.slot_stats} <= set(range(SLOTS))
    assert sum(s["keys"] for s in inspector.slot_stats) == sess.embeddings[0].num_keys()
    keys, vectors, _ = sess.embeddings[0].dump()
    slot0 = inspector.slots == inspector.slot_stats[0]["slot"]
    assert inspector.slot_stats[0]["mean"] == np.linalg.norm(vectors[slot0].astype(np.float64), axis=1).mean()
    assert inspector.plot.widget.value[:4] == b"\x89PNG"
    assert "hugectr-lab-embedding-inspector" in inspector.widget._dom_classes


def test_localized_slot_ids_and_refresh_after_training(workdir):
    sess = trained(workdir, embedding="LocalizedSlotSparseEmbeddingHash")
    inspector = EmbeddingInspector(sess, scan_batches=2)
    keys, _, slots = sess.embeddings[0].dump()
    np.testing.assert_array_equal(inspector.slots, slots.astype(np.int64))
    before = inspector.norms.copy()
    sess.train()
    inspector.refresh_button.click()
    assert len(inspector.norms) >= len(before) and not np.array_equal(inspector.norms[:len(before)], before)


def test_keys_closest_to_a_key(workdir):
    sess = trained(workdir)
    inspector = EmbeddingInspector(sess, scan_batches=3)
    keys, vectors, _ = sess.embeddings[0].dump()
    query = int(keys[5])
    found = inspector.neighbors(query, k=4)
    # brute force: cosine similarity to every other row, highest first
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit[5]
    similarity[5] = -np.inf
    want = np.argsort(-similarity, kind="stable")[:4]
    assert [k for k, _ in found] == [int(keys[i]) for i in want]
    np.testing.assert_allclose([s for _, s in found], similarity[want], rtol=1e-6)
    inspector.near_k.value = 3
    inspector.near_text.value = str(query)
    html_text = inspector.near_html.value
    assert f"keys closest to {query}" in html_text and str(found[0][0]) in html_text
    assert "analysis engine: " in html_text and inspector.engine.backend.name == "numpy"
    inspector.near_text.value = "1000000000"
    assert "key 1000000000 is not in the table" in inspector.near_html.value
    inspector.near_text.value = "x"
    assert "must be an integer" in inspector.near_html.value


def test_pca_projection_of_the_table(workdir):
    sess = trained(workdir)
    inspector = EmbeddingInspector(sess, scan_batches=3)
    keys, vectors, _ = sess.embeddings[0].dump()
    assert inspector.projection.shape == (len(keys), 2)
    centred = vectors - vectors.mean(axis=0)
    # the two coordinates are uncorrelated and carry the largest variances
    cov = np.cov(inspector.projection.T)
    assert abs(cov[0, 1]) < 1e-6 * cov[0, 0] and cov[0, 0] >= cov[1, 1]
    top = np.linalg.svd(centred, compute_uv=False)[:2] ** 2 / (len(keys) - 1)
    np.testing.assert_allclose(np.diag(cov), top, rtol=1e-5)
    assert len(inspector.plot.axes[2].collections) == 1   # the scatter
