"""The async twin of :mod:`tierkit._guard`: lock, fail-safe and early refresh without blocking the loop.

It shares the sync guard's locks, counters and per-process refresh claims (one chain,
one set of figures); tier calls are awaited, lock hooks that may block run in a worker
thread, and slow or background computations are tasks of the running loop.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from tierkit._lock import NO_LOCKER, Backoff, Lease
from tierkit._policy import Policy, stale_key
from tierkit._types import MISSING

if TYPE_CHECKING:
    from tierkit._achain import AsyncChain
    from tierkit._codec import Codec


class AsyncGuard:
    """:class:`~tierkit._guard.Guard`, awaited."""

    def __init__(self, achain: AsyncChain) -> None:
        self.achain = achain
        self.sync = achain.chain.guard
        self._tasks: set[asyncio.Task[Any]] = set()
        """Background computations and refreshes, kept alive until they end."""
        self._running: dict[str, asyncio.Task[Any]] = {}
        """Computations that may outlive their callers (``soft_timeout``), by key."""

    async def lead(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        policy: Policy,
    ) -> Any:
        """:meth:`Guard.lead <tierkit._guard.Guard.lead>`, awaited."""
        achain = self.achain
        value = await achain.read_through(key, MISSING, 0, codec)  # a previous leader may have stored it
        if value is not MISSING:
            return value
        lease = None
        if policy.lock:
            value, lease = await self._wait(key, policy, codec, persistent)
            if value is not MISSING:
                return value

        async def compute() -> Any:
            try:
                value = await _called(factory)
                await achain.set(key, value, ttl, tags, persistent, codec, policy.stale_ttl)
            finally:
                await self._release(lease)
            return value

        if not policy.stale_ttl:
            return await compute()
        task = self._running.get(key)  # a slow computation left running past soft_timeout: join it
        if task is None:
            task = self._running[key] = self._keep(compute())
            task.add_done_callback(lambda _: self._running.pop(key, None))
        else:
            await self._release(lease)
        done, _ = await asyncio.wait({task}, timeout=policy.soft_timeout)
        if not done:
            stale = await self.stale(key, codec, "its factory passed soft_timeout")
            if stale is not MISSING:
                return stale  # the task goes on and stores its value
            await asyncio.wait({task})
        error = task.exception()
        if error is None:
            return task.result()
        if isinstance(error, Exception):
            stale = await self.stale(key, codec, f"its factory raised {type(error).__name__}")
            if stale is not MISSING:
                return stale
        raise error

    async def _wait(
        self, key: str, policy: Policy, codec: Codec, persistent: bool
    ) -> tuple[Any, Lease | None]:
        """:meth:`Guard._wait <tierkit._guard.Guard._wait>`, awaited."""
        guard = self.sync
        if not guard.locks.usable(persistent):
            guard.no_lock_tier(key)
            return MISSING, None
        backoff = Backoff(policy.lock_timeout)
        slow_at = time.monotonic() + policy.soft_timeout if policy.soft_timeout and policy.stale_ttl else None
        while True:
            lease = await self._acquire(key, policy.lease, persistent)
            if isinstance(lease, Lease):
                value = await self.achain.read_through(key, MISSING, 0, codec)
                if value is MISSING:
                    return MISSING, lease
                await self._release(lease)
                return value, None
            if lease == NO_LOCKER:
                return MISSING, None
            if slow_at is not None and time.monotonic() >= slow_at:
                slow_at = None
                stale = await self.stale(key, codec, "another process's computation passed soft_timeout")
                if stale is not MISSING:
                    return stale, None
            delay = backoff.next()
            if delay is None:
                guard.timed_out(key, policy)
                return MISSING, None
            await asyncio.sleep(delay)

    async def hit(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        policy: Policy,
    ) -> Any:
        """:meth:`Guard.hit <tierkit._guard.Guard.hit>`, awaited; the refresh is a task of the loop."""
        found = await self.achain.find(key, 0, codec)
        if found is None:
            self.achain.chain.misses += 1
            return MISSING
        index, (value, _, entry) = found
        if self.sync.ageing(index, entry, ttl, policy) and self.sync.claim(key):
            self._keep(self._refresh(key, index, factory, ttl, tags, persistent, codec, policy))
        return value

    async def _refresh(
        self,
        key: str,
        index: int,
        factory: Callable[[], Any],
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        policy: Policy,
    ) -> None:
        guard = self.sync
        lease: Lease | str | None = None
        try:
            if policy.lock and guard.locks.usable(persistent):
                lease = await self._acquire(key, policy.lease, persistent)
                if lease is None:
                    return  # another process is computing it
            found = await self.achain.find(key, index + 1, codec)
            if found is not None and not guard.ageing(found[0], found[1][2], ttl, policy):
                return  # a younger copy below, now copied up
            guard.early_refreshes += 1
            value = await _called(factory)
            await self.achain.set(key, value, ttl, tags, persistent, codec, policy.stale_ttl)
        except Exception as exc:
            guard.refresh_failed(key, exc)
        finally:
            if isinstance(lease, Lease):
                await self._release(lease)
            guard.unclaim(key)

    async def stale(self, key: str, codec: Codec, why: str) -> Any:
        """The stale copy of ``key`` (counted and logged as served), or ``MISSING``."""
        found = await self.achain.find(stale_key(key), 0, codec)
        return MISSING if found is None else self.sync.served(key, found[1][0], why)

    async def _acquire(self, key: str, seconds: float, persistent: bool) -> Lease | str | None:
        locks = self.sync.locks
        if locks.blocking:
            return await asyncio.to_thread(locks.acquire, key, seconds, persistent)
        return locks.acquire(key, seconds, persistent)

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
