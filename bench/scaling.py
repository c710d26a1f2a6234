"""``python -m bench.scaling --model dcn|dlrm [--gpus 1 2 4] [--layouts one-process process-per-gpu]
[--modes weak strong] [--precision fp16] [--no-cuda-graph] [--out DIR]``

Samples/s of the training step (``Session.train_step`` on staged batches, as ``bench.train``) on 1, 2, 4
GPUs of this machine: weak scaling (per-GPU batch fixed at the sample's batch size) and strong scaling
(global batch fixed at it), in two layouts -- one process driving every GPU (``vvgpu=[[0, 1, ...]]``)
and one MPI process per GPU (``vvgpu=[[0], [1], ...]``, launched from here with ``mpiexec -n G``), where
each GPU's work is enqueued by a Python thread of its own. A step on G GPUs ends when every GPU is done,
so it is timed by the wall clock over ``--steps`` consecutive steps between device synchronisations
(warm-up first; the slowest process counts; median of ``--repeats``). Efficiency = samples/s on G GPUs
/ (G x samples/s on 1 GPU), the 1-GPU run measured in this process. Also reported: how long the host
takes to enqueue one step while every GPU is busy (a spin kernel keeps them busy for 200 ms: a step
that waited for a GPU would take longer) and GPU 0's per-phase times (device events). Writes
``<out>/scaling_<model>_<G>x<gpu>_<date>.json`` and ``.md`` with device, GPU count, date and versions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cupy
import numpy as np

from hugectr_lab.backend.comm import mpiexec_command, process_group

from .hugectr_step import PHASES, HugeCTRStep
from .train import RESULTS, _free, save, versions
from .workload import MODELS, PRECISIONS, workload

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ("one-process", "process-per-gpu")

_SPIN = r"""
extern "C" __global__ void spin(long long cycles) {
    const long long start = clock64();
    while (clock64() - start < cycles) {}
}
"""


def busy(devices, seconds):
    """Queue a kernel that keeps each of ``devices`` busy for about ``seconds``."""
    for g in devices:
        with cupy.cuda.Device(g):
            rate = cupy.cuda.runtime.getDeviceProperties(g)["clockRate"] * 1e3   # cycles per second
            cupy.RawKernel(_SPIN, "spin")((1,), (1,), (np.int64(seconds * rate),))


def measure(work, steps, warmup, repeats):
    """This process's share of one configuration; every process of the run calls it. Returns (on every
    process) median samples/s, the slowest process's host enqueue ms behind busy GPUs, this process's
    first GPU's median phase ms, and what of the step replayed from CUDA graphs (``Session.replayed``:
    "whole step", "dense forward and backward", or None -- also when the processes differ)."""
    runner = HugeCTRStep(work)
    session = runner.session
    devices, group = session.local_devices, session.comm.group

    def synchronize():
        for g in devices:
            cupy.cuda.Device(g).synchronize()

    try:
        batches = runner.batches
        for i in range(warmup):
            runner.step(batches[i % len(batches)])
        rates = []
        for _ in range(repeats):
            synchronize()
            group.barrier()
            start = time.perf_counter()
            for i in range(steps):
                runner.step(batches[i % len(batches)])
            synchronize()
            slowest = max(group.allgather(time.perf_counter() - start))
            rates.append(steps * work.batch / slowest)
        host = []
        for i in range(min(steps, 10)):
            synchronize()
            group.barrier()
            busy(devices, 0.2)
            start = time.perf_counter()
            runner.step(batches[i % len(batches)])
            host.append(1e3 * max(group.allgather(time.perf_counter() - start)))
        synchronize()
        phases = {p: [] for p in PHASES}
        with cupy.cuda.Device(devices[0]):
            for i in range(min(steps, 10)):   # one step at a time: where the first GPU's time goes
                events = [cupy.cuda.Event()]
                events[0].record()

                def mark(phase, events=events):
                    events.append(cupy.cuda.Event())
                    events[-1].record()

                runner.step(batches[i % len(batches)], mark)
                events[-1].synchronize()
                for p, a, b in zip(PHASES, events[:-1], events[1:]):
                    phases[p].append(cupy.cuda.get_elapsed_time(a, b))
        replayed = group.allgather(session.replayed)   # "whole step", "dense forward and backward" or None
        return dict(samples_per_s=statistics.median(rates), host_enqueue_ms=statistics.median(host),
                    phase_ms_gpu0={p: statistics.median(v) for p, v in phases.items()},
                    cuda_graph=replayed[0] if len(set(replayed)) == 1 else None)
    finally:
        runner.close()
        del runner
        _free()


def worker(spec_file):
    """One MPI process of a process-per-GPU run (``--worker SPEC``); process 0 writes the result."""
    spec = json.loads(Path(spec_file).read_text())
    work = workload(spec["model"], spec["precision"], num_batches=4, batch=spec["batch"], gpus=spec["gpus"],
                    process_per_gpu=True, cuda_graph=spec["cuda_graph"])
    result = measure(work, spec["steps"], spec["warmup"], spec["repeats"])
    if process_group().rank == 0:
        Path(spec["result"]).write_text(json.dumps(result))


def launch(spec, gpus):
    """Run ``spec`` as ``gpus`` MPI processes, one per GPU; returns process 0's result."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = dict(spec, result=str(Path(tmp) / "result.json"))
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        found = mpiexec_command(gpus, [sys.executable, "-m", "bench.scaling", "--worker", str(Path(tmp) / "spec.json")])
        if found is None:
            raise SystemExit("the process-per-gpu layout needs an MPI launcher: pip install mpi4py mpich")
        command, env = found
        env["PYTHONPATH"] = ":".join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        subprocess.run(command, env=env, cwd=ROOT, check=True, timeout=600)
        return json.loads(Path(spec["result"]).read_text())


def run(model, precision, gpu_counts, steps, warmup, repeats, modes=("weak", "strong"), layouts=LAYOUTS,
        cuda_graph=True):
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    report = dict(model=model, precision=precision, device=name, gpus_visible=cupy.cuda.runtime.getDeviceCount(),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  versions=versions(), steps=steps, warmup=warmup, repeats=repeats, cuda_graph=cuda_graph,
                  results=[])
    per_gpu = MODELS[model]["batch"]
    for mode in modes:
        base = None
        for layout in layouts:
            for gpus in gpu_counts:
                batch = per_gpu * gpus if mode == "weak" else per_gpu
                if gpus == 1 and base is not None:
                    continue   # one GPU is the same run in both layouts
                spec = dict(model=model, precision=precision, batch=batch, gpus=gpus, steps=steps, warmup=warmup,
                            repeats=repeats, cuda_graph=cuda_graph)
                if layout == "process-per-gpu" and gpus > 1:
                    result = launch(spec, gpus)
                else:
                    result = measure(workload(model, precision, num_batches=4, batch=batch, gpus=gpus,
                                              cuda_graph=cuda_graph), steps, warmup, repeats)
                rate = result["samples_per_s"]
                base = rate if gpus == 1 else base
                row = dict(result, mode=mode, layout=layout if gpus > 1 else "-", gpus=gpus, batch=batch,
                           step_ms=1e3 * batch / rate, efficiency=rate / (gpus * base))
                report["results"].append(row)
                print(f"{model} {precision} {mode:6s} {row['layout']:15s} G={gpus} batch {batch:7d}: "
                      f"{rate / 1e6:7.3f} M samples/s, efficiency {100 * row['efficiency']:.0f}%; step "
                      f"{row['step_ms']:.2f} ms, host enqueue {row['host_enqueue_ms']:.2f} ms, "
                      f"CUDA graph: {_graph(row)}", flush=True)
                yield report


def _graph(row):
    """The row's CUDA-graph column; reports from before the whole-step graph say True for the dense part."""
    graph = row["cuda_graph"]
    return {True: "dense forward and backward", False: "no", None: "no"}.get(graph, graph)


def markdown(report):
    lines = [f"# {report['model']} scaling ({report['precision']}), NCCL", "",
             f"{report['gpus_visible']} x {report['device']}, {report['date']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), "",
             f"Wall clock over {report['steps']} steps after {report['warmup']} warm-up steps, median of "
             f"{report['repeats']}; efficiency = samples/s / (G x samples/s on 1 GPU). Layout: one process "
             f"driving all G GPUs, or one MPI process per GPU. CUDA graph: what of the step replayed from "
             f"graphs (solver use_cuda_graph): the whole step, or each GPU's dense forward and backward.", "",
             "| scaling | layout | GPUs | global batch | samples/s | efficiency | step ms | host enqueue ms | "
             "CUDA graph | " + " | ".join(PHASES) + " (GPU 0, ms) |",
             "|---|---|---|---|---|---|---|---|---|" + "---|" * len(PHASES)]
    for r in report["results"]:
        lines.append(f"| {r['mode']} | {r['layout']} | {r['gpus']} | {r['batch']} | {r['samples_per_s']:,.0f} | "
                     f"{100 * r['efficiency']:.1f} % | {r['step_ms']:.2f} | {r['host_enqueue_ms']:.2f} | "
                     f"{_graph(r)} | "
                     + " | ".join(f"{r['phase_ms_gpu0'][p]:.2f}" for p in PHASES) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("dcn", "dlrm"))
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=("weak", "strong"), default=["weak", "strong"])
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                        help="run the step without CUDA graphs (solver use_cuda_graph=False)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)   # one process of a process-per-gpu run
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.model is None:
        parser.error("--model is required")
    visible = cupy.cuda.runtime.getDeviceCount()
    counts = sorted({1, *(g for g in args.gpus if g <= visible)})   # 1: the baseline of every efficiency
    args.out.mkdir(parents=True, exist_ok=True)
    report = None
    device = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    device = (device.decode() if isinstance(device, bytes) else device).split()[1].lower()   # e.g. h200
    stem = f"scaling_{args.model}{'' if args.cuda_graph else '_no-graph'}_{visible}x{device}"
    for report in run(args.model, args.precision, counts, args.steps, args.warmup, args.repeats, args.modes,
                      args.layouts, args.cuda_graph):
        save(report, args.out / f"{stem}_{report['date'][:10]}", markdown)
    if report is not None:
        print(markdown(report))


if __name__ == "__main__":
    main()
