"""What stands between a cache miss and its factory when a call asks for more than single flight.

:class:`Guard` (one per chain) runs a miss under a :class:`~tierkit._policy.Policy`:

* ``lock``: one process computes, through a lock tier (:mod:`tierkit._lock`); the
  others wait for its value, and compute themselves after ``lock_timeout``.
* ``stale_ttl``: the value is also stored under its stale key
  (:func:`~tierkit._policy.stale_key`) for that much longer; when the factory raises,
  or runs past ``soft_timeout``, the stale copy is served (a slow factory keeps
  running in its own thread and stores its value when done).
* ``early_refresh``: a hit in the last part of an entry's life starts one background
  recomputation per key (per process; across processes too with ``lock``).

Threads and asyncio tasks of one process meet earlier, in the chain's single flight.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tierkit._lock import NO_LOCKER, Backoff, Lease, Locks
from tierkit._policy import Policy, stale_key
from tierkit._types import MISSING, Entry

if TYPE_CHECKING:
    from tierkit._chain import Chain
    from tierkit._codec import Codec

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

    def lead(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        policy: Policy,
    ) -> Any:
        """The value of ``key``: found, waited for, computed, or stale (the leader of a single flight)."""
        chain = self.chain
        value = chain.read_through(key, MISSING, 0, codec)  # a previous leader may have stored it
        if value is not MISSING:
            return value
        lease = None
        if policy.lock:
            value, lease = self._wait(key, policy, codec, persistent)
            if value is not MISSING:
                return value

        def store(value: Any) -> None:
            chain.set(key, value, ttl, tags, persistent, codec, policy.stale_ttl)

        return self._compute(key, factory, store, policy, codec, lease)

    def _wait(self, key: str, policy: Policy, codec: Codec, persistent: bool) -> tuple[Any, Lease | None]:
        """Take the lock of ``key``, or wait for the value another process computes.

        ``(value, None)``: found (or stale, past ``soft_timeout``); ``(MISSING, lease)``:
        compute under the lock; ``(MISSING, None)``: compute without it (no lock tier,
        or ``lock_timeout`` passed).
        """
        locks = self.locks
        if not locks.usable(persistent):
            self.no_lock_tier(key)
            return MISSING, None
        backoff = Backoff(policy.lock_timeout)
        slow_at = time.monotonic() + policy.soft_timeout if policy.soft_timeout and policy.stale_ttl else None
        while True:
            lease = locks.acquire(key, policy.lease, persistent)
            if isinstance(lease, Lease):
                value = self.chain.read_through(key, MISSING, 0, codec)  # the holder we waited for stored it?
                if value is MISSING:
                    return MISSING, lease
                locks.release(lease)
                return value, None
            if lease == NO_LOCKER:
                return MISSING, None
            if slow_at is not None and time.monotonic() >= slow_at:
                slow_at = None
                stale = self.stale(key, codec, "another process's computation passed soft_timeout")
                if stale is not MISSING:
                    return stale, None
            delay = backoff.next()
            if delay is None:
                self.timed_out(key, policy)
                return MISSING, None
            time.sleep(delay)

    def _compute(
        self,
        key: str,
        factory: Callable[[], Any],
        store: Callable[[Any], None],
        policy: Policy,
        codec: Codec,
        lease: Lease | None,
    ) -> Any:
        """``factory()`` stored (then the lease released); a stale value if it fails or is slow."""
        if policy.soft_timeout is None or not policy.stale_ttl:
            try:
                value = factory()
            except Exception as exc:
                self.release(lease)
                stale = self.stale(key, codec, f"its factory raised {type(exc).__name__}", policy)
                if stale is MISSING:
                    raise
                return stale
            try:
                store(value)
            finally:
                self.release(lease)
            return value
        job = self._job(key, factory, store, lease)
        if not job.done.wait(policy.soft_timeout):
            stale = self.stale(key, codec, "its factory passed soft_timeout", policy)
            if stale is not MISSING:
                return stale  # the job goes on and stores its value
            job.done.wait()
        if job.error is not None:
            stale = self.stale(key, codec, f"its factory raised {type(job.error).__name__}", policy)
            if stale is MISSING:
                raise job.error
            return stale
        return job.value

    def _job(
        self, key: str, factory: Callable[[], Any], store: Callable[[Any], None], lease: Lease | None
    ) -> _Job:
        """The computation of ``key`` running in the background, joined if one already runs.

        A slow factory left running past ``soft_timeout`` must not be started again by
        every miss that follows while it runs.
        """
        with self._mutex:
            job = self._jobs.get(key)
            if job is not None:
                joined = True
            else:
                joined = False

                def finish() -> None:
                    self.release(lease)
                    with self._mutex:
                        self._jobs.pop(key, None)

                job = self._jobs[key] = _Job(factory, store, finish).start()
        if joined:
            self.release(lease)
        return job

    # -- early refresh ----------------------------------------------------------------------------

    def hit(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        policy: Policy,
    ) -> Any:
        """A read of ``key`` (``MISSING`` on a miss) that starts an early refresh when the hit is old."""
        chain = self.chain
        found = chain.find(key, 0, codec)
        if found is None:
            chain.misses += 1
            return MISSING
        index, (value, _, entry) = found
        if self.ageing(index, entry, ttl, policy):
            self._refresh(key, index, factory, ttl, tags, persistent, codec, policy)
        return value

    def ageing(self, index: int, entry: Entry, ttl: float | None, policy: Policy) -> bool:
        """Is ``entry`` (held by tier ``index``) in the last ``early_refresh`` part of its life?

        Its life is the TTL of the call (or ``default_ttl``), capped by that tier's ``max_ttl``.
        """
        expires_at = entry[1]
        life = self.chain.default_ttl if ttl is None else ttl
        if expires_at is None or life is None or policy.early_refresh is None:
            return False
        cap = self.chain.slots[index].max_ttl
        if cap is not None and cap < life:
            life = cap
        return expires_at - self.chain.clock() < policy.early_refresh * life

    def _refresh(
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
        """Start the background recomputation of ``key`` unless one is running in this process."""
        if not self.claim(key):
            return

        def refresh() -> None:
            lease: Lease | str | None = None
            try:
                if policy.lock and self.locks.usable(persistent):
                    lease = self.locks.acquire(key, policy.lease, persistent)
                    if lease is None:
                        return  # another process is computing it
                if not self.due(key, index, ttl, codec, policy):
                    return
                self.early_refreshes += 1
                value = factory()
                self.chain.set(key, value, ttl, tags, persistent, codec, policy.stale_ttl)
            except Exception as exc:
                self.refresh_failed(key, exc)
            finally:
                if isinstance(lease, Lease):
                    self.locks.release(lease)
                self.unclaim(key)

        _start(refresh, "tierkit-refresh")

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

    def due(self, key: str, index: int, ttl: float | None, codec: Codec, policy: Policy) -> bool:
        """Is a refresh still needed?  Not if a tier below the old hit holds a younger copy.

        Another process may have refreshed it meanwhile, or the old copy was capped by its
        tier's ``max_ttl``; the younger copy is then copied up instead of recomputed.
        """
        found = self.chain.find(key, index + 1, codec)
        return found is None or self.ageing(found[0], found[1][2], ttl, policy)

    # -- shared by the sync and async paths -------------------------------------------------------

    def stale(self, key: str, codec: Codec, why: str, policy: Policy | None = None) -> Any:
        """The stale copy of ``key`` (counted and logged as served), or ``MISSING``."""
        if policy is not None and not policy.stale_ttl:
            return MISSING
        found = self.chain.find(stale_key(key), 0, codec)
        return MISSING if found is None else self.served(key, found[1][0], why)

    def served(self, key: str, value: Any, why: str) -> Any:
        """Count and log a stale ``value`` of ``key`` about to be served."""
        self.stale_served += 1
        log.warning("tierkit: serving the stale value of %r: %s", key, why)
        return value

    def release(self, lease: Lease | None) -> None:
        if lease is not None:
            self.locks.release(lease)

    def timed_out(self, key: str, policy: Policy) -> None:
        self.lock_timeouts += 1
        log.warning(
            "tierkit: waited lock_timeout (%gs) for another process to compute %r; computing it here",
            policy.lock_timeout,
            key,
        )

    def no_lock_tier(self, key: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "tierkit: lock=True (computing %r) but no tier of this cache that stores the value can "
                "lock (redis can; file too, for persistent=True writes): computing with single flight "
                "within this process only (docs/stampede.md)",
                key,
            )


class _Job:
    """``factory()`` in a thread of its own: it stores its value, then ``finish()``, even if nobody waits."""

    def __init__(self, factory: Callable[[], Any], store: Callable[[Any], None], finish: Callable[[], None]):
        self.done = threading.Event()
        self.value: Any = MISSING
        self.error: BaseException | None = None
        self._factory, self._store, self._finish = factory, store, finish

    def start(self) -> _Job:
        _start(self._run, "tierkit-compute")
        return self

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


def _start(target: Callable[[], None], name: str) -> None:
    """Run ``target`` in a daemon thread, in a copy of the caller's context (contextvars)."""
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(target,), name=name, daemon=True).start()
