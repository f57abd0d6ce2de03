"""Paired, interleaved timing: the only kind of figure that survives a shared, noisy machine.

Each side of a pair is a *batch* function ``batch(n)`` that performs ``n`` operations in a
tight loop.  Both sides get the same ``n``.  Rounds alternate which side goes first
(A B, B A, A B …), so a slow phase of the machine hits both sides alike.  Per side we
keep the per-operation time of every round; the ratio reported is
``median(tierkit) / median(peer)``, and the spread of the per-round ratios (p25-p75)
tells how far that figure can be trusted.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Batch = Callable[[int], object]
"""Runs ``n`` operations."""


@dataclass(frozen=True)
class Mode:
    """How long to measure: ``rounds`` interleaved batches of about ``batch_seconds`` each."""

    name: str
    rounds: int
    batch_seconds: float
    warmup_seconds: float
    attempts: int = 1
    """A pair whose per-round ratios spread wider than ``steady`` (p75 / p25) is measured
    again, up to this many times; the steadiest attempt is kept, every attempt recorded."""
    steady: float = 1.15


FULL = Mode("full", rounds=41, batch_seconds=0.01, warmup_seconds=0.1, attempts=4)
QUICK = Mode("quick", rounds=3, batch_seconds=0.002, warmup_seconds=0.005)


@dataclass
class PairResult:
    """The outcome of one tierkit-vs-peer comparison (times in seconds per operation)."""

    key: str
    workload: str
    tierkit_label: str
    peer_label: str
    target: float | None
    stretch: float | None
    ops_per_batch: int
    rounds: int
    tierkit_times: list[float]
    peer_times: list[float]
    note: str = ""
    info: bool = False
    """An informational row: reported, not held to a target."""
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tierkit(self) -> float:
        return statistics.median(self.tierkit_times) if self.tierkit_times else float("nan")

    @property
    def peer(self) -> float:
        return statistics.median(self.peer_times) if self.peer_times else float("nan")

    @property
    def ratio(self) -> float:
        return self.tierkit / self.peer if self.peer_times else float("nan")

    @property
    def paired_ratios(self) -> list[float]:
        return [t / p for t, p in zip(self.tierkit_times, self.peer_times, strict=True)]

    @property
    def paired_median(self) -> float:
        """Median of the per-round ratios: a cross-check of :attr:`ratio` (they differ when noisy)."""
        ratios = self.paired_ratios
        return statistics.median(ratios) if ratios else float("nan")

    @property
    def spread(self) -> tuple[float, float]:
        """p25 and p75 of the per-round ratios."""
        ratios = sorted(self.paired_ratios)
        if not ratios:
            return (float("nan"), float("nan"))
        if len(ratios) < 4:
            return (ratios[0], ratios[-1])
        q = statistics.quantiles(ratios, n=4, method="inclusive")
        return (q[0], q[2])

    @property
    def width(self) -> float:
        """p75 / p25 of the per-round ratios: 1.0 for a perfectly steady measurement."""
        low, high = self.spread
        return high / low if low > 0 else float("inf")

    @property
    def met(self) -> bool | None:
        if self.skipped or self.target is None:
            return None
        return self.ratio <= self.target

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "workload": self.workload,
            "tierkit_label": self.tierkit_label,
            "peer_label": self.peer_label,
            "target": self.target,
            "stretch": self.stretch,
            "info": self.info,
            "skipped": self.skipped,
            "note": self.note,
            "ops_per_batch": self.ops_per_batch,
            "rounds": self.rounds,
            "tierkit_s": None if self.skipped else self.tierkit,
            "peer_s": None if self.skipped else self.peer,
            "ratio": None if self.skipped else self.ratio,
            "ratio_p25_p75": None if self.skipped else list(self.spread),
            "paired_median": None if self.skipped else self.paired_median,
            "met": self.met,
            "tierkit_times_s": self.tierkit_times,
            "peer_times_s": self.peer_times,
            "extra": self.extra,
        }


def _timed(batch: Batch, n: int) -> float:
    start = time.perf_counter()
    batch(n)
    return time.perf_counter() - start


def calibrate(batches: Sequence[Batch], seconds: float) -> int:
    """Operations per batch so that the slowest side's batch takes about ``seconds``."""
    n = 1
    while True:
        slowest = max(_timed(batch, n) for batch in batches)
        if slowest >= seconds / 4 or n >= 1 << 24:
            break
        n *= 4 if slowest < seconds / 64 else 2
    per_op = max(slowest / n, 1e-9)
    return max(1, round(seconds / per_op))


def interleave(batches: Sequence[Batch], mode: Mode, n: int | None = None) -> tuple[int, list[list[float]]]:
    """Time every batch ``mode.rounds`` times, rotating the order each round.

    Returns the operations per batch and, per side, the per-operation time of each round.
    """
    for batch in batches:  # warm caches, connections and lazy imports
        deadline = time.perf_counter() + mode.warmup_seconds
        while time.perf_counter() < deadline:
            batch(1)
    if n is None:
        n = calibrate(batches, mode.batch_seconds)
    times: list[list[float]] = [[] for _ in batches]
    order = list(range(len(batches)))
    gc_was_enabled = gc.isenabled()
    try:
        for round_no in range(mode.rounds):
            gc.collect()
            gc.disable()
            sequence = order if round_no % 2 == 0 else order[::-1]
            for index in sequence:
                times[index].append(_timed(batches[index], n) / n)
            if gc_was_enabled:
                gc.enable()
    finally:
        if gc_was_enabled:
            gc.enable()
    return n, times


def call_loop(func: Callable[..., object], *args: Any) -> Batch:
    """A batch calling ``func(*args)`` ``n`` times (same loop shape on both sides of a pair)."""
    repeat = itertools.repeat
    if len(args) == 1:
        (arg,) = args

        def batch1(n: int) -> None:
            for _ in repeat(None, n):
                func(arg)

        return batch1
    if not args:

        def batch0(n: int) -> None:
            for _ in repeat(None, n):
                func()

        return batch0

    def batch(n: int) -> None:
        for _ in repeat(None, n):
            func(*args)

    return batch


def cycle_loop(func: Callable[[Any], object], items: Iterable[Any]) -> Batch:
    """A batch calling ``func(item)`` ``n`` times over ``items`` in a cycle (rotating keys)."""
    source = itertools.cycle(list(items))
    islice = itertools.islice

    def batch(n: int) -> None:
        for item in islice(source, n):
            func(item)

    return batch


def per_op_ns(seconds: float) -> str:
    """A per-operation time for tables: ``412 ns``, ``3.1 µs``, ``118 µs``, ``1.2 ms``."""
    ns = seconds * 1e9
    if ns != ns:  # NaN
        return "—"
    if ns < 1000:
        return f"{ns:.0f} ns"
    if ns < 10_000:
        return f"{ns / 1000:.2f} µs"
    if ns < 1_000_000:
        return f"{ns / 1000:.1f} µs"
    return f"{ns / 1e6:.2f} ms"
