"""Async connection pools that wait for a free connection only when they have none."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import redis.asyncio
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError


class Waiting(redis.asyncio.ConnectionPool):
    """A ``redis.asyncio`` pool that, past ``max_connections``, waits up to ``wait_timeout``.

    redis-py's ``BlockingConnectionPool`` waits too, but takes an ``asyncio.Condition``
    and opens a timeout scope on every call, which cost about 15 % of an async
    Redis hit.  Here a call that finds a connection pays what the plain pool
    costs; only a call that finds none queues, and each release wakes one waiter.
    """

    def __init__(self, *args: Any, wait_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wait_timeout = wait_timeout
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """A connection from the pool; past the limit, the next one released (or ``ConnectionError``)."""
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call]
        except MaxConnectionsError:
            pass
        loop = asyncio.get_running_loop()
        deadline = None if self.wait_timeout is None else loop.time() + self.wait_timeout
        while True:
            await self._wait(loop, deadline)
            try:
                return await super().get_connection()  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                continue  # another caller took it first: wait for the next release

    async def _wait(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        waiter = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken, then cancelled: the wake-up goes to the next in line
            elif waiter in self._waiters:  # a release may have dropped it, cancelled, already
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise RedisConnectionError("No connection available.") from exc
            raise

    async def release(self, connection: Any) -> None:
        try:
            await super().release(connection)
        finally:
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class WaitingConnectionPool(Waiting):
    """A single server's pool."""


class WaitingSentinelConnectionPool(Waiting, SentinelConnectionPool):
    """The pool of a master (or replicas) that the Sentinels name."""
