"""The async data plane: the same chain, awaited, so that no tier ever blocks the event loop.

:class:`AsyncChain` is a view over a :class:`~tierkit._chain.Chain`: the same
tier slots, counters, breakers, pending invalidations and codec, so a sync and
an async caller in one process share one memory tier and one set of figures.
What runs where, per tier and hook (:class:`_Hooks`):

* a native coroutine hook (``tierkit_aget`` …, :data:`tierkit.hookspecs.ASYNC_HOOKS`) is awaited;
* else the sync hook is called inline when the tier declares ``blocking = False``
  (memory, session), and in a worker thread otherwise.

A memory hit is served inline by the first tier's front door, like the sync ``get``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from tierkit._aguard import AsyncGuard
from tierkit._backplane import Op
from tierkit._chain import (
    Chain,
    Hits,
    Invalidated,
    TierSlot,
    _Hit,
    check_invalidation,
    check_key,
    check_keys,
    clear_ops,
    encode_all,
    invalidation_ops,
)
from tierkit._codec import Codec
from tierkit._policy import PLAIN, Miss, Policy, stale_key
from tierkit._types import MISSING, UNAVAILABLE, Entry, HealthReport, Unavailable, new_entry

log = logging.getLogger("tierkit")

T = TypeVar("T")
AsyncGet = Callable[[str, Any], Awaitable[Any]]

_BELOW = object()
"""What the async front door answers on a miss: the caller goes on down the chain, awaiting."""

_computing: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "tierkit_computing", default=frozenset()
)
"""Keys whose computation the current task is part of (to refuse waiting for itself)."""


_DATA_HOOKS = (
    "get",
    "get_many",
    "set",
    "set_many",
    "delete",
    "invalidate_tags",
    "invalidate_prefix",
    "clear",
)


class _Hooks:
    """One tier's data hooks as coroutine functions: native, inline, or in a worker thread."""

    __slots__ = ("catching_up", "get_many_payloads", "in_flight", *_DATA_HOOKS)

    def __init__(self, slot: TierSlot) -> None:
        self.in_flight = 0
        """Calls to this tier now awaiting an answer."""
        self.catching_up = False
        """A catch-up of missed invalidations is under way: the tier serves nothing meanwhile."""
        for name in _DATA_HOOKS:
            setattr(self, name, _awaitable(slot, name))
        self.get_many_payloads: Callable[[Sequence[str]], Awaitable[Any]] | None = None
        """A byte tier's batch read answered column by column, if it has one (sync or async)."""
        if slot.holds_bytes and (slot.get_many_payloads or "get_many_payloads" in slot.asynchronous):
            self.get_many_payloads = _awaitable(slot, "get_many_payloads")

    get: Callable[[str], Awaitable[Any]]
    get_many: Callable[[Sequence[str]], Awaitable[Any]]
    set: Callable[[str, Entry], Awaitable[Any]]
    set_many: Callable[[Mapping[str, Entry]], Awaitable[Any]]
    delete: Callable[[str], Awaitable[Any]]
    invalidate_tags: Callable[[Sequence[str]], Awaitable[Any]]
    invalidate_prefix: Callable[[str], Awaitable[Any]]
    clear: Callable[[], Awaitable[Any]]


def _awaitable(slot: TierSlot, name: str) -> Callable[..., Awaitable[Any]]:
    native = slot.asynchronous.get(name)
    if native is not None:
        return cast(Callable[..., Awaitable[Any]], native)
    sync: Callable[..., Any] = getattr(slot, name)
    if not slot.blocking:

        async def inline(*args: Any) -> Any:
            return sync(*args)

        return inline

    async def in_thread(*args: Any) -> Any:
        return await asyncio.to_thread(sync, *args)

    return in_thread


class AsyncChain:
    """The awaitable twin of :class:`~tierkit._chain.Chain`'s data plane (same state, same rules)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.hooks = {slot: _Hooks(slot) for slot in chain.slots}
        self.blocking = any(slot.blocking for slot in chain.slots)
        """Some tier's control-plane hooks (health, stats, close) may block: run them in a thread."""
        self.room_makers = tuple(
            tuple(maker for maker in room if not maker[0].blocking) for room in chain.room_makers
        )
        """:attr:`Chain.room_makers` that may be called on the event loop (non-blocking tiers)."""
        self._flights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Task[Any]]]
        self._flights = weakref.WeakKeyDictionary()
        self.get: AsyncGet = self.reader(chain.codec)
        """``await get(key, default)``: the async read of this chain, memory hits served inline."""
        self.guard = AsyncGuard(self)
        """Cross-process lock, fail-safe and early refresh, awaited (:mod:`tierkit._aguard`)."""

    # -- guarded calls --------------------------------------------------------------------------

    async def ask(self, slot: TierSlot, method: Callable[..., Awaitable[T]], *args: Any) -> T | Unavailable:
        """:meth:`TierSlot.ask`, awaited: breaker, missed invalidations first, failures counted.

        Coroutines are cheap, so hundreds may reach a failing tier before its
        breaker opens, each opening a connection on the loop.  Once a tier has
        failed (until it answers again) it gets one call at a time, as a probe;
        the others skip it as if its breaker were open.
        """
        breaker = slot.breaker
        if breaker.open_until and not breaker.allow():
            return UNAVAILABLE
        hooks = self.hooks[slot]
        if breaker.failures and hooks.in_flight:
            return UNAVAILABLE
        if slot.held and not await self.catch_up(slot):
            return UNAVAILABLE
        hooks.in_flight += 1
        try:
            return await method(*args)
        except Exception as exc:
            slot.failed(exc)
            return UNAVAILABLE
        finally:
            hooks.in_flight -= 1

    async def call(self, slot: TierSlot, method: Callable[..., Awaitable[T]], *args: Any) -> T | Unavailable:
        """:meth:`TierSlot.call`, awaited."""
        result = await self.ask(slot, method, *args)
        if result is not UNAVAILABLE:
            slot.ok()
        return result

    async def catch_up(self, slot: TierSlot) -> bool:
        """Apply what ``slot`` missed through its async hooks; one catch-up at a time per tier.

        While one runs, other callers get False at once (the tier serves nothing
        until it is done) instead of queueing behind a possibly stalled backend.
        """
        hooks = self.hooks[slot]
        if hooks.catching_up:
            return False
        hooks.catching_up = True
        pending = slot.pending
        try:
            if pending.clear:
                await hooks.clear()
                pending.clear = False
                for remembered in (pending.keys, pending.tags, pending.prefixes):
                    remembered.clear()
            for key in list(pending.keys):
                await hooks.delete(key)
                pending.keys.discard(key)
            if pending.tags:
                tags = sorted(pending.tags)
                await hooks.invalidate_tags(tags)
                pending.tags.difference_update(tags)
            for prefix in list(pending.prefixes):
                await hooks.invalidate_prefix(prefix)
                pending.prefixes.discard(prefix)
        except Exception as exc:
            slot.failed(exc)
            return False
        finally:
            hooks.catching_up = False
        slot.held = bool(pending)  # more may have been added meanwhile
        log.info("tier %r (%s) caught up with the invalidations it had missed", slot.name, slot.kind)
        return True

    async def forget(self, slot: TierSlot, keys: Iterable[str]) -> None:
        """:meth:`TierSlot.forget`, awaited: remove ``keys`` after a failed write, else remember to."""
        remaining = list(keys)
        delete = self.hooks[slot].delete
        while remaining and not slot.breaker.open_until:
            try:
                await delete(remaining[-1])
            except Exception as exc:
                slot.failed(exc)
                break
            remaining.pop()
        if remaining:
            slot.remember(keys=remaining)

    # -- reads ----------------------------------------------------------------------------------

    def reader(self, codec: Codec) -> AsyncGet:
        """An ``async get(key, default)`` decoding byte-tier hits with ``codec`` (``@cached`` asks per type).

        With a local object tier first that offers a front door, a hit is one
        call of it inside the coroutine: no await, no task switch.
        """
        chain = self.chain
        first = chain._first
        fused = chain.front_door(first, _below) if first is not None else None
        read_through = self.read_through
        fresh, clock = chain.fresh, chain.clock
        if first is None or fused is None:

            async def get(key: str, default: Any = None) -> Any:
                if type(key) is not str or not key or not key.isascii():
                    check_key(key)
                return await read_through(key, default, 0, codec)

            return get

        async def get_front(key: str, default: Any = None) -> Any:
            value = fused(key, default)
            if value is not _BELOW:
                return value
            check_key(key)
            if fresh is not None and clock() >= fresh.until:  # a hit due a catch-up: find() does it
                return await read_through(key, default, 0, codec)
            first.misses += 1
            return await read_through(key, default, 1, codec)

        return get_front

    async def read_through(self, key: str, default: Any, start: int, codec: Codec) -> Any:
        """Ask tiers from ``start`` on, awaiting each; backfill the tiers above a hit."""
        found = await self.find(key, start, codec)
        if found is None:
            self.chain.misses += 1
            return default
        return found[1][0]

    async def find(self, key: str, start: int, codec: Codec) -> tuple[int, _Hit] | None:
        """:meth:`Chain.find`, awaited: the first hit from tier ``start`` on, with its tier's index."""
        chain = self.chain
        slots = chain.slots
        stamp = chain.stamp()
        for index in range(start, len(slots)):
            slot = slots[index]
            hit = chain.accept(slot, key, await self.ask(slot, self.hooks[slot].get, key), codec, now=False)
            if hit is None:
                continue
            if index:
                await self._backfill_one(index, key, hit, stamp)
            return index, hit
        return None

    async def get_many(self, keys: Iterable[str], codec: Codec | None = None) -> dict[str, Any]:
        """:meth:`Chain.get_many`, awaited: values of the keys that hit, one batch per tier."""
        chain = self.chain
        codec = codec or chain.codec
        wanted = dict.fromkeys(keys)
        check_keys(wanted)
        found: dict[str, Any] = {}
        stamp = chain.stamp()
        for index, slot in enumerate(chain.slots):
            if not wanted:
                break
            hooks, room = self.hooks[slot], self.room_makers[index]
            read_payloads = hooks.get_many_payloads
            if read_payloads is not None:
                answer = await self.ask(slot, read_payloads, list(wanted))
                hits = chain.payload_hits(slot, wanted, answer, codec, now=False, room=room)
            else:
                answer = await self.ask(slot, hooks.get_many, list(wanted))
                hits = chain.entry_hits(slot, wanted, answer, codec, now=False, room=room)
            if hits is None:
                continue
            if index and hits.keys:
                await self._backfill(index, hits, stamp)
            wanted = hits.take(slot, wanted, found)
        chain.misses += len(wanted)
        return found

    async def _backfill(self, index: int, hits: Hits, stamp: int) -> None:
        """Copy hits from tier ``index`` into the ``always`` tiers above it, one batch per tier.

        With a backplane, local tiers are written inline under its lock (:meth:`Chain.write_local`).
        """
        chain = self.chain
        now = chain.clock() if chain._backfill_capped[index] else 0.0
        for slot in chain._backfill_targets[index]:
            batch = hits.batch_for(slot, chain.codec, now)
            if batch:
                await self._write(slot, batch, stamp)

    async def _backfill_one(self, index: int, key: str, hit: _Hit, stamp: int) -> None:
        """:meth:`_backfill` for the single hit of a ``get``."""
        chain = self.chain
        now = chain.clock() if chain._backfill_capped[index] else 0.0
        for slot in chain._backfill_targets[index]:
            copy = chain._copy_for(slot, key, *hit, now)
            if copy is not None:
                await self._write(slot, {key: copy}, stamp)

    async def announce(self, op: Op) -> None:
        """:meth:`Chain.announce`: a queue put (the backplane's sender thread publishes), never blocking."""
        self.chain.announce(op)

    async def _write(self, slot: TierSlot, batch: Mapping[str, Entry], stamp: int | None) -> bool:
        """:meth:`write`, or :meth:`Chain.write_local` for a local tier while a backplane runs."""
        if self.chain.coherent(slot):
            return self.chain.write_local(slot, batch, stamp)
        return await self.write(slot, batch)

    # -- writes ---------------------------------------------------------------------------------

    async def set(
        self,
        key: str,
        value: Any,
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        stale_ttl: float | None = None,
    ) -> bool:
        """:meth:`Chain.set`, awaited: True when every tier meant to take it did."""
        check_key(key)
        if stale_ttl:
            batches = self.chain.stale_batches(key, value, ttl, tags, persistent, codec, stale_ttl)
            if batches is not None:
                stored = True
                for slot, batch in batches:
                    if not await self.write(slot, batch):
                        await self.forget(slot, batch)
                        stored = False
                await self.announce(("keys", tuple(batches[0][1])))  # the value and its stale copy
                return stored
        writers, encode, tag_tuple, now, expires_at = self.chain._write_plan(ttl, tags, persistent)
        payload = encode_all(codec, {key: value}, encode).get(key)
        stored = True
        for slot in writers:
            exp = expires_at if slot.max_ttl is None else slot.cap(expires_at, now)
            entry = new_entry((payload if slot.holds_bytes else value, exp, tag_tuple))
            if not await self._write(slot, {key: entry}, None):
                await self.forget(slot, (key,))
                stored = False
        await self.announce(("keys", (key,)))
        return stored

    async def set_many(
        self, items: Mapping[str, Any], ttl: float | None, tags: Iterable[str], persistent: bool, codec: Codec
    ) -> list[str]:
        """:meth:`Chain.set_many`, awaited: the keys some tier did not take."""
        for key in items:
            check_key(key)
        writers, encode, tag_tuple, now, expires_at = self.chain._write_plan(ttl, tags, persistent)
        payloads = encode_all(codec, items, encode)
        missed: dict[str, None] = {}
        for slot in writers:
            exp = slot.cap(expires_at, now)
            source = payloads if slot.holds_bytes else items
            batch = {key: new_entry((value, exp, tag_tuple)) for key, value in source.items()}
            if not await self._write(slot, batch, None):
                await self.forget(slot, batch)
                missed.update(dict.fromkeys(batch))
        if items:
            await self.announce(("keys", tuple(items)))
        return list(missed)

    async def write(self, slot: TierSlot, batch: Mapping[str, Entry]) -> bool:
        """Store ``batch`` in one tier (``set`` for one entry, else ``set_many``)."""
        hooks = self.hooks[slot]
        if len(batch) == 1:
            [(key, entry)] = batch.items()
            done = await self.call(slot, hooks.set, key, entry)
        else:
            done = await self.call(slot, hooks.set_many, batch)
        if done is UNAVAILABLE:
            return False
        slot.sets += len(batch)
        return True

    async def compute(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        policy: Policy = PLAIN,
    ) -> Any:
        """``factory()`` (awaited if it returns an awaitable) stored under ``key``.

        Concurrent coroutines of this event loop asking for one key share one
        computation, a task of its own: a caller cancelled while waiting does not
        cancel it for the others; its exception reaches every waiter and nothing
        is stored.  A ``policy`` beyond the plain one runs through :mod:`tierkit._aguard`.
        """
        if key in _computing.get():
            raise RuntimeError(
                f"aget_or_set: the computation of {key!r} asked for {key!r} while computing it "
                "(it would wait for itself forever)"
            )
        loop = asyncio.get_running_loop()
        flights = self._flights.setdefault(loop, {})
        flight = flights.get(key)
        if flight is None:

            async def lead() -> Any:
                _computing.set(_computing.get() | {key})
                if not policy.plain:
                    return await self.guard.lead(Miss(key, factory, ttl, tags, persistent, codec, policy))
                value = await self.read_through(
                    key, MISSING, 0, codec
                )  # a previous leader may have stored it
                if value is MISSING:
                    value = factory()
                    if inspect.isawaitable(value):
                        value = await value
                    await self.set(key, value, ttl, tags, persistent, codec)
                return value

            flight = flights[key] = loop.create_task(lead())
            flight.add_done_callback(lambda _: flights.pop(key, None))
        return await asyncio.shield(flight)

    # -- removal --------------------------------------------------------------------------------

    async def delete(self, key: str) -> bool:
        """:meth:`Chain.delete`, awaited."""
        check_key(key)
        removed = False
        deleted = self.chain.deleted
        stale = stale_key(key)
        for slot in self.chain.persistent_writers:
            delete = self.hooks[slot].delete
            outcome = await self.ask(slot, delete, key)
            removed = deleted(slot, key, outcome) or removed
            if type(outcome) is bool:
                deleted(slot, stale, await self.ask(slot, delete, stale), counted=False)
            else:  # the tier failed: do not ask again now
                slot.remember(keys=(stale,))
        await self.announce(("keys", (key, stale)))
        return removed

    async def invalidate(self, tags: Iterable[str], prefix: str | None) -> Invalidated:
        """:meth:`Chain.invalidate`, awaited."""
        tag_tuple = check_invalidation(tags, prefix)
        removed = 0
        pending: list[str] = []
        for slot in self.chain.persistent_writers:
            hooks = self.hooks[slot]
            reached = True
            if tag_tuple:
                answer = await self.ask(slot, hooks.invalidate_tags, tag_tuple)
                count = slot.checked_count("tierkit_invalidate_tags", answer)
                if count is None:
                    slot.remember(tags=tag_tuple)
                reached = count is not None
                removed += count or 0
            if prefix is not None:
                answer = await self.ask(slot, hooks.invalidate_prefix, prefix)
                count = slot.checked_count("tierkit_invalidate_prefix", answer)
                if count is None:
                    slot.remember(prefix=prefix)
                reached = reached and count is not None
                removed += count or 0
            if not reached:
                pending.append(slot.name)
        for op in invalidation_ops(tag_tuple, prefix):
            await self.announce(op)
        return Invalidated(removed, tuple(pending))

    async def clear(self, names: Sequence[str] | None) -> None:
        """:meth:`Chain.clear`, awaited."""
        cleared = self.chain.to_clear(names)
        for slot in cleared:
            if await self.call(slot, self.hooks[slot].clear) is UNAVAILABLE:
                slot.remember_clear()
        for op in clear_ops(cleared):
            await self.announce(op)

    # -- control plane --------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        """:meth:`Chain.health`: in a worker thread if a tier may block (a PING has a timeout)."""
        await self._catch_up_all()
        return await self._control(self.chain.health)

    async def stats(self, namespace: str) -> dict[str, Any]:
        """:meth:`Chain.stats`: in a worker thread if a tier may block (``INFO`` is a round trip)."""
        return await self._control(self.chain.stats, namespace)

    async def close(self) -> None:
        """Await each tier's ``tierkit_aclose``, then close the chain (in a thread if a tier may block).

        Missed invalidations get their last chance through the async hooks first.
        """
        if self.chain.closed:
            return
        await self._catch_up_all()
        for slot in self.chain.slots:
            aclose = slot.asynchronous.get("close")
            if aclose is not None:
                try:
                    await aclose()
                except Exception as exc:
                    slot.failed(exc)
        await self._control(self.chain.close)

    async def _catch_up_all(self) -> None:
        for slot in self.chain.slots:
            allowed = not slot.breaker.open_until or slot.breaker.allow()
            if slot.held and allowed and await self.catch_up(slot):
                slot.ok()

    async def _control(self, method: Callable[..., T], *args: Any) -> T:
        if self.blocking:
            return await asyncio.to_thread(method, *args)
        return method(*args)


def _below(key: str, default: Any) -> Any:
    return _BELOW
