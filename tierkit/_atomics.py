"""Atomic operations over the chain: ``add``, ``incr``, ``touch``, ``has``, ``delete_many``.

Each calls a tier's optional hook where it has one (:mod:`tierkit.hookspecs`,
"optional atomic operations") and otherwise a fallback made of the required
hooks, guarded like every tier call (breaker, missed invalidations, failures
counted).  The fallbacks of ``add``, ``incr`` and ``touch`` read then write,
so they are not atomic against other writers of that tier: a tier that can do
better implements the hook.

Which tier decides:

* ``add``: the deepest tier of the write path (the last one a ``set`` writes,
  usually the shared one).  Its atomic add decides; on success the tiers above
  get a plain write.  If it cannot answer, ``add`` says ``False`` and writes
  nothing: two callers must never both believe they won.
* ``incr``: the deepest writable tier that holds the key increments it; the
  tiers above drop their copy and read the new count through on the next
  ``get`` (a copy written back could race with another increment and leave an
  older count there).
* ``touch``: every writable tier that holds the key.
* ``has``: the first tier that holds the key (nothing decoded, nothing copied up).
* ``delete_many``: every writable tier, one batch each.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tierkit._backplane import Op
from tierkit._chain import Chain, Invalidated, TierSlot, check_key
from tierkit._codec import Codec
from tierkit._types import UNAVAILABLE, Entry, new_entry
from tierkit.errors import NotACounter

T = TypeVar("T")

_DIGITS = re.compile(rb"-?[0-9]{1,20}")
COUNTER_MIN, COUNTER_MAX = -(2**63), 2**64 - 1
"""The integers the JSON codec writes as plain digits: the range of a counter in a byte tier."""


def counter_value(payload: bytes) -> int:
    """The ``int`` a byte tier's counter payload holds (ASCII digits); :class:`NotACounter` if none."""
    if type(payload) is not bytes or not _DIGITS.fullmatch(payload):
        raise NotACounter("the stored value is not an integer")
    return int(payload)


def counter_payload(value: int) -> bytes:
    """The payload of counter ``value`` in a byte tier: its decimal digits, as the JSON codec writes it."""
    if not COUNTER_MIN <= value <= COUNTER_MAX:
        raise NotACounter(f"{value} is out of the range a cached counter holds (-2**63 .. 2**64-1)")
    return b"%d" % value


# -- fallbacks made of the required hooks (not atomic; documented in tierkit.hookspecs) ----------


def _add_by_get(slot: TierSlot, key: str, entry: Entry) -> bool:
    if slot.get(key) is not None:
        return False
    slot.set(key, entry)
    return True


def _incr_by_get(slot: TierSlot, key: str, delta: int) -> Entry | None:
    entry = slot.get(key)
    if entry is None:
        return None
    value, expires_at, tags = entry
    if slot.holds_bytes:
        stored: Any = counter_payload(counter_value(value) + delta)
    elif type(value) is int:
        stored = value + delta
    else:
        raise NotACounter(f"the stored value is a {type(value).__name__}, not an int")
    updated = new_entry((stored, expires_at, tuple(tags)))
    slot.set(key, updated)
    return updated


def _touch_by_get(slot: TierSlot, key: str, expires_at: float | None) -> bool:
    entry = slot.get(key)
    if entry is None:
        return False
    slot.set(key, new_entry((entry[0], expires_at, tuple(entry[2]))))
    return True


def _has_by_get(slot: TierSlot, key: str) -> bool:
    return slot.get(key) is not None


def _delete_each(slot: TierSlot, keys: Iterable[str]) -> int:
    return sum(1 for key in keys if slot.delete(key) is True)


def _counting(incr: Callable[[str, int], Any]) -> Callable[[str, int], Any]:
    """``incr`` answering a :class:`NotACounter` instead of raising it (raising is a tier failure)."""

    def call(key: str, delta: int) -> Any:
        try:
            return incr(key, delta)
        except NotACounter as exc:
            return exc

    return call


class _Hooks:
    """One tier's atomic hooks: its own where it has them, else the fallbacks above."""

    __slots__ = ("add", "delete_many", "has", "incr", "touch")

    def __init__(self, slot: TierSlot) -> None:
        tier = slot.tier

        def bound(hook_name: str, fallback: Callable[..., Any]) -> Callable[..., Any]:
            hook = getattr(tier, hook_name, None)  # None: a tier may hide a hook it inherits
            return hook if callable(hook) else functools.partial(fallback, slot)

        self.add = bound("tierkit_add", _add_by_get)
        self.incr = _counting(bound("tierkit_incr", _incr_by_get))
        self.touch = bound("tierkit_touch", _touch_by_get)
        self.has = bound("tierkit_has", _has_by_get)
        self.delete_many = bound("tierkit_delete_many", _delete_each)


class Atomics:
    """The atomic operations of one :class:`~tierkit._chain.Chain` (see the module docstring)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.hooks = {slot: _Hooks(slot) for slot in chain.slots}

    def add(
        self, key: str, value: Any, ttl: float | None, tags: Iterable[str], persistent: bool, codec: Codec
    ) -> bool:
        """Store ``value`` only if ``key`` is absent in the deciding tier; True if this call stored it."""
        check_key(key)
        writers, encode, tag_tuple, now, expires_at = self.chain._write_plan(ttl, tags, persistent)
        if not writers:
            return False
        payload = codec.encode(key, value) if encode else None
        *above, decider = writers

        def entry_for(slot: TierSlot) -> Entry:
            return new_entry((payload if slot.holds_bytes else value, slot.cap(expires_at, now), tag_tuple))

        answer = decider.ask(self.hooks[decider].add, key, entry_for(decider))
        if type(answer) is not bool:
            if answer is not UNAVAILABLE:
                decider.violated("tierkit_add", "bool", answer)
            return False
        decider.ok()
        if not answer:
            return False
        decider.sets += 1
        for slot in above:
            if slot.call(slot.set, key, entry_for(slot)) is UNAVAILABLE:
                slot.forget((key,))
            else:
                slot.sets += 1
        self.chain.announce(("keys", (key,)))  # other processes may hold an expired or stale copy
        return True

    def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the counter under ``key`` and return it (see the module docstring).

        Raises ``ValueError`` when no tier holds the key, :class:`NotACounter`
        when the value is not an integer.
        """
        check_key(key)
        if type(delta) is not int:
            raise TypeError(f"incr/decr: delta must be an int, got {delta!r} ({type(delta).__name__})")
        writers = self.chain.persistent_writers
        unreachable = []
        for index in range(len(writers) - 1, -1, -1):
            slot = writers[index]
            answer = slot.ask(self.hooks[slot].incr, key, delta)
            if answer is None:
                slot.ok()
                continue
            if isinstance(answer, NotACounter):
                slot.ok()
                raise NotACounter(f"cannot incr/decr key {key!r}: {answer}")
            count = self._count_of(slot, answer)
            if count is not None:
                slot.sets += 1
                for upper in writers[:index]:
                    self._drop(upper, key)
                self.chain.announce(("keys", (key,)))
                return count
            slot.remember(keys=(key,))  # it may still hold the old count: it must not serve it
            unreachable.append(slot.name)
        reason = f" (tiers that could not answer: {', '.join(unreachable)})" if unreachable else ""
        raise ValueError(f"cannot incr/decr key {key!r}: it is not in the cache{reason}")

    @staticmethod
    def _count_of(slot: TierSlot, answer: object) -> int | None:
        """The new count in a tier's ``tierkit_incr`` answer (confirming the call); None if it failed."""
        if type(answer) is Entry:
            value = answer[0]
            if slot.holds_bytes and type(value) is bytes and _DIGITS.fullmatch(value):
                slot.ok()
                return int(value)
            if not slot.holds_bytes and type(value) is int:
                slot.ok()
                return value
        if answer is not UNAVAILABLE:
            expected = "an Entry holding digits" if slot.holds_bytes else "an Entry holding an int"
            slot.violated("tierkit_incr", f"{expected} or None", answer)
        return None

    def _drop(self, slot: TierSlot, key: str) -> None:
        """Remove ``key`` from one tier, or remember to before it serves again."""
        outcome = slot.ask(slot.delete, key)
        if type(outcome) is bool:
            slot.ok()
            slot.deletes += 1
            return
        if outcome is not UNAVAILABLE:
            slot.violated("tierkit_delete", "bool", outcome)
        slot.remember(keys=(key,))

    def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new TTL in every writable tier holding it; True if any did."""
        check_key(key)
        _, _, _, now, expires_at = self.chain._write_plan(ttl, (), True)
        touched = False
        for slot in self.chain.persistent_writers:
            answer = slot.ask(self.hooks[slot].touch, key, slot.cap(expires_at, now))
            if type(answer) is bool:
                slot.ok()
                touched = answer or touched
                continue
            if answer is not UNAVAILABLE:
                slot.violated("tierkit_touch", "bool", answer)
            slot.remember(keys=(key,))  # it keeps the old deadline: drop it there
        if touched:
            self.chain.announce(("keys", (key,)))  # other processes' copies keep the old deadline
        return touched

    def has(self, key: str) -> bool:
        """Whether some tier holds a live entry under ``key`` (no decoding, no backfill)."""
        check_key(key)
        self.chain.stamp()  # local tiers answer after catching up with the backplane, as a read does
        for slot in self.chain.slots:
            answer = slot.ask(self.hooks[slot].has, key)
            if type(answer) is bool:
                slot.ok()
                if answer:
                    return True
            elif answer is not UNAVAILABLE:
                slot.violated("tierkit_has", "bool", answer)
        return False

    def delete_many(self, keys: Iterable[str]) -> Invalidated:
        """Remove ``keys`` from every writable tier, one batch per tier; the count summed over tiers."""
        wanted = list(dict.fromkeys(keys))
        for key in wanted:
            check_key(key)
        removed = 0
        pending: list[str] = []
        if not wanted:
            return Invalidated(0)
        op: Op = ("keys", tuple(wanted))
        announced = False
        for slot in self.chain.persistent_writers:
            answer, sent = self.chain.carrying(slot, op, slot.ask, self.hooks[slot].delete_many, wanted)
            announced = announced or sent
            count = slot.checked_count("tierkit_delete_many", answer)
            if count is None:
                slot.remember(keys=wanted)
                pending.append(slot.name)
            else:
                slot.deletes += count
                removed += count
        if not announced:
            self.chain.announce(op)
        return Invalidated(removed, tuple(pending))


class AsyncAtomics:
    """:class:`Atomics`, awaited: run inline when no tier blocks, else in a worker thread.

    The tiers' native async hooks are not used for these operations (yet): a
    blocking tier's atomic hook runs in a thread, never on the event loop.
    """

    def __init__(self, atomics: Atomics, blocking: bool) -> None:
        self.atomics = atomics
        self.blocking = blocking

    async def run(self, method: Callable[..., T], *args: Any) -> T:
        if self.blocking:
            return await asyncio.to_thread(method, *args)
        return method(*args)
