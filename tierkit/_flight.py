"""Single flight: concurrent computations of one key in this process share one call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class _Call:
    __slots__ = ("done", "error", "leader", "result")

    def __init__(self, leader: int) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.leader = leader


class SingleFlight:
    """``run(key, fn)``: the first caller for ``key`` runs ``fn``; callers arriving
    meanwhile wait and get its result (or its exception).

    A computation that asks for its own key, directly or through a cycle of
    threads waiting on each other, would wait forever: it raises ``RuntimeError``
    instead (the wait-for graph is checked before each wait).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, _Call] = {}
        self._waiting: dict[int, _Call] = {}  # thread id -> the call it waits for

    def run(self, key: str, fn: Callable[[], T]) -> T:
        me = threading.get_ident()
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call(me)
            else:
                self._check_cycle(key, call, me)
                self._waiting[me] = call
        if not leader:
            try:
                call.done.wait()
            finally:
                with self._lock:
                    del self._waiting[me]
            if call.error is not None:
                raise call.error
            return cast(T, call.result)
        try:
            call.result = fn()
            return cast(T, call.result)
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()

    def _check_cycle(self, key: str, call: _Call, me: int) -> None:
        """Raise if waiting for ``call`` would wait for this thread itself (under ``_lock``)."""
        if call.leader == me:
            raise RuntimeError(
                f"get_or_set: the computation of {key!r} asked for {key!r} while computing it "
                "(it would wait for itself forever)"
            )
        leader, seen = call.leader, set()
        while leader in self._waiting and leader not in seen:
            seen.add(leader)
            leader = self._waiting[leader].leader
            if leader == me:
                raise RuntimeError(
                    f"get_or_set: waiting for {key!r} would close a cycle of computations waiting "
                    "for each other (each factory asks for a key another one is computing)"
                )
