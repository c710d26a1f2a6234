"""Shared pieces of the fuzz tests: mutations of a valid file's bytes, the check that a reader either
returns or raises one of its documented errors naming the file (within a time limit), and the count of
inputs tried (printed at the end of the run by conftest.py; docs/reliability.md records them).

The example counts are set so the whole fuzz lane takes well under a minute; set
``HUGECTR_LAB_FUZZ_SCALE=10`` (or any factor) to fuzz longer, ``HUGECTR_LAB_FUZZ_RANDOM=1`` to draw new
inputs instead of CI's fixed (derandomised) ones.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TRIED = collections.Counter()  # fuzz target -> inputs tried
SCALE = float(os.environ.get("HUGECTR_LAB_FUZZ_SCALE", "1"))
TIME_LIMIT_S = 10  # one input; a reader that takes longer has hung


def fuzz_settings(examples):
    """Hypothesis settings for a fuzz test of ``examples`` inputs (times SCALE)."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None,
                    derandomize=os.environ.get("HUGECTR_LAB_FUZZ_RANDOM") != "1", database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# 4-byte values that hit length fields, counts and float special cases
INTERESTING_WORDS = (0, 1, 2, 3, 4, 64, 255, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 0x7FC00000,
                     0x7F800000, 0xFF800000, 0x00010000, 0x40000000)


@st.composite
def mutated(draw, base: bytes, max_ops=4):
    """``base`` with 1..max_ops edits: bit flips, byte and aligned-word overwrites, truncation, insertion,
    deletion."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(("flip", "byte", "word", "truncate", "insert", "delete")))
        if op in ("flip", "byte", "word", "delete") and not data:
            op = "insert"
        if op == "flip":
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == "word":
            i = draw(st.integers(0, max(0, (len(data) - 4) // 4))) * 4
            data[i:i + 4] = draw(st.sampled_from(INTERESTING_WORDS)).to_bytes(4, "little")
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=12))
        else:
            i = draw(st.integers(0, len(data) - 1))
            del data[i:i + draw(st.integers(1, 12))]
    return bytes(data)


@contextlib.contextmanager
def time_limit(seconds=TIME_LIMIT_S):
    """Fail (TimeoutError) instead of hanging; SIGALRM, so the main thread only (as pytest runs tests)."""
    def hung(signum, frame):
        raise TimeoutError(f"no result after {seconds} s: the reader hangs on this input")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_clean(target, read, names, errors, ignore_warnings=()):
    """Count one input of ``target``; run ``read()``: it may return, or raise one of ``errors`` whose message
    contains one of ``names`` (the file, or its directory). Anything else fails the test."""
    TRIED[target] += 1
    names = [str(n) for n in ([names] if isinstance(names, (str, os.PathLike)) else names)]
    with time_limit(), warnings.catch_warnings():
        for category in ignore_warnings:
            warnings.simplefilter("ignore", category)
        try:
            return read()
        except errors as e:
            assert any(n in str(e) for n in names), f"{type(e).__name__} does not name {names}: {e}"
            return e


def fuzz_file(target, path, inputs, read, errors, *, examples, names=None, ignore_warnings=()):
    """Fuzz one file: write each of ``examples`` inputs (times SCALE) drawn from ``inputs`` (a strategy of
    bytes) to ``path`` and ``check_clean`` ``read()``; the error must name ``names`` (default ``path``)."""
    @fuzz_settings(examples)
    @given(data=inputs)
    def run(data):
        path.write_bytes(data)
        check_clean(target, read, path if names is None else names, errors, ignore_warnings)

    run()
