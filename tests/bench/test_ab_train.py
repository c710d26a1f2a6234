"""``bench/ab_train.sh prepare COMMIT``: the older tree it puts in ``.baseline/`` holds everything
``python -m bench.train`` needs to run from there (its package, kernels, bench and the sample configs the
workloads read), and git ignores it. ``run`` times both trees: with ``BENCH=inference`` the predict
latency, which the NumPy backend runs here (the training benchmark needs a GPU: the GPU machine runs it)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git and a clone")
def test_prepare_puts_a_runnable_older_tree_in_an_ignored_folder(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", str(REPO), str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, check=True, capture_output=True,
                          text=True).stdout.strip()
    subprocess.run(["bash", "bench/ab_train.sh", "prepare", head], cwd=clone, check=True, capture_output=True)
    base = clone / ".baseline"
    assert (base / "COMMIT").read_text().strip() == head
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, check=True, capture_output=True,
                            text=True).stdout
    assert ".baseline" not in status   # ignored through .git/info/exclude
    (base / "hugectr_lab" / "kernels").symlink_to("../kernels")   # what `run` links on the GPU machine
    probe = ("from bench.workload import workload; from bench.train import main; "
             "w = workload('dcn', 'fp16', num_batches=1, batch=64); print(w.batch, len(w.config['layers']))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=base, check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": "."})
    assert out.stdout.split()[0] == "64"
    usage = subprocess.run(["bash", "bench/ab_train.sh"], cwd=clone, capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
    # BENCH=inference on NumPy: a latency row per tree, under the tree's name
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "OUT": str(out),
           "BENCH": "inference", "BACKEND": "numpy", "BATCHES": "1", "ROUNDS": "1"}
    subprocess.run(["bash", "bench/ab_train.sh", "run"], cwd=clone, check=True, capture_output=True, env=env)
    log = (out / "ab.log").read_text().splitlines()
    assert [line.split()[:3] for line in log[:2]] == [["base1", "batch", "1:"], ["new1", "batch", "1:"]]
    assert all("p50" in line for line in log[:2]) and log[2] == f"base = {head}" and (out / "ab.tgz").exists()
