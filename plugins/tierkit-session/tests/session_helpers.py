"""Helpers for the session tier tests (a uniquely named module: tests share sys.path)."""

from __future__ import annotations


class FakeClock:
    """A clock tests move by hand: ``clock()`` returns ``clock.now``."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
