"""Variants of the seed's non-epoch program: HugeCTR's sample graphs run unchanged through ``import hugectr``.

Only sizes change: the data is generated for each config's Data layer, tables are capped at 20000 rows
per device so a Global update stays cheap, and the loop is short.
"""

import json
import textwrap
from pathlib import Path

import pytest

from hugectr_lab.data import generate_for_config

SAMPLES = Path(__file__).resolve().parents[1] / "config" / "configs"

SEED_PROGRAM = textwrap.dedent('''
    from hugectr import Session, solver_parser_helper, get_learning_rate_scheduler
    json_file = "your_config.json"
    solver_config = solver_parser_helper(seed = 0,
                                        batchsize = 512,
                                        batchsize_eval = 512,
                                        model_file = "",
                                        embedding_files = [],
                                        vvgpu = [[0,1]],
                                        use_mixed_precision = False,
                                        scaler = 1.0,
                                        i64_input_key = False,
                                        use_algorithm_search = True,
                                        use_cuda_graph = True,
                                        repeat_dataset = True,
                                        max_eval_batches = 2)
    lr_sch = get_learning_rate_scheduler(json_file)
    sess = Session(solver_config, json_file)
    sess.start_data_reading()
    losses = []
    for i in range(6):
        lr = lr_sch.get_next()
        sess.set_learning_rate(lr)
        sess.train()
        losses.append(sess.get_current_loss())
        if (i%5 == 0 and i != 0):
            sess.check_overflow()
            sess.copy_weights_for_evaluation()
            for _ in range(solver_config.max_eval_batches):
                sess.eval()
            metrics = sess.get_eval_metrics()
    sess.download_params_to_files("./", 6)
''')


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
    namespace = {}
    exec(compile(SEED_PROGRAM, f"seed_{sample}.py", "exec"), namespace)
    sess = namespace["sess"]
    losses = namespace["losses"]
    assert all(0 < loss < 5 for loss in losses), losses
    auc = dict(namespace["metrics"])["AUC"]
    assert 0 <= auc <= 1
    assert Path("_dense_6.model").stat().st_size == 4 * sess.train_networks[0].num_params
    for i in range(len(sess.embeddings)):
        assert Path(f"{i}_sparse_6.model").stat().st_size > 0
    sess.close()
