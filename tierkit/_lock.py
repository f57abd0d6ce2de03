"""Cross-process computation locks: one computation per cold key across processes.

A tier may offer a lock (the optional hooks :func:`~tierkit.hookspecs.tierkit_lock`
and :func:`~tierkit.hookspecs.tierkit_unlock`: the Redis tier with ``SET NX PX``, the
file tier with a lock file).  :class:`Locks` asks the lock tiers of a chain in
order; the first that answers decides.  A lock is a *lease*: it expires on its own
when its holder dies, and a renewer thread extends the leases this process holds
for as long as their computations run, so a short lease does not limit how long a
computation may take.  Waiters poll with :class:`Backoff`.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from tierkit._types import UNAVAILABLE, Unavailable

if TYPE_CHECKING:
    from tierkit._chain import TierSlot

log = logging.getLogger("tierkit")

NO_LOCKER: Final = "no tier could lock"
"""What :meth:`Locks.acquire` answers when no tier can lock (none offers it, or all failed)."""

FIRST_POLL = 0.005
"""Seconds a waiter first sleeps before asking for the lock again; doubles up to :data:`LONGEST_POLL`."""
LONGEST_POLL = 0.1


def lease_for(lock_timeout: float) -> float:
    """The lease of a lock, in seconds: a quarter of ``lock_timeout`` (0.1 s to 30 s).

    Shorter than the waiters' patience, so that when a holder dies its lease runs
    out while they still wait and one of them takes over the computation.
    """
    return min(max(lock_timeout / 4, 0.1), 30.0)


class Lease:
    """A computation lock this process holds: where, for which key, under which token."""

    __slots__ = ("due", "guard", "key", "locker", "released", "seconds", "token")

    def __init__(self, locker: _Locker, key: str, token: str, seconds: float) -> None:
        self.locker = locker
        self.key = key
        self.token = token
        self.seconds = seconds
        self.due = time.monotonic() + seconds / 3
        """When to renew it next (``time.monotonic()``): a third of the way into the lease."""
        self.released = False
        self.guard = threading.Lock()
        """Held while renewing: a renewal racing the release must not take the lock again."""


class _Locker:
    """One lock tier: its slot (breaker, counters) and its two bound lock hooks."""

    __slots__ = ("lock", "slot", "unlock")

    def __init__(self, slot: TierSlot) -> None:
        self.slot = slot
        self.lock: Callable[[str, str, float], Any] = slot.tier.tierkit_lock
        self.unlock: Callable[[str, str], Any] = slot.tier.tierkit_unlock

    def ask(self, hook: str, method: Callable[..., Any], *args: Any) -> bool | Unavailable:
        """``method(*args)`` behind the tier's breaker; a failure or a non-bool answer is the tier's."""
        slot = self.slot
        breaker = slot.breaker
        if breaker.open_until and not breaker.allow():
            return UNAVAILABLE
        try:
            answer = method(*args)
        except Exception as exc:
            slot.failed(exc)
            return UNAVAILABLE
        if type(answer) is not bool:
            return slot.violated(hook, "bool", answer)
        slot.ok()
        return answer


class Locks:
    """The lock tiers of a chain, and the leases this process holds through them."""

    def __init__(self, slots: Sequence[TierSlot]) -> None:
        self.lockers = tuple(
            _Locker(slot)
            for slot in slots
            if callable(getattr(slot.tier, "tierkit_lock", None))
            and callable(getattr(slot.tier, "tierkit_unlock", None))
        )
        self._where = {
            persistent: tuple(locker for locker in self.lockers if locker.slot in writers)
            for persistent, writers in ((False, _writers(slots, False)), (True, _writers(slots, True)))
        }
        self.blocking = any(locker.slot.blocking for locker in self.lockers)
        """Some lock tier's hooks may block: async callers run them in a worker thread."""
        self._forked()
        _live.add(self)

    def _forked(self) -> None:
        """Start with no lease (at build time, and in a forked child: its parent's leases are not its own)."""
        self._held: set[Lease] = set()
        self._changed = threading.Condition()
        self._renewer: threading.Thread | None = None

    def usable(self, persistent: bool) -> bool:
        """Is there a lock tier that also stores the value (``persistent``: of a persistent write)?

        A lock only helps where the waiters will find the value: the file tier, whose
        default write policy is ``persistent``, locks the writes with ``persistent=True``.
        """
        return bool(self._where[persistent])

    def acquire(self, key: str, seconds: float, persistent: bool = False) -> Lease | str | None:
        """A new lease on ``key`` in a lock tier that stores the value (:meth:`usable`).

        ``None`` if another holder has it; :data:`NO_LOCKER` if no such tier answered.
        """
        token = secrets.token_hex(16)
        for locker in self._where[persistent]:
            answer = locker.ask("tierkit_lock", locker.lock, key, token, seconds)
            if answer is True:
                lease = Lease(locker, key, token, seconds)
                self._keep(lease)
                return lease
            if answer is False:
                return None
        return NO_LOCKER

    def release(self, lease: Lease) -> None:
        """Stop renewing ``lease`` and release it (only if it is still ours: the tier checks the token)."""
        with self._changed:
            self._held.discard(lease)
        with lease.guard:
            lease.released = True
        locker = lease.locker
        locker.ask("tierkit_unlock", locker.unlock, lease.key, lease.token)

    def _keep(self, lease: Lease) -> None:
        with self._changed:
            self._held.add(lease)
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew, name="tierkit-lock-renewer", daemon=True)
                self._renewer.start()
            self._changed.notify()

    def _renew(self) -> None:
        """Extend each held lease a third of the way into it; exit when none is held."""
        while True:
            with self._changed:
                if not self._held:
                    self._renewer = None
                    return
                wait = min(lease.due for lease in self._held) - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)  # a new lease wakes it to recompute the wait
                    continue
                now = time.monotonic()
                leases = [lease for lease in self._held if lease.due <= now]
            for lease in leases:
                locker = lease.locker
                with lease.guard:
                    if lease.released:
                        continue
                    lease.due = time.monotonic() + lease.seconds / 3
                    answer = locker.ask("tierkit_lock", locker.lock, lease.key, lease.token, lease.seconds)
                if answer is False:
                    log.warning(
                        "tierkit: lost the computation lock of %r in tier %r (it expired before it was "
                        "renewed); another process may compute it too",
                        lease.key,
                        locker.slot.name,
                    )
                    with self._changed:
                        self._held.discard(lease)


_live: weakref.WeakSet[Locks] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for locks in list(_live):
        locks._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Backoff:
    """When a waiter asks again: 5 ms doubling to 100 ms, with jitter, until its deadline."""

    __slots__ = ("deadline", "delay")

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.delay = FIRST_POLL

    def next(self) -> float | None:
        """Seconds to sleep before the next try; ``None`` once the deadline has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return None
        delay = min(self.delay * random.uniform(0.5, 1.0), left)
        self.delay = min(self.delay * 2, LONGEST_POLL)
        return delay


def _writers(slots: Sequence[TierSlot], persistent: bool) -> set[TierSlot]:
    """The tiers a write stores the value in (the chain's write plan)."""
    policies = ("always", "persistent") if persistent else ("always",)
    return {slot for slot in slots if slot.write in policies}
