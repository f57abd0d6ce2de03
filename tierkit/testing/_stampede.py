"""A stampede on one cold key by real processes: how often the factory ran, how long callers waited.

For tiers that implement the lock hooks (``tierkit_lock``/``tierkit_unlock``) and for
the chain's ``lock=True`` (docs/stampede.md)::

    from tierkit.testing import stampede

    result = stampede(lambda: tierkit.Cache(order=["memory", "file"], ...), processes=4, threads=50)
    assert result.calls == 1

Each process is a ``fork`` of the caller that builds its own cache with ``make_cache``
and calls ``get_or_set(key, factory, lock=True)`` from ``threads`` threads at once.  The
factory appends its process id to a file (one ``write`` with ``O_APPEND``), so calls are
counted across processes.  ``kill_first=True`` kills the first process whose factory
starts with ``SIGKILL``, while it computes.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VALUE = {"computed": True}


@dataclass(frozen=True)
class StampedeResult:
    """What a :func:`stampede` saw."""

    calls: int
    """Factory calls started, over every process (the killed one's included)."""
    longest_wait: float
    """Seconds of the longest ``get_or_set`` call of a surviving process."""
    wrong_values: int
    """Calls of the surviving processes that returned something else than the factory's value."""
    failed_processes: int
    """Surviving processes that did not exit cleanly."""
    killed: int | None
    """Process id killed while computing (``kill_first``), or ``None``."""


def stampede(
    make_cache: Callable[[], Any],
    *,
    key: str = "stampede",
    processes: int = 4,
    threads: int = 50,
    compute_seconds: float = 0.3,
    kill_first: bool = False,
    timeout: float = 60.0,
    **get_or_set: Any,
) -> StampedeResult:
    """Run the stampede and report it (``get_or_set`` keywords go to every call; ``lock=True`` by default)."""
    get_or_set.setdefault("lock", True)
    get_or_set.setdefault("ttl", 60)
    with tempfile.TemporaryDirectory(prefix="tierkit-stampede-") as scratch:
        calls = Path(scratch, "calls")
        calls.touch()
        children = []
        for number in range(processes):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which never returns
                _child(
                    make_cache, key, threads, compute_seconds, calls, Path(scratch, str(number)), get_or_set
                )
            children.append(pid)
        killed = _kill_first_caller(calls, children, timeout) if kill_first else None
        failed = 0
        for pid in children:
            _, status = os.waitpid(pid, 0)
            failed += pid != killed and status != 0
        reports = [json.loads(p.read_text()) for p in Path(scratch).iterdir() if p.name.isdigit()]
        return StampedeResult(
            calls=len(calls.read_text().split()),
            longest_wait=max((r["longest_wait"] for r in reports), default=0.0),
            wrong_values=sum(r["wrong_values"] for r in reports),
            failed_processes=failed,
            killed=killed,
        )


def _kill_first_caller(calls: Path, children: list[int], timeout: float) -> int:
    """``SIGKILL`` the process that starts the first factory call, as soon as it starts."""
    deadline = time.monotonic() + timeout
    while not (first := calls.read_text().split()):
        if time.monotonic() > deadline:
            raise TimeoutError("no process started computing")
        time.sleep(0.001)
    pid = int(first[0])
    assert pid in children
    os.kill(pid, signal.SIGKILL)
    return pid


def _child(
    make_cache: Callable[[], Any],
    key: str,
    threads: int,
    compute_seconds: float,
    calls: Path,
    report: Path,
    options: dict[str, Any],
) -> None:  # pragma: no cover - runs in a forked child
    status = 1
    try:
        cache = make_cache()
        fd = os.open(calls, os.O_WRONLY | os.O_APPEND)

        def factory() -> dict[str, bool]:
            os.write(fd, f"{os.getpid()}\n".encode())
            time.sleep(compute_seconds)
            return VALUE

        waits: list[float] = []
        wrong: list[object] = []
        start = threading.Barrier(threads)

        def call() -> None:
            start.wait()
            began = time.monotonic()
            value = cache.get_or_set(key, factory, **options)
            waits.append(time.monotonic() - began)
            if value != VALUE:
                wrong.append(value)

        workers = [threading.Thread(target=call) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        report.write_text(json.dumps({"longest_wait": max(waits), "wrong_values": len(wrong)}))
        status = 0 if len(waits) == threads else 1
    finally:
        os._exit(status)
