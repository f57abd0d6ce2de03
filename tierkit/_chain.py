"""The chain: every call tierkit makes to a tier, in one place.

Where does a ``get`` go?  :meth:`Chain.get` is bound at build time to the
fastest correct path for this chain: the first tier's front door (a capability
a local object tier may offer, :meth:`tierkit.Tier.front_door`), else
:meth:`Chain.read_through`, which asks tiers in order, decodes a byte tier's hit
once and copies it into the ``always`` tiers above it with its *remaining* TTL.
A byte tier with ``tierkit_get_buffer`` is asked through it when the codec keeps
buffers, and one with ``tierkit_set_parts`` is written a payload in pieces
(:class:`~tierkit.Parts`): a large array is then copied neither way.

Every tier call goes through the tier's :class:`TierSlot`: its hookimpls bound
once, a circuit breaker, counters.  A tier that raises, or returns what the
contract does not allow (:mod:`tierkit.hookspecs`), has *failed*: the failure
is counted, logged once with the tier's name, fed to the breaker, and the
chain carries on with the other tiers — it never reaches the caller.  The
checks are type tests, so the hit path stays a hit path.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import countOf
from typing import Any, Literal, TypeVar, cast

import pluggy

from tierkit._backplane import Backplane, CatchUp, Op
from tierkit._breaker import Breaker
from tierkit._codec import Codec
from tierkit._config import redact
from tierkit._events import Event, emit
from tierkit._flight import SingleFlight
from tierkit._guard import Guard
from tierkit._latency import Latency
from tierkit._pending import Pending
from tierkit._policy import PLAIN, Miss, Policy, check_stale_ttl, stale_key
from tierkit._sizes import estimate_size
from tierkit._types import (
    FOREVER,
    MISSING,
    UNAVAILABLE,
    Clock,
    Entry,
    FrontDoor,
    HealthReport,
    HealthStatus,
    KeyReport,
    Parts,
    Payloads,
    TierHealth,
    TierReport,
    Unavailable,
    WritePolicy,
    new_entry,
    room_maker,
)
from tierkit.errors import CodecError
from tierkit.hookspecs import ASYNC_HOOKS

log = logging.getLogger("tierkit")

T = TypeVar("T")
_STATUS_RANK: dict[HealthStatus, int] = {"ok": 0, "skipped": 0, "degraded": 1, "down": 2}
_OVERALL: dict[int, Literal["ok", "degraded", "down"]] = {0: "ok", 1: "degraded", 2: "down"}


class TierSlot:
    """One tier in a built chain: its bound hooks, write policy, breaker and counters."""

    __slots__ = (
        "_reported",
        "ask",
        "asynchronous",
        "blocking",
        "breaker",
        "clear",
        "close",
        "contract_errors",
        "corrupt",
        "delete",
        "deletes",
        "errors",
        "get",
        "get_buffer",
        "get_many",
        "get_many_payloads",
        "health",
        "held",
        "hits",
        "holds_bytes",
        "invalidate_prefix",
        "invalidate_tags",
        "kind",
        "latency",
        "make_room",
        "max_ttl",
        "misses",
        "name",
        "namespace",
        "pending",
        "remote",
        "set",
        "set_many",
        "set_parts",
        "sets",
        "stats",
        "tier",
        "write",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        tier: Any,
        write: WritePolicy,
        max_ttl: float | None,
        breaker: Breaker,
        namespace: str = "",
        latency_sampling: int = 0,
    ) -> None:
        self.name = name
        self.kind = kind
        self.namespace = namespace
        self.tier = tier
        self.write = write
        self.max_ttl = max_ttl
        self.holds_bytes: bool = tier.holds == "bytes"
        self.remote = bool(getattr(tier, "remote", False))
        # Bound once: the chain calls these directly (a pluggy dispatch costs microseconds).
        self.get: Callable[[str], Any] = tier.tierkit_get
        self.set: Callable[[str, Entry], Any] = tier.tierkit_set
        self.delete: Callable[[str], Any] = tier.tierkit_delete
        self.get_many: Callable[[Sequence[str]], Any] = getattr(tier, "tierkit_get_many", self._get_each)
        self.get_many_payloads: Callable[[Sequence[str]], Any] | None = (
            getattr(tier, "tierkit_get_many_payloads", None) if self.holds_bytes else None
        )
        """A byte tier's batch read answered column by column, if it has one (``Cache.get_many``)."""
        self.set_parts: Callable[[str, Entry], Any] | None = (
            getattr(tier, "tierkit_set_parts", None) if self.holds_bytes else None
        )
        """A byte tier's write of a payload in pieces (:class:`~tierkit.Parts`), if it takes them."""
        self.get_buffer: Callable[[str], Any] | None = (
            getattr(tier, "tierkit_get_buffer", None) if self.holds_bytes else None
        )
        """A byte tier's read that hands its payload over (``bytearray``, ``memoryview``), if it has one."""
        self.set_many: Callable[[Mapping[str, Entry]], Any] = getattr(
            tier, "tierkit_set_many", self._set_each
        )
        self.invalidate_tags: Callable[[Sequence[str]], Any] = tier.tierkit_invalidate_tags
        self.invalidate_prefix: Callable[[str], Any] = tier.tierkit_invalidate_prefix
        self.clear: Callable[[], Any] = tier.tierkit_clear
        self.make_room: Callable[[int], Any] | None = room_maker(tier)
        """:meth:`tierkit.Tier.make_room`, if the tier offers more than the default's nothing."""
        self.health: Callable[[], Any] = getattr(tier, "tierkit_health", _healthy)
        self.stats: Callable[[], Any] = getattr(tier, "tierkit_stats", dict)
        self.close: Callable[[], Any] = getattr(tier, "tierkit_close", _nothing)
        # The async data plane (tierkit._achain): native coroutine hooks, and whether sync ones block.
        self.blocking = bool(getattr(tier, "blocking", True))
        self.asynchronous: dict[str, Callable[..., Any]] = {
            name: hook
            for name in ASYNC_HOOKS
            if (hook := getattr(tier, f"tierkit_a{name}", None)) is not None
        }
        self.breaker = breaker
        self.hits = self.misses = self.sets = self.deletes = self.errors = self.corrupt = 0
        self.contract_errors = 0
        self.pending = Pending()
        """What this tier missed (a failed write, delete or invalidation): applied before it serves."""
        self.held = False
        """True while :attr:`pending` holds anything: one attribute test on the normal path."""
        self.latency = Latency(latency_sampling) if latency_sampling else None
        self.ask: Callable[..., Any] = self._ask_timed if self.latency is not None else self._ask
        self._reported: set[str] = set()

    def _get_each(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        found = {}
        for key in keys:
            entry = self.get(key)
            if entry is not None:
                found[key] = entry
        return found

    def _set_each(self, entries: Mapping[str, Entry]) -> None:
        for key, entry in entries.items():
            self.set(key, entry)

    def call(self, method: Callable[..., T], *args: Any) -> T | Unavailable:
        """``method(*args)`` guarded by the breaker: :data:`UNAVAILABLE` if skipped or failed."""
        result: T | Unavailable = self.ask(method, *args)
        if result is not UNAVAILABLE:
            self.ok()
        return result

    def _ask(self, method: Callable[..., T], *args: Any) -> T | Unavailable:
        """:meth:`call` for a hook whose answer the chain checks: the caller confirms with :meth:`ok`.

        Bound as ``self.ask`` (or :meth:`_ask_timed` with latency sampling on).

        A wrong answer is then a failure of this call (:meth:`violated`), not a
        success followed by a failure, so the breaker counts it.
        """
        breaker = self.breaker
        if breaker.open_until and not breaker.allow():  # closed breaker: no call at all
            return UNAVAILABLE
        if self.held and not self.catch_up():
            return UNAVAILABLE  # it may hold values the chain has invalidated: serve nothing
        try:
            return method(*args)
        except Exception as exc:
            self.failed(exc)
            return UNAVAILABLE

    def forget(self, keys: Iterable[str]) -> None:
        """After a failed write of ``keys``: remove them here now, else remember to before serving.

        A refused write (out of memory, disk full) leaves the old value, a timed-out
        one may land later: either way this tier must not serve what it holds for them.
        """
        remaining = list(keys)
        while remaining and not self.breaker.open_until:
            try:
                self.delete(remaining[-1])
            except Exception as exc:
                self.failed(exc)
                break
            remaining.pop()
        if remaining:
            self.remember(keys=remaining)

    def remember(
        self, *, keys: Iterable[str] = (), tags: Iterable[str] = (), prefix: str | None = None
    ) -> None:
        """Note what this tier missed; it serves nothing until :meth:`catch_up` applies it."""
        self.pending.add(keys=keys, tags=tags, prefix=prefix)
        self._held()

    def remember_clear(self) -> None:
        """Note that this tier missed a clear of the namespace."""
        self.pending.add_clear()
        self._held()

    def _held(self) -> None:
        if not self.held:
            self.held = True
            self.event(
                "invalidations_pending",
                "tier %(tier)s (%(kind)s) missed an invalidation (%(reason)s); serves nothing until applied",
                reason=self.breaker.last_error or "unreachable",
            )

    def _ask_timed(self, method: Callable[..., T], *args: Any) -> T | Unavailable:
        """:meth:`_ask`, timing one call in ``latency_sampling`` into the operation's histogram."""
        latency = self.latency
        assert latency is not None
        latency.countdown -= 1
        if latency.countdown > 0:
            return self._ask(method, *args)
        latency.countdown = latency.every
        start = time.perf_counter()
        try:
            return self._ask(method, *args)
        finally:
            operation = getattr(method, "__name__", "call").removeprefix("tierkit_").lstrip("_")
            latency.observe(_OPERATION.get(operation, operation), time.perf_counter() - start)

    def catch_up(self) -> bool:
        """Apply what this tier missed; False (a failure, counted) if it still cannot be applied."""
        try:
            self.pending.apply(self.delete, self.invalidate_tags, self.invalidate_prefix, self.clear)
        except Exception as exc:
            self.failed(exc)
            return False
        self.held = bool(self.pending)  # another thread may have added more meanwhile
        log.info("tier %r (%s) caught up with the invalidations it had missed", self.name, self.kind)
        return True

    def ok(self) -> None:
        """The last call succeeded: reset the breaker if it had counted failures (cheap otherwise)."""
        breaker = self.breaker
        if breaker.failures or breaker.open_until:
            was_open = breaker.open_until
            breaker.success()
            if was_open:
                self.event(
                    "breaker_closed",
                    "tier %(tier)s (%(kind)s) answered again; circuit breaker closed",
                )

    def event(self, event: Event, message: str, reason: str = "") -> None:
        """Emit ``event`` about this tier (:mod:`tierkit._events`)."""
        emit(event, message, tier=self.name, kind=self.kind, namespace=self.namespace, reason=reason)

    def cap(self, expires_at: float | None, now: float) -> float | None:
        """``expires_at`` limited by this tier's ``max_ttl``."""
        if self.max_ttl is None:
            return expires_at
        cap = now + self.max_ttl
        return cap if expires_at is None or expires_at > cap else expires_at

    def failed(self, exc: BaseException) -> None:
        """Count a backend failure and feed the breaker (logged once per opening)."""
        self.errors += 1
        self._trip(redact(f"{type(exc).__name__}: {exc}"))

    def violated(self, hook: str, expected: str, got: Any) -> Unavailable:
        """A hook returned what its contract forbids: a failure of this tier, never the caller's.

        Logged once per hook (with the tier's name, what was expected and what
        came back); counted in ``errors`` and ``contract_errors``; fed to the breaker.
        """
        self.errors += 1
        self.contract_errors += 1
        got_text = f"{type(got).__module__}.{type(got).__qualname__}"
        reason = f"{hook} returned {got_text}, expected {expected}"
        if hook not in self._reported:
            self._reported.add(hook)
            log.error(
                "tier %r (kind %r) broke the tier contract: %s; treated as a failure of the tier",
                self.name,
                self.kind,
                reason,
            )
        self._trip(reason)
        return UNAVAILABLE

    def _trip(self, reason: str) -> None:
        if self.breaker.failure(reason):
            cooldown = self.breaker.open_until - self.breaker.clock()
            self.event(
                "breaker_opened",
                "tier %(tier)s (%(kind)s) failing (%(reason)s); circuit breaker open, "
                f"skipped for {cooldown:.1f}s, then probed",
                reason=reason,
            )
        else:
            log.debug("tier %r (%s) error: %s", self.name, self.kind, reason)

    def checked_count(self, hook: str, result: object) -> int | None:
        """An invalidation's count (confirming the call); ``None`` if it failed or was not an ``int``."""
        if type(result) is int:
            self.ok()
            return result
        if result is not UNAVAILABLE:
            self.violated(hook, "int", result)
        return None

    def __repr__(self) -> str:
        return f"<TierSlot {self.name!r} kind={self.kind!r} write={self.write!r}>"


def _healthy() -> TierHealth:
    return TierHealth("ok")


def _nothing() -> None:
    return None


class Invalidated(int):
    """What ``invalidate()`` returns: the number of entries removed, summed over tiers.

    ``pending`` names the tiers the invalidation could not reach now (down,
    timed out, breaker open): it is remembered and applied before they serve
    again, and until then they serve nothing.
    """

    pending: tuple[str, ...]

    def __new__(cls, removed: int, pending: tuple[str, ...] = ()) -> Invalidated:
        self = super().__new__(cls, removed)
        self.pending = pending
        return self

    def __repr__(self) -> str:
        return f"Invalidated({int(self)}, pending={self.pending!r})" if self.pending else str(int(self))


class Skipped:
    """A tier of the order that is not in the chain, and why."""

    __slots__ = ("kind", "name", "reason", "status")

    def __init__(self, name: str, kind: str, status: Literal["skipped", "down"], reason: str) -> None:
        self.name = name
        self.kind = kind
        self.status: Literal["skipped", "down"] = status
        self.reason = reason


_OPERATION = {"get_buffer": "get", "set_parts": "set"}
"""Latency histograms of hooks that stand in for another: a ``get`` is a ``get``, whichever hook served it."""

Room = tuple[tuple[TierSlot, Callable[[int], Any]], ...]
"""Tiers that make room for a batch before it is decoded, with their :meth:`tierkit.Tier.make_room`."""
_Hit = tuple[Any, bytes | bytearray | memoryview | None, Entry]
"""A hit on its way up: (value, its payload if it came from a byte tier, the stored entry)."""
_HANDED = (bytearray, memoryview)
"""Types of the payloads ``tierkit_get_buffer`` may hand over, besides ``bytes``."""


class Hits:
    """The hits of one tier's batch read on their way up, column by column (``Cache.get_many``).

    ``values[i]`` is the value of ``keys[i]``; ``payloads`` its bytes when the
    tier is a byte tier (``None`` for an object tier); ``tags`` maps the keys
    that carry tags to them.  Columns let a batch be decoded, counted and
    copied up with C-level loops (``zip``, ``map``) instead of a call per key.
    """

    __slots__ = ("expires_at", "keys", "payloads", "tags", "values")

    def __init__(
        self,
        keys: list[str],
        values: list[Any],
        payloads: list[bytes] | None,
        expires_at: list[float | None],
        tags: Mapping[str, tuple[str, ...]],
    ) -> None:
        self.keys = keys
        self.values = values
        self.payloads = payloads
        self.expires_at = expires_at
        self.tags = tags

    def batch_for(self, slot: TierSlot, codec: Codec, now: float) -> dict[str, Entry]:
        """The entries to copy into ``slot``: as it holds them, deadlines capped by its ``max_ttl``.

        An object tier's hits go into a byte tier encoded with ``codec``; a value
        the codec refuses is left out (the byte tier is left alone for it).
        """
        keys, expires_at, tags = self.keys, self.expires_at, self.tags
        held: list[Any] = self.values
        if slot.holds_bytes:
            if self.payloads is not None:
                held = self.payloads
            else:
                keys, held, expires_at = self._encoded(codec)
        if slot.max_ttl is not None:
            cap = slot.cap
            expires_at = [cap(deadline, now) for deadline in expires_at]
        tag_column: Iterable[tuple[str, ...]] = (
            [tags.get(key, ()) for key in keys] if tags else itertools.repeat(())
        )
        # tuple.__new__ called by map itself: through new_entry's partial, each Entry costs one more call
        entries = map(tuple.__new__, itertools.repeat(Entry), zip(held, expires_at, tag_column, strict=False))
        return dict(zip(keys, entries, strict=True))

    def _encoded(self, codec: Codec) -> tuple[list[str], list[bytes], list[float | None]]:
        """Keys, payloads and deadlines of the values ``codec`` accepts (for a byte tier above)."""
        keys, payloads, expires_at = [], [], []
        for key, value, deadline in zip(self.keys, self.values, self.expires_at, strict=True):
            try:
                payload = codec.encode(key, value)
            except TypeError:
                continue  # an object-tier value the codec cannot write: leave byte tiers alone
            keys.append(key)
            payloads.append(payload)
            expires_at.append(deadline)
        return keys, payloads, expires_at

    def take(self, slot: TierSlot, wanted: dict[str, None], found: dict[str, Any]) -> dict[str, None]:
        """Count ``slot``'s hits and misses of ``wanted``, add the values to ``found``; the keys still wanted.

        ``keys`` are distinct keys of ``wanted`` (checked when the answer was taken).
        """
        keys = self.keys
        slot.hits += len(keys)
        slot.misses += len(wanted) - len(keys)
        found.update(zip(keys, self.values, strict=True))
        if len(keys) == len(wanted):
            return {}
        if not keys:
            return wanted
        hit = set(keys)
        return {key: None for key in wanted if key not in hit}


class Chain:
    """The built chain of tiers: reads, writes, invalidation, health and stats.

    ``slots`` are the running tiers in order; ``skipped`` the tiers of the order
    that are not running, with the reason.  ``pm`` has every tier registered so
    that ``pm.hook.tierkit_get(key=...)`` is the slow reference path the fast
    one is held to (a test checks it).
    """

    def __init__(
        self,
        slots: Sequence[TierSlot],
        skipped: Sequence[Skipped],
        pm: pluggy.PluginManager,
        codec: Codec,
        clock: Clock,
        default_ttl: float | None,
        order: Sequence[str],
        backplane: tuple[Backplane, str] | None = None,
    ) -> None:
        self.slots = tuple(slots)
        self.skipped = tuple(skipped)
        self.pm = pm
        self.codec = codec
        self.clock = clock
        self.default_ttl = default_ttl
        self.order = tuple(order)
        self.misses = 0
        self.closed = False
        self._flights = SingleFlight()
        self._close_lock = threading.Lock()
        self.backplane: Backplane | None = None if backplane is None else backplane[0]
        """Keeps local tiers coherent across processes (:mod:`tierkit._backplane`)."""
        self.backplane_tier: str | None = None if backplane is None else backplane[1]
        """The tier whose transport the backplane uses (its health shows the backplane's state)."""
        # Write plans, computed once: which tiers a write goes to, whether it needs bytes.
        slots = self.slots
        self.writers = tuple(s for s in slots if s.write == "always")
        self.persistent_writers = tuple(s for s in slots if s.write != "never")
        self.encode_plain = any(s.holds_bytes for s in self.writers)
        self.encode_persistent = any(s.holds_bytes for s in self.persistent_writers)
        self.split_plain = any(s.set_parts for s in self.writers)
        self.split_persistent = any(s.set_parts for s in self.persistent_writers)
        """Whether a write goes to a tier that takes a payload in pieces (``tierkit_set_parts``)."""
        # A hit in tier i is copied into the "always" tiers above it.
        self._backfill_targets = tuple(
            tuple(above for above in slots[:i] if above.write == "always") for i in range(len(slots))
        )
        self._backfill_capped = tuple(any(t.max_ttl is not None for t in ts) for ts in self._backfill_targets)
        self.room_makers: tuple[Room, ...] = tuple(
            tuple((t, t.make_room) for t in ts if t.make_room is not None) for ts in self._backfill_targets
        )
        """The targets of a backfill from tier i that make room before its batch is decoded."""
        first = slots[0] if slots else None
        self._first = first if first is not None and not first.holds_bytes and not first.remote else None
        self.get: Callable[[str, Any], Any] = self.reader(codec)
        """``get(key, default)``: the fastest correct read of this chain (see the module docstring)."""
        self.guard = Guard(self)
        """Cross-process lock, fail-safe and early refresh of computations (:mod:`tierkit._guard`)."""

    # -- reads --------------------------------------------------------------------------------

    def reader(self, codec: Codec) -> Callable[[str, Any], Any]:
        """A ``get(key, default)`` that decodes byte-tier hits with ``codec``.

        ``@cached`` asks for one per return annotation.  With a local object tier
        first, its hits are served without the generic path: through its front
        door when it offers one, else through its bound ``tierkit_get``.
        """
        first = self._first
        if first is None:

            def get(key: str, default: Any = None) -> Any:
                if type(key) is not str or not key or not key.isascii():
                    check_key(key)
                return self.read_through(key, default, 0, codec)

            return get

        fresh = self.fresh
        clock = self.clock

        def after_first_miss(key: str, default: Any) -> Any:
            if type(key) is not str or not key or not key.isascii():
                check_key(key)
            if fresh is not None and clock() >= fresh.until:  # the front door's hit was due a catch-up
                return self.read_through(key, default, 0, codec)  # find() catches up first
            first.misses += 1
            return self.read_through(key, default, 1, codec)

        fused = self.front_door(first, after_first_miss)
        if fused is not None:
            return fused
        first_get = first.get
        read_through = self.read_through

        def get_first(key: str, default: Any = None) -> Any:
            if type(key) is not str or not key or not key.isascii():
                check_key(key)
            try:
                entry = first_get(key)
            except Exception as exc:
                first.failed(exc)
            else:
                if type(entry) is Entry:
                    first.hits += 1
                    return entry[0]
                if entry is None:
                    first.misses += 1
                else:
                    first.violated("tierkit_get", "Entry or None", entry)
            return read_through(key, default, 1, codec)

        return get_first

    @property
    def fresh(self) -> CatchUp | None:
        """When the backplane's messages are next applied by a reader (``None``: by its own thread)."""
        return None if self.backplane is None else self.backplane.fresh

    def front_door(self, first: TierSlot, on_miss: FrontDoor) -> FrontDoor | None:
        """``first``'s fused read (:meth:`tierkit.Tier.front_door`), if it offers one.

        Given :attr:`fresh` when its signature takes it (a front door written before it existed
        still works: the backplane's own thread keeps its copies up to date)."""
        front_door = getattr(first.tier, "front_door", None)
        if front_door is None:
            return None
        if "fresh" in inspect.signature(front_door).parameters:
            fused: FrontDoor | None = front_door(on_miss, first, fresh=self.fresh)
            return fused
        return cast("FrontDoor | None", front_door(on_miss, first))

    def read_through(self, key: str, default: Any, start: int, codec: Codec) -> Any:
        """Ask tiers from ``start`` on; backfill the tiers above a hit."""
        found = self.find(key, start, codec)
        if found is None:
            self.misses += 1
            return default
        return found[1][0]

    def find(self, key: str, start: int, codec: Codec) -> tuple[int, _Hit] | None:
        """The first hit from tier ``start`` on, with the index of its tier, backfilled above it.

        Tier misses are counted here; the chain's miss (``None``) is the caller's to count.
        """
        slots = self.slots
        stamp = self.stamp()
        for index in range(start, len(slots)):
            slot = slots[index]
            handed = slot.get_buffer is not None and codec.keeps_buffers
            entry = slot.ask(slot.get_buffer if handed else slot.get, key)
            if entry is None and not slot.breaker.failures:
                slot.misses += 1  # a plain miss, no failure to forget: accept() without its two calls
                continue
            hit = self.accept(slot, key, entry, codec, handed=handed)
            if hit is None:
                continue
            if index:
                self._backfill_one(index, key, *hit, stamp)
            return index, hit
        return None

    def accept(
        self, slot: TierSlot, key: str, entry: object, codec: Codec, now: bool = True, handed: bool = False
    ) -> _Hit | None:
        """A tier's ``tierkit_get`` answer as a checked, decoded hit — or ``None`` (a miss, a failure,
        an answer the contract forbids, undecodable bytes), counted either way.

        Shared by the sync and async read paths (``now``: see :meth:`_undecodable`).  ``handed``:
        the answer of ``tierkit_get_buffer``, whose payload may be a ``bytearray`` or ``memoryview``
        handed over.
        """
        if entry is None:
            slot.ok()
            slot.misses += 1
            return None
        if type(entry) is not Entry:
            if entry is not UNAVAILABLE:
                slot.violated("tierkit_get_buffer" if handed else "tierkit_get", "Entry or None", entry)
            return None
        value = entry[0]
        holds_bytes = slot.holds_bytes
        if holds_bytes and type(value) is not bytes and not (handed and type(value) in _HANDED):
            hook = "tierkit_get_buffer" if handed else "tierkit_get"
            slot.violated(hook, "an Entry holding bytes (a byte tier)", value)
            return None
        slot.ok()
        payload = None
        if holds_bytes:
            payload = value
            try:
                value = codec.decode(payload)
            except CodecError as exc:
                self._undecodable(slot, key, exc, now=now)
                return None
        slot.hits += 1
        return value, payload, entry

    def get_many(self, keys: Iterable[str], codec: Codec | None = None) -> dict[str, Any]:
        """Values of the keys that hit (misses are absent), one batch per tier."""
        codec = codec or self.codec
        wanted = dict.fromkeys(keys)
        check_keys(wanted)
        found: dict[str, Any] = {}
        stamp = self.stamp()
        for index, slot in enumerate(self.slots):
            if not wanted:
                break
            read_payloads, room = slot.get_many_payloads, self.room_makers[index]
            if read_payloads is not None:
                answer = slot.ask(read_payloads, list(wanted))
                hits = self.payload_hits(slot, wanted, answer, codec, room=room)
            else:
                hits = self.entry_hits(slot, wanted, slot.ask(slot.get_many, list(wanted)), codec, room=room)
            if hits is None:
                continue
            if index and hits.keys:
                self._backfill(index, hits, stamp)
            wanted = hits.take(slot, wanted, found)
        self.misses += len(wanted)
        return found

    def entry_hits(
        self,
        slot: TierSlot,
        wanted: Mapping[str, None],
        entries: object,
        codec: Codec,
        now: bool = True,
        room: Room = (),
    ) -> Hits | None:
        """The checked, decoded hits of one tier's ``tierkit_get_many`` answer (``None``: the tier failed).

        A key nobody asked for is ignored; a value that is not an ``Entry`` (of
        bytes, for a byte tier) fails the whole answer.  ``room``: the tiers the
        hits will be copied into that make room for them first (:meth:`_decoded`).
        """
        if not isinstance(entries, Mapping):
            if entries is not UNAVAILABLE:
                slot.violated("tierkit_get_many", "a Mapping of key to Entry", entries)
            return None
        holds_bytes = slot.holds_bytes
        values = entries.values()
        if {*map(type, values)} - _ENTRY or (holds_bytes and {*map(type, map(_first, values))} - _BYTES):
            for entry in values:  # find the culprit, to name it
                if type(entry) is not Entry or (holds_bytes and type(entry[0]) is not bytes):
                    expected = "Entry values holding bytes" if holds_bytes else "Entry values"
                    slot.violated("tierkit_get_many", expected, entry[0] if type(entry) is Entry else entry)
                    return None
        slot.ok()
        if entries.keys() <= wanted.keys():
            keys, found = list(entries), list(values)
        else:
            keys = [key for key in entries if key in wanted]
            found = [entries[key] for key in keys]
        held = list(map(_first, found))
        expires_at = list(map(_second, found))
        tags = {key: _tag_tuple(tags) for key, (_, _, tags) in zip(keys, found, strict=True) if tags}
        if not holds_bytes:
            return Hits(keys, held, None, expires_at, tags)
        return self._decoded(slot, keys, held, expires_at, tags, codec, now, room)

    def payload_hits(
        self,
        slot: TierSlot,
        wanted: Mapping[str, None],
        answer: object,
        codec: Codec,
        now: bool = True,
        room: Room = (),
    ) -> Hits | None:
        """The checked, decoded hits of a ``tierkit_get_many_payloads`` answer (``None``: the tier failed).

        Keys nobody asked for, and repeated keys, are ignored; anything else the
        contract does not allow fails the whole answer.  ``room``: as for :meth:`entry_hits`.
        """
        if type(answer) is not Payloads:
            if answer is not UNAVAILABLE:
                slot.violated("tierkit_get_many_payloads", "a Payloads", answer)
            return None
        keys, payloads, expires_at, tags = answer
        # The usual answer names every key asked, in order, as the very objects asked for: checked
        # keys, nothing to filter (one C-level identity pass instead of a type pass and a set).
        own = type(keys) is list and len(keys) == len(wanted) and all(map(operator.is_, keys, wanted))
        problem = _payloads_problem(keys, payloads, expires_at, tags, own)
        if problem is not None:
            slot.violated("tierkit_get_many_payloads", *problem)
            return None
        slot.ok()
        if not own and len(wanted.keys() & keys) < len(keys):  # a key repeated, or one nobody asked for
            keys, payloads, expires_at = _asked(wanted, keys, payloads, expires_at)
        if tags:
            tags = {key: _tag_tuple(tags[key]) for key in keys if key in tags}
        return self._decoded(slot, keys, payloads, expires_at, tags, codec, now, room)

    def _decoded(
        self,
        slot: TierSlot,
        keys: list[str],
        payloads: list[bytes],
        expires_at: list[float | None],
        tags: Mapping[str, tuple[str, ...]],
        codec: Codec,
        now: bool,
        room: Room = (),
    ) -> Hits:
        """A byte tier's hits, decoded in one batch (:meth:`~tierkit.Codec.decode_many`).

        The tiers in ``room`` first evict what the hits will displace
        (:meth:`tierkit.Tier.make_room`), so the decoded values reuse the memory the
        evicted ones free.  If some payload cannot be decoded, each is decoded on its
        own so that only the bad ones are dropped (counted and, if corrupt, removed:
        :meth:`_undecodable`).
        """
        if keys:
            for target, make_room in room:
                target.call(make_room, len(keys))
        try:
            values = codec.decode_many(payloads)
        except CodecError:
            pass
        else:
            if len(values) != len(payloads):
                raise TypeError(
                    f"codec {codec.name!r}: decode_many returned {len(values)} values "
                    f"for {len(payloads)} payloads"
                )
            return Hits(keys, values, payloads, expires_at, tags)
        decode = codec.decode
        kept: list[int] = []
        values = []
        for i, (key, payload) in enumerate(zip(keys, payloads, strict=True)):
            try:
                values.append(decode(payload))
            except CodecError as exc:
                self._undecodable(slot, key, exc, now)
            else:
                kept.append(i)
        pick = [keys[i] for i in kept], [payloads[i] for i in kept], [expires_at[i] for i in kept]
        return Hits(pick[0], values, pick[1], pick[2], tags)

    def _backfill(self, index: int, hits: Hits, stamp: int = 0) -> None:
        """Copy hits from tier ``index`` into the ``always`` tiers above it, one batch per tier.

        ``stamp``: :meth:`stamp` before the hits were read (see :meth:`write_local`).
        """
        now = self.clock() if self._backfill_capped[index] else 0.0
        for slot in self._backfill_targets[index]:
            batch = hits.batch_for(slot, self.codec, now)
            if not batch:
                continue
            if self.coherent(slot):
                self.write_local(slot, batch, stamp)
            else:
                self.write(slot, batch)

    def _backfill_one(
        self,
        index: int,
        key: str,
        value: Any,
        payload: bytes | bytearray | memoryview | None,
        entry: Entry,
        stamp: int,
    ) -> None:
        """:meth:`_backfill` for the single hit of a ``get`` (no batch to build)."""
        now = self.clock() if self._backfill_capped[index] else 0.0
        for slot in self._backfill_targets[index]:
            if slot.holds_bytes and payload is not None and type(payload) is not bytes:
                payload = bytes(payload)  # handed over, the decoded value's memory: copied once
            copy = self._copy_for(slot, key, value, payload, entry, now)
            if copy is None:
                continue
            if self.coherent(slot):
                self.write_local(slot, {key: copy}, stamp)
            elif slot.call(slot.set, key, copy) is not UNAVAILABLE:
                slot.sets += 1

    # -- the backplane (tierkit._backplane): local copies coherent across processes ---------------

    def stamp(self) -> int:
        """Taken before reading a shared tier: what arrived since decides whether a backfill may happen.

        Every read path takes one first, so it is also where a reader catches up with the backplane."""
        backplane = self.backplane
        return 0 if backplane is None else backplane.stamp()

    def coherent(self, slot: TierSlot) -> bool:
        """Whether ``slot`` is one of the local tiers a backplane keeps coherent (writes go through it)."""
        backplane = self.backplane
        return backplane is not None and slot in backplane.local

    def write_local(self, slot: TierSlot, batch: Mapping[str, Entry], stamp: int | None) -> bool:
        """Write a local tier while a backplane runs; False if the tier failed.

        Nothing is written while the backplane is suspended (disconnected).  A
        backfill (``stamp`` given) writes only the keys no invalidation named
        since ``stamp``: checked and written under the lock the backplane applies
        invalidations under, so an old value never lands after its invalidation.
        """
        backplane = self.backplane
        assert backplane is not None
        with backplane.lock:
            if stamp is not None:
                keep = backplane.keep(batch, stamp)
                if len(keep) < len(batch):
                    batch = {key: batch[key] for key in keep}
            elif backplane.suspended:
                return True
            else:
                backplane.wrote_local()
            return not batch or self.write(slot, batch)

    def announce(self, op: Op) -> None:
        """Tell the namespace's other processes to drop their local copies (``op``)."""
        if self.backplane is not None:
            self.backplane.publish(op)

    def carrying(
        self, slot: TierSlot, op: Op, call: Callable[..., T], *args: Any, value: bool = True
    ) -> tuple[T, bool]:
        """``call(*args)``, a write to ``slot``; its outcome and whether the message announcing ``op``
        went with it — as it does when ``slot`` is the backplane's rider and the write succeeded
        (:meth:`Backplane.carried`; ``value``: the message may carry the value).  When it did not,
        the caller :meth:`announce` s ``op``."""
        backplane = self.backplane
        if backplane is None or slot is not backplane.rider:
            return call(*args), False
        return backplane.carried(op, call, *args, value=value)

    def _copy_for(
        self,
        slot: TierSlot,
        key: str,
        value: Any,
        payload: bytes | bytearray | memoryview | None,
        entry: Entry,
        now: float,
    ) -> Entry | None:
        """The entry to backfill into ``slot``, with the remaining TTL (``None`` if it cannot hold it).

        The hit was just validated against the clock by its tier, so the clock
        is read (``now``) only when a target caps TTLs (``max_ttl``).
        """
        stored = value
        if slot.holds_bytes:
            if payload is None:
                try:
                    payload = self.codec.encode(key, value)
                except TypeError:
                    return None  # an object-tier value the codec cannot write: leave byte tiers alone
            stored = payload
        tags = entry[2] if type(entry[2]) is tuple else tuple(entry[2])
        expires_at = entry[1] if slot.max_ttl is None else slot.cap(entry[1], now)
        return new_entry((stored, expires_at, tags))

    def _undecodable(self, slot: TierSlot, key: str, exc: CodecError, now: bool = True) -> None:
        """Count an undecodable entry as a miss; remove it only if its bytes are bad.

        ``now=False`` (the async plane, which must not call a blocking hook) leaves
        the removal pending: it is applied before the tier serves again.
        """
        slot.errors += 1
        if not exc.corrupt:
            slot.misses += 1
            log.debug("tier %r: %r not decodable in this process: %s", slot.name, key, exc)
            return
        slot.corrupt += 1
        if not now:
            slot.remember(keys=(key,))
            return
        try:
            slot.delete(key)
        except Exception as delete_exc:
            slot.failed(delete_exc)
            return
        slot.event(
            "corrupt_entry_removed",
            "tier %(tier)s (%(kind)s) held a corrupt entry (%(reason)s); removed it",
            reason=f"key {key!r}: {exc}",
        )

    # -- writes -------------------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: Any,
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        stale_ttl: float | None = None,
    ) -> bool:
        """The single-key write, kept apart from :meth:`set_many`: it is the common one.

        True when every tier meant to take it did.  A tier that did not may
        hold an older value: the key is pending removal there (see :mod:`tierkit._pending`).
        With ``stale_ttl``, see :meth:`_set_with_stale`.
        """
        if type(key) is not str or not key or not key.isascii():
            check_key(key)
        if stale_ttl:
            return self._set_with_stale(key, value, ttl, tags, persistent, codec, stale_ttl)
        writers, encode, tag_tuple, now, expires_at = self._write_plan(ttl, tags, persistent)
        payload: bytes | Parts | None = None
        if not encode:  # no byte tier to write: the value is still held to the codec, so it is refused
            codec.check(key, value)  # here exactly when a chain with Redis would refuse it
        elif self.split_persistent if persistent else self.split_plain:
            payload = codec.encode_parts(key, value)
        else:
            payload = codec.encode(key, value)
        stored = True
        backplane = self.backplane
        if backplane is not None:
            backplane.catch_up_if_due()  # a writing loop too: its own echoes need not wake the subscriber
        op: Op = ("keys", (key,))
        announced = False
        for slot in writers:
            exp = expires_at if slot.max_ttl is None else slot.cap(expires_at, now)
            held, store = value, slot.set
            if slot.holds_bytes:
                held = payload
                if type(payload) is Parts:  # pieces for the tiers that take them, else bytes joined once
                    if slot.set_parts is None or self.coherent(slot):
                        held = payload.join()
                    else:
                        store = slot.set_parts
            entry = new_entry((held, exp, tag_tuple))
            if self.coherent(slot):
                done = self.write_local(slot, {key: entry}, None)
            else:
                # Receivers decode a carried value with the cache's codec: another one's is not carried.
                outcome, sent = self.carrying(
                    slot, op, slot.call, store, key, entry, value=codec is self.codec
                )
                announced = announced or sent
                done = outcome is not UNAVAILABLE
                if done:
                    slot.sets += 1
            if not done:
                slot.forget((key,))
                stored = False
        if backplane is not None and not announced:
            backplane.publish(op)
        return stored

    def _set_with_stale(
        self,
        key: str,
        value: Any,
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        stale_ttl: float,
    ) -> bool:
        """:meth:`set`, plus the stale copy that outlives the value by ``stale_ttl`` (docs/stampede.md).

        One batch per tier (a Redis pipeline), the value encoded once.  Without an
        expiry nothing goes stale: the value alone is stored.
        """
        batches = self.stale_batches(key, value, ttl, tags, persistent, codec, stale_ttl)
        if batches is None:
            return self.set(key, value, ttl, tags, persistent, codec)
        stored = True
        op: Op = ("keys", tuple(batches[0][1]))  # the value and its stale copy
        announced = False
        for slot, batch in batches:
            done, sent = self.carrying(slot, op, self.write, slot, batch)
            announced = announced or sent
            if not done:
                slot.forget(batch)
                stored = False
        if not announced:
            self.announce(op)
        return stored

    def stale_batches(
        self,
        key: str,
        value: Any,
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        stale_ttl: float,
    ) -> list[tuple[TierSlot, dict[str, Entry]]] | None:
        """Per tier, the value and its stale copy; ``None`` when the value never expires."""
        check_stale_ttl(stale_ttl)
        writers, encode, tag_tuple, now, expires_at = self._write_plan(ttl, tags, persistent)
        if expires_at is None:
            return None
        payload = codec.encode(key, value) if encode else None
        stale_until = expires_at + stale_ttl
        batches = []
        for slot in writers:
            held = payload if slot.holds_bytes else value
            batch = {
                key: new_entry((held, slot.cap(expires_at, now), tag_tuple)),
                stale_key(key): new_entry((held, slot.cap(stale_until, now), tag_tuple)),
            }
            batches.append((slot, batch))
        return batches

    def set_many(
        self, items: Mapping[str, Any], ttl: float | None, tags: Iterable[str], persistent: bool, codec: Codec
    ) -> list[str]:
        """:meth:`set` for several keys, one batch per tier; the keys some tier did not take."""
        for key in items:
            check_key(key)
        writers, encode, tag_tuple, now, expires_at = self._write_plan(ttl, tags, persistent)
        payloads = encode_all(codec, items, encode)
        missed: dict[str, None] = {}
        op: Op = ("keys", tuple(items))
        announced = False
        for slot in writers:
            exp = slot.cap(expires_at, now)
            source = payloads if slot.holds_bytes else items
            batch = {key: new_entry((value, exp, tag_tuple)) for key, value in source.items()}
            if self.coherent(slot):
                done = self.write_local(slot, batch, None)
            else:
                done, sent = self.carrying(slot, op, self.write, slot, batch)
                announced = announced or sent
            if not done:
                slot.forget(batch)
                missed.update(dict.fromkeys(batch))
        if items and not announced:
            self.announce(op)
        return list(missed)

    def write(self, slot: TierSlot, batch: Mapping[str, Entry]) -> bool:
        """Store ``batch`` in one tier (``tierkit_set`` for one entry, else ``tierkit_set_many``)."""
        if len(batch) == 1:
            [(key, entry)] = batch.items()
            done = slot.call(slot.set, key, entry)
        else:
            done = slot.call(slot.set_many, batch)
        if done is UNAVAILABLE:
            return False
        slot.sets += len(batch)
        return True

    def _write_plan(
        self, ttl: float | None, tags: Iterable[str], persistent: bool
    ) -> tuple[tuple[TierSlot, ...], bool, tuple[str, ...], float, float | None]:
        """Check a write's arguments; return the tiers to write, whether to encode, tags, now, deadline."""
        if ttl is None:
            ttl = self.default_ttl
        if ttl is not None:
            check_ttl(ttl)
        tag_tuple = check_tags(tags) if tags else ()
        now = self.clock()
        expires_at = None if ttl is None or ttl == FOREVER else now + ttl
        if persistent:
            return self.persistent_writers, self.encode_persistent, tag_tuple, now, expires_at
        return self.writers, self.encode_plain, tag_tuple, now, expires_at

    def compute(
        self,
        key: str,
        factory: Callable[[], T],
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
        policy: Policy = PLAIN,
    ) -> T:
        """``factory()`` stored under ``key``; concurrent callers in this process share one call.

        A ``policy`` beyond the plain one (lock, stale, early refresh) runs through :mod:`tierkit._guard`.
        """
        if not policy.plain:
            miss = Miss(key, factory, ttl, tags, persistent, codec, policy)
            return cast(T, self._flights.run(key, functools.partial(self.guard.lead, miss)))

        def lead() -> T:
            value = self.read_through(key, MISSING, 0, codec)  # a previous leader may have stored it
            if value is MISSING:
                value = factory()
                self.set(key, value, ttl, tags, persistent, codec)
            return cast(T, value)

        return self._flights.run(key, lead)

    # -- removal ------------------------------------------------------------------------------

    def delete(self, key: str) -> bool:
        """Remove ``key`` and its stale copy from every writable tier; True if any tier held ``key``."""
        check_key(key)
        removed = False
        stale = stale_key(key)
        op: Op = ("keys", (key, stale))
        announced = False
        for slot in self.persistent_writers:
            outcome = slot.ask(slot.delete, key)
            removed = self.deleted(slot, key, outcome) or removed
            if type(outcome) is bool:  # the message goes with the last of the two deletes
                outcome, sent = self.carrying(slot, op, slot.ask, slot.delete, stale)
                announced = announced or sent
                self.deleted(slot, stale, outcome, counted=False)
            else:  # the tier failed: do not ask again now
                slot.remember(keys=(stale,))
        if not announced:
            self.announce(op)
        return removed

    def deleted(self, slot: TierSlot, key: str, outcome: object, counted: bool = True) -> bool:
        """A tier's answer to ``tierkit_delete(key)``; a failure leaves the key pending removal.

        ``counted``: a delete the caller asked for (not the removal of a stale copy along with it).
        """
        if type(outcome) is bool:
            slot.ok()
            slot.deletes += counted
            return outcome
        if outcome is not UNAVAILABLE:
            slot.violated("tierkit_delete", "bool", outcome)
        slot.remember(keys=(key,))
        return False

    def invalidate(self, tags: Iterable[str], prefix: str | None) -> Invalidated:
        """Remove entries carrying any of ``tags`` and/or under ``prefix``; the count over tiers."""
        tag_tuple = check_invalidation(tags, prefix)
        removed = 0
        pending: list[str] = []
        for slot in self.persistent_writers:
            reached = True
            if tag_tuple:
                answer = slot.ask(slot.invalidate_tags, tag_tuple)
                count = slot.checked_count("tierkit_invalidate_tags", answer)
                if count is None:
                    slot.remember(tags=tag_tuple)
                reached = count is not None
                removed += count or 0
            if prefix is not None:
                answer = slot.ask(slot.invalidate_prefix, prefix)
                count = slot.checked_count("tierkit_invalidate_prefix", answer)
                if count is None:
                    slot.remember(prefix=prefix)
                reached = reached and count is not None
                removed += count or 0
            if not reached:
                pending.append(slot.name)
        for op in invalidation_ops(tag_tuple, prefix):
            self.announce(op)
        return Invalidated(removed, tuple(pending))

    def clear(self, names: Sequence[str] | None) -> None:
        """Empty this namespace in every writable tier, or in the tiers ``names``."""
        cleared = self.to_clear(names)
        for slot in cleared:
            if slot.call(slot.clear) is UNAVAILABLE:
                slot.remember_clear()
        for op in clear_ops(cleared):
            self.announce(op)

    def to_clear(self, names: Sequence[str] | None) -> list[TierSlot]:
        """The tiers ``clear(tiers=names)`` empties: every writable tier, or the ones named."""
        if names is None:
            return list(self.persistent_writers)
        unknown = sorted(set(names) - {s.name for s in self.slots})
        if unknown:
            raise ValueError(f"clear(tiers=...) names tiers not in the chain: {', '.join(unknown)}")
        return [s for s in self.slots if s.name in names]

    # -- control plane ------------------------------------------------------------------------

    def inspect(self, key: str) -> dict[str, KeyReport]:
        """Where ``key`` is, tier by tier in order, without backfilling or counting a read."""
        check_key(key)
        now = self.clock()
        reports: dict[str, KeyReport] = {}
        for slot in self.slots:
            entry = slot.ask(slot.get, key)
            state = slot.breaker.state
            if entry is None:
                slot.ok()
                reports[slot.name] = KeyReport(slot.name, slot.kind, "absent", breaker=state)
            elif type(entry) is not Entry:
                if entry is not UNAVAILABLE:
                    slot.violated("tierkit_get", "Entry or None", entry)
                reason = slot.breaker.last_error or "missed invalidations not applied yet"
                reports[slot.name] = KeyReport(
                    slot.name, slot.kind, "unavailable", breaker=state, reason=reason
                )
            else:
                slot.ok()
                value, expires_at, tags = entry
                size = len(value) if type(value) is bytes else estimate_size(value)
                ttl = None if expires_at is None else round(expires_at - now, 3)
                reports[slot.name] = KeyReport(slot.name, slot.kind, "held", ttl, size, tuple(tags), state)
        for skipped in self.skipped:
            reports[skipped.name] = KeyReport(
                skipped.name, skipped.kind, skipped.status, reason=skipped.reason
            )
        rank = {name: i for i, name in enumerate(self.order)}
        return dict(sorted(reports.items(), key=lambda item: rank.get(item[0], len(rank))))

    def health(self) -> HealthReport:
        """Each tier's status (ok / degraded / down / skipped) with the reason; never raises."""
        reports: dict[str, TierReport] = {}
        for slot in self.slots:
            if slot.pending:
                slot.call(_nothing)  # catch up now if the tier is back, so health tells the truth
            answer = _tier_health(slot)
            status, reason = answer.status, answer.reason
            state = slot.breaker.state
            if state != "closed" and status != "down":
                status = "down" if state == "open" else "degraded"
                reason = f"circuit breaker {state} after: {slot.breaker.last_error}"
            if slot.pending and status == "ok":
                status = "degraded"
                reason = (
                    f"{len(slot.pending)} missed invalidation(s) pending; it serves nothing until applied"
                )
            details = {**answer.details, "breaker": state, "pending_invalidations": len(slot.pending)}
            if self.backplane is not None and slot.name == self.backplane_tier:
                details["backplane"] = self.backplane.report()
                if self.backplane.suspended and status == "ok":
                    status = "degraded"
                    reason = f"backplane {self.backplane.state}: local tiers unused until it is subscribed"
            reports[slot.name] = TierReport(slot.name, slot.kind, status, reason, details)
        for skipped in self.skipped:
            reports[skipped.name] = TierReport(skipped.name, skipped.kind, skipped.status, skipped.reason)
        rank = {name: i for i, name in enumerate(self.order)}
        ordered = dict(sorted(reports.items(), key=lambda item: rank.get(item[0], len(rank))))
        worst = max((_STATUS_RANK[r.status] for r in ordered.values()), default=0)
        return HealthReport(_OVERALL[worst], ordered)

    def stats(self, namespace: str) -> dict[str, Any]:
        """Counters of the chain and of each tier (cheap: no scan of any store)."""
        tiers: dict[str, Any] = {}
        for slot in self.slots:
            own = _tier_stats(slot)
            figures: dict[str, Any] = {
                "kind": slot.kind,
                "hits": slot.hits,
                "misses": slot.misses,
                "sets": slot.sets,
                "deletes": slot.deletes,
                "errors": slot.errors,
                "corrupt": slot.corrupt,
                "contract_errors": slot.contract_errors,
                "pending_invalidations": len(slot.pending),
                "breaker": slot.breaker.state,
            }
            if slot.latency is not None:
                figures["latency"] = slot.latency.report()
            figures.update((k, v) for k, v in own.items() if k not in figures)
            tiers[slot.name] = figures
        for skipped in self.skipped:
            tiers[skipped.name] = {"kind": skipped.kind, "status": skipped.status, "reason": skipped.reason}
        hits = sum(slot.hits for slot in self.slots)
        gets = hits + self.misses
        figures = {
            "namespace": namespace,
            "gets": gets,
            "hits": hits,
            "misses": self.misses,
            "hit_ratio": round(hits / gets, 4) if gets else None,
            "stale_served": self.guard.stale_served,
            "early_refreshes": self.guard.early_refreshes,
            "lock_timeouts": self.guard.lock_timeouts,
            "tiers": tiers,
        }
        if self.backplane is not None:
            figures["backplane"] = self.backplane.report()
        return figures

    def close(self) -> None:
        """Close every tier once (a failure is logged, not raised); unregister them from pluggy.

        A tier with missed invalidations gets one last chance to apply them first.
        """
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
        if self.backplane is not None:
            self.backplane.close()
        for slot in self.slots:
            if slot.pending:
                slot.call(_nothing)  # catches up first, if it can
            if slot.pending:
                log.warning(
                    "tier %r (%s) closed with %d missed invalidation(s) it could not apply: it may "
                    "serve stale values to other processes until those entries expire",
                    slot.name,
                    slot.kind,
                    len(slot.pending),
                )
            try:
                slot.close()
            except Exception as exc:
                slot.failed(exc)
            self.pm.unregister(slot.tier)


def encode_all(codec: Codec, items: Mapping[str, Any], encode: bool) -> dict[str, bytes]:
    """The payloads of ``items`` — or, with no byte tier to write (``encode`` false), none, after
    :meth:`~tierkit.Codec.check` has refused what a chain with byte tiers would refuse."""
    if encode:
        return {key: codec.encode(key, value) for key, value in items.items()}
    for key, value in items.items():
        codec.check(key, value)
    return {}


def invalidation_ops(tags: tuple[str, ...], prefix: str | None) -> list[Op]:
    """What the backplane announces for an ``invalidate(tags=..., prefix=...)``."""
    ops: list[Op] = [("tags", tags)] if tags else []
    return [*ops, ("prefix", (prefix,))] if prefix is not None else ops


def clear_ops(cleared: Sequence[TierSlot]) -> list[Op]:
    """What the backplane announces for a clear: nothing unless it reached a shared tier."""
    return [("clear", ())] if any(slot.remote for slot in cleared) else []


def _tier_stats(slot: TierSlot) -> dict[str, Any]:
    """A tier's own figures (secrets redacted); ``{}`` when the hook raises or answers no mapping."""
    try:
        own = slot.stats()
    except Exception as exc:
        slot.failed(exc)
        return {}
    if not isinstance(own, Mapping):
        slot.violated("tierkit_stats", "a Mapping", own)
        return {}
    figures: dict[str, Any] = redact(dict(own))
    return figures


def _tier_health(slot: TierSlot) -> TierHealth:
    """A tier's own health answer; a raising or malformed answer becomes ``down`` with the reason."""
    try:
        answer = slot.health()
    except Exception as exc:
        slot.failed(exc)
        return TierHealth("down", redact(f"health check failed: {type(exc).__name__}: {exc}"))
    if not isinstance(answer, TierHealth) or answer.status not in _STATUS_RANK:
        slot.violated("tierkit_health", "a TierHealth with status ok, degraded, down or skipped", answer)
        got = type(answer).__qualname__
        return TierHealth("down", f"tierkit_health returned {got}, not a TierHealth (a bug in the tier)")
    return answer


# -- argument checks: programming errors raise before any tier is touched -------------------------


def check_key(key: Any) -> None:
    if type(key) is not str or not key:
        raise TypeError(f"cache keys must be non-empty str, got {key!r} ({type(key).__name__})")
    check_text(key, "cache key")


def check_keys(keys: Mapping[Any, Any]) -> None:
    """:func:`check_key` for each key of ``keys``; the common case (non-empty ASCII str) checked in C."""
    if countOf(map(type, keys), str) == len(keys) and "" not in keys and "".join(keys).isascii():
        return
    for key in keys:
        check_key(key)


_STR = frozenset((str,))
_ENTRY = frozenset((Entry,))
_BYTES = frozenset((bytes,))
_DEADLINES = frozenset((float, int, type(None)))
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def _tag_tuple(tags: Iterable[str]) -> tuple[str, ...]:
    return tags if type(tags) is tuple else tuple(tags)


def _payloads_problem(
    keys: object, payloads: object, expires_at: object, tags: object, own_keys: bool = False
) -> tuple[str, object] | None:
    """What is wrong with a ``Payloads`` answer — (what was expected, what came instead) — or ``None``.

    ``own_keys``: the keys are the chain's own (checked) key objects, so their types are not checked.
    """
    if type(keys) is not list or type(payloads) is not list or type(expires_at) is not list:
        columns = (keys, payloads, expires_at)
        return "keys, payloads and expires_at as lists", next(c for c in columns if type(c) is not list)
    if not len(keys) == len(payloads) == len(expires_at):
        return f"lists of equal length (got {len(keys)}, {len(payloads)}, {len(expires_at)})", keys
    checks = [
        (payloads, bytes, _BYTES, "bytes payloads"),
        (expires_at, float, _DEADLINES, "float or None deadlines"),
    ]
    if not own_keys:
        checks.insert(0, (keys, str, _STR, "str keys"))
    for column, usual, allowed, what in checks:
        if countOf(map(type, column), usual) != len(column) and {*map(type, column)} - allowed:
            return what, next(item for item in column if type(item) not in allowed)
    if tags:
        if not isinstance(tags, Mapping):
            return "tags as a Mapping of key to a tuple of str", tags
        for value in tags.values():
            if type(value) is not tuple or {*map(type, value)} - _STR:
                return "tags as a Mapping of key to a tuple of str", value
    return None


def _asked(
    wanted: Mapping[str, None], keys: list[str], payloads: list[bytes], expires_at: list[float | None]
) -> tuple[list[str], list[bytes], list[float | None]]:
    """The columns of a ``Payloads`` answer without the keys nobody asked for and the repeated ones."""
    seen: set[str] = set()
    pick = []
    for i, key in enumerate(keys):
        if key in wanted and key not in seen:
            seen.add(key)
            pick.append(i)
    return [keys[i] for i in pick], [payloads[i] for i in pick], [expires_at[i] for i in pick]


def check_text(text: str, what: str) -> None:
    """Refuse text no byte tier can store (a lone surrogate, e.g. from ``json.loads`` of user input)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{what} {text!r} is not valid Unicode text: a lone surrogate at position {exc.start}; "
                "clean the input first (e.g. text.encode('utf-8', 'replace').decode())"
            ) from None


def check_invalidation(tags: Iterable[str], prefix: str | None) -> tuple[str, ...]:
    """The checked tags of an ``invalidate(tags=..., prefix=...)`` call (it needs one of them)."""
    tag_tuple = check_tags(tags)
    if prefix is not None:
        if type(prefix) is not str or not prefix:
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        check_text(prefix, "prefix")
    if not tag_tuple and prefix is None:
        raise ValueError("invalidate() needs tags=[...] and/or prefix=...")
    return tag_tuple


def check_ttl(ttl: Any) -> None:
    if not ((type(ttl) is int or type(ttl) is float) and ttl > 0):
        raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str | bytes):
        raise TypeError(f"tags must be a list of str, not a single {type(tags).__name__} ({tags!r})")
    checked = tuple(tags)
    for tag in checked:
        if type(tag) is not str or not tag:
            raise TypeError(f"tags must be non-empty str, got {tag!r}")
        check_text(tag, "tag")
    return checked
