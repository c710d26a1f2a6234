"""``python -m bench.inference [--backend cupy|numpy] [--part all|latency|hitrate] [--batches ...] [--compare]
[--out DIR] [--quick] [--kernels] [--host-only]``

Two measurements of hugectr-lab's inference path, in this process on this device:

* **latency**: ``InferenceSession.predict`` of the DCN sample (26 slots, vec 16, 6 cross layers,
  2 × 1024 MLP, random weights, 840 543-row table with keys Zipf(1.1) per slot, cache 50 %), end to
  end (host arrays in, host predictions out), at batch 1, 64, 1024 and 16384: p50 / p99 of the wall
  time per call after warm-up, and throughput = batch / p50; then the throughput of 1, 2 and 4
  threads calling ``predict`` on the one session (batch 64 and 1024). On CuPy this is the captured
  predict path (``inference.cuda_graph`` true); ``--compare`` adds 3xTF32 GEMMs (``fp32_gemm``), the
  "tinylfu" cache policy, the eager path (``cuda_graph`` false) and the dense network in
  float16 (``mixed_precision`` 1024). The
  cache policies' hit rates are ``bench/cache_policy.py``.
* **hit rate**: the set-associative LRU cache (``hugectr_lab.inference.cache_ops``, the kernels on
  CuPy) on a 10 M-row table with keys Zipf(0.9 / 1.1 / 1.3), 1 / 5 / 10 / 20 % cached, against the
  ideal static top-k cache (the k most popular keys, k = the cache's entries) on the same requests.
  Requests are 1024 samples × 26 keys; the cache is warmed with large batches until it is full (or a
  cap on draws), then measured over 50 requests. Two rates: per distinct key of a request (HugeCTR's
  definition, which drives the refresh) and per key occurrence (the share of embedding fetches served
  by the cache). ``hit_rate_threshold`` 1.0 (every miss is inserted: plain LRU) unless noted.

Writes ``<out>/inference_<device>_<date>.json`` and ``.md`` with device, date and versions.
``--kernels`` (CuPy, needs torch for its profiler) prints instead where one captured predict call's GPU
time goes, kernel by kernel and copy by copy, at each ``--batches`` size; ``--host-only`` (any CPU) the
host's share of a captured-path call without its device work (``host_only``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from hugectr_lab.backend import get_backend
from hugectr_lab.config import parse_config
from hugectr_lab.embedding import write_sparse_model_file
from hugectr_lab.inference import CreateEmbeddingCache, CreateParameterServer, InferenceSession, inference_config
from hugectr_lab.inference.cache_ops import WAYS, empty_key
from hugectr_lab.layers import BuildContext, Network

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = Path(__file__).resolve().parents[1] / "tests" / "config" / "configs"
# Criteo Kaggle cardinalities (as bench/workload.py), capped at 100 000 keys per slot: 840 543 rows.
CRITEO_KAGGLE = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992,
                 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
SLOT_VOCAB = tuple(min(c, 100_000) for c in CRITEO_KAGGLE)
BATCHES = (1, 64, 1024, 16384)
ALPHAS = (0.9, 1.1, 1.3)
PERCENTAGES = (0.01, 0.05, 0.10, 0.20)
EXTRA = ((1.1, 0.10, 0.5),)   # (alpha, percentage, threshold) rows beyond the sweep: HugeCTR's default threshold


def zipf_ranks(xp, rs, n, vocab, alpha):
    """(n,) int64 ranks in [0, vocab): inverse CDF of the density y^-alpha on [1, vocab + 1), floored
    (``hugectr_lab.data.generator.draw_ranks``'s formula); rank 0 is the most popular."""
    u = rs.random_sample(n)
    e = 1.0 - alpha
    y = (1.0 + u * ((vocab + 1.0) ** e - 1.0)) ** (1.0 / e)
    return xp.clip(xp.floor(y).astype(xp.int64) - 1, 0, vocab - 1)


def device_name(backend):
    if backend.name == "cupy":
        name = backend.xp.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else name
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def versions(backend):
    out = {"python": platform.python_version(), "numpy": np.__version__}
    if backend.name == "cupy":
        out["cupy"] = backend.xp.__version__
    return out


def _sync(backend):
    backend.synchronize()


def _share(mask):
    return float(mask.sum()) / mask.size


# ---- hit rate --------------------------------------------------------------------------------------

def hit_rate(backend, alpha, percentage, *, rows=10_000_000, threshold=1.0, request=26 * 1024, measure=50,
             settle=20, warm_batch=1 << 20, max_warm_draws=400_000_000, seed=0):
    """One (alpha, percentage) point: the cache alone (no parameter server; values are 1 float)."""
    xp, ops = backend.xp, backend.ops
    num_sets = max(1, int(percentage * rows) // WAYS)
    capacity = num_sets * WAYS
    keys = xp.full(capacity, empty_key(np.uint32), dtype=xp.uint32)
    stamps = xp.zeros(capacity, dtype=xp.int64)
    values = xp.zeros((capacity, 1), dtype=xp.float32)
    rs = xp.random.RandomState(seed)
    state = dict(now=0, occupied=0)

    def step(n):
        k = zipf_ranks(xp, rs, n, rows, alpha).astype(xp.uint32)
        u, inv = xp.unique(k, return_inverse=True)
        state["now"] += 1
        _, slots = ops.embedding_cache_query(keys, stamps, values, u, state["now"])
        hit = slots >= 0
        rate = _share(hit)
        if rate < threshold:
            miss = u[~hit]
            s, ev = ops.embedding_cache_insert(keys, stamps, values, miss, xp.zeros((miss.size, 1), xp.float32),
                                               state["now"])
            state["occupied"] += int(((s >= 0) & (ev == empty_key(np.uint32))).sum())
        return k, u, inv, hit, rate

    start = time.perf_counter()
    warm_draws = 0
    while state["occupied"] < 0.99 * capacity and warm_draws < max_warm_draws:
        step(warm_batch)
        warm_draws += warm_batch
    for _ in range(settle):
        step(request)
    occupancy = state["occupied"] / capacity
    rates = []
    for _ in range(measure):
        k, u, inv, hit, rate = step(request)
        rates.append((rate, _share(hit[inv.reshape(-1)]), _share(u < capacity), _share(k < capacity)))
    _sync(backend)
    lru_u, lru_o, ideal_u, ideal_o = np.mean(rates, axis=0)
    return dict(alpha=alpha, percentage=percentage, threshold=threshold, rows=rows, capacity=capacity,
                warm_draws=warm_draws, occupancy=occupancy, requests=measure, keys_per_request=request,
                hit_rate_distinct=lru_u, ideal_distinct=ideal_u, ratio_distinct=lru_u / ideal_u,
                hit_rate_lookups=lru_o, ideal_lookups=ideal_o, ratio_lookups=lru_o / ideal_o,
                seconds=time.perf_counter() - start)


# ---- latency ---------------------------------------------------------------------------------------

def build_dcn(directory, max_batchsize, seed=0, cuda_graph=True, mixed_precision=None, fp32_gemm="fp32"):
    """The DCN sample's inference config, random dense weights and a sparse table (vec 16); ``mixed_precision``
    (HugeCTR's inference key: a loss scale such as 1024) runs its dense network in float16, ``fp32_gemm`` its
    float32 FC GEMMs in plain float32 (the default) or as 3xTF32."""
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    offsets = np.cumsum((0,) + SLOT_VOCAB)
    keys = np.arange(offsets[-1], dtype=np.uint32)
    write_sparse_model_file(directory / "dcn0_sparse.model", keys,
                            rng.uniform(-0.05, 0.05, (keys.size, 16)).astype(np.float32), key_type="I32")
    cfg = inference_config(CONFIGS / "dcn.json", str(directory / "dcn_dense.model"),
                           [str(directory / "dcn0_sparse.model")], max_batchsize=max_batchsize,
                           mixed_precision=mixed_precision)
    cfg["inference"]["cuda_graph"] = cuda_graph
    cfg["inference"]["fp32_gemm"] = fp32_gemm
    for layer in cfg["layers"]:
        if layer["type"] == "Data":
            layer["sparse"][0]["max_feature_num_per_sample"] = 26
    path = directory / (f"dcn_inference{'' if cuda_graph else '_eager'}{'_fp16' if mixed_precision else ''}"
                        f"_{fp32_gemm}.json")
    path.write_text(json.dumps(cfg))
    parsed = parse_config(str(path), require=("inference", "layers"))
    shapes = {"dense": (1, 13), "sparse_embedding1": (1, 26, 16)}
    net = Network(parsed.layers, shapes, BuildContext(training=False), first_index=2)
    net.init_weights(rng)
    net.weights.astype(np.float32).tofile(directory / "dcn_dense.model")
    return str(path), offsets


def dcn_request(rng, n, offsets, alpha=1.1):
    vocab = np.tile(np.array(SLOT_VOCAB), n)
    from hugectr_lab.data.generator import draw_ranks
    keys = (np.tile(offsets[:-1], n) + draw_ranks(rng, vocab, alpha)).astype(np.uint32)
    return (rng.random(n * 13, dtype=np.float32), keys, np.arange(n * 26 + 1, dtype=np.int64))


def warm_session(backend, directory, percentage=0.5, cuda_graph=True, policy="lru", mixed_precision=None,
                 fp32_gemm="fp32"):
    """(session, cache, key offsets, request rng) of the DCN sample, its cache warmed by 8 batches of 16384."""
    config, offsets = build_dcn(directory, max(BATCHES), cuda_graph=cuda_graph, mixed_precision=mixed_precision,
                                fp32_gemm=fp32_gemm)
    ps = CreateParameterServer([config], ["dcn"], False)
    cache = CreateEmbeddingCache(ps, 0, True, percentage, config, "dcn", False, backend=backend, cache_policy=policy)
    session = InferenceSession(config, 0, cache)
    rng = np.random.default_rng(1)
    for _ in range(8):
        session.predict(*dcn_request(rng, 16384, offsets))
    return session, cache, offsets, rng


def kernels(backend, directory, batches, calls=100):
    """Per-kernel and per-copy GPU time of one captured predict call (``bench.profile``'s table) at each
    batch size: the call's span on the GPU's timeline against its busy time shows how much of the
    latency is host work and waiting."""
    from .profile import kernel_table, print_kernels

    session, _, offsets, rng = warm_session(backend, directory)
    for batch in batches:
        requests = [dcn_request(rng, batch, offsets) for _ in range(8)]
        per_call, rows = kernel_table(lambda i: session.predict(*requests[i % len(requests)]), calls)
        print_kernels(f"predict batch {batch} (captured, lru)", per_call, rows, top=25, call="call")


def latency(backend, directory, *, repeats=None, percentage=0.5, cuda_graph=True, policy="lru",
            mixed_precision=None, fp32_gemm="fp32", batches=BATCHES, threads=(1, 2, 4)):
    session, cache, offsets, rng = warm_session(backend, directory, percentage, cuda_graph, policy, mixed_precision,
                                                fp32_gemm)
    repeats = repeats or {1: 1000, 64: 1000, 1024: 500, 16384: 30}
    rows = []
    for batch in batches:
        requests = [dcn_request(rng, batch, offsets) for _ in range(8)]
        for r in requests[:4]:              # graph of this size, kernels compiled
            session.predict(*r)
        times = []
        for i in range(repeats[batch]):
            t0 = time.perf_counter()
            out = session.predict(*requests[i % len(requests)])
            times.append(time.perf_counter() - t0)
            assert len(out) == batch
        p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
        rows.append(dict(batch=batch, calls=len(times), p50_ms=p50 * 1e3, p99_ms=p99 * 1e3,
                         samples_per_s=batch / p50))
        print(f"  batch {batch:>5}: p50 {p50 * 1e3:8.3f} ms  p99 {p99 * 1e3:8.3f} ms  {batch / p50:12,.0f} samples/s",
              flush=True)
        if session._graph is not None and batch <= session.max_batchsize:
            rows[-1]["host_us"] = phases = host_phases(session, requests, repeats[batch])
            print("               " + "  ".join(f"{k} {v:.1f}" for k, v in phases.items()) + " (µs, medians)",
                  flush=True)
    stats = cache.stats()[0]
    # what really ran: a bucket whose capture failed runs eagerly (graph_path.GraphPredictor.captured)
    buckets = session._graph.captured() if session._graph is not None else {}
    if any(how != "graph" for how in buckets.values()):
        print(f"  not every bucket replays a CUDA graph: {buckets}", flush=True)
    report = dict(cuda_graph=bool(buckets) and all(how == "graph" for how in buckets.values()),
                  graph_buckets={str(b): how for b, how in buckets.items()}, policy=policy,
                  compute_dtype=str(session.compute_dtype), fp32_gemm=fp32_gemm, rows=rows,
                  cache=dict(percentage=percentage, capacity=stats.capacity, hit_rate=stats.hit_rate,
                             last_hit_rate=stats.last_hit_rate, table_rows=int(offsets[-1])),
                  threads=[])
    for batch in (b for b in (64, 1024) if b in batches):
        requests = [dcn_request(rng, batch, offsets) for _ in range(8)]
        calls = max(8, repeats[batch] // 2)
        for count in threads:
            report["threads"].append(dict(batch=batch, threads=count, calls=calls * count,
                                          samples_per_s=_threaded(session, requests, count, calls)))
            print(f"  batch {batch:>5}, {count} threads: {report['threads'][-1]['samples_per_s']:12,.0f} samples/s",
                  flush=True)
    return report


PHASES = ("validate", "split", "stage", "launch", "wait", "finish", "tolist")


def host_phases(session, requests, calls):
    """Median µs of each phase of a one-chunk captured ``predict``, the phases called one by one as
    ``predict`` calls them: checking the inputs, splitting them by table, writing the staging buffer,
    enqueueing the graph (the copies inside it), waiting for the stream, reading the counters and
    predictions, and ``predict``'s list. ``launch`` + ``wait`` is the device's share as the host sees it."""
    times = {name: [] for name in PHASES}
    with session.embedding_cache.lock, session.backend.device(session.device_id):
        for i in range(calls):
            request = requests[i % len(requests)]
            t = [time.perf_counter()]
            dense, keys, row_ptrs = session._validate(*request, None)
            n = dense.shape[0]
            if not session._graph_checks_values(n, keys, row_ptrs):   # as predict_array decides
                session._check_values(dense, keys, row_ptrs)
            t.append(time.perf_counter())
            out = np.empty((n, session.label_dim), np.float32)
            parts = session._split_tables(keys, row_ptrs, n)
            bucket = session._graph.bucket(n)
            t.append(time.perf_counter())
            bucket.stage(dense, parts, n)
            t.append(time.perf_counter())
            bucket.launch()
            t.append(time.perf_counter())
            bucket.wait()
            t.append(time.perf_counter())
            bucket.finish(parts, n, out)
            t.append(time.perf_counter())
            out.reshape(-1).tolist()
            t.append(time.perf_counter())
            for name, start, stop in zip(PHASES, t, t[1:]):
                times[name].append(stop - start)
    return {name: float(np.median(v)) * 1e6 for name, v in times.items()}


def host_only(backend, directory, batches, calls=1000):
    """Median µs of the host's share of a captured-path ``predict`` -- checks, split, staging, statistics,
    the list -- with the device work left out: ``GraphPredictor`` on NumPy, each bucket's device call a
    no-op and its counters preset to a call that looked one key up. The Python a GPU host runs around the
    graph launch, measurable on any CPU: a before/after of host-side changes without a GPU (run both
    trees on one machine; absolute numbers depend on the host's Python speed)."""
    from hugectr_lab.inference.graph_path import GraphPredictor

    session, _, offsets, rng = warm_session(backend, directory)
    session._graph = GraphPredictor(session)
    out = {}
    for batch in batches:
        requests = [dcn_request(rng, batch, offsets) for _ in range(8)]
        session.predict(*requests[0])             # the bucket, its references run once
        bucket = session._graph.bucket(batch)
        bucket.launch = lambda: None
        bucket.outputs.h["status"][:] = 0           # not rejected,
        bucket.outputs.h["status"][:2] = 1          # one distinct key, one hit
        times = []
        for i in range(calls):
            t0 = time.perf_counter()
            session.predict(*requests[i % len(requests)])
            times.append(time.perf_counter() - t0)
        out[batch] = float(np.median(times)) * 1e6
        print(f"  batch {batch:>5}: host {out[batch]:.1f} µs per call (median of {calls})", flush=True)
    return out


def _threaded(session, requests, count, calls):
    """Samples/s of ``count`` threads each calling predict ``calls`` times on one session."""
    import threading

    start = threading.Barrier(count + 1)

    def work(w):
        start.wait()
        for i in range(calls):
            session.predict(*requests[(w + i) % len(requests)])

    workers = [threading.Thread(target=work, args=(w,)) for w in range(count)]
    for t in workers:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in workers:
        t.join()
    samples = count * calls * (len(requests[0][2]) - 1) // 26
    return samples / (time.perf_counter() - t0)


# ---- report ----------------------------------------------------------------------------------------

def markdown(report):
    lines = [f"# Inference benchmark ({report['backend']})", "",
             f"{report['device']}, {report['date']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    for lat in report.get("latency", ()):
        c = lat["cache"]
        failed = {b: how for b, how in lat.get("graph_buckets", {}).items() if how != "graph"}
        path = ("captured CUDA graph" if lat["cuda_graph"] else
                f"graph path requested, eager in buckets {failed}" if failed else "eager (no graph)") \
            if report["backend"] == "cupy" else "NumPy"
        precision = (f", {lat['compute_dtype']} network" if lat.get("compute_dtype", "float32") != "float32" else
                     ", 3xTF32 GEMMs" if lat.get("fp32_gemm") == "tf32x3" else "")
        lines += [f"## DCN sample: predict latency, {path}, cache policy {lat['policy']}{precision} "
                  "(host in / host out)", "",
                  f"Table {c['table_rows']:,} rows (vec 16), cache {c['percentage']:.0%} = {c['capacity']:,} entries, "
                  f"keys Zipf(1.1) per slot; cumulative cache hit rate {c['hit_rate']:.3f}.", "",
                  "| batch | p50 (ms) | p99 (ms) | samples/s (batch / p50) |", "|---:|---:|---:|---:|"]
        lines += [f"| {r['batch']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['samples_per_s']:,.0f} |"
                  for r in lat["rows"]]
        timed = [r for r in lat["rows"] if "host_us" in r]
        if timed:
            lines += ["", "Where a call's time goes, as the host sees it (medians in µs of each phase, called one by "
                      "one: `bench.inference.host_phases`; launch + wait is the device's share):", "",
                      "| batch | " + " | ".join(PHASES) + " |", "|---:" * (len(PHASES) + 1) + "|"]
            lines += [f"| {r['batch']} | " + " | ".join(f"{r['host_us'][k]:.1f}" for k in PHASES) + " |"
                      for r in timed]
        if lat["threads"]:
            lines += ["", "Threads calling `predict` on the one session (calls run one at a time):", "",
                      "| batch | threads | samples/s |", "|---:|---:|---:|"]
            lines += [f"| {r['batch']} | {r['threads']} | {r['samples_per_s']:,.0f} |" for r in lat["threads"]]
        lines.append("")
    if "hit_rate" in report:
        lines += ["## Cache hit rate vs the ideal static top-k cache (10 M-row table)", "",
                  "Requests of 1024 samples × 26 keys after warm-up; 'distinct' = per distinct key of a request "
                  "(HugeCTR's hit rate), 'lookups' = per key occurrence.", "",
                  "| Zipf | cached | threshold | occupancy | LRU distinct | ideal distinct | ratio | "
                  "LRU lookups | ideal lookups | ratio |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['alpha']} | {r['percentage']:.0%} | {r['threshold']} | {r['occupancy']:.3f} | "
                  f"{r['hit_rate_distinct']:.4f} | {r['ideal_distinct']:.4f} | {r['ratio_distinct']:.3f} | "
                  f"{r['hit_rate_lookups']:.4f} | {r['ideal_lookups']:.4f} | {r['ratio_lookups']:.3f} |"
                  for r in report["hit_rate"]]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="auto")
    p.add_argument("--part", default="all", choices=("all", "latency", "hitrate"))
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    p.add_argument("--max-warm-draws", type=int, default=None, help="cap on warm-up draws per hit-rate point")
    p.add_argument("--batches", type=int, nargs="*", default=BATCHES, help="latency batch sizes")
    p.add_argument("--compare", action="store_true",
                   help="CuPy: also the tinylfu policy and the eager path (inference.cuda_graph false)")
    p.add_argument("--kernels", action="store_true",
                   help="CuPy: instead, each kernel's and copy's GPU time in one predict call (torch.profiler)")
    p.add_argument("--host-only", action="store_true",
                   help="instead, the host's share of a captured-path predict without the device (NumPy, any CPU)")
    args = p.parse_args(argv)
    if args.host_only:
        with tempfile.TemporaryDirectory() as tmp:
            return host_only(get_backend("numpy"), tmp, args.batches, calls=50 if args.quick else 1000)
    backend = get_backend(args.backend)
    if args.kernels:
        with tempfile.TemporaryDirectory() as tmp:
            kernels(backend, tmp, args.batches)
        return None
    report = dict(backend=backend.name, device=device_name(backend),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  versions=versions(backend))
    print(f"{report['device']} ({backend.name}), {report['date']}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", report["device"]).strip("-").lower()
    stem = out / f"inference_{slug}_{report['date'][:10]}"

    def save():   # after every part and point, so a run cut short keeps what it measured
        stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
        stem.with_suffix(".md").write_text(markdown(report))

    if args.part in ("all", "latency"):
        print("latency (DCN sample):", flush=True)
        runs = [dict(cuda_graph=True, policy="lru")]
        if args.compare and backend.name == "cupy":
            # the eager path; the dense network in float16 (the inference clause's mixed_precision)
            runs += [dict(cuda_graph=True, policy="lru", fp32_gemm="tf32x3"), dict(cuda_graph=True, policy="tinylfu"),
                     dict(cuda_graph=False, policy="lru"), dict(cuda_graph=True, policy="lru", mixed_precision=1024)]
        report["latency"] = []
        for run in runs:
            print(f"  {run}", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                report["latency"].append(latency(backend, tmp, repeats={1: 20, 64: 20, 1024: 10, 16384: 3}
                                                 if args.quick else None, batches=tuple(args.batches), **run))
            save()
    if args.part in ("all", "hitrate"):
        print("hit rate (10 M rows):", flush=True)
        cap = args.max_warm_draws or (20_000_000 if args.quick or backend.name == "numpy" else 400_000_000)
        points = [(a, pct, 1.0) for a in ALPHAS for pct in PERCENTAGES] + list(EXTRA)
        report["hit_rate"] = []
        for alpha, pct, threshold in points:
            row = hit_rate(backend, alpha, pct, threshold=threshold, max_warm_draws=cap,
                           measure=10 if args.quick else 50)
            report["hit_rate"].append(row)
            save()
            print(f"  zipf {alpha} {pct:4.0%} thr {threshold}: occupancy {row['occupancy']:.3f}  distinct "
                  f"{row['hit_rate_distinct']:.4f}/{row['ideal_distinct']:.4f} = {row['ratio_distinct']:.3f}  "
                  f"lookups {row['hit_rate_lookups']:.4f}/{row['ideal_lookups']:.4f} = {row['ratio_lookups']:.3f}"
                  f"  ({row['seconds']:.1f} s)", flush=True)
    save()
    print(f"wrote {stem}.json and .md", flush=True)
    return report


if __name__ == "__main__":
    main()
