"""A cache in another process, driven over a pipe: the *other* process of the backplane tests."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from tierkit import Cache

WAIT = 10.0
"""Generous seconds for anything asynchronous to happen (never a timing assertion)."""


def memory_redis(namespace: str, redis_options: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """Settings of a memory + Redis cache."""
    return {
        "namespace": namespace,
        "order": ["memory", "redis"],
        "tiers": {"redis": {"options": redis_options}},
        **settings,
    }


def _serve(settings: dict[str, Any], conn: Connection) -> None:
    cache = Cache(**settings)
    while True:
        method, args, kwargs = conn.recv()
        if method == "stop":
            cache.close()
            conn.send(None)
            return
        if method == "backplane":
            conn.send(cache.stats()["backplane"])
        elif method == "memory_holds":
            conn.send(cache.inspect(args[0])["memory"].status == "held")
        else:
            conn.send(getattr(cache, method)(*args, **kwargs))


class Peer:
    """A :class:`Cache` built in a forked child from ``settings``; ``peer.call("get", key)`` …"""

    def __init__(self, settings: dict[str, Any]) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(settings, theirs), daemon=True)
        self.process.start()
        wait_until(lambda: self.backplane()["state"] == "subscribed", "the peer to subscribe")

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((method, args, kwargs))
        if not self._conn.poll(WAIT):
            raise RuntimeError(f"the peer did not answer {method}")
        return self._conn.recv()

    def backplane(self) -> dict[str, Any]:
        report: dict[str, Any] = self.call("backplane")
        return report

    def stop(self) -> None:
        if self.process.is_alive():
            self.call("stop")
        self.process.join(WAIT)


ABSENT = object()


def local_value(cache: Cache, key: str) -> Any:
    """The value ``cache``'s memory tier (its first) holds for ``key``, or :data:`ABSENT`."""
    entry = cache.chain.slots[0].get(key)
    return ABSENT if entry is None else entry.value


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)
