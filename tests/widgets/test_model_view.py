"""ModelView: rows, shapes and parameter counts of a config's graph."""

from hugectr_lab.widgets import ModelView

from session_helpers import SLOTS, dnn_config, write_config


def test_rows_shapes_and_parameter_counts(tmp_path):
    view = ModelView(write_config(tmp_path / "c.json", dnn_config(vec=8, vocab=4000, batchnorm=True)))
    by_name = {r["name"]: r for r in view.rows}
    assert view.rows[0]["kind"] == "data" and view.rows[0]["tops"]["dense"] == (1, 5)
    assert by_name["emb"]["kind"] == "embedding" and by_name["emb"]["tops"]["emb"] == (1, SLOTS, 8)
    assert by_name["emb"]["params"] == 4000 * 8 == view.embedding_params
    width = SLOTS * 8 + 5
    assert by_name["concat"]["tops"]["concat"] == (1, width)
    assert by_name["fc1"]["params"] == width * 32 + 32
    assert by_name["fc2"]["params"] == 32 + 1
    assert by_name["bn"]["params"] == 2 * 32
    assert by_name["loss"]["kind"] == "loss" and by_name["loss"]["bottoms"] == ["fc2", "label"]
    assert view.dense_params == sum(r["params"] for r in view.rows if r["kind"] != "embedding")
    assert [r["index"] for r in view.rows] == list(range(len(view.rows)))
    html = view.widget.value
    assert "InnerProduct" in html and f"concat (B, {width})" in html and f"{view.dense_params:,}" in html


def test_a_cross_network(tmp_path):
    view = ModelView(write_config(tmp_path / "c.json", dnn_config(cross=True)))
    cross = next(r for r in view.rows if r["type"] == "MultiCross")
    width = SLOTS * 8 + 5
    assert cross["params"] == 2 * 2 * width and cross["tops"]["cross"] == (1, width)
