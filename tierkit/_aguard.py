"""The async twin of :mod:`tierkit._guard`: lock, fail-safe and early refresh without blocking the loop.

It shares the sync guard's locks, counters and per-process refresh claims (one chain,
one set of figures); tier calls are awaited, lock hooks that may block run in a worker
thread, and slow or background computations are tasks of the running loop.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from tierkit._guard import slow_deadline
from tierkit._lock import NO_LOCKER, Backoff, Lease
from tierkit._policy import Miss, stale_key
from tierkit._types import MISSING

if TYPE_CHECKING:
    from tierkit._achain import AsyncChain


class AsyncGuard:
    """:class:`~tierkit._guard.Guard`, awaited."""

    def __init__(self, achain: AsyncChain) -> None:
        self.achain = achain
        self.sync = achain.chain.guard
        self._tasks: set[asyncio.Task[Any]] = set()
        """Background computations and refreshes, kept alive until they end."""
        self._running: dict[str, asyncio.Task[Any]] = {}
        """Computations that may outlive their callers (``soft_timeout``), by key."""

    async def lead(self, miss: Miss) -> Any:
        """:meth:`Guard.lead <tierkit._guard.Guard.lead>`, awaited."""
        value = await self.achain.read_through(miss.key, MISSING, 0, miss.codec)  # a previous leader's?
        if value is not MISSING:
            return value
        lease = None
        if miss.policy.lock:
            value, lease = await self._wait(miss)
            if value is not MISSING:
                return value
        if not miss.policy.stale_ttl:
            return await self._computed(miss, lease)
        task = self._running.get(miss.key)  # a slow computation left running past soft_timeout: join it
        if task is None:
            task = self._running[miss.key] = self._keep(self._computed(miss, lease))
            task.add_done_callback(lambda _: self._running.pop(miss.key, None))
        else:
            await self._release(lease)
        done, _ = await asyncio.wait({task}, timeout=miss.policy.soft_timeout)
        if not done:
            stale = await self.stale(miss, "its factory passed soft_timeout")
            if stale is not MISSING:
                return stale  # the task goes on and stores its value
            await asyncio.wait({task})
        error = task.exception()
        if error is None:
            return task.result()
        if isinstance(error, Exception):
            stale = await self.stale(miss, f"its factory raised {type(error).__name__}")
            if stale is not MISSING:
                return stale
        raise error

    async def _computed(self, miss: Miss, lease: Lease | None) -> Any:
        """``factory()``, awaited if need be, stored; then the lease released."""
        try:
            value = await _called(miss.factory)
            await self.store(miss, value)
        finally:
            await self._release(lease)
        return value

    async def store(self, miss: Miss, value: Any) -> None:
        stale_ttl = miss.policy.stale_ttl
        await self.achain.set(miss.key, value, miss.ttl, miss.tags, miss.persistent, miss.codec, stale_ttl)

    async def _wait(self, miss: Miss) -> tuple[Any, Lease | None]:
        """:meth:`Guard._wait <tierkit._guard.Guard._wait>`, awaited."""
        guard, key, policy = self.sync, miss.key, miss.policy
        if not guard.locks.usable(miss.persistent):
            guard.no_lock_tier(key)
            return MISSING, None
        backoff = Backoff(policy.lock_timeout)
        slow_at = slow_deadline(policy)
        while True:
            lease = await self._acquire(miss)
            if isinstance(lease, Lease):
                value = await self.achain.read_through(key, MISSING, 0, miss.codec)
                if value is MISSING:
                    return MISSING, lease
                await self._release(lease)
                return value, None
            if lease == NO_LOCKER:
                return MISSING, None
            if slow_at is not None and time.monotonic() >= slow_at:
                slow_at = None
                stale = await self.stale(miss, "another process's computation passed soft_timeout")
                if stale is not MISSING:
                    return stale, None
            delay = backoff.next()
            if delay is None:
                guard.timed_out(miss)
                return MISSING, None
            await asyncio.sleep(delay)

    async def hit(self, miss: Miss) -> Any:
        """:meth:`Guard.hit <tierkit._guard.Guard.hit>`, awaited; the refresh is a task of the loop."""
        found = await self.achain.find(miss.key, 0, miss.codec)
        if found is None:
            self.achain.chain.misses += 1
            return MISSING
        index, (value, _, entry) = found
        if self.sync.ageing(index, entry, miss) and self.sync.claim(miss.key):
            self._keep(self._refresh(miss, index))
        return value

    async def _refresh(self, miss: Miss, index: int) -> None:
        """:meth:`Guard._refresh <tierkit._guard.Guard._refresh>`, awaited."""
        guard = self.sync
        lease: Lease | str | None = None
        try:
            if miss.policy.lock and guard.locks.usable(miss.persistent):
                lease = await self._acquire(miss)
                if lease is None:
                    return  # another process is computing it
            if guard.due(miss, index, await self.achain.find(miss.key, index + 1, miss.codec)):
                guard.early_refreshes += 1
                await self.store(miss, await _called(miss.factory))
        except Exception as exc:
            guard.refresh_failed(miss.key, exc)
        finally:
            if isinstance(lease, Lease):
                await self._release(lease)
            guard.unclaim(miss.key)

    async def stale(self, miss: Miss, why: str) -> Any:
        """The stale copy of ``miss.key`` (counted and logged as served), or ``MISSING``."""
        if not miss.policy.stale_ttl:
            return MISSING
        found = await self.achain.find(stale_key(miss.key), 0, miss.codec)
        return MISSING if found is None else self.sync.served(miss.key, found[1][0], why)

    async def _acquire(self, miss: Miss) -> Lease | str | None:
        locks, seconds = self.sync.locks, miss.policy.lease
        if locks.blocking:
            return await asyncio.to_thread(locks.acquire, miss.key, seconds, miss.persistent)
        return locks.acquire(miss.key, seconds, miss.persistent)

    async def _release(self, lease: Lease | None) -> None:
        if lease is None:
            return
        if self.sync.locks.blocking:
            await asyncio.to_thread(self.sync.locks.release, lease)
        else:
            self.sync.locks.release(lease)

    def _keep(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """``work`` as a task that lives until it ends (its error, if nobody awaits it, is retrieved)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(_forget(self._tasks))
        return task


def _forget(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller or the stale path has dealt with it

    return done


async def _called(factory: Callable[[], Any]) -> Any:
    value = factory()
    if inspect.isawaitable(value):
        value = await value
    return value
