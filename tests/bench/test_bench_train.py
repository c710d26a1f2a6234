"""``bench.train``'s PyTorch side on the CPU: the compiled step (Inductor) trains exactly like the eager
one, the mode ladder falls back past a failing mode and says why, and the report shows both ratios
(and reads reports written before the compiled columns existed). The GPU timing itself runs on the GPU
machine (``python3 -m bench.train``)."""

import json
import math
import shutil

import pytest

torch = pytest.importorskip("torch")

from bench import train  # noqa: E402
from bench.torch_models import TorchStep  # noqa: E402
from bench.workload import CRITEO_KAGGLE, workload  # noqa: E402

RESULTS = train.RESULTS

needs_inductor = pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                                    reason="torch.compile's Inductor backend needs a C++ compiler on the CPU")


def tiny(model, batch=32):
    """The model's sample graph at ``batch`` over at most 40 keys per slot, two batches."""
    return workload(model, "fp32", num_batches=2, batch=batch, cuda_graph=False,
                    cardinalities=tuple(min(c, 40) for c in CRITEO_KAGGLE))


def compiled_graphs():
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@needs_inductor
@pytest.mark.parametrize("model", ["dcn", "dlrm"])
def test_compiled_step_trains_like_the_eager_step(model):
    work = tiny(model)
    eager = TorchStep(work, device="cpu")
    compiled = TorchStep(work, device="cpu", compile_mode="default")
    compiled.model.load_state_dict(eager.model.state_dict())
    for step in (eager, compiled):
        step.model.eval()   # dropout off: Inductor draws its own random numbers
    graphs = compiled_graphs()
    try:
        for i in range(3):   # the step's own SparseAdam/Adam (DCN) or SGD (DLRM) updates carry into the next
            expected = float(eager.step(eager.batches[i % 2]).detach())
            got = float(compiled.step(compiled.batches[i % 2]).detach())
            assert got == pytest.approx(expected, rel=1e-5), f"step {i}"
        assert compiled_graphs() > graphs   # Inductor compiled it (no silent eager fallback)
        # Adam scales each element's step to about lr (1e-3): where a gradient is rounding noise (Inductor
        # reassociates the reductions) the two steps differ by a fraction of lr -- 7e-6 on 5 of 439 k weights in
        # one CI run (2026-12-08) -- so the weights agree to 3% of one step, not to 1e-6.
        theirs = dict(compiled.model.named_parameters())
        for name, p in eager.model.named_parameters():
            torch.testing.assert_close(theirs[name], p, rtol=1e-4, atol=3e-5, msg=lambda m, n=name: f"{n}: {m}")
    finally:
        torch.compiler.reset()


@needs_inductor
def test_compile_ladder_skips_a_failing_mode_and_says_why():
    work = tiny("dcn", batch=16)   # dropout on, as benchmarked
    out = train.time_torch_compiled(work, steps=2, warmup=1, modes=("no-such-mode", "default"), device="cpu")
    assert out["mode"] == "default"
    assert list(out["failures"]) == ["no-such-mode"]
    reason = out["failures"]["no-such-mode"]
    assert reason.startswith("RuntimeError: ") and "no-such-mode" in reason
    assert out["seconds"] > 0 and out["compile_s"] > out["seconds"]   # compiling is not in the median
    assert math.isfinite(out["loss"]) and 0 < out["loss"] < 5

    none = train.time_torch_compiled(work, steps=1, warmup=0, modes=("no-such-mode",), device="cpu")
    assert none["mode"] is None and set(none["failures"]) == {"no-such-mode"}


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["dcn", "dlrm"])
def test_cuda_graph_mode_trains_like_eager_on_the_gpu(model):
    """reduce-overhead (CUDA graphs, which the CPU never exercises) under fp16 autocast + GradScaler: the
    first steps record, the later ones replay; the losses follow the eager step's."""
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA device")
    work = workload(model, "fp16", num_batches=2, batch=256, cardinalities=tuple(min(c, 1000) for c in CRITEO_KAGGLE))
    eager = TorchStep(work)
    compiled = TorchStep(work, compile_mode="reduce-overhead")
    compiled.model.load_state_dict(eager.model.state_dict())
    for step in (eager, compiled):
        step.model.eval()
    skips = torch._dynamo.utils.counters["inductor"]["cudagraph_skips"]
    try:
        for i in range(5):
            expected = float(eager.step(eager.batches[i % 2]).detach())
            got = float(compiled.step(compiled.batches[i % 2]).detach())
            assert got == pytest.approx(expected, rel=2e-3), f"step {i}"
        assert torch._dynamo.utils.counters["inductor"]["cudagraph_skips"] == skips   # the graphs did run
    finally:
        torch.compiler.reset()
    out = train.time_torch_compiled(work, steps=3, warmup=3, modes=("reduce-overhead",))   # dropout on
    assert out["mode"] == "reduce-overhead", out["failures"]
    assert math.isfinite(out["loss"])


def test_failure_reason_is_the_first_line_and_bounded():
    assert train.failure_reason(RuntimeError("\n  boom\nstack")) == "RuntimeError: boom"
    assert train.failure_reason(ValueError()) == "ValueError"
    assert len(train.failure_reason(RuntimeError("x" * 1000))) == 300


def _row(precision, **extra):
    return dict(model="dcn", precision=precision, batch=16384, bytes_per_sample=33240, flops_per_sample=6_000_000,
                hugectr_samples_per_s=8e6, hugectr_loss=0.69, hbm_roofline_samples_per_s=8e7,
                gemm_roofline_samples_per_s=1.6e8, hugectr_phase_ms={p: 0.25 for p in train.PHASES},
                torch_samples_per_s=2e6, torch_loss=0.7, **extra)


def _report(rows, **extra):
    return dict(device="NVIDIA H100 80GB HBM3", date="2026-12-07T05:00:00+00:00", versions={"torch": "2.11.0"},
                hbm_bytes_per_s=3e12, gemm_flops_per_s={"fp16": 7.8e14}, steps=20, warmup=8, results=rows, **extra)


def test_report_gives_both_ratios_the_rooflines_and_why_compiled_is_na():
    ok = _row("fp16", torch_compile_mode="max-autotune", torch_compile_failures={}, torch_compiled_samples_per_s=4e6,
              torch_compiled_loss=0.7, torch_compile_s=81.5, hugectr_back_to_back_ms=1.9, hugectr_host_ms=0.123)
    failed = _row("fp32", torch_compile_mode=None,
                  torch_compile_failures={"max-autotune": "InductorError: a | b", "default": "RuntimeError: c"})
    md = train.markdown(_report([ok, failed], compile_modes=list(train.COMPILE_MODES)))
    assert "| hugectr/eager | hugectr/compiled |" in md
    # 8 M/s over 2 M/s eager and 4 M/s compiled; 10 % of the 80 M/s HBM and 5 % of the 160 M/s GEMM roofline
    assert "| dcn | fp16 | 16384 | 8,000,000 | 2,000,000 | 4,000,000 | 4.00 | 2.00 | 33,240 | 10.0 | 5.0 |" in md
    assert "| dcn | fp32 | 16384 | 8,000,000 | 2,000,000 | n/a | 4.00 | n/a | 33,240 | 10.0 | 5.0 |" in md
    assert "| dcn | fp16 | max-autotune | 81.5 | - |" in md
    assert "| dcn | fp32 | n/a | n/a | max-autotune: InductorError: a / b; default: RuntimeError: c |" in md
    assert "| dcn | fp16 | 2.05 | 1.90 | 0.12 | 0.25 |" in md   # the whole step: 16384 / 8 M/s = 2.05 ms
    row = train.format_row(failed)
    assert "4.00" in row and "n/a: max-autotune: InductorError" in row
    assert "2.00" in train.format_row(ok) and row.count("n/a") >= 3
    fallback = dict(ok, torch_compile_mode="default", torch_compile_failures={"max-autotune": "InductorError: a"})
    assert train.format_row(fallback).endswith("default (max-autotune failed)")


def test_report_reads_a_report_from_before_the_compiled_baseline():
    old = json.loads((RESULTS / "dcn_2026-11-28.json").read_text())   # no compile keys, older phase names
    md = train.markdown(old)
    assert "| dcn | fp16 | 16384 | 3,343,717 | 1,989,493 | n/a | 1.68 | n/a | 33,240 | 3.8 | 3.9 |" in md
    assert "torch.compile per precision" not in md
    assert "| dcn | fp16 | 4.90 | n/a | n/a | 0.66 |" in md   # whole step 16384 / 3.34 M/s; what it has, n/a else
    assert train.format_row(old["results"][0]).rstrip().endswith("%")
