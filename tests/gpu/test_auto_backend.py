"""GPU lane: with no ``backend=`` and no ``HUGECTR_LAB_BACKEND``, the seed's programs and the demo run
on the GPU unchanged -- the default "auto" picks CuPy and says why."""

import sys
from pathlib import Path

import pytest

from hugectr_lab.backend.backends import ENV_VAR
from hugectr_lab.cli import main

TESTS = Path(__file__).resolve().parents[1]
for helpers in ("session", "inference"):
    if str(TESTS / helpers) not in sys.path:
        sys.path.insert(0, str(TESTS / helpers))

import test_seed_program_and_cli as seed_inference  # noqa: E402  (the seed's inference program and its checks)
from session_helpers import dnn_config, make_dataset, optimizer, run_seed_program, write_config  # noqa: E402

pytestmark = pytest.mark.gpu

dcn_files = seed_inference.dcn_files


@pytest.fixture
def default_backend(monkeypatch):
    """The user's environment with nothing said about the backend."""
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_seed_training_program_runs_on_cupy_by_default(tmp_path, monkeypatch, default_backend):
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path)
    write_config(tmp_path / "your_config.json", dnn_config(opt=optimizer("Adam", lr=0.01)))
    namespace = run_seed_program(tmp_path)
    sess = namespace["sess"]
    assert sess.backend.name == "cupy" and sess.backend.reason.startswith("auto: ")
    assert "GPU 0 is " in sess.backend.reason
    losses = namespace["losses"]
    assert losses[-1] < losses[0] - 0.02, losses
    assert dict(namespace["metrics"])["AUC"] > 0.6
    sess.close()


def test_seed_inference_program_runs_on_cupy_by_default(dcn_files, default_backend):
    workdir, inputs, expected = dcn_files
    namespace = seed_inference.run_seed_program(workdir)
    assert namespace["inference_session"].backend.name == "cupy"
    assert namespace["embedding_cache"].backend.reason.startswith("auto: ")
    seed_inference.check_seed_output(namespace, inputs, expected, atol=2e-5)   # cuBLAS vs NumPy rounding


def test_demo_runs_on_cupy_by_default(tmp_path, monkeypatch, capsys, default_backend):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "backend: cupy (auto: " in out, out
    auc = float(out.split("demo: AUC ")[1].split()[0])
    assert auc > 0.7, out
