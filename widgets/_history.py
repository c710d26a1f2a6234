"""``BinnedHistory``: a bounded, evenly downsampled record of a long run, for live plots.

Every appended record lands in a bin of ``stride`` consecutive records; a finished bin becomes one
point (the mean of each field, the bin's last iteration, its record count). When ``capacity`` points
are held, neighbouring points merge pairwise and the stride doubles, so the points always cover the
whole run in equal bins, memory stays at most ``capacity`` points and an append costs O(1) amortised
-- a million iterations are drawn from at most ``capacity`` points. The unfinished bin is reported as
a last, partial point, so the newest iteration is always shown.
"""

from __future__ import annotations

import threading


class BinnedHistory:
    """``BinnedHistory(fields, capacity=2000)``; ``append(iteration, **values)``; ``points()`` → dicts of
    ``iteration``, ``count`` and each field; ``len()`` is the number of points, ``records`` of appends."""

    def __init__(self, fields, capacity=2000):
        if capacity < 2 or capacity % 2:
            raise ValueError(f"a history keeps an even number >= 2 of points (history_points), got {capacity!r}")
        self.fields, self.capacity = tuple(fields), int(capacity)
        self.stride, self.records = 1, 0
        self._points = []                        # [iteration, count, sum of each field]
        self._bin = None                         # the unfinished bin, same layout
        self._lock = threading.Lock()

    def append(self, iteration, **values):
        with self._lock:
            self.records += 1
            row = self._bin
            if row is None:
                row = self._bin = [iteration, 0] + [0.0] * len(self.fields)
            row[0] = iteration
            row[1] += 1
            for i, name in enumerate(self.fields, 2):
                row[i] += values[name]
            if row[1] == self.stride:
                self._points.append(row)
                self._bin = None
                if len(self._points) == self.capacity:
                    self._merge()

    def _merge(self):
        merged = []
        for a, b in zip(self._points[::2], self._points[1::2]):
            merged.append([b[0], a[1] + b[1]] + [x + y for x, y in zip(a[2:], b[2:])])
        self._points = merged
        self.stride *= 2

    def points(self) -> list:
        """The points, oldest first (the partial bin last), as dicts; field values are bin means."""
        with self._lock:
            rows = self._points + ([self._bin] if self._bin is not None else [])
            return [{"iteration": r[0], "count": r[1], **{f: s / r[1] for f, s in zip(self.fields, r[2:])}}
                    for r in rows]

    def __len__(self):
        return len(self._points) + (self._bin is not None)

    def clear(self):
        with self._lock:
            self._points, self._bin, self.stride, self.records = [], None, 1, 0
