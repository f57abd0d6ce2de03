"""What a tier under test is built with: a clock that moves only when told to, and a context."""

from __future__ import annotations

from collections.abc import Callable

from tierkit._types import TierContext


class FakeClock:
    """A clock that moves only when told to: ``clock()`` reads it, ``advance(s)`` moves it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_context(
    clock: Callable[[], float], name: str = "under-test", namespace: str = "conformance"
) -> TierContext:
    """A :class:`~tierkit.TierContext` for building a tier in a test."""
    return TierContext(name=name, namespace=namespace, clock=clock)
