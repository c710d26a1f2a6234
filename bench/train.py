"""``python -m bench.train --model dcn|dlrm [--precision fp32 tf32 fp16] [--steps N] [--compile-modes M ...]``

Samples/s of the full training step (data already on the device) for hugectr-lab's CuPy backend and
for the same graph in PyTorch -- eager and under ``torch.compile`` -- in this process on this GPU;
warm-up steps first, medians of device-event times. Prints a table and writes
``<out>/<model>_<date>.json`` and ``.md``: device, date, library versions, the HBM and GEMM ceilings
measured here, samples/s, hugectr-lab / PyTorch eager and hugectr-lab / PyTorch compiled, % of the
HBM and GEMM rooflines (per-sample bytes and FLOPs from ``workload.traffic``) and hugectr-lab's
per-phase times.

hugectr-lab is timed three ways per precision: the whole step as a user runs it (``step(batch)``, no
phase marks, so whatever the step replays from CUDA graphs is replayed; events only around the step,
waited for one by one: the headline samples/s); the same steps back to back, issued without waiting as a
training loop issues them (``hugectr_back_to_back_ms``, with the host's time to issue one,
``hugectr_host_ms``); then step by step with an event after each phase (``hugectr_phase_ms``).

PyTorch compiled tries ``--compile-modes`` in order and times the first that compiles and runs; the
modes that failed are reported with their reasons, and when none works the row says n/a. The first
compiled step (tracing, Inductor code generation, autotuning) is timed on its own (``compile_s``)
and is not in the median; CUDA-graph recording happens in the warm-up steps after it.

CuPy is imported where the GPU is used, so the PyTorch timing (``device="cpu"``) and the report
formatting also run on a machine without one.
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

import numpy as np

from hugectr_lab.fileio import write_bytes_atomic

from .hugectr_step import PHASES, HugeCTRStep
from .workload import PRECISIONS, traffic, workload

RESULTS = Path(__file__).resolve().parent / "results"
# Strongest first: autotuned GEMM templates + CUDA graphs, then CUDA graphs alone, then each without.
COMPILE_MODES = ("max-autotune", "reduce-overhead", "max-autotune-no-cudagraphs", "default")


def ceilings():
    """Measured HBM bandwidth (bytes/s, read + write of a 2 GiB copy) and GEMM rates (FLOP/s, 8192^3)."""
    import cupy

    from hugectr_lab.backend import get_backend

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


def _cupy_seconds(fn):
    """Device seconds of ``fn()`` between two CuPy events (waits for the end event); returns (seconds, result)."""
    import cupy

    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    out = fn()
    end.record()
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end) / 1e3, out


def _median_seconds(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    return statistics.median(_cupy_seconds(fn)[0] for _ in range(repeats))


def _free():
    gc.collect()
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def time_hugectr(work, steps, warmup):
    """(whole-step median seconds, per-phase median ms, last loss, back-to-back ms per step, host ms per
    step): ``warmup`` + ``steps`` unmarked steps with events around each and a wait after each; then
    ``steps`` unmarked steps back to back, as a training loop issues them, between two events (the host's
    median time to issue one: perf_counter around the call); then ``warmup`` + ``steps`` with an event
    after each of ``PHASES``. The first and the second differ by what of the host's work per step the
    device does not hide when it waits for each step."""
    import cupy

    runner = HugeCTRStep(work)
    try:
        whole = []
        for i in range(warmup + steps):
            seconds, loss = _cupy_seconds(lambda i=i: runner.step(runner.batches[i % len(runner.batches)]))
            if i >= warmup:
                whole.append(seconds)
        loss = float(loss)
        host = []

        def back_to_back():
            for i in range(steps):
                t = time.perf_counter()
                runner.step(runner.batches[i % len(runner.batches)])
                host.append(time.perf_counter() - t)

        pipelined = 1e3 * _cupy_seconds(back_to_back)[0] / steps
        phases = {p: [] for p in PHASES}
        for i in range(warmup + steps):
            events = [cupy.cuda.Event()]
            events[0].record()

            def mark(phase, events=events):
                events.append(cupy.cuda.Event())
                events[-1].record()

            runner.step(runner.batches[i % len(runner.batches)], mark)
            events[-1].synchronize()
            if i >= warmup:
                for p, a, b in zip(PHASES, events[:-1], events[1:]):
                    phases[p].append(cupy.cuda.get_elapsed_time(a, b))
        return (statistics.median(whole), {p: statistics.median(v) for p, v in phases.items()}, loss, pipelined,
                1e3 * statistics.median(host))
    finally:
        runner.close()
        del runner
        _free()


def time_torch(work, steps, warmup, compile_mode=None, device="cuda"):
    """(median seconds per step, last loss, wall seconds of the first step) of ``TorchStep(work,
    compile_mode=...)``: the first step (it compiles, if compiled) is timed alone, then ``warmup``
    untimed steps, then ``steps`` timed ones -- CUDA events around each on a GPU, the wall clock on a CPU."""
    import torch

    from .torch_models import TorchStep

    cuda = torch.device(device).type == "cuda"
    runner = TorchStep(work, device=device, compile_mode=compile_mode)
    try:
        batches = runner.batches
        t0 = time.perf_counter()
        loss = runner.step(batches[0])
        float(loss.detach())   # waits for the step
        first_s = time.perf_counter() - t0
        times = []
        for i in range(1, 1 + warmup + steps):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                loss = runner.step(batches[i % len(batches)])
                end.record()
                end.synchronize()
                seconds = start.elapsed_time(end) / 1e3
            else:
                t = time.perf_counter()
                loss = runner.step(batches[i % len(batches)])
                seconds = time.perf_counter() - t
            if i > warmup:
                times.append(seconds)
        return statistics.median(times), float(loss.detach()), first_s
    finally:
        del runner
        _free()


def time_torch_compiled(work, steps, warmup, modes=COMPILE_MODES, device="cuda"):
    """``time_torch`` of the first of ``modes`` that compiles and runs. Returns dict(mode, seconds, loss,
    compile_s, failures) -- ``failures`` maps each mode tried before it to the reason -- or, when every
    mode fails, dict(mode=None, failures=...)."""
    import torch

    failures = {}
    for mode in modes:
        try:
            seconds, loss, compile_s = time_torch(work, steps, warmup, mode, device)
            return dict(mode=mode, seconds=seconds, loss=loss, compile_s=compile_s, failures=failures)
        except Exception as e:   # noqa: BLE001 -- whatever stops a mode (compile or run), the next one is tried
            failures[mode] = failure_reason(e)
        finally:
            torch.compiler.reset()   # drops compiled code, guards and CUDA-graph pools before the next try
            _free()
    return dict(mode=None, failures=failures)


def failure_reason(error, limit=300):
    """``Type: first line of the message`` (Inductor errors carry pages of generated code after it)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def versions():
    import cupy

    out = {"python": platform.python_version(), "numpy": np.__version__, "cupy": cupy.__version__,
           "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(), "driver": cupy.cuda.runtime.driverGetVersion()}
    for name in ("torch", "triton"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def run(model, precisions, steps, warmup, with_torch=True, compile_modes=COMPILE_MODES):
    """Yield the report (device, date, versions, ceilings, results so far) after each precision.
    ``compile_modes`` empty: no compiled PyTorch run."""
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    bw, rates = ceilings()
    report = dict(device=props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  versions=versions(), hbm_bytes_per_s=bw, gemm_flops_per_s=rates, steps=steps, warmup=warmup,
                  compile_modes=list(compile_modes) if with_torch else [], results=[])
    for precision in precisions:
        work = workload(model, precision)
        nbytes, flops = traffic(model, precision, work.vec)
        t0 = time.perf_counter()
        seconds, phases, loss, pipelined_ms, host_ms = time_hugectr(work, steps, warmup)
        row = dict(model=model, precision=precision, batch=work.batch, bytes_per_sample=nbytes,
                   flops_per_sample=flops, hugectr_samples_per_s=work.batch / seconds, hugectr_loss=loss,
                   hugectr_phase_ms=phases, hugectr_back_to_back_ms=pipelined_ms, hugectr_host_ms=host_ms,
                   hbm_roofline_samples_per_s=bw / nbytes,
                   gemm_roofline_samples_per_s=rates[precision] / flops)
        if with_torch:
            t_seconds, t_loss, _ = time_torch(work, steps, warmup)
            row.update(torch_samples_per_s=work.batch / t_seconds, torch_loss=t_loss)
        if with_torch and compile_modes:
            c = time_torch_compiled(work, steps, warmup, compile_modes)
            row.update(torch_compile_mode=c["mode"], torch_compile_failures=c["failures"])
            if c["mode"] is not None:
                row.update(torch_compiled_samples_per_s=work.batch / c["seconds"], torch_compiled_loss=c["loss"],
                           torch_compile_s=c["compile_s"])
        row["wall_s"] = time.perf_counter() - t0
        report["results"].append(row)
        print(format_row(row), flush=True)
        yield report


# ---- the report ------------------------------------------------------------------------------------
# Rows of reports written before a key existed lack it; every reader below uses .get().

def ratio(row, key):
    """hugectr-lab samples/s over ``row[key]`` (PyTorch eager or compiled samples/s); None without it."""
    other = row.get(key)
    return row["hugectr_samples_per_s"] / other if other else None


def roofline_percent(row, kind):
    """hugectr-lab samples/s as % of the ``kind`` ("hbm" or "gemm") roofline."""
    return 100 * row["hugectr_samples_per_s"] / row[f"{kind}_roofline_samples_per_s"]


def compile_note(row):
    """Which torch.compile mode ran ("" when none was tried), or "n/a: <mode>: <reason>; ..." when none worked."""
    failures = row.get("torch_compile_failures")
    if row.get("torch_compile_mode"):
        return row["torch_compile_mode"] + (f" ({', '.join(failures)} failed)" if failures else "")
    return "n/a: " + "; ".join(f"{m}: {why}" for m, why in failures.items()) if failures is not None else ""


def _fmt(value, spec, missing="n/a"):
    return format(value, spec) if value is not None else missing


HEADER = ("model prec   batch  lab Ms/s  eager Ms/s  comp Ms/s  lab/eag  lab/cmp  KB/smp  %HBM-rf  %GEMM-rf  "
          "compile mode")


def format_row(r):
    mega = {k: r[k] / 1e6 if r.get(k) else None for k in ("torch_samples_per_s", "torch_compiled_samples_per_s")}
    return (f"{r['model']:5s} {r['precision']:5s} {r['batch']:6d}  {r['hugectr_samples_per_s'] / 1e6:9.3f} "
            f"{_fmt(mega['torch_samples_per_s'], '10.3f', '       n/a')} "
            f"{_fmt(mega['torch_compiled_samples_per_s'], '10.3f', '       n/a')}  "
            f"{_fmt(ratio(r, 'torch_samples_per_s'), '7.2f', '    n/a')}  "
            f"{_fmt(ratio(r, 'torch_compiled_samples_per_s'), '7.2f', '    n/a')}  "
            f"{r['bytes_per_sample'] / 1e3:6.1f}  {roofline_percent(r, 'hbm'):6.1f}%  "
            f"{roofline_percent(r, 'gemm'):7.1f}%  {compile_note(r)}")


def markdown(report):
    results = report["results"]
    modes = report.get("compile_modes")
    lines = [f"# {', '.join(sorted({r['model'] for r in results}))} training step: hugectr-lab vs PyTorch "
             "(eager and torch.compile)",
             "", f"{report['device']}, {report['date']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), "",
             f"Measured here: HBM {report['hbm_bytes_per_s'] / 1e12:.2f} TB/s (copy, read + write); GEMM 8192^3 "
             + ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in report["gemm_flops_per_s"].items())
             + f". Medians of {report['steps']} steps after {report['warmup']} warm-up steps"
             + (" (PyTorch: after a first step, which compiles, timed alone)" if modes else "") + ".", ""]
    if modes:
        lines += ["PyTorch compiled: everything after the embedding lookup (the model and the loss, forward and "
                  "backward) under `torch.compile`; the lookup, its sparse gradient and the optimizers run eagerly "
                  f"as in the eager baseline. Modes tried in order: {', '.join(modes)}; the first that compiles "
                  "and runs is timed.", ""]
    lines += ["| model | precision | batch | hugectr-lab samples/s | PyTorch eager samples/s | "
              "PyTorch compiled samples/s | hugectr/eager | hugectr/compiled | bytes/sample | "
              "% HBM roofline | % GEMM roofline |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['precision']} | {r['batch']} | {r['hugectr_samples_per_s']:,.0f} | "
                     f"{_fmt(r.get('torch_samples_per_s'), ',.0f')} | "
                     f"{_fmt(r.get('torch_compiled_samples_per_s'), ',.0f')} | "
                     f"{_fmt(ratio(r, 'torch_samples_per_s'), '.2f')} | "
                     f"{_fmt(ratio(r, 'torch_compiled_samples_per_s'), '.2f')} | {r['bytes_per_sample']:,} | "
                     f"{roofline_percent(r, 'hbm'):.1f} | {roofline_percent(r, 'gemm'):.1f} |")
    if modes:
        lines += ["", "torch.compile per precision (compile s: the first compiled step, wall clock; the modes "
                  "before the one that ran failed for the reason given):", "",
                  "| model | precision | mode | compile s | failed modes |", "|---|---|---|---|---|"]
        for r in results:
            failed = "; ".join(f"{m}: {why}" for m, why in r.get("torch_compile_failures", {}).items())
            lines.append(f"| {r['model']} | {r['precision']} | {r.get('torch_compile_mode') or 'n/a'} | "
                         f"{_fmt(r.get('torch_compile_s'), '.1f')} | {failed.replace('|', '/') or '-'} |")
    lines += ["", "hugectr-lab per-phase medians (ms per step; an event after each phase, so the step runs phase "
              "by phase; 'whole step' is the unmarked step the samples/s come from, waited for one by one; "
              "'back to back' the same steps issued without waiting, as a training loop runs them, and 'host' "
              "the host's time to issue one):", "",
              "| model | precision | whole step | back to back | host | " + " | ".join(PHASES) + " |",
              "|---|---|---|---|---|" + "---|" * len(PHASES)]
    for r in results:
        lines.append(f"| {r['model']} | {r['precision']} | {1e3 * r['batch'] / r['hugectr_samples_per_s']:.2f} | "
                     f"{_fmt(r.get('hugectr_back_to_back_ms'), '.2f')} | {_fmt(r.get('hugectr_host_ms'), '.2f')} | "
                     + " | ".join(_fmt(r["hugectr_phase_ms"].get(p), ".2f") for p in PHASES) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("dcn", "dlrm"), required=True)
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps; 8 = one pass over the 8 rotated batches")
    parser.add_argument("--no-torch", action="store_true", help="skip both PyTorch baselines")
    parser.add_argument("--compile-modes", nargs="*", default=list(COMPILE_MODES), metavar="MODE",
                        help="torch.compile modes, tried in order until one works (none given: no compiled run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    print(HEADER, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report = None
    for report in run(args.model, args.precision, args.steps, args.warmup, with_torch=not args.no_torch,
                      compile_modes=args.compile_modes):
        save(report, args.out / f"{args.model}_{report['date'][:10]}", markdown)   # after each precision
    if report is not None:
        print(markdown(report))


def save(report, stem, markdown):
    """Write ``report`` as ``<stem>.json`` and its ``markdown(report)`` as ``<stem>.md``, each atomically."""
    write_bytes_atomic(stem.with_suffix(".json"), (json.dumps(report, indent=2) + "\n").encode())
    write_bytes_atomic(stem.with_suffix(".md"), markdown(report).encode())


if __name__ == "__main__":
    main()
