"""Variants of the seed's non-epoch program: HugeCTR's sample graphs run unchanged through ``import hugectr``.

Only sizes change: the data is generated for each config's Data layer, tables are capped at 20000 rows
per device so a Global update stays cheap, and the loop is short.
"""

import json
from pathlib import Path

import pytest

from hugectr_lab.data import generate_for_config
from session_helpers import run_seed_program

SAMPLES = Path(__file__).resolve().parents[1] / "config" / "configs"


@pytest.mark.parametrize("sample", ["dcn", "deepfm", "wdl", "criteo", "criteo_multi_slots"])
def test_sample_graph_runs_the_seed_program(sample, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = json.loads((SAMPLES / f"{sample}.json").read_text())
    for layer in config["layers"]:
        hparam = layer.get("sparse_embedding_hparam")
        if hparam:
            hparam["max_vocabulary_size_per_gpu"] = min(hparam["max_vocabulary_size_per_gpu"], 20000)
    Path("your_config.json").write_text(json.dumps(config))
    generate_for_config("your_config.json", num_files=1, samples_per_file=1024, vocab_sizes=200, max_nnz=1,
                        seed=3)
    namespace = run_seed_program(tmp_path, batchsize=512, vvgpu=[[0, 1]], iterations=6, display=1, eval_every=5)
    sess = namespace["sess"]
    losses = namespace["losses"]
    assert all(0 < loss < 5 for loss in losses), losses
    auc = dict(namespace["metrics"])["AUC"]
    assert 0 <= auc <= 1
    assert Path("_dense_6.model").stat().st_size == 4 * sess.train_networks[0].num_params
    for i in range(len(sess.embeddings)):
        assert Path(f"{i}_sparse_6.model").stat().st_size > 0
    sess.close()
