"""The hugectr-lab command: generate, train, demo (run in-process through main(argv))."""

import io
import os
import sys

from hugectr_lab.cli import main
from hugectr_lab.progress import ProgressReporter

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "session"))
from session_helpers import dnn_config, optimizer, write_config  # noqa: E402


def test_generate_writes_the_configs_sources(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "c.json", dnn_config())
    assert main(["generate", config, "--files", "2", "--samples", "256", "--vocab", "20"]) == 0
    out = capsys.readouterr().out
    assert "Bayes AUC" in out and "512 samples" in out
    assert (tmp_path / "data" / "file_list.txt").read_text().startswith("2\n")
    assert main(["generate", config]) == 2  # refuses to overwrite
    assert "exists" in capsys.readouterr().err


def test_train_generates_missing_data_trains_evaluates_and_saves(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = dnn_config(opt=optimizer("Adam", lr=0.01))
    cfg["solver"] = {"lr_policy": "fixed", "display": 10, "max_iter": 40, "gpu": [0, 1], "batchsize": 128,
                     "batchsize_eval": 128, "snapshot": 1000, "snapshot_prefix": "./run", "eval_interval": 20,
                     "max_eval_batches": 2}
    config = write_config(tmp_path / "c.json", cfg)
    assert main(["train", config, "--quiet", "--files", "2", "--samples", "1024", "--vocab", "30"]) == 0
    out = capsys.readouterr().out
    assert "generating them" in out and "backend: numpy ($HUGECTR_LAB_BACKEND), devices: 2" in out
    assert "trained 40 iterations" in out and "AUC" in out
    assert (tmp_path / "run_dense_40.model").exists() and (tmp_path / "run0_sparse_40.model").exists()


def test_train_reports_config_errors_with_the_json_path(tmp_path, capsys):
    cfg = dnn_config()
    cfg["layers"][4]["fc_param"]["num_output"] = "32"
    config = write_config(tmp_path / "bad.json", cfg)
    assert main(["train", config, "--quiet"]) == 2
    assert "layers[4].fc_param.num_output" in capsys.readouterr().err


def test_demo_reaches_its_auc(tmp_path, capsys):
    cwd = os.getcwd()
    try:
        assert main(["demo", "--dir", str(tmp_path / "demo"), "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    auc = float(out.split("demo: AUC ")[1].split()[0])
    assert auc >= 0.75, out
    assert (tmp_path / "demo" / "dcn_demo.json").exists()
    assert any(name.endswith(".model") and "_dense_" in name for name in os.listdir(tmp_path / "demo"))


def test_progress_reporter_follows_events(tmp_path, monkeypatch):
    from hugectr_lab.config import solver_parser_helper
    from hugectr_lab.data import generate_for_config
    from hugectr_lab.session import Session

    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "c.json", dnn_config())
    generate_for_config(config, num_files=1, samples_per_file=256, vocab_sizes=20)
    sess = Session(solver_parser_helper(batchsize=64, batchsize_eval=64), config)
    lines = []
    with ProgressReporter(sess, total=3, print_fn=lines.append, file=io.StringIO()) as progress:
        sess.start_data_reading()
        for _ in range(3):
            sess.train()
        sess.eval()
        sess.get_eval_metrics()
        assert progress.bar.n == 3
    assert lines and lines[0].startswith("iter 3: AUC")
    assert not sess.events._subscribers  # closed: unsubscribed
    sess.close()


def test_console_entry_point_is_declared():
    import tomllib

    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts == {"hugectr-lab": "hugectr_lab.cli:main"}
