"""Which Python lines launched which kernels, from a ``torch.profiler`` Chrome trace (``bench.profile --origins``).

A kernel event carries the CUPTI correlation id of the runtime or driver call that launched it; that call ran
inside the Python calls (``python_function`` events, recorded with ``with_stack=True``) open at its start. The
innermost two hugectr_lab frames around it name where the kernel comes from.
"""

from __future__ import annotations

from collections import defaultdict

LAUNCH_CATEGORIES = ("cuda_runtime", "cuda_driver")


def kernel_origins(events, pattern, calls, package="hugectr_lab"):
    """{(kernel name, 'innermost frame <- its caller'): [ms per call, launches per call]} of the kernels whose
    names contain ``pattern`` among the complete ("X") Chrome-trace ``events`` of ``calls`` calls."""
    events = [e for e in events if e.get("ph") == "X"]
    launches = {e["args"]["correlation"]: e["ts"] for e in events
                if e.get("cat") in LAUNCH_CATEGORIES and "correlation" in e.get("args", {})}
    frames = [(e["ts"], e["ts"] + e["dur"], e["name"]) for e in events
              if e.get("cat") == "python_function" and package in e["name"]]
    out = defaultdict(lambda: [0.0, 0.0])
    for e in events:
        if e.get("cat") != "kernel" or pattern not in e["name"]:
            continue
        t = launches.get(e.get("args", {}).get("correlation"))
        inside = sorted((f for f in frames if t is not None and f[0] <= t <= f[1]), key=lambda f: -f[0])
        where = " <- ".join(f[2].split(package + "/")[-1] for f in inside[:2]) or f"(no {package} frame)"
        row = out[(e["name"][:60], where)]
        row[0] += e["dur"] / 1e3 / calls
        row[1] += 1 / calls
    return dict(out)
