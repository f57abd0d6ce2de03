"""Threads for the conformance checks: each runs in a copy of the test's context (a bound session
stays bound) and keeps what it raised."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable

from tierkit.testing._expect import expect

_THREAD_TIMEOUT = 120.0


class _Worker(threading.Thread):
    """A thread running in a copy of the test's context (a bound session stays bound),
    keeping what it raised."""

    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self._context = contextvars.copy_context()
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._context.run(self._work)
        except BaseException as exc:
            self.error = exc


def _start_thread(target: Callable[[], None]) -> _Worker:
    worker = _Worker(target)
    worker.start()
    return worker


def _join(workers: list[_Worker]) -> None:
    """Wait for ``workers``; re-raise the first error one of them raised."""
    deadline = time.monotonic() + _THREAD_TIMEOUT
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    stuck = [worker.name for worker in workers if worker.is_alive()]
    expect(not stuck, f"threads after {_THREAD_TIMEOUT:g} s", "all finished", stuck)
    errors = [worker.error for worker in workers if worker.error is not None]
    if errors:
        raise AssertionError(
            f"{len(errors)} of {len(workers)} threads failed; the first: {errors[0]}"
        ) from errors[0]


def _run_threads(targets: list[Callable[[], None]]) -> None:
    _join([_start_thread(target) for target in targets])
