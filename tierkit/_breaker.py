"""Circuit breaker: takes a failing tier out of the path and probes it back in."""

from __future__ import annotations

import threading
import time

from tierkit._types import BreakerState, Clock


class Breaker:
    """Closed → open after ``threshold`` consecutive failures → half-open probe → closed.

    While open the tier is skipped without being called, so an outage costs no
    per-call timeout.  After the cooldown one caller at a time is let through as
    a probe; success closes the breaker, failure reopens it with the cooldown
    doubled (up to ``max_cooldown``).
    """

    __slots__ = (
        "_lock",
        "_probing",
        "clock",
        "cooldown",
        "failures",
        "last_error",
        "max_cooldown",
        "open_until",
        "opened",
        "threshold",
        "trips",
    )

    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 0.5,
        max_cooldown: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.clock = clock
        self.failures = 0
        self.trips = 0
        self.opened = 0
        self.open_until = 0.0
        self.last_error = ""
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        if not self.open_until:
            return "closed"
        return "half-open" if self.clock() >= self.open_until else "open"

    def allow(self) -> bool:
        """May the tier be called now?  Cheap when closed."""
        if not self.open_until:
            return True
        if self.clock() < self.open_until:
            return False
        with self._lock:
            if self._probing:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        if self.failures or self.open_until:
            with self._lock:
                self.failures = 0
                self.trips = 0
                self.open_until = 0.0
                self._probing = False

    def failure(self, reason: str) -> bool:
        """Record a failure; return True when this failure opened the breaker."""
        with self._lock:
            self.failures += 1
            self.last_error = reason
            was_probe = self._probing
            self._probing = False
            if not was_probe and (self.open_until or self.failures < self.threshold):
                return False  # below the threshold, or a late failure while already open
            delay = min(self.max_cooldown, self.cooldown * (2**self.trips))
            self.trips += 1
            self.open_until = self.clock() + delay
            if not was_probe:
                self.opened += 1
            return not was_probe
