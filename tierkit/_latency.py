"""Per-tier operation latency, sampled: opt-in with the ``latency_sampling`` setting.

With ``latency_sampling = N`` the chain times one tier call in N (per tier) and adds it to
a histogram per operation (``get``, ``set``, ``get_many`` …).  Hits served by the first
tier's front door (the memory tier's fused ``get``) are never timed: a hit costs about
0.1 µs, and timing it would double that.  Every other tier call can be.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

BUCKETS: tuple[float, ...] = (
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5,
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
"""Upper bounds in seconds (Prometheus ``le``), from a local call to a slow network one; +Inf is implied."""


class Histogram:
    """Counts of durations per bucket, their sum and count (updated under a lock: samples are rare)."""

    __slots__ = ("_lock", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.counts[bisect_left(BUCKETS, seconds)] += 1
            self.sum += seconds

    def report(self) -> dict[str, Any]:
        """``{"count", "sum", "buckets": {le: cumulative count}}`` with ``"+Inf"`` last."""
        with self._lock:
            counts, total = list(self.counts), self.sum
        cumulative, buckets = 0, {}
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
            cumulative += count
            buckets[bound] = cumulative
        return {"count": cumulative, "sum": total, "buckets": buckets}


class Latency:
    """The histograms of one tier, by operation, and the sampling countdown."""

    __slots__ = ("countdown", "every", "histograms", "listeners")

    def __init__(self, every: int) -> None:
        self.every = every
        self.countdown = 1  # the first call is timed, then one in ``every``
        self.histograms: dict[str, Histogram] = {}
        self.listeners: list[Callable[[str, float], object]] = []
        """Called with (operation, seconds) for each sample (an OpenTelemetry histogram records it)."""

    def observe(self, operation: str, seconds: float) -> None:
        histogram = self.histograms.get(operation)
        if histogram is None:
            histogram = self.histograms.setdefault(operation, Histogram())
        histogram.observe(seconds)
        for listener in self.listeners:
            listener(operation, seconds)

    def report(self) -> dict[str, dict[str, Any]]:
        return {operation: h.report() for operation, h in sorted(self.histograms.items())}
