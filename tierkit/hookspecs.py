"""The tier hook specifications: the contract between tierkit and every tier.

A *tier* is a plugin object (an instance of a tier class) whose methods carry
``@tierkit.hookimpl`` and are named after the specs below.  When a chain is
built, every configured tier instance is registered with the chain's
``pluggy.PluginManager``; pluggy checks each method's argument names against
these specs and rejects a method named ``tierkit_*`` that matches no spec.

The chain calls every hook directly: each tier's hookimpls are bound once,
when the chain is built, and called positionally (keep the spec's parameter
names *and* order).  No call goes through ``pm.hook``; registered in chain
order, ``pm.hook.tierkit_get(key=...)`` is the slow reference path, visiting
tiers in the same order as the fast path and returning the same first hit.

Values a tier sees are :class:`tierkit.Entry` tuples ``(value, expires_at,
tags)``.  An *object tier* (``holds = "objects"``) receives and returns Python
objects; a *byte tier* (``holds = "bytes"``) receives and returns ``bytes``
already encoded by the chain's codec.  ``expires_at`` is an absolute time on
the chain's clock (``time.time()`` unless a test injects one), or ``None`` for
no expiry.

Errors: a tier may raise from any data hook when its backend fails (network,
disk); the chain counts the error, opens the tier's circuit breaker after
repeated failures, and carries on with the other tiers.  An answer of the
wrong type is treated the same way (a failure of the tier, logged once).  A
tier must never return a corrupt value as a hit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tierkit._types import Entry, Payloads, TierHealth

PROJECT_NAME = "tierkit"
"""pluggy project name; also the prefix of every hook name."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

REQUIRED_HOOKS = (
    "tierkit_get",
    "tierkit_set",
    "tierkit_delete",
    "tierkit_clear",
    "tierkit_invalidate_tags",
    "tierkit_invalidate_prefix",
)
"""Hooks every tier class must implement (checked when the tier is loaded)."""


@hookspec(firstresult=True)
def tierkit_get(key: str) -> Entry | None:
    """Look up one key.

    :param key: the cache key, already free of the cache namespace (the tier
        adds its own namespace/prefix where it shares storage).
    :return: the stored :class:`~tierkit.Entry` on a hit, or ``None`` on a miss
        (including an entry whose ``expires_at`` has passed on the tier's clock).
        ``None`` is never a cached value at this level: a cached ``None`` is an
        ``Entry`` whose ``value`` is ``None``.

    Stops at the first non-``None`` result.  Required.
    """


@hookspec
def tierkit_get_many(keys: Sequence[str]) -> Mapping[str, Entry]:
    """Look up several keys in one round trip.

    :param keys: distinct keys to look up.
    :return: a mapping holding an :class:`~tierkit.Entry` for each key that
        hit; misses are absent.

    Optional: without it the chain calls ``tierkit_get`` once per key.  Remote
    tiers should implement it (``MGET``, ``SELECT … IN``).
    """


@hookspec
def tierkit_get_many_payloads(keys: Sequence[str]) -> Payloads:
    """Look up several keys of a byte tier in one round trip, answered column by column.

    :param keys: distinct keys to look up.
    :return: a :class:`~tierkit.Payloads`: the keys that hit (each at most once,
        each one of ``keys``), their payloads as ``bytes`` (unchanged, as
        ``tierkit_set`` received them), their ``expires_at`` (``None``: no
        expiry) and the tags of those that carry any — exactly what
        ``tierkit_get_many`` would answer, without an :class:`~tierkit.Entry`
        per key.  Expired entries are misses, as for ``tierkit_get``.

    Optional, and used only on byte tiers (``holds = "bytes"``): where a tier has
    it, ``Cache.get_many`` calls it instead of ``tierkit_get_many``, and decodes
    and backfills the batch in one pass (the Redis tier: 100 keys cost one
    ``MGET``, one pass over the payloads, no object per key).  A tier with only
    ``tierkit_get_many`` is read as before.  An answer that is not a
    ``Payloads`` of three lists of equal length, ``str`` keys that were asked
    for, ``bytes`` payloads and ``float``/``None`` deadlines is a failure of the
    tier, like a wrong ``tierkit_get_many`` answer.
    """


@hookspec
def tierkit_get_buffer(key: str) -> Entry | None:
    """Look up one key of a byte tier, handing its payload over in a ``bytearray``.

    :param key: the cache key.
    :return: what ``tierkit_get`` answers, except that the payload may be a
        ``bytearray`` or a ``memoryview`` (``bytes`` stay allowed) of memory the
        tier allocated for this answer, does not keep and never hands out again:
        the codec decodes the value over that memory instead of copying it (a
        numpy array read from the file tier lives in the memory the file was read
        into).

    Optional, and used only on byte tiers, and only with a codec that keeps
    buffers (:attr:`tierkit.Codec.keeps_buffers`, the JSON codec): ``Cache.get``
    calls it instead of ``tierkit_get``.  Any other answer is checked as
    ``tierkit_get``'s.
    """


@hookspec
def tierkit_set(key: str, entry: Entry) -> None:
    """Store one entry, replacing any previous one under ``key``.

    :param key: the cache key.
    :param entry: ``(value, expires_at, tags)``.  ``value`` is a Python object
        for object tiers and ``bytes`` for byte tiers; ``expires_at`` is
        already capped by the tier's ``max_ttl``, and may already have passed
        (a hit copied up as it expired): such an entry must never be served,
        and may be dropped at once.  ``tags`` must be kept so
        that ``tierkit_invalidate_tags`` can find the key and ``tierkit_get``
        can return them (the chain copies them when it backfills upper tiers).

    Required.
    """


@hookspec
def tierkit_set_parts(key: str, entry: Entry) -> None:
    """Store one entry of a byte tier whose payload comes in pieces, as ``tierkit_set`` does.

    :param key: the cache key.
    :param entry: as for ``tierkit_set``, but ``value`` is a :class:`tierkit.Parts`:
        the payload is its buffers' bytes end to end (``value.join()``), and a
        later ``tierkit_get`` returns those bytes.  The buffers may be views of the
        cached value's own memory, valid only during the call: write them, or keep
        ``value.join()``.

    Optional, and used only on byte tiers: ``Cache.set`` encodes with
    :meth:`tierkit.Codec.encode_parts` when a tier it writes has it, and calls it
    with a ``Parts`` when the codec answers in pieces (the JSON codec does for
    numpy arrays and pandas values); other tiers of the write get the joined
    bytes, joined once.  Everything else (``set_many``, backfill) calls ``tierkit_set``.
    """


@hookspec
def tierkit_set_many(entries: Mapping[str, Entry]) -> None:
    """Store several entries in one round trip (pipeline, one transaction).

    :param entries: key → :class:`~tierkit.Entry`, as for ``tierkit_set``.

    Optional: without it the chain calls ``tierkit_set`` once per key.
    """


@hookspec
def tierkit_delete(key: str) -> bool:
    """Remove one key.

    :return: ``True`` if an entry was removed, ``False`` if there was none.

    Required.
    """


# -- optional atomic operations (docs/plugins: "Atomic operations") ----------------------------------


@hookspec
def tierkit_add(key: str, entry: Entry) -> bool:
    """Store ``entry`` only if ``key`` holds no live entry, atomically.

    Atomic against every other writer of the same storage — other threads and,
    for a shared tier, other processes: of concurrent adds of one key, exactly
    one returns ``True`` (SQLite ``BEGIN IMMEDIATE``, Redis ``SET NX`` or a
    script, a lock for in-process tiers).  An entry that has expired on the
    tier's clock counts as absent.

    :param key: the cache key.
    :param entry: as for ``tierkit_set``.
    :return: ``True`` if this call stored it, ``False`` if a live entry was there.

    Optional: without it the chain reads then writes (``tierkit_get``, then
    ``tierkit_set``), which is *not* atomic: two processes may both win.
    """


@hookspec
def tierkit_incr(key: str, delta: int) -> Entry | None:
    """Add ``delta`` to the integer under ``key``, atomically; keep its deadline and tags.

    An object tier holds the counter as an ``int``; a byte tier holds it as the
    ASCII decimal digits the JSON codec writes for an ``int`` (``b"-12"``), and
    must write the result the same way (every codec decodes plain JSON).

    :param key: the cache key.
    :param delta: a non-zero or zero ``int`` (may be negative).
    :return: the updated :class:`~tierkit.Entry` (its value the new ``int``, or
        its digits for a byte tier), or ``None`` when there is no live entry.
    :raises tierkit.errors.NotACounter: the value is not an integer (or, for a
        tier that cannot count it exactly, out of its range).  The chain passes
        it to the caller; any other exception is a failure of the tier.

    Optional: without it the chain reads, adds and rewrites, which is *not*
    atomic against other writers.
    """


@hookspec
def tierkit_touch(key: str, expires_at: float | None) -> bool:
    """Give the live entry under ``key`` a new deadline without rewriting its value.

    :param expires_at: the new absolute deadline (already capped by the tier's
        ``max_ttl``), or ``None`` for no expiry.
    :return: ``True`` if a live entry was there (and now has the new deadline).

    Optional: without it the chain reads the entry and writes it back with the
    new deadline, which is *not* atomic against other writers.
    """


@hookspec
def tierkit_has(key: str) -> bool:
    """Whether ``key`` holds a live entry — without reading its value when the tier can.

    :return: ``True`` for a live entry (a cached ``None`` included).

    Optional: without it the chain calls ``tierkit_get`` (and decodes nothing).
    """


@hookspec
def tierkit_delete_many(keys: Sequence[str]) -> int:
    """Remove several keys in one round trip.

    :param keys: distinct keys.
    :return: how many of them held an entry, as an ``int``.

    Optional: without it the chain calls ``tierkit_delete`` once per key.
    """


@hookspec
def tierkit_invalidate_tags(tags: Sequence[str]) -> int:
    """Remove every entry carrying at least one of ``tags``.

    Must not read every entry: keep an index from tag to keys.

    :return: the number of entries removed from this tier, each counted once
        however many of ``tags`` it carries, as an ``int`` (best effort for
        remote tiers).

    Required.
    """


@hookspec
def tierkit_invalidate_prefix(prefix: str) -> int:
    """Remove every entry whose key starts with ``prefix``.

    :return: the number of entries removed from this tier, as an ``int``
        (best effort for remote tiers).

    Required.
    """


@hookspec
def tierkit_clear() -> None:
    """Remove every entry of this tier's namespace, and nothing outside it.

    Called by ``Cache.clear()`` for each writable tier (or the tiers it names).
    Required.
    """


@hookspec
def tierkit_health() -> TierHealth:
    """Report whether the tier can serve right now.

    :return: a :class:`~tierkit.TierHealth` with status ``ok``, ``degraded``
        or ``down`` and a human-readable reason; ``details`` may carry cheap
        figures (latency, server version).  Must not raise and must not take
        longer than the tier's own timeouts.  Secrets never appear in it.

    Called for each tier by ``Cache.health()``.  Optional: :class:`tierkit.Tier`
    answers ``ok``.
    """


@hookspec
def tierkit_stats() -> Mapping[str, Any]:
    """Return cheap tier-specific figures (entries, bytes, evictions …).

    The chain adds its own per-tier counters (hits, misses, sets, errors).
    Must be cheap: no scan of the store per call.

    Called for each tier by ``Cache.stats()``.  Optional.
    """


@hookspec
def tierkit_close() -> None:
    """Release connections, files and threads.  Called once by ``Cache.close()``.

    Optional.
    """


# -- optional async hooks: a tier's native async data plane ----------------------------------------

ASYNC_HOOKS = (
    "get",
    "get_many",
    "get_many_payloads",
    "set",
    "set_many",
    "delete",
    "invalidate_tags",
    "invalidate_prefix",
    "clear",
    "close",
)
"""``tierkit_a<name>`` for each: the coroutine twins of the data hooks (see docs/async.md).

The async API (``Cache.aget`` …) awaits a tier's ``tierkit_a*`` hook where it
has one; otherwise it calls the sync hook inline if the tier declares
``blocking = False`` and in a worker thread if not.  Each is optional and
independent; the arguments, return values and contract are the sync hook's.
"""


@hookspec(firstresult=True)
async def tierkit_aget(key: str) -> Entry | None:
    """``tierkit_get`` as a coroutine: same arguments, answer and contract.

    Awaited by the async API instead of the sync hook.  Optional.
    """


@hookspec
async def tierkit_aget_many(keys: Sequence[str]) -> Mapping[str, Entry]:
    """``tierkit_get_many`` as a coroutine: same arguments, answer and contract.

    Awaited by the async API instead of the sync hook.  Optional.
    """


@hookspec
async def tierkit_aget_many_payloads(keys: Sequence[str]) -> Payloads:
    """``tierkit_get_many_payloads`` as a coroutine: same arguments, answer and contract.

    Awaited by the async API instead of the sync hook.  Optional.
    """


@hookspec
async def tierkit_aset(key: str, entry: Entry) -> None:
    """``tierkit_set`` as a coroutine: same arguments, answer and contract.

    Awaited by the async API instead of the sync hook.  Optional.
    """


@hookspec
async def tierkit_aset_many(entries: Mapping[str, Entry]) -> None:
    """``tierkit_set_many`` as a coroutine: same arguments, answer and contract.

    Awaited by the async API instead of the sync hook.  Optional.
    """


@hookspec
async def tierkit_adelete(key: str) -> bool:
    """``tierkit_delete`` as a coroutine: same arguments, answer and contract.

    Awaited by the async API instead of the sync hook.  Optional.
    """


@hookspec
async def tierkit_ainvalidate_tags(tags: Sequence[str]) -> int:
    """``tierkit_invalidate_tags`` as a coroutine: same arguments, answer and contract.

    Awaited by the async API instead of the sync hook.  Optional.
    """


@hookspec
async def tierkit_ainvalidate_prefix(prefix: str) -> int:
    """``tierkit_invalidate_prefix`` as a coroutine: same arguments, answer and contract.

    Awaited by the async API instead of the sync hook.  Optional.
    """


@hookspec
async def tierkit_aclear() -> None:
    """``tierkit_clear`` as a coroutine: same arguments, answer and contract.

    Awaited by the async API instead of the sync hook.  Optional.
    """


@hookspec
async def tierkit_aclose() -> None:
    """Release what the async hooks hold in the running event loop (``Cache.aclose()``).


    Called before ``tierkit_close``, which the chain then calls as usual.  Optional.
    """


# -- optional lock hooks: one computation per cold key across processes -------------------------------


@hookspec
def tierkit_lock(key: str, token: str, ttl: float) -> bool:
    """Take, or keep, the computation lock of ``key`` for the holder ``token``.

    :param key: the cache key being computed (the tier adds its own namespace).
    :param token: a random string naming the holder; the chain makes a new one
        for each computation.
    :param ttl: seconds the lock must outlive this call if its holder dies.
        The chain calls again with the same ``token`` well before that, for as
        long as the computation runs: that call must extend the lock.
    :return: ``True`` if ``token`` holds the lock now (taken or extended),
        ``False`` if another holder has it.  Atomic: two holders never both
        get ``True`` (Redis: ``SET NX PX``; the file tier: an exclusive lock file).

    The chain asks the lock tiers in order and uses the first that answers;
    one that raises is a failure of the tier and the next is asked.  Optional:
    without any tier implementing it, ``lock=True`` falls back to single flight
    within the process (docs/stampede.md).
    """


@hookspec
def tierkit_unlock(key: str, token: str) -> bool:
    """Release the computation lock of ``key`` if ``token`` still holds it.

    :return: ``True`` if it was released, ``False`` if ``token`` did not hold
        it (it expired, and maybe another holder took it: that lock must stay).

    Optional; implemented together with ``tierkit_lock``.
    """


# -- optional: the backplane (docs/coherence.md) ---------------------------------------------------


@hookspec(firstresult=True)
def tierkit_backplane() -> Any:
    """A channel the namespace's processes share, to keep their local tiers coherent.

    :return: an object with ``channel`` (a name for health), ``publish(message: bytes)``,
        ``subscribe(listener)`` and ``close()`` (:class:`tierkit._backplane.Transport`),
        or ``None`` when this tier cannot offer one.  ``subscribe`` delivers in a thread
        of its own and calls ``listener.on_subscribed()`` each time it is (re)subscribed,
        ``listener.on_disconnected(reason)`` as soon as it loses the subscription, and
        ``listener.on_message(data)`` for each message between; it reconnects by itself.
        Optionally ``outbox``, a :class:`contextvars.ContextVar` (default ``None``) when this
        tier can send a message with its own writes, in the same round trip: the chain sets it
        to the message just before it calls this tier's ``set``, ``set_many``, ``delete`` or
        ``delete_many``; the hook, having written and sent the message, sets it back to
        ``None``.  A message left there is published with ``publish`` from a thread.  When
        ``tierkit._backplane.carries(message)`` and the write and its ``PUBLISH`` are one
        atomic step on the server, the hook may append the stored value to the message; the
        transport's optional ``unpack_value(raw, now)`` (the ``Entry`` in those bytes, or
        ``None``) then lets receivers replace their local copies with it instead of dropping
        them.  Optionally ``details()``, a dict of the transport's own figures added to the
        backplane's health details and stats.  Optionally ``drain()``, when the transport can
        deliver on the calling thread: it calls the listener there for what has arrived and
        returns without waiting (raising nothing).  Readers then catch up themselves every
        millisecond, and the transport's thread may leave the messages to them while they do;
        it must still deliver what no reader drains (a process idle or waiting on I/O).

    Called once per chain, on the first remote tier that has it, when the setting
    ``backplane`` is ``auto``; called again in a forked child.  Optional: without
    it local tiers keep their copies until their TTL (the fallback of 0.1).
    """
