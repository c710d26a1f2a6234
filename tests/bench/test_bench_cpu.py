"""Smoke test of ``python -m bench.cpu``: one tiny run writes a complete report (no timing asserted)."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("threadpoolctl")


def test_bench_cpu_writes_training_and_phase_tables(tmp_path):
    from bench import cpu

    report = cpu.main(["--models", "deepfm", "--batch", "64", "--steps", "2", "--rounds", "2", "--warmup", "1",
                       "--threads", "1", "--clock", "cpu", "--no-predict", "--out", str(tmp_path)])
    (row,) = report["training"]
    assert row["model"] == "deepfm" and row["batch"] == 64 and len(row["round_ratios"]) == 2
    assert row["hugectr_samples_per_s"] > 0 and row["torch_samples_per_s"] > 0
    assert set(row["phase_ms"]) == set(cpu.PHASES) and all(v >= 0 for v in row["phase_ms"].values())
    assert row["reader_ms"] > 0
    (json_file,) = tmp_path.glob("cpu_*_1-threads_cpu-clock_*.json")
    assert json.loads(json_file.read_text())["threads"]["count"] == 1
    md = json_file.with_suffix(".md").read_text()
    assert "| deepfm | 64 |" in md and "embedding update" in md
