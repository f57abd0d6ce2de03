"""What stands between a cache miss and its factory when a call asks for more than single flight.

:class:`Guard` (one per chain) computes a :class:`~tierkit._policy.Miss` under its policy:

* ``lock``: one process computes, through a lock tier (:mod:`tierkit._lock`); the
  others wait for its value, and compute themselves after ``lock_timeout``.
* ``stale_ttl``: the value is also stored under its stale key
  (:func:`~tierkit._policy.stale_key`) for that much longer; when the factory raises,
  or runs past ``soft_timeout``, the stale copy is served (a slow factory keeps
  running in its own thread, joined by the misses that follow, and stores its value).
* ``early_refresh``: a hit in the last part of an entry's life starts one background
  recomputation per key (per process; across processes too with ``lock``).

Threads and asyncio tasks of one process meet earlier, in the chain's single flight.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tierkit._lock import NO_LOCKER, Backoff, Lease, Locks
from tierkit._policy import Miss, Policy, stale_key
from tierkit._types import MISSING, Entry

if TYPE_CHECKING:
    from tierkit._chain import Chain, _Hit

log = logging.getLogger("tierkit")


class Guard:
    """The lock, fail-safe and early-refresh logic of one chain, with its counters."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.locks = Locks(chain.slots)
        self.stale_served = 0
        """Stale values served because the factory raised or exceeded ``soft_timeout``."""
        self.early_refreshes = 0
        """Background recomputations started by a hit late in its entry's life."""
        self.lock_timeouts = 0
        """Waits for another process's computation that gave up after ``lock_timeout``."""
        self._refreshing: set[str] = set()
        self._jobs: dict[str, _Job] = {}
        """Computations running in the background (past ``soft_timeout``), by key."""
        self._mutex = threading.Lock()
        self._warned = False

    # -- a miss -----------------------------------------------------------------------------------

    def lead(self, miss: Miss) -> Any:
        """The value of ``miss.key``: found, waited for, computed, or stale (a single flight's leader)."""
        value = self.chain.read_through(miss.key, MISSING, 0, miss.codec)  # a previous leader stored it?
        if value is not MISSING:
            return value
        lease = None
        if miss.policy.lock:
            value, lease = self._wait(miss)
            if value is not MISSING:
                return value
        return self._compute(miss, lease)

    def store(self, miss: Miss, value: Any) -> None:
        """Store a computed ``value`` (and its stale copy, with ``stale_ttl``)."""
        stale_ttl = miss.policy.stale_ttl
        self.chain.set(miss.key, value, miss.ttl, miss.tags, miss.persistent, miss.codec, stale_ttl)

    def _wait(self, miss: Miss) -> tuple[Any, Lease | None]:
        """Take the lock of ``miss.key``, or wait for the value another process computes.

        ``(value, None)``: found (or stale, past ``soft_timeout``); ``(MISSING, lease)``:
        compute under the lock; ``(MISSING, None)``: compute without it (no lock tier,
        or ``lock_timeout`` passed).
        """
        key, policy, locks = miss.key, miss.policy, self.locks
        if not locks.usable(miss.persistent):
            self.no_lock_tier(key)
            return MISSING, None
        backoff = Backoff(policy.lock_timeout)
        slow_at = slow_deadline(policy)
        while True:
            lease = locks.acquire(key, policy.lease, miss.persistent)
            if isinstance(lease, Lease):
                value = self.chain.read_through(key, MISSING, 0, miss.codec)  # stored by the holder?
                if value is MISSING:
                    return MISSING, lease
                locks.release(lease)
                return value, None
            if lease == NO_LOCKER:
                return MISSING, None
            if slow_at is not None and time.monotonic() >= slow_at:
                slow_at = None
                stale = self.stale(miss, "another process's computation passed soft_timeout")
                if stale is not MISSING:
                    return stale, None
            delay = backoff.next()
            if delay is None:
                self.timed_out(miss)
                return MISSING, None
            time.sleep(delay)

    def _compute(self, miss: Miss, lease: Lease | None) -> Any:
        """``factory()`` stored (then the lease released); a stale value if it fails or is slow."""
        policy = miss.policy
        if policy.soft_timeout is None or not policy.stale_ttl:
            try:
                value = miss.factory()
            except Exception as exc:
                self.release(lease)
                stale = self.stale(miss, f"its factory raised {type(exc).__name__}")
                if stale is MISSING:
                    raise
                return stale
            try:
                self.store(miss, value)
            finally:
                self.release(lease)
            return value
        job = self._job(miss, lease)
        if not job.done.wait(policy.soft_timeout):
            stale = self.stale(miss, "its factory passed soft_timeout")
            if stale is not MISSING:
                return stale  # the job goes on and stores its value
            job.done.wait()
        if job.error is not None:
            stale = self.stale(miss, f"its factory raised {type(job.error).__name__}")
            if stale is MISSING:
                raise job.error
            return stale
        return job.value

    def _job(self, miss: Miss, lease: Lease | None) -> _Job:
        """The computation of ``miss.key`` in a thread of its own, joined if one already runs.

        A slow factory left running past ``soft_timeout`` must not be started again by
        every miss that follows while it runs.
        """
        key = miss.key
        with self._mutex:
            job = self._jobs.get(key)
            if job is None:

                def finish() -> None:
                    self.release(lease)
                    with self._mutex:
                        self._jobs.pop(key, None)

                job = self._jobs[key] = _Job(miss.factory, functools.partial(self.store, miss), finish)
                job.start()
                return job
        self.release(lease)
        return job

    # -- early refresh ----------------------------------------------------------------------------

    def hit(self, miss: Miss) -> Any:
        """A read of ``miss.key`` (``MISSING`` on a miss) that starts an early refresh when the hit is old."""
        chain = self.chain
        found = chain.find(miss.key, 0, miss.codec)
        if found is None:
            chain.misses += 1
            return MISSING
        index, (value, _, entry) = found
        if self.ageing(index, entry, miss) and self.claim(miss.key):
            start_thread(functools.partial(self._refresh, miss, index), "tierkit-refresh")
        return value

    def ageing(self, index: int, entry: Entry, miss: Miss) -> bool:
        """Is ``entry`` (held by tier ``index``) in the last ``early_refresh`` part of its life?

        Its life is the TTL of the call (or ``default_ttl``), capped by that tier's ``max_ttl``.
        """
        expires_at = entry[1]
        life = self.chain.default_ttl if miss.ttl is None else miss.ttl
        early = miss.policy.early_refresh
        if expires_at is None or life is None or early is None:
            return False
        cap = self.chain.slots[index].max_ttl
        if cap is not None and cap < life:
            life = cap
        return expires_at - self.chain.clock() < early * life

    def due(self, miss: Miss, index: int, below: tuple[int, _Hit] | None) -> bool:
        """Is a refresh still needed?  Not if ``below``, the hit under tier ``index``, is young.

        Another process may have refreshed it meanwhile, or the old copy was capped by its
        tier's ``max_ttl``: finding the younger copy has copied it up, no recomputation needed.
        """
        return below is None or self.ageing(below[0], below[1][2], miss)

    def _refresh(self, miss: Miss, index: int) -> None:
        """The background recomputation of ``miss.key`` (claimed by :meth:`claim`), in its thread."""
        lease: Lease | str | None = None
        locks, policy = self.locks, miss.policy
        try:
            if policy.lock and locks.usable(miss.persistent):
                lease = locks.acquire(miss.key, policy.lease, miss.persistent)
                if lease is None:
                    return  # another process is computing it
            if self.due(miss, index, self.chain.find(miss.key, index + 1, miss.codec)):
                self.early_refreshes += 1
                self.store(miss, miss.factory())
        except Exception as exc:
            self.refresh_failed(miss.key, exc)
        finally:
            if isinstance(lease, Lease):
                locks.release(lease)
            self.unclaim(miss.key)

    def claim(self, key: str) -> bool:
        """Mark ``key`` as being refreshed in this process; ``False`` if it already is."""
        with self._mutex:
            if key in self._refreshing:
                return False
            self._refreshing.add(key)
            return True

    def unclaim(self, key: str) -> None:
        with self._mutex:
            self._refreshing.discard(key)

    def refresh_failed(self, key: str, exc: Exception) -> None:
        log.warning(
            "tierkit: early refresh of %r failed (%s); the cached value serves until it expires",
            key,
            type(exc).__name__,
        )

    # -- shared by the sync and async paths -------------------------------------------------------

    def stale(self, miss: Miss, why: str) -> Any:
        """The stale copy of ``miss.key`` (counted and logged as served), or ``MISSING``."""
        if not miss.policy.stale_ttl:
            return MISSING
        found = self.chain.find(stale_key(miss.key), 0, miss.codec)
        return MISSING if found is None else self.served(miss.key, found[1][0], why)

    def served(self, key: str, value: Any, why: str) -> Any:
        """Count and log a stale ``value`` of ``key`` about to be served."""
        self.stale_served += 1
        log.warning("tierkit: serving the stale value of %r: %s", key, why)
        return value

    def release(self, lease: Lease | None) -> None:
        if lease is not None:
            self.locks.release(lease)

    def timed_out(self, miss: Miss) -> None:
        self.lock_timeouts += 1
        log.warning(
            "tierkit: waited lock_timeout (%gs) for another process to compute %r; computing it here",
            miss.policy.lock_timeout,
            miss.key,
        )

    def no_lock_tier(self, key: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "tierkit: lock=True (computing %r) but no tier of this cache that stores the value can "
                "lock: computing with single flight within this process only (docs/stampede.md)",
                key,
            )


def slow_deadline(policy: Policy) -> float | None:
    """When a waiter serves the stale value instead (``soft_timeout`` with ``stale_ttl``), or ``None``."""
    return time.monotonic() + policy.soft_timeout if policy.soft_timeout and policy.stale_ttl else None


class _Job:
    """``factory()`` in a thread of its own: it stores its value, then ``finish()``, even if nobody waits."""

    def __init__(self, factory: Callable[[], Any], store: Callable[[Any], None], finish: Callable[[], None]):
        self.done = threading.Event()
        self.value: Any = MISSING
        self.error: BaseException | None = None
        self._factory, self._store, self._finish = factory, store, finish

    def start(self) -> None:
        start_thread(self._run, "tierkit-compute")

    def _run(self) -> None:
        try:
            self.value = self._factory()
        except BaseException as exc:
            self.error = exc
            self._finish()
            self.done.set()
            return
        self.done.set()
        try:
            self._store(self.value)
        finally:
            self._finish()


def start_thread(target: Callable[[], None], name: str) -> None:
    """Run ``target`` in a daemon thread, in a copy of the caller's context (contextvars)."""
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(target,), name=name, daemon=True).start()
