"""The async rows: ``await cache.aget`` and friends against cashews, aiocache and raw ``redis.asyncio``.

A batch of ``n`` operations is one coroutine looping ``n`` times, run to completion
on one event loop shared by every async row (``redis.asyncio`` connections belong to
a loop); both sides of a pair pay the same ``run_until_complete`` per batch.  Each
setup checks that both sides return the same value before anything is timed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import orjson

from benchmarks._timing import Batch, call_loop
from benchmarks.pairs import MANY, ROTATION, TTL, TTL_MS, Context, Workload, _same

_loop: asyncio.AbstractEventLoop | None = None


def loop(ctx: Context) -> asyncio.AbstractEventLoop:
    """The event loop of the async rows, closed with the run's other resources."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        ctx.closers.insert(0, _loop.close)  # closers run in reverse: the loop closes last
    return _loop


def run(ctx: Context, coroutine: Awaitable[Any]) -> Any:
    return loop(ctx).run_until_complete(coroutine)


def await_loop(ctx: Context, func: Callable[[Any], Awaitable[Any]], items: Iterable[Any]) -> Batch:
    """A batch awaiting ``func(item)`` ``n`` times over ``items`` in a cycle."""
    source = itertools.cycle(list(items))
    islice = itertools.islice

    async def body(n: int) -> None:
        for item in islice(source, n):
            await func(item)

    def batch(n: int) -> None:
        run(ctx, body(n))

    return batch


def _keys(prefix: str, count: int = ROTATION) -> list[str]:
    return [f"{prefix}:{n}" for n in range(count)]


# -- memory hits --------------------------------------------------------------------------------


def _memory_hit(ctx: Context) -> tuple[Any, str]:
    cache = ctx.full_chain()
    key = "bench:ahit"
    cache.set(key, ctx.value, ttl=TTL)
    _same("tierkit aget memory hit", run(ctx, cache.aget(key)), ctx.value)
    return cache, key


def setup_amem_cashews(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    from cashews import Cache as Cashews

    cache, key = _memory_hit(ctx)
    peer = Cashews()
    peer.setup("mem://")
    run(ctx, peer.set(key, ctx.value, expire=TTL))
    _same("cashews mem get", run(ctx, peer.get(key)), ctx.value)
    return await_loop(ctx, cache.aget, [key]), await_loop(ctx, peer.get, [key]), {"tiers": list(cache.tiers)}


def setup_amem_aiocache(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    from aiocache import SimpleMemoryCache

    cache, key = _memory_hit(ctx)
    peer = SimpleMemoryCache()
    run(ctx, peer.set(key, ctx.value, ttl=TTL))
    _same("aiocache SimpleMemoryCache.get", run(ctx, peer.get(key)), ctx.value)
    return await_loop(ctx, cache.aget, [key]), await_loop(ctx, peer.get, [key]), {"tiers": list(cache.tiers)}


def setup_amem_sync(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache, key = _memory_hit(ctx)
    return await_loop(ctx, cache.aget, [key]), call_loop(cache.get, key), {"tiers": list(cache.tiers)}


# -- Redis hits ---------------------------------------------------------------------------------


def raw_client(ctx: Context) -> Any:
    """A ``redis.asyncio`` client with the tier's default settings (closed in the run's loop)."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(
        ctx.redis_url or "", socket_connect_timeout=0.25, socket_timeout=0.25
    )
    ctx.closers.append(lambda: run(ctx, client.aclose()))
    return client


def _redis_only(ctx: Context, namespace: str) -> Any:
    cache = ctx.cache(namespace, order=["redis"])
    ctx.closers.append(lambda: run(ctx, cache.aclose()))
    return cache


def setup_aredis_raw(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache = _redis_only(ctx, "bench-aredis")
    client = raw_client(ctx)
    keys = _keys("bench:arh")
    payload = orjson.dumps(ctx.value)
    for key in keys:
        run(ctx, cache.aset(key, ctx.value, ttl=TTL))
        run(ctx, client.set("raw:" + key, payload, px=TTL_MS))
    raw_keys = ["raw:" + key for key in keys]
    _same("tierkit aget Redis hit", run(ctx, cache.aget(keys[0])), ctx.value)
    loads, get = orjson.loads, client.get

    async def peer(key: str) -> Any:
        return loads(await get(key))

    _same("redis.asyncio GET + loads", run(ctx, peer(raw_keys[0])), ctx.value)
    return await_loop(ctx, cache.aget, keys), await_loop(ctx, peer, raw_keys), {"tiers": list(cache.tiers)}


def setup_aredis_cashews(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    from cashews import Cache as Cashews

    cache = _redis_only(ctx, "bench-aredis-c")
    peer = Cashews()
    peer.setup(ctx.redis_url or "", socket_connect_timeout=0.25, socket_timeout=0.25)
    keys = _keys("bench:arc")
    for key in keys:
        run(ctx, cache.aset(key, ctx.value, ttl=TTL))
        run(ctx, peer.set("cashews:" + key, ctx.value, expire=TTL))
    peer_keys = ["cashews:" + key for key in keys]
    _same("cashews redis get", run(ctx, peer.get(peer_keys[0])), ctx.value)
    ctx.closers.append(lambda: run(ctx, peer.close()))
    return (
        await_loop(ctx, cache.aget, keys),
        await_loop(ctx, peer.get, peer_keys),
        {"tiers": list(cache.tiers)},
    )


def setup_aredis_aiocache(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    from aiocache import RedisCache
    from aiocache.serializers import JsonSerializer

    cache = _redis_only(ctx, "bench-aredis-a")
    where = urlsplit(ctx.redis_url or "")
    peer = RedisCache(serializer=JsonSerializer(), endpoint=where.hostname, port=where.port, db=0)
    keys = _keys("bench:ara")
    for key in keys:
        run(ctx, cache.aset(key, ctx.value, ttl=TTL))
        run(ctx, peer.set("aiocache:" + key, ctx.value, ttl=TTL))
    peer_keys = ["aiocache:" + key for key in keys]
    _same("aiocache RedisCache.get", run(ctx, peer.get(peer_keys[0])), ctx.value)
    ctx.closers.append(lambda: run(ctx, peer.close()))
    return (
        await_loop(ctx, cache.aget, keys),
        await_loop(ctx, peer.get, peer_keys),
        {"tiers": list(cache.tiers)},
    )


def setup_aget_many(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache = _redis_only(ctx, "bench-amany")
    client = raw_client(ctx)
    groups = [_keys(f"bench:am{g}", MANY) for g in range(4)]
    payload = orjson.dumps(ctx.value)
    for group in groups:
        run(ctx, cache.aset_many(dict.fromkeys(group, ctx.value), ttl=TTL))
        run(ctx, client.mset({"raw:" + key: payload for key in group}))
    raw_groups = [["raw:" + key for key in group] for group in groups]
    loads, mget = orjson.loads, client.mget

    async def peer(keys: list[str]) -> dict[str, Any]:
        return {key: loads(raw) for key, raw in zip(keys, await mget(keys), strict=True) if raw is not None}

    got = run(ctx, cache.aget_many(groups[0]))
    _same("tierkit aget_many", (len(got), got[groups[0][0]]), (MANY, ctx.value))
    _same("raw MGET + loads", len(run(ctx, peer(raw_groups[0]))), MANY)
    return (
        await_loop(ctx, cache.aget_many, groups),
        await_loop(ctx, peer, raw_groups),
        {"tiers": list(cache.tiers)},
    )


# -- 100 concurrent coroutines ----------------------------------------------------------------------


def concurrent_loop(ctx: Context, read: Callable[[str], Awaitable[Any]], keys: list[str]) -> Batch:
    """A batch of ``n`` reads spread over 100 concurrent coroutines, each cycling over ``keys``."""

    async def worker(start: int, count: int) -> None:
        for i in range(count):
            await read(keys[(start + i) % len(keys)])

    async def body(n: int) -> None:
        share = max(1, n // 100)
        await asyncio.gather(*(worker(w * 7, share) for w in range(100)))

    def batch(n: int) -> None:
        run(ctx, body(n))

    return batch


def setup_amixed(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    # 256 keys, a memory tier of 128: about half the reads are memory hits, half Redis hits
    # (decoded and backfilled, evicting another key).  cashews: its Redis backend with its
    # client-side (memory) cache, also of 128 entries, is the same shape of work.  Its listener
    # must be running (suppress=False, 5 s to start): cashews otherwise logs the failure and
    # reads Redis every time, and its local cache's default 10 000 entries would hold all 256
    # keys — each of which once swung this row between 0.6x and 10x.
    from cashews import Cache as Cashews
    from cashews.backends.memory import Memory

    cache = ctx.cache(
        "bench-amixed", order=["memory", "redis"], tiers={"memory": {"options": {"max_entries": 128}}}
    )
    ctx.closers.append(lambda: run(ctx, cache.aclose()))
    peer = Cashews()
    peer.setup(
        ctx.redis_url or "",
        client_side=True,
        local_cache=Memory(size=128),
        client_side_listen_timeout=5.0,
        suppress=False,
        socket_connect_timeout=0.25,
        socket_timeout=0.25,
    )
    keys = _keys("bench:amx", 256)
    for key in keys:
        run(ctx, cache.aset(key, ctx.value, ttl=TTL))
        run(ctx, peer.set("cashews:" + key, ctx.value, expire=TTL))
    peer_keys = ["cashews:" + key for key in keys]
    _same("tierkit mixed read", run(ctx, cache.aget(keys[0])), ctx.value)
    _same("cashews mixed read", run(ctx, peer.get(peer_keys[0])), ctx.value)
    ctx.closers.append(lambda: run(ctx, peer.close()))
    return (
        concurrent_loop(ctx, cache.aget, keys),
        concurrent_loop(ctx, peer.get, peer_keys),
        {"tiers": list(cache.tiers)},
    )


ASYNC_CHAIN = "await cache.aget (full default chain)"
REDIS_ONLY = "await cache.aget (redis-only chain)"

ASYNC_WORKLOADS: tuple[Workload, ...] = (
    Workload("amem_cashews", "async memory hit", ASYNC_CHAIN, "cashews mem:// get", 0.3, setup_amem_cashews),
    Workload(
        "amem_aiocache",
        "async memory hit",
        ASYNC_CHAIN,
        "aiocache SimpleMemoryCache.get",
        0.3,
        setup_amem_aiocache,
    ),
    Workload(
        "amem_sync", "async vs sync memory hit", ASYNC_CHAIN, "tierkit sync cache.get", 3.0, setup_amem_sync
    ),
    Workload(
        "aredis_raw",
        "async Redis hit",
        REDIS_ONLY,
        "redis.asyncio GET + orjson.loads",
        1.1,
        setup_aredis_raw,
        needs_redis=True,
    ),
    Workload(
        "aredis_cashews",
        "async Redis hit",
        REDIS_ONLY,
        "cashews redis:// get",
        None,
        setup_aredis_cashews,
        needs_redis=True,
        info=True,
    ),
    Workload(
        "aredis_aiocache",
        "async Redis hit",
        REDIS_ONLY,
        "aiocache RedisCache.get (JSON)",
        None,
        setup_aredis_aiocache,
        needs_redis=True,
        info=True,
    ),
    Workload(
        "aget_many",
        "aget_many of 100 keys",
        "await cache.aget_many (redis-only chain)",
        "redis.asyncio MGET + loads",
        1.1,
        setup_aget_many,
        needs_redis=True,
    ),
    Workload(
        "amixed_100",
        "100 coroutines, mixed memory + Redis reads",
        "await cache.aget (memory 128 + redis)",
        "cashews redis:// client_side (local cache of 128)",
        None,
        setup_amixed,
        needs_redis=True,
        info=True,
        note="per read; throughput = 1 / time",
    ),
)
