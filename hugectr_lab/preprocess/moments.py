"""Normalize's statistics, summed exactly, so that they do not depend on how an engine splits the input.

Both engines feed the dense columns (after FillMissing, Clip and LogOp) to ``ExactMoments`` chunk by
chunk (the pyarrow engine per CSV block, the NVTabular engine per dask partition inside its Normalize
op) and apply ``normalize`` with the result, so the two write the same bits whatever their chunking.

* Sums (``exact_sums``): error-free extraction -- each level splits every value into a part on a grid
  coarse enough that float64 sums it exactly and an exact remainder -- with each level's sum added
  to one Python integer per column (units of 2**-1126, so every float64 is an integer). Squares
  (``exact_square_sums``): ``x*x`` when it is exact (float32 data), else Dekker's split into three
  exact products. Chunk results add as integers, so any split of the rows gives the same sums.
* Statistics (``finalize``): ``mean = sum / n`` and ``std = sqrt((sum_sq - sum**2 / n) / (n - 1))``
  (NVTabular's: the sample standard deviation, ddof=1) evaluated exactly and each rounded once to
  float64 (correctly rounded, as Python's ``statistics.mean`` / ``statistics.stdev``). NaN values are
  skipped (pandas' ``count``/``sum``, as NVTabular's moments); n < 2 gives std NaN (as NVTabular).
* ``normalize``: ``(x - mean) / std`` in float64, rounded once to float32; ``x - mean`` where std is not
  > 0 (zero, or NaN) -- NVTabular's Normalize rule.

Memory: per chunk, a few float64 temporaries of the chunk's size (up to three times it for squares of
float64 data that are not exact in float64); the state is two integers of a few thousand bits per column.
"""

from __future__ import annotations

import math

import numpy as np

_SHIFT = 1126  # float64 values are integer multiples of 2**-1074; frexp's mantissa * 2**53 needs 52 more bits
_ROWS = 1 << 24  # rows per extraction pass (each level then captures >= 25 bits)
_TINY, _HUGE = 2.0 ** -900, 2.0 ** 900  # outside: the binned path (the extraction grid stays normal, finite)
_HALF = 27  # bits of the low half of a mantissa (binned path)
_SLICE = 1 << 26  # values per bincount pass: |sum of 2**27-bounded halves| stays below 2**53 (exact)
_SPLIT = float((1 << 27) + 1)  # Dekker/Veltkamp splitter for 53-bit floats
_SAFE_MIN, _SAFE_MAX = 2.0 ** -400, 2.0 ** 440  # |x| where hi*hi, 2*hi*lo and lo*lo are exact, < 2**900


def _units(value):
    """A float64 as an integer in units of 2**-1126 (exact)."""
    mantissa, exponent = math.frexp(value)
    return int(mantissa * 2.0 ** 53) << (exponent - 53 + _SHIFT)


def exact_sums(x, overwrite=False):
    """Exact column sums of a finite float64 matrix, as Python integers in units of 2**-1126 (``overwrite``:
    ``x`` may be used as scratch).  # x (n, k)

    Error-free extraction (Rump, Ogita & Oishi, "Accurate floating-point summation", 2008): with
    ``sigma = 2**k >= 4 n max|r|``, ``q = (sigma + r) - sigma`` and ``r - q`` are exact, every ``q``
    is a multiple of 2**(k-53) and every partial sum of the ``q`` is below ``sigma``, so ``q.sum()`` is
    exact in any order; repeat on the remainders until they are zero (one or two levels for float32
    data). Values beyond 2**900, or remainders below 2**-900, go to the binned path."""
    x = np.asarray(x, np.float64)
    n, k = x.shape
    sums = [0] * k
    if n == 0 or k == 0:
        return sums
    for start in range(0, n, _ROWS):
        rest = x[start:start + _ROWS]
        top = np.maximum(rest.max(axis=0), -rest.min(axis=0))
        if top.max() > _HUGE:
            sums = [a + b for a, b in zip(sums, _binned_sums(rest))]
            continue
        spread = (len(rest) - 1).bit_length() + 2  # 2**spread >= 4 n
        rest, q = (rest if overwrite else rest.copy()), np.empty_like(rest)
        while True:
            if top[top > 0].min(initial=np.inf) < _TINY:
                sums = [a + b for a, b in zip(sums, _binned_sums(rest))]
                break
            sigma = np.ldexp(1.0, np.frexp(top)[1] + spread)  # (k,) top < 2**exponent
            np.add(rest, sigma, out=q)
            q -= sigma
            rest -= q
            sums = [a + (_units(t) if t else 0) for a, t in zip(sums, q.sum(axis=0).tolist())]
            if not np.count_nonzero(rest):
                break
            top = np.maximum(rest.max(axis=0), -rest.min(axis=0))
    return sums


def _binned_sums(x):
    """``exact_sums`` for any finite values: every float64 is ``m * 2**(e - 53)`` with an integer
    |m| < 2**53; the ``m`` are binned by column and exponent and summed exactly in two float64 bincounts
    over 27-bit halves (exact below 2**53), then shifted into one integer per column."""
    n, k = x.shape
    sums = [0] * k
    rows = max(1, _SLICE // k)
    for start in range(0, n, rows):
        mantissa, exponent = np.frexp(x[start:start + rows])
        m = (mantissa * 2.0 ** 53).astype(np.int64)  # exact: value = m * 2**(exponent - 53)
        low = exponent.min()
        width = int(exponent.max()) - int(low) + 1
        bins = (np.arange(k, dtype=np.int64) * width + (exponent.astype(np.int64) - low)).ravel()
        high = np.bincount(bins, weights=(m >> _HALF).ravel().astype(np.float64), minlength=k * width)
        rest = np.bincount(bins, weights=(m & ((1 << _HALF) - 1)).ravel().astype(np.float64), minlength=k * width)
        for b in np.flatnonzero((high != 0) | (rest != 0)).tolist():
            column, e = divmod(b, width)
            total = (int(high[b]) << _HALF) + int(rest[b])
            sums[column] += total << (int(low) + e - 53 + _SHIFT)
    return sums


def exact_square_sums(x):
    """Exact column sums of squares of a finite float32 or float64 matrix, as Python integers in units
    of 2**-2252.  # x (n, k)

    Dekker's split ``x = hi + lo`` (26 bits each) makes ``hi*hi``, ``2*hi*lo`` and ``lo*lo`` exact;
    where every ``lo`` is 0 (integers below 2**26, say) or ``x`` is float32, ``x*x`` itself is exact. Values outside
    2**-400 <= |x| <= 2**440 are squared in Python integers."""
    if x.dtype == np.float32:  # 24-bit mantissas: x*x is exact in float64
        x = x.astype(np.float64)
        return [s << _SHIFT for s in exact_sums(x * x, overwrite=True)]
    x = np.asarray(x, np.float64)
    n, k = x.shape
    magnitude = np.abs(x)
    unsafe = (magnitude > _SAFE_MAX) | ((magnitude < _SAFE_MIN) & (magnitude > 0))
    safe = np.where(unsafe, 0.0, x) if unsafe.any() else x
    c = _SPLIT * safe
    hi = c - (c - safe)
    lo = safe - hi
    if lo.any():
        parts = exact_sums(np.concatenate([hi * hi, 2.0 * hi * lo, lo * lo], axis=1), overwrite=True)  # (n, 3k)
        sums = [(parts[j] + parts[k + j] + parts[2 * k + j]) << _SHIFT for j in range(k)]
    else:
        sums = [s << _SHIFT for s in exact_sums(safe * safe, overwrite=True)]
    for row, column in zip(*np.nonzero(unsafe)):
        mantissa, exponent = math.frexp(float(x[row, column]))
        m = int(mantissa * 2.0 ** 53)
        sums[column] += (m * m) << (2 * (exponent - 53 + _SHIFT))
    return sums


def sqrt_fraction(numerator, denominator):
    """sqrt(numerator / denominator) correctly rounded to float64 (integers, numerator >= 0 < denominator)."""
    if numerator == 0:
        return 0.0
    # scale by 4**-shift so the integer square root has >= 55 bits, then round to odd (a sticky bit)
    shift = (numerator.bit_length() - denominator.bit_length() - 112) // 2
    if shift >= 0:
        n, d = numerator, denominator << (2 * shift)
    else:
        n, d = numerator << (-2 * shift), denominator
    root = math.isqrt(n // d)
    if root * root * d != n:
        root |= 1
    return math.ldexp(float(root), shift)


class ExactMoments:
    """Count, exact sum and exact sum of squares per column, added chunk by chunk (``add``), merged
    (``merge``) and turned into float64 means and standard deviations (``finalize``)."""

    def __init__(self, columns):
        self.columns = int(columns)
        self.count = [0] * self.columns
        self.sum = [0] * self.columns  # units of 2**-1126
        self.sum_sq = [0] * self.columns  # units of 2**-2252
        self.special = [0.0] * self.columns  # sum of the infinite values (inf, -inf or nan)

    def add(self, x):
        """Add rows.  # x (n, columns) float32 or float64; NaN skipped"""
        x = np.asarray(x)
        if x.dtype != np.float32:
            x = x.astype(np.float64, copy=False)
        if x.ndim == 1:
            x = x[:, None]
        if x.shape[1] != self.columns:
            raise ValueError(f"expected {self.columns} columns, got {x.shape[1]}")
        counts = [len(x)] * self.columns
        if not np.isfinite(x.sum(axis=0)).all():  # a NaN or an infinity (or an overflowing sum)
            missing, infinite = np.isnan(x), np.isinf(x)
            counts = (~missing).sum(axis=0).tolist()
            for j in np.flatnonzero(infinite.any(axis=0)).tolist():
                self.special[j] += float(x[infinite[:, j], j].astype(np.float64).sum())
            x = np.where(missing | infinite, x.dtype.type(0), x)
        for j, (s, q) in enumerate(zip(exact_sums(x), exact_square_sums(x))):
            self.count[j] += int(counts[j])
            self.sum[j] += s
            self.sum_sq[j] += q
        return self

    def merge(self, other):
        for j in range(self.columns):
            self.count[j] += other.count[j]
            self.sum[j] += other.sum[j]
            self.sum_sq[j] += other.sum_sq[j]
            self.special[j] += other.special[j]
        return self

    @classmethod
    def combine(cls, parts, columns):
        total = cls(columns)
        for part in parts:
            total.merge(part)
        return total

    def finalize(self):
        """(means, stds), float64 (columns,) each: the exact statistics rounded once."""
        means, stds = np.full(self.columns, np.nan), np.full(self.columns, np.nan)
        for j in range(self.columns):
            n = self.count[j]
            if self.special[j] != 0:  # an infinite value: the mean is +-inf (or nan), the std nan
                means[j] = self.special[j]
                continue
            if n == 0:
                continue
            means[j] = self.sum[j] / (n << _SHIFT)  # int / int: correctly rounded
            if n >= 2:
                # var = (S2 - S1**2 / n) / (n - 1) with S1 = sum * 2**-1126, S2 = sum_sq * 2**-2252
                stds[j] = sqrt_fraction(n * self.sum_sq[j] - self.sum[j] ** 2, (n * (n - 1)) << (2 * _SHIFT))
        return means, stds


def normalize(x, mean, std):
    """NVTabular's Normalize rule in float64, rounded once: ``(x - mean) / std`` if std > 0, else
    ``x - mean``.  # x (n,) -> (n,) float32"""
    y = np.asarray(x, np.float64) - np.float64(mean)
    if std > 0:
        y = y / np.float64(std)
    return y.astype(np.float32)


def partition_moments(df, columns):
    """ExactMoments of a dataframe partition's ``columns`` (the NVTabular engine's per-partition step)."""
    return ExactMoments(len(columns)).add(np.stack([df[c].to_numpy() for c in columns], axis=1) if len(df) else
                                          np.zeros((0, len(columns))))
