"""Dropout: train keeps an element where u >= rate (u ~ U[0, 1)), y = keep·x/(1 − rate), and backward
reuses the same mask and scale; eval is the identity. Each training forward draws one seed from the
build context's seeded ``numpy.random.Generator``; u is a counter-based hash of (seed, element index),
so the CUDA kernel draws the same numbers in place and no random array crosses to the device (HugeCTR
uses curand/cuDNN streams: same distribution, other numbers). The seed lives in a (1,) device array
that ``prepare`` fills before the forward, so a CUDA graph of the step (which replays the forward
without running Python) reads a fresh seed at every replay.
"""

from __future__ import annotations

import numpy as np

from ..backend import reference_op
from ..backend.scratch import CACHE_BLOCK, cache_blocks, scratch
from .base import Layer
from .registry import register_layer


_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
# NumPy hashes blocks of this many elements (``cache_blocks``), so that the hash's nine passes stay in
# the L2 cache.
_BLOCK = CACHE_BLOCK
_COUNTERS = []   # [(_BLOCK,) uint64 (i+1)·golden], read-only, shared by every NumPy step


def _counters(n):
    """(n,) uint64 (i+1)·golden mod 2**64; for n <= ``_BLOCK`` a view of one cached array."""
    if n > _BLOCK:
        return np.arange(1, n + 1, dtype=np.uint64) * np.uint64(_GOLDEN)
    if not _COUNTERS or _COUNTERS[0].size < n:
        base = np.arange(1, _BLOCK + 1, dtype=np.uint64)
        base *= np.uint64(_GOLDEN)   # wraps mod 2**64
        base.flags.writeable = False
        _COUNTERS[:] = [base]
    return _COUNTERS[0][:n]


def dropout_bits(xp, seed, n, start=0):
    """(n,) uint64 splitmix64(seed + (start+i+1)·golden) for i < n: the hash of flat indices start..start+n-1
    (its top 24 bits are the uniform number). ``seed``: (1,) uint64. On NumPy the result lives in a
    reused buffer, valid until the next call."""
    u64 = xp.uint64
    if xp is np:
        size = max(n, _BLOCK)
        offset = u64((int(seed[0]) + start * _GOLDEN) & _MASK64)   # seed + start·golden, mod 2**64
        x = np.add(_counters(n), offset, out=scratch(np, "dropout bits", (size,), u64)[:n])
        t = scratch(np, "dropout shifted", (size,), u64)[:n]
    else:
        x = seed.astype(u64) + xp.arange(start + 1, start + n + 1, dtype=u64) * u64(_GOLDEN)
        t = xp.empty_like(x)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None)):
        xp.right_shift(x, u64(shift), out=t)
        x ^= t
        if mult is not None:
            x *= u64(mult)
    return x


def dropout_uniform(xp, seed, shape):
    """float32 in [0, 1) of ``shape``: the top 24 bits of splitmix64(seed + (i+1)·golden) per flat index i.
    ``seed``: (1,) uint64 array."""
    n = int(np.prod(shape))
    if xp is np:
        x = np.empty(n, np.uint64)
        for block in cache_blocks(np, n, _BLOCK):
            x[block] = dropout_bits(np, seed, block.stop - block.start, block.start)
    else:
        x = dropout_bits(xp, seed, n)
    return ((x >> xp.uint64(40)).astype(xp.float32) * xp.float32(1.0 / (1 << 24))).reshape(shape)


def _keep_threshold(rate):
    """The least k in [0, 2**24] with float32(k / 2**24) >= rate under NumPy's comparison rules, so that
    ``u >= rate`` equals ``bits >= k << 40`` bit for bit (u = top 24 bits / 2**24 is exact in float32)."""
    k = min(max(int(np.ceil(float(rate) * (1 << 24))) - 1, 0), 1 << 24)
    u = np.arange(k, k + 3, dtype=np.float32) * np.float32(1.0 / (1 << 24))
    return k + int(np.argmax(u >= rate))


def apply_dropout(xp, x, seed, rate, out=None, keep_mask=False):
    """``(x·mask, mask or None)``: mask = (u >= rate)/(1 − rate) in x's dtype, u = dropout_uniform(seed),
    ``seed`` a (1,) uint64 array; the product goes into ``out`` when given (it may be ``x``), the mask is
    returned only with ``keep_mask``. The comparison runs on the hash's integer bits (same result)."""
    threshold = xp.uint64(_keep_threshold(rate) << 40)
    scale = x.dtype.type(1.0 / (1.0 - rate))
    if xp is not np:
        mask = xp.multiply(dropout_bits(xp, seed, x.size).reshape(x.shape) >= threshold, scale, dtype=x.dtype)
        return xp.multiply(x, mask, out=out), mask if keep_mask else None
    y = np.empty(x.shape, x.dtype) if out is None else out
    mask = np.empty(x.shape, x.dtype) if keep_mask else None
    x_flat, y_flat = x.reshape(-1), y.reshape(-1)   # y, mask: C order, so flat views
    mask_flat = mask.reshape(-1) if keep_mask else scratch(np, "dropout mask", (_BLOCK,), x.dtype)
    keep = scratch(np, "dropout keep", (_BLOCK,), bool)
    for block in cache_blocks(np, x.size, _BLOCK):   # block by block: the hash's temporaries stay in cache
        start, stop = block.start, block.stop
        k = np.greater_equal(dropout_bits(np, seed, stop - start, start), threshold, out=keep[:stop - start])
        m = np.multiply(k, scale, out=mask_flat[start:stop] if keep_mask else mask_flat[:stop - start])
        np.multiply(x_flat[start:stop], m, out=y_flat[start:stop])
    return y, mask


@reference_op
def dropout_fwd(xp, x, seed, rate):
    """``(y, mask)``: mask = (u >= rate)/(1 − rate) in x's dtype, y = x·mask; u = dropout_uniform(seed),
    ``seed`` a (1,) uint64 array. The comparison runs on the hash's integer bits (same result)."""
    return apply_dropout(xp, x, seed, rate, keep_mask=True)


@register_layer("Dropout")
class Dropout(Layer):
    def __init__(self, rate=0.5):
        self.rate = rate

    def _build(self, shapes):
        if not (isinstance(self.rate, (int, float)) and 0 <= self.rate < 1):
            raise self.error(f"rate (the drop probability) must be in [0, 1), got {self.rate!r}")
        self._seed = self.xp.zeros(1, dtype=np.uint64)
        self._seeded_by_network = False
        return [shapes[0]]

    def _draw(self):
        self.ctx.backend.write(self._seed, self.ctx.rng.integers(0, 1 << 62))   # one launch on a GPU

    def prepare(self, training):
        # From the first call on, the Network draws the seeds: a forward that runs twice for one step
        # (a failed CUDA graph capture, then the eager run) then uses one mask.
        self._seeded_by_network = True
        if training:
            self._draw()

    def forward_seed(self):
        """The (1,) uint64 seed of this training forward's mask: drawn here when no Network prepared the
        layer (driven directly: a new mask per forward). A fused epilogue (``fusion.DenseChain``) reads it."""
        if not self._seeded_by_network:
            self._draw()
        return self._seed

    def forward(self, inputs, training):
        (x,) = inputs
        if not training:
            return [x]
        self.forward_seed()
        return [self.apply(x)]

    def apply(self, x):
        """x with the current seed's mask, kept for backward (a fused chain's members re-run with it)."""
        y, self.mask = self.ctx.backend.ops.dropout_fwd(x, self._seed, self.rate)
        return y

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        return [d_y * self.mask]
