"""bench.trace_origins: kernels placed inside the Python calls that launched them (``bench.profile --origins``)."""

import json
import subprocess
import sys
import tempfile

import pytest

from bench.trace_origins import kernel_origins


def _x(cat, name, ts, dur, **args):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "args": args}


def test_each_kernel_is_charged_to_the_innermost_frames_around_its_launch():
    events = [
        _x("python_function", "hugectr_lab/session.py(445): train_step", 0, 100),
        _x("python_function", "hugectr_lab/backend/cuda/cublas.py(90): zero_padded", 10, 20),
        _x("python_function", "cupy/_core/core.py(1): copy", 12, 5),            # not ours: skipped
        _x("cuda_driver", "cuLaunchKernel", 14, 1, correlation=7),
        _x("python_function", "hugectr_lab/embedding/distributed.py(47): _exchange_backward", 40, 30),
        _x("cuda_runtime", "cudaLaunchKernel", 50, 1, correlation=8),
        _x("cuda_runtime", "cudaLaunchKernel", 90, 1, correlation=9),
        {"ph": "i", "cat": "kernel", "name": "cupy_copy_instant", "ts": 1},     # not a complete event
        _x("kernel", "cupy_copy__float16_float16", 200, 30, correlation=7),
        _x("kernel", "cupy_copy__float16_float16", 240, 10, correlation=8),
        _x("kernel", "cupy_copy__float16_float16", 260, 10, correlation=8),
        _x("kernel", "cupy_copy__int64_int64", 280, 20, correlation=9),
        _x("kernel", "hctr_gemv_rows", 300, 50, correlation=9),                  # another name: not counted
        _x("kernel", "cupy_copy__float32_float32", 400, 4, correlation=99),      # its launch not recorded
    ]
    rows = kernel_origins(events, "copy", calls=2)
    assert rows == {
        ("cupy_copy__float16_float16", "backend/cuda/cublas.py(90): zero_padded <- session.py(445): train_step"):
            pytest.approx([0.015, 0.5]),
        ("cupy_copy__float16_float16",
         "embedding/distributed.py(47): _exchange_backward <- session.py(445): train_step"): pytest.approx([0.010, 1.0]),
        ("cupy_copy__int64_int64", "session.py(445): train_step"): pytest.approx([0.010, 0.5]),
        ("cupy_copy__float32_float32", "(no hugectr_lab frame)"): pytest.approx([0.002, 0.5]),
    }


_REAL_TRACE = """
import json, os, sys, tempfile
import torch
from torch.profiler import ProfilerActivity, profile

def inner():
    return torch.ones(4) + 1

with profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:
    inner()
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "trace.json")
    prof.export_chrome_trace(path)
    with open(path) as f:
        events = json.load(f)["traceEvents"]
json.dump([e for e in events if e.get("cat") == "python_function"], sys.stdout)
"""


def test_a_real_profile_names_python_frames_as_the_parser_expects():
    """torch.profiler's python tracer: complete ``python_function`` events named ``path(line): function``,
    which the parser matches by the package's name. In a subprocess: the tracer's hooks and buffers stay
    out of this process (the memory-estimate tests trace its allocations)."""
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, "-c", _REAL_TRACE], capture_output=True, text=True, timeout=120,
                          check=True, cwd=tempfile.gettempdir())
    frames = json.loads(done.stdout)
    assert any(e["name"].endswith(": inner") and "(" in e["name"] for e in frames), frames[:5]
    assert all(e["ph"] == "X" and "ts" in e and "dur" in e for e in frames)
