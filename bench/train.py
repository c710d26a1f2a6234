"""``python -m bench.train --model dcn|dlrm [--precision fp32 tf32 fp16] [--steps N] [--out DIR]``

Samples/s of the full training step (data already on the device) for hugectr-lab's CuPy backend and
for the same graph in PyTorch, in this process on this GPU; device events around every step, warm-up
steps first, medians. Prints a table and writes ``<out>/<model>_<date>.json`` and ``.md``: device,
date, library versions, the HBM and GEMM ceilings measured here, samples/s, ratio to PyTorch, % of
the HBM roofline (bytes/sample from ``workload.traffic``) and hugectr-lab's per-phase times.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import statistics
import time
from pathlib import Path

import cupy
import numpy as np

from hugectr_lab.backend import get_backend

from .hugectr_step import PHASES, HugeCTRStep
from .workload import PRECISIONS, traffic, workload

RESULTS = Path(__file__).resolve().parent / "results"


def ceilings():
    """Measured HBM bandwidth (bytes/s, read + write of a 2 GiB copy) and GEMM rates (FLOP/s, 8192^3)."""
    src = cupy.ones(1 << 29, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    bw = 2 * src.nbytes / _median_seconds(lambda: cupy.copyto(dst, src), 10)
    del src, dst
    rates = {}
    n = 8192
    for precision in PRECISIONS:
        dtype = cupy.float16 if precision == "fp16" else cupy.float32
        a = cupy.random.random((n, n), dtype=cupy.float32).astype(dtype)
        b = cupy.random.random((n, n), dtype=cupy.float32).astype(dtype)
        gemm = get_backend("cupy").ops.gemm
        rates[precision] = 2 * n ** 3 / _median_seconds(lambda: gemm(a, b, precision == "tf32"), 5)
    _free()
    return bw, rates


def _median_seconds(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
    return statistics.median(times)


def _free():
    gc.collect()
    cupy.get_default_memory_pool().free_all_blocks()
    try:
        import torch

        torch.cuda.empty_cache()
    except ImportError:
        pass


def time_hugectr(work, steps, warmup):
    runner = HugeCTRStep(work)
    try:
        step_times, phases = [], {p: [] for p in PHASES}
        for i in range(warmup + steps):
            events = [cupy.cuda.Event()]
            events[0].record()

            def mark(phase, events=events):
                events.append(cupy.cuda.Event())
                events[-1].record()

            loss = runner.step(runner.batches[i % len(runner.batches)], mark)
            events[-1].synchronize()
            if i < warmup:
                continue
            ms = [cupy.cuda.get_elapsed_time(a, b) for a, b in zip(events[:-1], events[1:])]
            step_times.append(sum(ms) / 1e3)
            for p, t in zip(PHASES, ms):
                phases[p].append(t)
        return statistics.median(step_times), {p: statistics.median(v) for p, v in phases.items()}, float(loss)
    finally:
        runner.close()
        del runner
        _free()


def time_torch(work, steps, warmup):
    import torch

    from .torch_models import TorchStep

    runner = TorchStep(work)
    try:
        times = []
        for i in range(warmup + steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = runner.step(runner.batches[i % len(runner.batches)])
            end.record()
            end.synchronize()
            if i >= warmup:
                times.append(start.elapsed_time(end) / 1e3)
        return statistics.median(times), float(loss.detach())
    finally:
        del runner
        _free()


def versions():
    out = {"python": platform.python_version(), "numpy": np.__version__, "cupy": cupy.__version__,
           "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(), "driver": cupy.cuda.runtime.driverGetVersion()}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = None
    return out


def run(model, precisions, steps, warmup, with_torch=True):
    """Yield the report (device, date, versions, ceilings, results so far) after each precision."""
    props = cupy.cuda.runtime.getDeviceProperties(0)
    bw, rates = ceilings()
    report = dict(device=props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  versions=versions(), hbm_bytes_per_s=bw, gemm_flops_per_s=rates, steps=steps, warmup=warmup,
                  results=[])
    for precision in precisions:
        work = workload(model, precision)
        nbytes, flops = traffic(model, precision, work.vec)
        t0 = time.perf_counter()
        seconds, phases, loss = time_hugectr(work, steps, warmup)
        row = dict(model=model, precision=precision, batch=work.batch, bytes_per_sample=nbytes,
                   flops_per_sample=flops, hugectr_samples_per_s=work.batch / seconds, hugectr_loss=loss,
                   hugectr_phase_ms=phases, hbm_roofline_samples_per_s=bw / nbytes,
                   gemm_roofline_samples_per_s=rates[precision] / flops)
        if with_torch:
            t_seconds, t_loss = time_torch(work, steps, warmup)
            row.update(torch_samples_per_s=work.batch / t_seconds, torch_loss=t_loss)
        row["wall_s"] = time.perf_counter() - t0
        report["results"].append(row)
        print(format_row(row), flush=True)
        yield report


def format_row(r):
    ratio = r["hugectr_samples_per_s"] / r["torch_samples_per_s"] if "torch_samples_per_s" in r else float("nan")
    hbm = 100 * r["hugectr_samples_per_s"] / r["hbm_roofline_samples_per_s"]
    torch_s = f"{r['torch_samples_per_s'] / 1e6:9.3f}" if "torch_samples_per_s" in r else "      n/a"
    return (f"{r['model']:5s} {r['precision']:5s} {r['batch']:6d}  {r['hugectr_samples_per_s'] / 1e6:9.3f} "
            f"{torch_s}  {ratio:6.2f}  {r['bytes_per_sample'] / 1e3:7.1f}  {hbm:6.1f}%  "
            f"{100 * r['hugectr_samples_per_s'] / r['gemm_roofline_samples_per_s']:6.1f}%")


HEADER = ("model prec   batch  lab Ms/s  torch Ms/s  ratio  KB/smp  %HBM-rf  %GEMM-rf")


def markdown(report):
    lines = [f"# {', '.join(sorted({r['model'] for r in report['results']}))} training step: hugectr-lab vs PyTorch",
             "", f"{report['device']}, {report['date']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), "",
             f"Measured here: HBM {report['hbm_bytes_per_s'] / 1e12:.2f} TB/s (copy, read + write); GEMM 8192^3 "
             + ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in report["gemm_flops_per_s"].items())
             + f". Medians of {report['steps']} steps after {report['warmup']} warm-up steps.", "",
             "| model | precision | batch | hugectr-lab samples/s | PyTorch samples/s | ratio | bytes/sample | "
             "% HBM roofline | % GEMM roofline |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        t = r.get("torch_samples_per_s")
        vs_torch = f"{t:,.0f} | {r['hugectr_samples_per_s'] / t:.2f}" if t else "n/a | n/a"
        lines.append(f"| {r['model']} | {r['precision']} | {r['batch']} | {r['hugectr_samples_per_s']:,.0f} | "
                     f"{vs_torch} | {r['bytes_per_sample']:,} | "
                     f"{100 * r['hugectr_samples_per_s'] / r['hbm_roofline_samples_per_s']:.1f} | "
                     f"{100 * r['hugectr_samples_per_s'] / r['gemm_roofline_samples_per_s']:.1f} |")
    lines += ["", "hugectr-lab per-phase medians (ms per step):", "",
              "| model | precision | " + " | ".join(PHASES) + " |", "|---|---|" + "---|" * len(PHASES)]
    for r in report["results"]:
        lines.append(f"| {r['model']} | {r['precision']} | "
                     + " | ".join(f"{r['hugectr_phase_ms'][p]:.2f}" for p in PHASES) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("dcn", "dlrm"), required=True)
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps; 8 = one pass over the 8 rotated batches")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    print(HEADER, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report = None
    for report in run(args.model, args.precision, args.steps, args.warmup, with_torch=not args.no_torch):
        save(report, args.out / f"{args.model}_{report['date'][:10]}", markdown)   # after each precision
    if report is not None:
        print(markdown(report))


def save(report, stem, markdown):
    """Write ``report`` as ``<stem>.json`` and its ``markdown(report)`` as ``<stem>.md``."""
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))

if __name__ == "__main__":
    main()
