"""``python -m bench.profile --model dcn|dlrm --precision fp32|tf32|fp16 [--cap N]``: where a hugectr-lab
training step spends its GPU time, call by call.

Wraps the embedding's routing, lookup, combine, exchanges and optimizer, every dense layer's forward
and backward (grouped by layer type) and the dense optimizer with device events (no synchronisation
inside the step), runs warm-up and timed steps and prints the median milliseconds per step of each
group; "unattributed" is the rest of the step (host work between launches, small array ops). The step
runs eagerly (``use_cuda_graph=False``): a CUDA graph replays the dense layers without calling them.
``--cap`` caps every slot's cardinality (a smaller table starts faster; lookups cost the same).

``--kernels`` instead times the step as ``bench.train`` runs it (the whole step replayed from its CUDA
graph) under CUPTI (through ``torch.profiler``, which records every kernel of the process, CuPy's and
cuBLAS's included) and prints each kernel's GPU time and launches per step, the kernels' sum and the
step's wall time: their difference is the GPU idling between graph nodes.

``--origins PATTERN`` runs the eager step under ``torch.profiler`` with Python stacks and names, for each
kernel whose name contains PATTERN (e.g. ``copy``: CuPy's copies), the hugectr_lab lines that launched it
(the innermost two frames) with its GPU time per step. ``--host`` profiles the host side of the replayed
step (cProfile over back-to-back steps): what Python does per step before the graph launch.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

import cupy

from . import trace_origins
from . import workload as wl
from .hugectr_step import HugeCTRStep


class EventLog:
    """Pairs of events around wrapped calls; ``totals()`` sums their durations per name."""

    def __init__(self):
        self.spans = []

    def wrap(self, obj, attr, name):
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            out = fn(*args, **kwargs)
            end.record()
            self.spans.append((name, start, end))
            return out

        setattr(obj, attr, timed)

    def totals(self):
        out = defaultdict(float)
        for name, start, end in self.spans:
            out[name] += cupy.cuda.get_elapsed_time(start, end)
        self.spans = []
        return out


def instrument(runner, log):
    s = runner.session
    for emb in s.embeddings:
        for attr in ("_route", "_lookup", "_exchange_forward", "_exchange_backward"):
            log.wrap(emb, attr, f"embedding {attr.strip('_')}")
        log.wrap(emb.optimizer, "apply", "embedding optimizer")
    ops = s.backend.ops
    log.wrap(ops, "embedding_combine_fwd", "embedding combine (kernel)")   # OpTable attribute: instance override
    for net in s.train_networks:
        for layer in (step.layer for step in net.steps):   # a fused chain is one "InnerProduct+ReLU+Dropout"
            log.wrap(layer, "forward", f"fwd {layer.type_name}")
            log.wrap(layer, "backward", f"bwd {layer.type_name}")
    log.wrap(s.dense_optimizers[0], "update", "dense optimizer")


def _device_us(avg):
    """A kernel's total GPU microseconds in a ``key_averages()`` row (the attribute was renamed in torch 2.4)."""
    for attr in ("self_device_time_total", "self_cuda_time_total", "device_time_total", "cuda_time_total"):
        if hasattr(avg, attr):
            return getattr(avg, attr)
    raise AttributeError("this torch's profiler rows have no device time")


def _warm_up(step, calls):
    """``calls`` untimed calls of ``step(i)`` (kernels compile, graphs capture, pools fill), then a wait for them."""
    for i in range(calls):
        step(i)
    cupy.cuda.Device().synchronize()


def _runner(args, cuda_graph):
    """The benchmark's training session and ``step(i)``: one step on the i-th of its staged batches (rotating)."""
    runner = HugeCTRStep(wl.workload(args.model, args.precision, cuda_graph=cuda_graph))
    return runner, lambda i: runner.step(runner.batches[i % len(runner.batches)])


def kernel_table(step, steps, warmup=8):
    """Per-kernel GPU time of ``steps`` calls of ``step(i)`` (a replayed training step, a predict call) ->
    (ms per call on the GPU's timeline, [(ms per call, launches per call, name)]); copies between host
    and device are rows too (``Memcpy HtoD``)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    _warm_up(step, warmup)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        start.record()
        for i in range(steps):
            step(i)
        end.record()
        end.synchronize()
    per_call = cupy.cuda.get_elapsed_time(start, end) / steps
    rows = [(_device_us(a) / 1e3 / steps, a.count / steps, a.key) for a in prof.key_averages()
            if a.device_type == torch.autograd.DeviceType.CUDA and _device_us(a) > 0]
    return per_call, sorted(rows, reverse=True)


def print_kernels(title, step, rows, top=40, call="step"):
    busy = sum(ms for ms, _, _ in rows)
    print(f"{title}: {call} {step:.3f} ms, kernels {busy:.3f} ms in {sum(n for _, n, _ in rows):.0f} launches,"
          f" idle between them {step - busy:.3f} ms")
    for ms, n, name in rows[:top]:
        print(f"  {ms:8.3f} ms {100 * ms / step:5.1f}% x{n:<5.0f} {name[:110]}")
    rest = rows[top:]
    if rest:
        print(f"  {sum(ms for ms, _, _ in rest):8.3f} ms        in {len(rest)} other kernels")


def kernel_origins(step, steps, pattern, warmup=4):
    """``trace_origins.kernel_origins`` of ``steps`` eager calls of ``step(i)`` under ``torch.profiler`` with
    Python stacks."""
    import json
    import os
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    _warm_up(step, warmup)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=True) as prof:
        for i in range(steps):
            step(i)
        cupy.cuda.Device().synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    return trace_origins.kernel_origins(events, pattern, steps)


def host_profile(step, steps, top=30):
    """Print cProfile's busiest functions (own time, then with callees) over ``steps`` calls of ``step(i)``,
    each waited for (its ``synchronize`` is a row of its own): a host running ahead of the device would
    block in whichever launch finds CUDA's queue full, and that wait would be charged to the launch."""
    import cProfile
    import pstats

    _warm_up(step, 8)
    prof = cProfile.Profile()
    stream = cupy.cuda.get_current_stream()
    prof.enable()
    for i in range(steps):
        step(i)
        stream.synchronize()
    prof.disable()
    cupy.cuda.Device().synchronize()
    for order in ("tottime", "cumulative"):
        print(f"host, {steps} steps, by {order}:")
        pstats.Stats(prof).sort_stats(order).print_stats(top)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=tuple(wl.MODELS), required=True)
    parser.add_argument("--precision", choices=wl.PRECISIONS, default="fp32")
    parser.add_argument("--cap", type=int, default=None, help="cap on each slot's cardinality")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--kernels", action="store_true", help="per-kernel times of the replayed whole step")
    parser.add_argument("--origins", metavar="PATTERN", help="where kernels named *PATTERN* are launched from")
    parser.add_argument("--host", action="store_true", help="cProfile of the replayed step's host side")
    args = parser.parse_args(argv)
    if args.cap:
        wl.CRITEO_KAGGLE = tuple(min(c, args.cap) for c in wl.CRITEO_KAGGLE)
    if args.kernels:
        runner, call = _runner(args, cuda_graph=True)
        step, rows = kernel_table(call, args.steps)
        print_kernels(f"{args.model} {args.precision} batch {runner.batch}, whole step replayed", step, rows)
        runner.close()
        return
    if args.host:
        runner, call = _runner(args, cuda_graph=True)
        host_profile(call, 20 * args.steps)
        runner.close()
        return
    if args.origins:
        runner, call = _runner(args, cuda_graph=False)
        rows = kernel_origins(call, args.steps, args.origins)
        print(f"{args.model} {args.precision} batch {runner.batch}, eager step: kernels named *{args.origins}*")
        for (name, where), (ms, n) in sorted(rows.items(), key=lambda r: -r[1][0]):
            print(f"  {ms:8.3f} ms x{n:<4.0f} {name}  {where}")
        runner.close()
        return
    runner, call = _runner(args, cuda_graph=False)   # per-call events need eager calls
    log = EventLog()
    instrument(runner, log)
    step_ms, per_call = [], defaultdict(list)
    for i in range(8 + args.steps):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        call(i)
        end.record()
        end.synchronize()
        totals = log.totals()
        if i >= 8:
            step_ms.append(cupy.cuda.get_elapsed_time(start, end))
            for name, ms in totals.items():
                per_call[name].append(ms)
    step = statistics.median(step_ms)
    rows = sorted(((statistics.median(v), k) for k, v in per_call.items()), reverse=True)
    print(f"{args.model} {args.precision} batch {runner.batch}: step {step:.2f} ms (median of {args.steps})")
    for ms, name in rows:
        print(f"  {ms:8.2f} ms  {100 * ms / step:5.1f}%  {name}")
    print(f"  {step - sum(ms for ms, _ in rows):8.2f} ms          unattributed")   # the spans do not nest
    runner.close()


if __name__ == "__main__":
    main()
