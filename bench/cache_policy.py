"""``python -m bench.cache_policy [--rows N] [--requests N] [--out DIR] [--quick]``

The embedding cache's policies against the ideal static top-k cache, with the real ``EmbeddingCache``
(NumPy reference ops; deterministic, so any CPU gives the same table):

* a table of ``rows`` keys (default 1 M, vec 1), requests of 1024 samples × 26 keys drawn Zipf(0.9 /
  1.1 / 1.3) over the keys' popularity ranks (rank → key through a fixed random permutation);
* 1 / 5 / 10 / 20 % cached, ``hit_rate_threshold`` 1.0 (every lookup refreshes), policies "lru"
  (HugeCTR's) and "tinylfu";
* warm-up requests, then measured requests: the hit rate per distinct key of a request (HugeCTR's
  ``last_hit_rate``) and per key occurrence, against the static cache of the k most popular keys
  (k = the cache's entries) on the same requests;
* a traffic shift: after the measured requests, the rank → key permutation changes (a new hot set)
  and the hit rate is followed over windows of requests against the new ideal.

Writes ``<out>/cache_policy_<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from hugectr_lab.data.generator import draw_ranks
from hugectr_lab.embedding import write_sparse_model_file
from hugectr_lab.inference import CreateEmbeddingCache, CreateParameterServer, inference_config

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = Path(__file__).resolve().parents[1] / "tests" / "config" / "configs"
ALPHAS = (0.9, 1.1, 1.3)
PERCENTAGES = (0.01, 0.05, 0.10, 0.20)
POLICIES = ("lru", "tinylfu")
REQUEST = 26 * 1024


def build_table(directory, rows):
    """An inference config whose one table holds keys 0..rows-1 (vec 1); returns its path."""
    directory = Path(directory)
    write_sparse_model_file(directory / "table.model", np.arange(rows, dtype=np.uint32),
                            np.zeros((rows, 1), np.float32), key_type="I32")
    cfg = inference_config(CONFIGS / "dcn.json", str(directory / "dense.model"), [str(directory / "table.model")],
                           hit_rate_threshold=1.0)
    for layer in cfg["layers"]:
        if "sparse_embedding_hparam" in layer:
            layer["sparse_embedding_hparam"]["embedding_vec_size"] = 1
    path = directory / "table.json"
    path.write_text(json.dumps(cfg))
    return str(path)


class Traffic:
    """Requests of Zipf-ranked keys (popularity ranks by the generator's ``draw_ranks``, rank 0 the most
    popular); ``shift()`` maps the ranks to a new random set of keys."""

    def __init__(self, rows, alpha, seed):
        self.rows, self.alpha = rows, alpha
        self.vocab = np.full(REQUEST, rows)       # one rank in [0, rows) per key of a request
        self.rng = np.random.default_rng(seed)
        self.shift()

    def shift(self):
        self.key_of_rank = self.rng.permutation(self.rows).astype(np.uint32)

    def request(self):
        ranks = draw_ranks(self.rng, self.vocab, self.alpha)
        return self.key_of_rank[ranks], ranks


def measure(cache, traffic, requests, capacity):
    """Mean (distinct, ideal distinct, lookups, ideal lookups) hit rates over ``requests`` requests."""
    out = []
    for _ in range(requests):
        keys, ranks = traffic.request()
        cached = np.isin(keys, cache.cached_keys())
        found = cache.lookup([keys])[0]
        ideal = ranks < capacity
        first = np.unique(keys, return_index=True)[1]
        out.append((found.hit_rate, ideal[first].mean(), cached.mean(), ideal.mean()))
    return np.mean(out, axis=0)


def run_point(config, ps, alpha, percentage, policy, *, warm, requests, windows, seed=0):
    cache = CreateEmbeddingCache(ps, 0, True, percentage, config, "m", False, backend="numpy", cache_policy=policy)
    capacity = cache.capacity()
    traffic = Traffic(ps.model("m").tables[0].rows, alpha, seed)
    start = time.perf_counter()
    for _ in range(warm):
        cache.lookup([traffic.request()[0]])
    dist, ideal_dist, look, ideal_look = measure(cache, traffic, requests, capacity)
    traffic.shift()
    shift = [measure(cache, traffic, size, capacity)[:2].tolist() for size in windows]
    return dict(alpha=alpha, percentage=percentage, policy=policy, capacity=capacity,
                occupancy=cache.stats()[0].occupancy, warm_requests=warm, requests=requests,
                hit_rate_distinct=dist, ideal_distinct=ideal_dist, ratio_distinct=dist / ideal_dist,
                hit_rate_lookups=look, ideal_lookups=ideal_look, ratio_lookups=look / ideal_look,
                shift_windows=list(windows), shift=[(h, i, h / i) for h, i in shift],
                seconds=time.perf_counter() - start)


def markdown(report):
    lines = ["# Cache policies vs the ideal static top-k cache", "",
             f"{report['date']}; NumPy reference ops (deterministic); python {report['python']}, "
             f"numpy {report['numpy']}.", "",
             f"Table of {report['rows']:,} keys; requests of 1024 samples × 26 keys; {report['warm']} warm-up "
             f"requests, then {report['requests']} measured; `hit_rate_threshold` 1.0. 'distinct' = per distinct "
             "key of a request (HugeCTR's hit rate), 'lookups' = per key occurrence; ratio = policy / ideal.", "",
             "| Zipf | cached | policy | occupancy | distinct | ideal | ratio | lookups | ideal | ratio |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["points"]:
        lines.append(f"| {r['alpha']} | {r['percentage']:.0%} | {r['policy']} | {r['occupancy']:.3f} | "
                     f"{r['hit_rate_distinct']:.4f} | {r['ideal_distinct']:.4f} | **{r['ratio_distinct']:.3f}** | "
                     f"{r['hit_rate_lookups']:.4f} | {r['ideal_lookups']:.4f} | {r['ratio_lookups']:.3f} |")
    windows = report["points"][0]["shift_windows"]
    edges = np.cumsum(windows)
    lines += ["", "## Traffic shift", "",
              "After the measured requests the hot set changes (a new random rank → key mapping); per-distinct-key "
              "ratio to the new ideal over consecutive windows of requests after the shift:", "",
              "| Zipf | cached | policy | " + " | ".join(f"requests {a - w + 1}–{a}" for a, w in zip(edges, windows))
              + " |", "|---:|---:|---|" + "---:|" * len(windows)]
    for r in report["points"]:
        lines.append(f"| {r['alpha']} | {r['percentage']:.0%} | {r['policy']} | "
                     + " | ".join(f"{ratio:.3f}" for _, _, ratio in r["shift"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--warm", type=int, default=2000, help="warm-up requests per point")
    p.add_argument("--requests", type=int, default=100, help="measured requests per point")
    p.add_argument("--alphas", type=float, nargs="*", default=ALPHAS)
    p.add_argument("--percentages", type=float, nargs="*", default=PERCENTAGES)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--quick", action="store_true", help="a small smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.warm, args.requests = 100_000, 20, 5
    windows = (10, 40, 150) if not args.quick else (2, 3)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report = dict(date=date, python=platform.python_version(), numpy=np.__version__, rows=args.rows,
                  warm=args.warm, requests=args.requests, points=[])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"cache_policy_{date[:10]}"
    with tempfile.TemporaryDirectory() as tmp:
        config = build_table(tmp, args.rows)
        ps = CreateParameterServer([config], ["m"], False)
        for alpha in args.alphas:
            for pct in args.percentages:
                for policy in POLICIES:
                    r = run_point(config, ps, alpha, pct, policy, warm=args.warm, requests=args.requests,
                                  windows=windows)
                    report["points"].append(r)
                    print(f"zipf {alpha} {pct:4.0%} {policy:8s} occupancy {r['occupancy']:.3f} distinct "
                          f"{r['hit_rate_distinct']:.4f}/{r['ideal_distinct']:.4f} = {r['ratio_distinct']:.3f}  "
                          f"lookups {r['ratio_lookups']:.3f}  shift "
                          + " ".join(f"{x[2]:.3f}" for x in r["shift"]) + f"  ({r['seconds']:.0f} s)", flush=True)
                    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
                    stem.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {stem}.json and .md")
    return report


if __name__ == "__main__":
    main()
