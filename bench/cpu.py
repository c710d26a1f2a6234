"""``python -m bench.cpu [--quick] [--models dcn deepfm dlrm] [--batch 256 1024] [--threads N] [--out DIR]``

hugectr-lab's NumPy backend against the same graphs in PyTorch eager on this CPU, in this process:

* **training**: ``Session.train_step`` (embedding forward, dense forward + backward, optimizers; the batch
  already staged, as ``bench.train`` times it) of the DCN and DeepFM samples at batch 256 and 1024 and
  the DLRM sample with every slot capped at ``DLRM_CAP`` keys, against ``bench.torch_models``
  (``nn.EmbeddingBag`` with sparse gradients, SparseAdam + Adam, or SGD for DLRM) on the same batches.
  The two alternate in blocks of ``--steps`` steps for ``--rounds`` rounds after warm-up, so load from
  other processes hits both; the ratio is the median over rounds of (PyTorch median step time /
  hugectr-lab median step time) in the round.
* **per-phase profile** of the Session's step: wall time per phase (embedding forward, dense forward,
  loss, dense backward, dense optimizer, embedding backward, embedding update) from instrumented calls,
  and the reader (``read_a_batch`` + ``stage_batch`` of a generated Norm file of the same layout).
* **inference**: ``InferenceSession.predict`` of the DCN sample (``bench.inference``'s model: 840 543-row
  table, host arrays in, predictions out) at batch 1, 64 and 1024 against the same network in PyTorch
  eager under ``torch.inference_mode`` (p50 of interleaved calls).

Both libraries run with the same thread count (``torch.set_num_threads`` and threadpoolctl for NumPy's
BLAS), reported with the BLAS in use. Prints markdown and writes
``<out>/cpu_<machine>_<N>-threads[_cpu-clock]_<date>.json`` and ``.md`` (device, date, load average,
versions).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import threadpoolctl
import torch

from hugectr_lab.backend import get_backend
from hugectr_lab.fileio import write_bytes_atomic

from .hugectr_step import HugeCTRStep
from .torch_models import DCN, TorchStep
from .workload import CRITEO_KAGGLE, workload

RESULTS = Path(__file__).resolve().parent / "results"
DLRM_CAP = 20_000        # keys per slot of the reduced DLRM table (227 k rows of 128 floats)
PHASES = ("embedding fwd", "dense fwd", "loss", "dense bwd", "dense update", "embedding bwd", "embedding update")
PREDICT_BATCHES = (1, 64, 1024)


# ---- environment -----------------------------------------------------------------------------------

def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def pin_threads(n):
    """``n`` threads for PyTorch's intra-op pool and for every BLAS/OpenMP pool threadpoolctl finds;
    returns a function that restores the previous counts, and what each pool reports."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    limiter = threadpoolctl.threadpool_limits(n)
    pools = [dict(api=p["internal_api"], version=p.get("version"), threads=p["num_threads"],
                  library=Path(p["filepath"]).name) for p in threadpoolctl.threadpool_info()]

    def restore():
        limiter.restore_original_limits()
        torch.set_num_threads(before)

    return restore, dict(count=n, torch_intra_op=torch.get_num_threads(), pools=pools)


def versions():
    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "threadpoolctl": threadpoolctl.__version__}


# ---- training --------------------------------------------------------------------------------------

def cpu_workload(model, batch):
    if model == "dlrm":
        return workload(model, "fp32", batch=batch, cuda_graph=False,
                        cardinalities=tuple(min(c, DLRM_CAP) for c in CRITEO_KAGGLE))
    return workload(model, "fp32", batch=batch, cuda_graph=False)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def _timed(fn, times):
    start = clock()
    fn()
    times.append(clock() - start)


def train(model, batch, steps, rounds, warmup):
    """Interleaved timing of hugectr-lab and PyTorch; then the Session's per-phase profile."""
    work = cpu_workload(model, batch)
    ours = HugeCTRStep(work, backend="numpy")
    theirs = TorchStep(work, device="cpu", compact=True)
    n = len(ours.batches)
    for i in range(warmup):
        ours.step(ours.batches[i % n])
        theirs.step(theirs.batches[i % n])
    ours_t, theirs_t, ratios = [], [], []
    for _ in range(rounds):
        a, b = [], []
        for i in range(steps):
            _timed(lambda: ours.step(ours.batches[i % n]), a)
        for i in range(steps):
            _timed(lambda: theirs.step(theirs.batches[i % n]), b)
        ratios.append(statistics.median(b) / statistics.median(a))
        ours_t += a
        theirs_t += b
    loss = float(ours.step(ours.batches[0]))
    phases = profile_phases(ours, steps)
    ours.close()
    return dict(model=model, batch=batch, steps=steps, rounds=rounds,
                hugectr_samples_per_s=batch / statistics.median(ours_t),
                torch_samples_per_s=batch / statistics.median(theirs_t),
                ratio=statistics.median(ratios), round_ratios=ratios, hugectr_loss=loss,
                torch_loss=float(theirs.step(theirs.batches[0]).detach()), phase_ms=phases,
                reader_ms=reader_ms(work, steps))


def profile_phases(runner, steps):
    """Median ms per step of each of ``PHASES``: ``clock`` time between the Session's phase marks, with the
    dense part split at the start of ``Network.backward`` and the loss layer's own calls taken out."""
    s = runner.session
    (net,) = s.train_networks
    spans = defaultdict(float)

    def wrap(obj, attr, name):
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spans[name] += clock() - start

        setattr(obj, attr, timed)
        return fn

    originals = [(net, "backward", wrap(net, "backward", "backward")),
                 (net.loss, "forward", wrap(net.loss, "forward", "loss fwd")),
                 (net.loss, "backward", wrap(net.loss, "backward", "loss bwd"))]
    per_phase = defaultdict(list)
    n = len(runner.batches)
    try:
        for i in range(steps):
            spans.clear()
            marks = [("start", clock())]
            runner.step(runner.batches[i % n], lambda phase: marks.append((phase, clock())))
            took = {phase: t - prev for (_, prev), (phase, t) in zip(marks[:-1], marks[1:])}
            dense = took.pop("dense fwd+bwd") + took.pop("all-reduce")
            loss = spans["loss fwd"] + spans["loss bwd"]
            took.update({"dense fwd": dense - spans["backward"] - spans["loss fwd"], "loss": loss,
                         "dense bwd": spans["backward"] - spans["loss bwd"]})
            for phase in PHASES:
                per_phase[phase].append(1e3 * took[phase])
    finally:
        for obj, attr, _ in originals:
            delattr(obj, attr)      # back to the class's method
    return {phase: statistics.median(v) for phase, v in per_phase.items()}


def reader_ms(work, steps):
    """Median ms of ``read_a_batch`` + ``stage_batch`` for a Norm file of the workload's layout (26 slots,
    one key each), through a Session of the same config (its background reader thread included)."""
    from hugectr_lab.config import solver_parser_helper
    from hugectr_lab.data.generator import generate_dataset
    from hugectr_lab.session import Session

    config = json.loads(json.dumps(work.config))
    data = next(layer for layer in config["layers"] if layer["type"] == "Data")
    with tempfile.TemporaryDirectory() as tmp:
        source = str(Path(tmp) / "file_list.txt")
        generate_dataset(source, num_files=1, samples_per_file=work.batch * 4, slot_nums=(26,),
                         vocab_sizes=list(work.cardinalities), check=data.get("check", "Sum"),
                         key_type=config.get("solver", {}).get("input_key_type", "I32"))
        data.update(source=source, format="Norm")
        data.pop("num_samples", None)
        session = Session(solver_parser_helper(**work.solver), config, backend="numpy")
        session.start_data_reading()
        reader = session.get_data_reader_train()
        times = []
        for _ in range(steps + 2):
            _timed(lambda: session.stage_batch(reader.read_a_batch()), times)
        session.close()
    return 1e3 * statistics.median(times[2:])


# ---- inference -------------------------------------------------------------------------------------

def inference(repeats):
    """p50 ms of ``InferenceSession.predict`` and of PyTorch eager on the same requests, interleaved."""
    from hugectr_lab.inference import CreateEmbeddingCache, CreateParameterServer, InferenceSession

    from .inference import build_dcn, dcn_request

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config, offsets = build_dcn(tmp, max(PREDICT_BATCHES))
        ps = CreateParameterServer([config], ["dcn"], False)
        cache = CreateEmbeddingCache(ps, 0, True, 1.0, config, "dcn", False, backend=get_backend("numpy"))
        session = InferenceSession(config, 0, cache)
        model = DCN(int(offsets[-1])).eval()

        def torch_predict(dense, keys, row_ptrs):
            with torch.inference_mode():
                x = torch.from_numpy(dense).view(-1, 13)
                logits = model(torch.from_numpy(keys.astype(np.int64)), torch.from_numpy(row_ptrs[:-1]), x)
                return torch.sigmoid(logits).numpy().reshape(-1).tolist()

        rng = np.random.default_rng(1)
        for _ in range(4):
            session.predict(*dcn_request(rng, max(PREDICT_BATCHES), offsets))   # fill the cache
        for batch in PREDICT_BATCHES:
            requests = [dcn_request(rng, batch, offsets) for _ in range(8)]
            for r in requests[:4]:
                session.predict(*r)
                torch_predict(*r)
            ours, theirs = [], []
            for i in range(repeats[batch]):
                r = requests[i % len(requests)]
                _timed(lambda: session.predict(*r), ours)
                _timed(lambda: torch_predict(*r), theirs)
            p50, t50 = statistics.median(ours), statistics.median(theirs)
            rows.append(dict(batch=batch, calls=len(ours), hugectr_p50_ms=1e3 * p50, torch_p50_ms=1e3 * t50,
                             hugectr_p99_ms=1e3 * float(np.percentile(ours, 99)),
                             torch_p99_ms=1e3 * float(np.percentile(theirs, 99)), ratio=t50 / p50))
            print(f"  predict batch {batch:>5}: hugectr-lab {1e3 * p50:8.3f} ms  torch {1e3 * t50:8.3f} ms  "
                  f"ratio {t50 / p50:5.2f}", flush=True)
    return rows


# ---- report ----------------------------------------------------------------------------------------

def markdown(report):
    threads = report["threads"]
    pools = "; ".join(f"{p['api']} {p['version']} ({p['library']}) {p['threads']}" for p in threads["pools"])
    lines = ["# CPU benchmark: hugectr-lab (NumPy backend) vs PyTorch eager", "",
             f"{report['device']}, {report['date']}; load average before the run "
             f"{', '.join(f'{x:.2f}' for x in report['load_before'])}, after "
             f"{', '.join(f'{x:.2f}' for x in report.get('load_after', report['load_before']))}.",
             f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
             f"Threads: {threads['count']} (torch intra-op {threads['torch_intra_op']}; pools: {pools}). "
             f"Clock: {'process CPU time' if report.get('clock') == 'cpu' else 'wall time'}.", "",
             "## Training step (fp32)", "",
             f"Blocks of {report['steps']} steps of each library alternate for {report['rounds']} rounds after "
             f"{report['warmup']} warm-up steps; samples/s from the median step, ratio = median over rounds of "
             "the two medians' ratio (> 1: hugectr-lab faster).", "",
             "| model | batch | hugectr-lab samples/s | PyTorch samples/s | ratio | per round |",
             "|---|---|---|---|---|---|"]
    for r in report["training"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['hugectr_samples_per_s']:,.0f} | "
                     f"{r['torch_samples_per_s']:,.0f} | {r['ratio']:.2f} | "
                     f"{' '.join(f'{x:.2f}' for x in r['round_ratios'])} |")
    lines += ["", "hugectr-lab per-phase medians (ms per step; the reader is not part of the timed step):", "",
              "| model | batch | " + " | ".join(PHASES) + " | sum | reader |", "|---|---|" + "---|" * (len(PHASES) + 2)]
    for r in report["training"]:
        ms = r["phase_ms"]
        lines.append(f"| {r['model']} | {r['batch']} | " + " | ".join(f"{ms[p]:.2f}" for p in PHASES)
                     + f" | {sum(ms.values()):.2f} | {r['reader_ms']:.2f} |")
    if report.get("inference"):
        lines += ["", "## predict (DCN sample, 840 543-row table, host arrays in and out)", "",
                  "| batch | hugectr-lab p50 ms | PyTorch p50 ms | ratio | hugectr-lab p99 ms | PyTorch p99 ms |",
                  "|---|---|---|---|---|---|"]
        for r in report["inference"]:
            lines.append(f"| {r['batch']} | {r['hugectr_p50_ms']:.3f} | {r['torch_p50_ms']:.3f} | {r['ratio']:.2f} | "
                         f"{r['hugectr_p99_ms']:.3f} | {r['torch_p99_ms']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=("dcn", "deepfm", "dlrm"), default=["dcn", "deepfm", "dlrm"])
    parser.add_argument("--batch", nargs="+", type=int, default=[256, 1024],
                        help="batch sizes of DCN and DeepFM (DLRM runs at the largest)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=20, help="steps per block")
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks per library")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps of each (one pass over the batches)")
    parser.add_argument("--quick", action="store_true", help="10-step blocks, 2 rounds, fewer predict calls")
    parser.add_argument("--no-predict", action="store_true", help="skip the inference part")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="cpu: this process's CPU time instead of wall time -- with --threads 1, a fair "
                             "comparison on a machine that other work keeps busy")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.warmup = 10, 2, 4
    global clock
    clock = CLOCKS[args.clock]
    restore_threads, threads = pin_threads(args.threads)
    try:
        return _run(args, threads)
    finally:
        restore_threads()


def _run(args, threads):
    report = dict(device=cpu_name(), date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  load_before=list(os.getloadavg()), versions=versions(), threads=threads, clock=args.clock,
                  steps=args.steps,
                  rounds=args.rounds, warmup=args.warmup, training=[], inference=None)
    print(f"{report['device']}, {report['date']}, {args.threads} threads, load {report['load_before']}", flush=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{platform.machine()} {os.cpu_count()} cores").strip("-").lower()
    args.out.mkdir(parents=True, exist_ok=True)
    clock_tag = "_cpu-clock" if args.clock == "cpu" else ""
    stem = args.out / f"cpu_{slug}_{args.threads}-threads{clock_tag}_{report['date'][:10]}"

    def save():
        report["load_after"] = list(os.getloadavg())
        write_bytes_atomic(stem.with_suffix(".json"), (json.dumps(report, indent=1) + "\n").encode())
        write_bytes_atomic(stem.with_suffix(".md"), markdown(report).encode())

    cases = [(m, b) for m in args.models for b in (args.batch if m != "dlrm" else [max(args.batch)])]
    for model, batch in cases:
        row = train(model, batch, args.steps, args.rounds, args.warmup)
        report["training"].append(row)
        print(f"  {model:6s} batch {batch:5d}: hugectr-lab {row['hugectr_samples_per_s']:9,.0f}  torch "
              f"{row['torch_samples_per_s']:9,.0f} samples/s  ratio {row['ratio']:.2f} "
              f"(rounds {' '.join(f'{x:.2f}' for x in row['round_ratios'])})", flush=True)
        save()
    if not args.no_predict:
        report["inference"] = inference({1: 100, 64: 100, 1024: 30} if args.quick else {1: 300, 64: 300, 1024: 100})
    save()
    print(markdown(report))
    print(f"wrote {stem}.json and .md", flush=True)
    return report


if __name__ == "__main__":
    main()
