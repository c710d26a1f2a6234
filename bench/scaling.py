"""``python -m bench.scaling --model dcn|dlrm [--gpus 1 2 4] [--precision fp16] [--out DIR]``

Samples/s of the training step (``Session._step`` on uploaded batches, as ``bench.train``) on 1, 2, 4
GPUs of this machine, one process driving all of them through NCCL: weak scaling (per-GPU batch fixed
at the sample's batch size) and strong scaling (global batch fixed at it). A step on G GPUs ends when
every GPU is done, so it is timed by the wall clock over ``--steps`` consecutive steps after
synchronising all GPUs (warm-up first; median of ``--repeats``). Efficiency = samples/s on G GPUs /
(G x samples/s on 1 GPU), measured in the same process. Writes ``<out>/scaling_<model>_<date>.json``
and ``.md`` with device, GPU count, date and versions; per-phase times of GPU 0 (device events) show
where the time goes.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path

import cupy
import numpy as np

from .hugectr_step import PHASES, HugeCTRStep
from .train import RESULTS, _free, save, versions
from .workload import MODELS, PRECISIONS, workload


def synchronize_all(gpus):
    for g in range(gpus):
        with cupy.cuda.Device(g):
            cupy.cuda.get_current_stream().synchronize()


_SPIN = r"""
extern "C" __global__ void spin(long long cycles) {
    const long long start = clock64();
    while (clock64() - start < cycles) {}
}
"""


def busy(gpus, seconds):
    """Queue a kernel that keeps each GPU busy for about ``seconds``."""
    for g in range(gpus):
        with cupy.cuda.Device(g):
            rate = cupy.cuda.runtime.getDeviceProperties(g)["clockRate"] * 1e3   # cycles per second
            cupy.RawKernel(_SPIN, "spin")((1,), (1,), (np.int64(seconds * rate),))


def measure(work, gpus, steps, warmup, repeats):
    """(median samples/s over ``repeats`` runs of ``steps`` steps, median ms for the host to enqueue one
    step behind busy GPUs, median GPU-0 phase ms per step)."""
    runner = HugeCTRStep(work)
    try:
        batches = runner.batches
        for i in range(warmup):
            runner.step(batches[i % len(batches)])
        synchronize_all(gpus)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(steps):
                runner.step(batches[i % len(batches)])
            synchronize_all(gpus)
            rates.append(steps * work.batch / (time.perf_counter() - start))
        host = []   # enqueueing one step while every GPU is still busy for 200 ms: if the host waited
        for i in range(min(steps, 10)):   # for a GPU inside the step, this would take >= 200 ms
            synchronize_all(gpus)
            busy(gpus, 0.2)
            start = time.perf_counter()
            runner.step(batches[i % len(batches)])
            host.append(1e3 * (time.perf_counter() - start))
        synchronize_all(gpus)
        phases = {p: [] for p in PHASES}
        for i in range(min(steps, 10)):   # one step at a time: where GPU 0's time goes
            events = [cupy.cuda.Event()]
            events[0].record()

            def mark(phase, events=events):
                events.append(cupy.cuda.Event())
                events[-1].record()

            runner.step(batches[i % len(batches)], mark)
            events[-1].synchronize()
            for p, a, b in zip(PHASES, events[:-1], events[1:]):
                phases[p].append(cupy.cuda.get_elapsed_time(a, b))
        return statistics.median(rates), statistics.median(host), {p: statistics.median(v) for p, v in phases.items()}
    finally:
        runner.close()
        del runner
        _free()


def run(model, precision, gpu_counts, steps, warmup, repeats, modes=("weak", "strong")):
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    report = dict(model=model, precision=precision, device=name, gpus_visible=cupy.cuda.runtime.getDeviceCount(),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  versions=versions(), steps=steps, warmup=warmup, repeats=repeats, results=[])
    per_gpu = MODELS[model]["batch"]
    for mode in modes:
        base = None
        for gpus in gpu_counts:
            batch = per_gpu * gpus if mode == "weak" else per_gpu
            rate, host_ms, phases = measure(workload(model, precision, num_batches=4, batch=batch, gpus=gpus), gpus, steps,
                                   warmup, repeats)
            base = rate if gpus == 1 else base
            row = dict(mode=mode, gpus=gpus, batch=batch, samples_per_s=rate, step_ms=1e3 * batch / rate,
                       host_enqueue_ms=host_ms, phase_ms_gpu0=phases,
                       efficiency=rate / (gpus * base) if base else None)
            report["results"].append(row)
            eff = f"{100 * row['efficiency']:.0f}%" if row["efficiency"] else "n/a"
            print(f"{model} {precision} {mode:6s} G={gpus} batch {batch:7d}: {rate / 1e6:7.3f} M samples/s, "
                  f"efficiency {eff}; step {row['step_ms']:.2f} ms, host enqueue {host_ms:.2f} ms", flush=True)
            yield report


def markdown(report):
    lines = [f"# {report['model']} scaling ({report['precision']}), one process, NCCL", "",
             f"{report['gpus_visible']} x {report['device']}, {report['date']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), "",
             f"Wall clock over {report['steps']} steps after {report['warmup']} warm-up steps, median of "
             f"{report['repeats']}; efficiency = samples/s / (G x samples/s on 1 GPU).", "",
             "| scaling | GPUs | global batch | samples/s | efficiency | step ms | host enqueue ms | "
             + " | ".join(PHASES) + " (GPU 0, ms) |", "|---|---|---|---|---|---|---|" + "---|" * len(PHASES)]
    for r in report["results"]:
        eff = f"{100 * r['efficiency']:.1f} %" if r["efficiency"] else "n/a"
        lines.append(f"| {r['mode']} | {r['gpus']} | {r['batch']} | {r['samples_per_s']:,.0f} | {eff} | "
                     f"{r['step_ms']:.2f} | {r['host_enqueue_ms']:.2f} | "
                     + " | ".join(f"{r['phase_ms_gpu0'][p]:.2f}" for p in PHASES) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("dcn", "dlrm"), required=True)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=("weak", "strong"), default=["weak", "strong"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    visible = cupy.cuda.runtime.getDeviceCount()
    counts = [g for g in args.gpus if g <= visible]
    if 1 not in counts:
        counts = [1] + counts   # the baseline every efficiency is measured against
    args.out.mkdir(parents=True, exist_ok=True)
    report = None
    for report in run(args.model, args.precision, counts, args.steps, args.warmup, args.repeats, args.modes):
        save(report, args.out / f"scaling_{args.model}_{report['date'][:10]}", markdown)
    if report is not None:
        print(markdown(report))


if __name__ == "__main__":
    main()
