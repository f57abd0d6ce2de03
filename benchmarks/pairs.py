"""The table: each workload as tierkit against the peer a user would pick instead.

Every pair does the same work on both sides: same key (or the same rotation of keys),
same value, same TTL semantics, same Redis server and client settings.  Each setup
checks, before timing, that both sides return the same value, so a side that quietly
misses (and so does less work) cannot slip through.
"""

from __future__ import annotations

import collections
import itertools
import operator
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cachetools
import diskcache
import orjson
from dogpile.cache import make_region

import tierkit
from benchmarks._env import redis_client
from benchmarks._timing import Batch, Mode, PairResult, call_loop, cycle_loop, interleave

TTL = 600.0
TTL_MS = int(TTL * 1000)
ROTATION = 64
"""Keys a rotating workload cycles through (the same keys on both sides)."""
MANY = 100


@dataclass
class Context:
    """What every workload shares: mode, a work directory, the private Redis, the value."""

    mode: Mode
    work: Path
    redis_url: str | None
    value: dict[str, Any]
    session: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], object]] = field(default_factory=list)
    _full: tierkit.Cache | None = None
    _dirs: itertools.count[int] = field(default_factory=itertools.count)

    def directory(self, name: str) -> Path:
        path = self.work / f"{name}-{next(self._dirs)}"
        path.mkdir(parents=True)
        return path

    def cache(self, namespace: str, **settings: Any) -> tierkit.Cache:
        """A Cache with this run's Redis and a private file directory, closed at the end."""
        tiers = settings.pop("tiers", {})
        if self.redis_url is not None:
            tiers.setdefault("redis", {}).setdefault("options", {})["url"] = self.redis_url
        tiers.setdefault("file", {}).setdefault("options", {})["directory"] = str(self.directory("file"))
        order = settings.get("order")
        if order is not None:
            tiers = {name: conf for name, conf in tiers.items() if name in order}
        cache = tierkit.Cache(namespace=namespace, tiers=tiers, **settings)
        self.closers.append(cache.close)
        return cache

    def full_chain(self) -> tierkit.Cache:
        """The default chain, no order given: memory → redis → session → file, all four active."""
        if self._full is None:
            self._full = self.cache("bench-full")
            expected = (
                ("memory", "redis", "session", "file") if self.redis_url else ("memory", "session", "file")
            )
            if self._full.tiers != expected:
                raise RuntimeError(f"default chain has tiers {self._full.tiers}, expected {expected}")
        return self._full

    def close(self) -> None:
        """Close what the workloads so far opened (the next :meth:`full_chain` opens a new one)."""
        self._full = None
        for close in reversed(self.closers):
            try:
                close()
            except Exception as exc:  # a failing close must not hide the results
                print(f"  (close failed: {type(exc).__name__}: {exc})")
        self.closers.clear()


Setup = Callable[[Context], tuple[Batch, Batch, dict[str, Any]]]


@dataclass(frozen=True)
class Workload:
    key: str
    workload: str
    tierkit_label: str
    peer_label: str
    target: float | None
    setup: Setup
    needs_redis: bool = False
    stretch: float | None = None
    info: bool = False
    note: str = ""


def _same(label: str, got: Any, expected: Any) -> None:
    if got != expected:
        raise AssertionError(f"{label}: the two sides do not return the same value; refusing to time it")


# -- memory hits ------------------------------------------------------------------------


def _full_hit(ctx: Context) -> tuple[tierkit.Cache, str]:
    cache = ctx.full_chain()
    key = "bench:hit"
    cache.set(key, ctx.value, ttl=TTL)
    _same("tierkit memory hit", cache.get(key), ctx.value)
    return cache, key


def _lru_pair(ctx: Context, cache: tierkit.Cache, key: str) -> tuple[Batch, Batch, dict[str, Any]]:
    peer: cachetools.LRUCache[str, Any] = cachetools.LRUCache(maxsize=10_000)
    peer[key] = ctx.value
    _same("LRUCache", peer.get(key), ctx.value)
    return call_loop(cache.get, key), call_loop(peer.get, key), {"tiers": list(cache.tiers)}


def setup_mem_lru(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    return _lru_pair(ctx, *_full_hit(ctx))


def setup_mem_lru_sampled(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    """The same hit with latency sampling on (one tier call in 16 timed)."""
    cache = ctx.cache("bench-sampled", latency_sampling=16)
    key = "bench:hit"
    cache.set(key, ctx.value, ttl=TTL)
    _same("tierkit memory hit, sampling on", cache.get(key), ctx.value)
    return _lru_pair(ctx, cache, key)


def setup_mem_ttl(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache, key = _full_hit(ctx)
    peer: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=10_000, ttl=TTL)
    peer[key] = ctx.value
    _same("TTLCache", peer.get(key), ctx.value)
    return call_loop(cache.get, key), call_loop(peer.get, key), {"tiers": list(cache.tiers)}


def setup_mem_dogpile(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache, key = _full_hit(ctx)
    region = make_region().configure("dogpile.cache.memory", expiration_time=TTL)
    region.set(key, ctx.value)
    _same("dogpile region", region.get(key), ctx.value)
    return call_loop(cache.get, key), call_loop(region.get, key), {"tiers": list(cache.tiers)}


def setup_mem_dict(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache, key = _full_hit(ctx)
    peer = {key: ctx.value}
    return call_loop(cache.get, key), call_loop(peer.get, key), {"tiers": list(cache.tiers)}


# -- Redis ------------------------------------------------------------------------------


def setup_miss_all(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache = ctx.full_chain()
    client = redis_client(ctx.redis_url or "")
    ctx.closers.append(client.close)
    key = "bench:absent"
    _same("tierkit miss", cache.get(key, tierkit.MISSING), tierkit.MISSING)
    _same("redis GET miss", client.get(key), None)
    return call_loop(cache.get, key), call_loop(client.get, key), {"tiers": list(cache.tiers)}


def _rotation(prefix: str, count: int = ROTATION) -> list[str]:
    return [f"{prefix}:{i:03d}" for i in range(count)]


def setup_redis_hit(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    # A memory tier of one entry over a rotation of 64 keys: every get misses memory, hits
    # Redis, decodes, and backfills memory (evicting the previous key) — "memory empty".
    cache = ctx.cache("bench-redis-hit", tiers={"memory": {"options": {"max_entries": 1}}})
    client = redis_client(ctx.redis_url or "")
    ctx.closers.append(client.close)
    keys = _rotation("bench:rh")
    payload = orjson.dumps(ctx.value)
    for key in keys:
        cache.set(key, ctx.value, ttl=TTL)
        client.set("raw:" + key, payload, px=TTL_MS)
    raw_keys = ["raw:" + key for key in keys]
    _same("tierkit Redis hit", cache.get(keys[0]), ctx.value)
    _same("redis GET + loads", orjson.loads(client.get(raw_keys[0])), ctx.value)
    loads, get = orjson.loads, client.get

    def peer(key: str) -> Any:
        return loads(get(key))

    before = cache.stats()["tiers"]
    return (
        cycle_loop(cache.get, keys),
        cycle_loop(peer, raw_keys),
        {"tiers": list(cache.tiers), "stats_before": _hits(before)},
    )


def _hits(tiers: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: t.get(k) for k in ("hits", "misses", "sets")} for name, t in tiers.items()}


def _get_many_pair(ctx: Context, name: str, **settings: Any) -> tuple[Batch, Batch, dict[str, Any]]:
    """``Cache.get_many`` of 100 keys against one ``MGET`` + 100 ``orjson.loads``.

    Four groups of 100 keys rotate; where there is a memory tier it holds 100 entries,
    so each call finds none of its keys there (cold), one MGET in Redis, decodes 100
    and copies them up (evicting the previous group).
    """
    cache = ctx.cache(name, **settings)
    client = redis_client(ctx.redis_url or "")
    ctx.closers.append(client.close)
    groups = [_rotation(f"bench:{name}:{g}", MANY) for g in range(4)]
    payload = orjson.dumps(ctx.value)
    for group in groups:
        cache.set_many(dict.fromkeys(group, ctx.value), ttl=TTL)
        pipe = client.pipeline(transaction=False)
        for key in group:
            pipe.set("raw:" + key, payload, px=TTL_MS)
        pipe.execute()
    raw_groups = [["raw:" + key for key in group] for group in groups]
    loads, mget = orjson.loads, client.mget

    def peer(keys: list[str]) -> dict[str, Any]:
        return {key: loads(raw) for key, raw in zip(keys, mget(keys), strict=True) if raw is not None}

    for group in groups[1:] + groups[:1]:  # the first timed call then finds memory holding another group
        _same("tierkit get_many", cache.get_many(group), dict.fromkeys(group, ctx.value))
    _same("MGET + loads", list(peer(raw_groups[0]).values()), [ctx.value] * MANY)
    before = _hits(cache.stats()["tiers"])
    return (
        cycle_loop(cache.get_many, groups),
        cycle_loop(peer, raw_groups),
        {"tiers": list(cache.tiers), "stats_before": before},
    )


def setup_get_many(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    return _get_many_pair(ctx, "bench-many", tiers={"memory": {"options": {"max_entries": MANY}}})


def setup_get_many_redis(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    return _get_many_pair(ctx, "bench-many-redis", order=["redis"])


def setup_get_many_cold(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    return _get_many_pair(
        ctx,
        "bench-many-cold",
        order=["memory", "redis"],
        tiers={"memory": {"options": {"max_entries": MANY}}},
    )


def setup_get_many_floor(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    """The least any cache can do for ``redis_get_many_cold``, written by hand, against its peer.

    The same 100-key rotation, values stored as the Redis tier stores them (an 11-byte
    header: version, deadline, tags length), read with one ``MGET``; the headers checked
    in one pass, 100 ``orjson.loads``, and the values copied into an ``OrderedDict`` LRU of
    100 entries, making room first (freed memory is what the decodes then reuse: the
    cheapest order found).  No chain, no counters, no contract checks: what is left is
    the price of keeping what was read, which no implementation of the copy-up avoids.
    """
    client = redis_client(ctx.redis_url or "")
    ctx.closers.append(client.close)
    head = struct.Struct("<BdH")
    stored = head.pack(1, time.time() + TTL, 0) + orjson.dumps(ctx.value)
    groups = [_rotation(f"bench:floor:{g}", MANY) for g in range(4)]
    for group in groups:
        client.mset(dict.fromkeys(["floor:" + key for key in group], stored))
        client.mset(dict.fromkeys(["raw:" + key for key in group], stored[head.size :]))
    lru: collections.OrderedDict[str, tierkit.Entry] = collections.OrderedDict()
    loads, mget, unpack_head = orjson.loads, client.mget, head.unpack_from
    payload = operator.itemgetter(slice(head.size, None))
    no_tags = itertools.repeat(())

    def floor(keys: list[str]) -> dict[str, Any]:
        raws = mget(["floor:" + key for key in keys])
        versions, deadlines, tag_lens = zip(*map(unpack_head, raws), strict=True)
        if versions.count(1) != len(raws) or tag_lens.count(0) != len(raws) or min(deadlines) <= time.time():
            raise AssertionError("the floor's values are all live, untagged and of version 1")
        excess = len(lru) + len(raws) - MANY
        if excess > 0:
            collections.deque(map(lru.popitem, itertools.repeat(False, excess)), maxlen=0)
        values = list(map(loads, map(payload, raws)))
        columns = zip(values, deadlines, no_tags, strict=False)
        entries = map(tuple.__new__, itertools.repeat(tierkit.Entry), columns)
        lru.update(zip(keys, entries, strict=True))
        return dict(zip(keys, values, strict=True))

    def peer(keys: list[str]) -> dict[str, Any]:  # as redis_get_many's
        return {key: loads(raw) for key, raw in zip(keys, mget(keys), strict=True) if raw is not None}

    raw_groups = [["raw:" + key for key in group] for group in groups]
    for group, raw_group in zip(groups, raw_groups, strict=True):
        _same("floor", floor(group), dict.fromkeys(group, ctx.value))
        _same("MGET + loads", peer(raw_group), dict.fromkeys(raw_group, ctx.value))
    return cycle_loop(floor, groups), cycle_loop(peer, raw_groups), {}


def setup_redis_set(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache = ctx.cache("bench-set", order=["memory", "redis"])
    client = redis_client(ctx.redis_url or "")
    ctx.closers.append(client.close)
    keys = _rotation("bench:set")
    raw_keys = ["raw:" + key for key in keys]
    value, dumps, set_ = ctx.value, orjson.dumps, client.set

    def tk(key: str) -> None:
        cache.set(key, value, ttl=TTL)

    def peer(key: str) -> None:
        set_(key, dumps(value), px=TTL_MS)

    tk(keys[0])
    peer(raw_keys[0])
    _same("tierkit set", cache.get(keys[0]), value)
    _same("redis SET", orjson.loads(client.get(raw_keys[0])), value)
    return cycle_loop(tk, keys), cycle_loop(peer, raw_keys), {"tiers": list(cache.tiers)}


# -- file tier --------------------------------------------------------------------------


def _file_pair(ctx: Context, name: str) -> tuple[tierkit.Cache, diskcache.Cache, list[str]]:
    cache = ctx.cache(name, order=["file"])
    peer = diskcache.Cache(str(ctx.directory("diskcache")))
    ctx.closers.append(peer.close)
    keys = _rotation(f"bench:{name}")
    for key in keys:
        cache.set(key, ctx.value, ttl=TTL, persistent=True)
        peer.set(key, ctx.value, expire=TTL)
    _same("tierkit file get", cache.get(keys[0]), ctx.value)
    _same("diskcache get", peer.get(keys[0]), ctx.value)
    return cache, peer, keys


def setup_file_get(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache, peer, keys = _file_pair(ctx, "bench-file-get")
    return cycle_loop(cache.get, keys), cycle_loop(peer.get, keys), {}


def setup_file_set(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache, peer, keys = _file_pair(ctx, "bench-file-set")
    value = ctx.value

    def tk(key: str) -> None:
        cache.set(key, value, ttl=TTL, persistent=True)

    def dc(key: str) -> None:
        peer.set(key, value, expire=TTL)

    return cycle_loop(tk, keys), cycle_loop(dc, keys), {}


def setup_file_get_raw(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache, peer, keys = _file_pair(ctx, "bench-file-raw")
    tier = cache.chain.slots[0].tier  # the FileTier itself: its get hook, no chain, no decode
    _same("FileTier hook", cache.codec.decode(tier.tierkit_get(keys[0]).value), ctx.value)
    return cycle_loop(tier.tierkit_get, keys), cycle_loop(peer.get, keys), {}


def setup_file_set_raw(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    cache, peer, keys = _file_pair(ctx, "bench-file-raw-set")
    tier = cache.chain.slots[0].tier
    clock = cache.chain.clock
    payload = cache.codec.encode("k", ctx.value)
    value = ctx.value

    def tk(key: str) -> None:
        tier.tierkit_set(key, tierkit.Entry(payload, clock() + TTL))

    def dc(key: str) -> None:
        peer.set(key, value, expire=TTL)

    return cycle_loop(tk, keys), cycle_loop(dc, keys), {}


# -- values: the codec's check, compression, numpy and pandas ----------------------------


def setup_mem_set(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    """Memory-only set: the value is checked against the codec (json) as Redis would."""
    cache = ctx.cache("bench-mem-set", order=["memory"])
    peer: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=10_000, ttl=TTL)
    keys = _rotation("bench:ms")
    value = ctx.value

    def tk(key: str) -> None:
        cache.set(key, value, ttl=TTL)

    def ct(key: str) -> None:
        peer[key] = value

    tk(keys[0])
    ct(keys[0])
    _same("tierkit memory set", cache.get(keys[0]), peer[keys[0]])
    return cycle_loop(tk, keys), cycle_loop(ct, keys), {"tiers": list(cache.tiers)}


def _set_pair(
    ctx: Context, label: str, prefix: str, cache: tierkit.Cache, peer: tierkit.Cache
) -> tuple[Batch, Batch, dict[str, Any]]:
    """The same ``set`` on two tierkit caches configured differently."""
    keys = _rotation(prefix)
    value = ctx.value

    def tk(key: str) -> None:
        cache.set(key, value, ttl=TTL)

    def other(key: str) -> None:
        peer.set(key, value, ttl=TTL)

    tk(keys[0])
    other(keys[0])
    _same(label, cache.get(keys[0]), peer.get(keys[0]))
    return cycle_loop(tk, keys), cycle_loop(other, keys), {}


def setup_mem_set_check(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    """What refusing values alike costs a memory-only set: codec json (checked) against objects."""
    checked = ctx.cache("bench-mem-set-json", order=["memory"])
    unchecked = ctx.cache("bench-mem-set-objects", order=["memory"], codec="objects")
    return _set_pair(ctx, "memory set, json vs objects", "bench:msc", checked, unchecked)


def setup_redis_set_compress(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    """A small value with compression on (threshold 16 KiB) against the same set with it off."""
    on = ctx.cache("bench-set-zstd", order=["memory", "redis"], compress_min_bytes=16_384)
    off = ctx.cache("bench-set-plain", order=["memory", "redis"])
    return _set_pair(ctx, "set, compression on vs off", "bench:setz", on, off)


ARRAY_BYTES = 100 * 1024 * 1024


def setup_array_file(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    """A 100 MB float64 array set then read back through the file tier, against np.save + np.load."""
    import numpy as np

    array = np.random.default_rng(0).random(ARRAY_BYTES // 8)
    cache = ctx.cache(
        "bench-array", order=["file"], tiers={"file": {"options": {"max_bytes": 4 * ARRAY_BYTES}}}
    )
    path = ctx.directory("npy") / "array.npy"

    def tk() -> None:
        cache.set("array", array, persistent=True)
        cache.get("array")

    def npy() -> None:
        np.save(path, array)
        np.load(path)

    tk()
    npy()
    _same("tierkit array", bool(np.array_equal(cache.get("array"), array)), True)
    _same("np.load", bool(np.array_equal(np.load(path), array)), True)
    return call_loop(tk), call_loop(npy), {"bytes": array.nbytes}


def setup_frame_codec(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    """A 1 000 000-row, 10-column DataFrame through the JSON codec, against pickle protocol 5."""
    import pickle

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 1_000_000
    frame = pd.DataFrame({f"f{i}": rng.random(n) for i in range(6)})
    frame["i"] = rng.integers(0, 1000, n)
    frame["t"] = pd.date_range("2026-01-01", periods=n, freq="s", tz="UTC")
    frame["c"] = pd.Categorical(rng.choice(["north", "south", "east", "west"], n))
    frame["b"] = rng.random(n) < 0.5
    codec = tierkit.Cache(namespace="bench-frame", order=["memory"]).codec

    def tk() -> None:
        codec.decode(codec.encode("frame", frame))

    def pkl() -> None:
        pickle.loads(pickle.dumps(frame, protocol=5))

    pd.testing.assert_frame_equal(codec.decode(codec.encode("frame", frame)), frame, check_exact=True)
    return call_loop(tk), call_loop(pkl), {"rows": n, "columns": frame.shape[1]}


# -- @cached ----------------------------------------------------------------------------


def _cached_pair(ctx: Context, annotated: bool) -> tuple[Batch, Batch, dict[str, Any]]:
    cache = ctx.full_chain()
    value = ctx.value

    if annotated:

        @tierkit.cached(ttl=TTL, cache=cache)
        def load(page: int) -> dict[str, Any]:
            return value

    else:

        @tierkit.cached(ttl=TTL, cache=cache)
        def load(page):  # type: ignore[no-untyped-def]
            return value

    @cachetools.cached(cachetools.TTLCache(maxsize=10_000, ttl=TTL))
    def load_ct(page: int) -> dict[str, Any]:
        return value

    _same("tierkit @cached", load(7), value)
    _same("tierkit @cached hit", load(7), value)
    _same("cachetools @cached", load_ct(7), value)
    return call_loop(load, 7), call_loop(load_ct, 7), {"tiers": list(cache.tiers)}


def setup_cached_method(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    """A method: ``self`` left out of the key, the instance bound for the call (docs/keys.md)."""
    cache = ctx.full_chain()
    value = ctx.value

    class Repository:
        def __init__(self) -> None:
            self.cache: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(maxsize=10_000, ttl=TTL)

        @tierkit.cached(ttl=TTL, cache=cache)
        def load(self, page: int) -> dict[str, Any]:
            return value

        @cachetools.cachedmethod(lambda self: self.cache)
        def load_ct(self, page: int) -> dict[str, Any]:
            return value

    repo = Repository()
    _same("tierkit @cached method", repo.load(7), value)
    _same("tierkit @cached method hit", repo.load(7), value)
    _same("cachetools @cachedmethod", repo.load_ct(7), value)
    return (
        call_loop(operator.methodcaller("load", 7), repo),  # repo.load(7): the binding is part of a call
        call_loop(operator.methodcaller("load_ct", 7), repo),
        {"tiers": list(cache.tiers)},
    )


def setup_cached(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    return _cached_pair(ctx, annotated=True)


def setup_cached_plain(ctx: Context) -> tuple[Batch, Batch, dict[str, Any]]:
    return _cached_pair(ctx, annotated=False)


FULL_CHAIN = "Cache.get, default chain (memory, redis, session, file), TTL 600 s"

WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "mem_hit_lru",
        "memory hit, full default chain",
        FULL_CHAIN,
        "cachetools LRUCache.get",
        1.2,
        setup_mem_lru,
        stretch=1.0,
    ),
    Workload(
        "mem_hit_lru_sampled",
        "memory hit, full default chain, latency sampling on",
        FULL_CHAIN + ", latency_sampling 16",
        "cachetools LRUCache.get",
        1.2,
        setup_mem_lru_sampled,
    ),
    Workload(
        "mem_hit_ttl",
        "memory hit, full default chain",
        FULL_CHAIN,
        "cachetools TTLCache.get (ttl 600 s)",
        0.3,
        setup_mem_ttl,
    ),
    Workload(
        "mem_hit_dogpile",
        "memory hit, full default chain",
        FULL_CHAIN,
        "dogpile.cache memory region get (expiration 600 s)",
        0.4,
        setup_mem_dogpile,
    ),
    Workload(
        "miss_all",
        "miss in every tier",
        "Cache.get of an absent key, default chain",
        "redis-py GET (miss)",
        1.1,
        setup_miss_all,
        needs_redis=True,
    ),
    Workload(
        "redis_hit",
        "Redis hit, memory empty, decode + backfill",
        "Cache.get, default chain, memory misses (1 KB JSON)",
        "redis-py GET + orjson.loads",
        1.1,
        setup_redis_hit,
        needs_redis=True,
    ),
    Workload(
        "redis_get_many",
        "get_many of 100 keys from Redis",
        "Cache.get_many(100 keys), memory misses all",
        "redis-py MGET + 100 \u00d7 orjson.loads",
        1.1,
        setup_get_many,
        needs_redis=True,
    ),
    Workload(
        "redis_get_many_only",
        "get_many of 100 keys, Redis-only chain",
        "Cache.get_many(100 keys), order [redis]",
        "redis-py MGET + 100 \u00d7 orjson.loads",
        1.1,
        setup_get_many_redis,
        needs_redis=True,
    ),
    Workload(
        "redis_get_many_cold",
        "get_many of 100 keys, memory + Redis, memory cold",
        "Cache.get_many(100 keys), order memory, redis; every key a memory miss, copied up",
        "redis-py MGET + 100 \u00d7 orjson.loads",
        1.1,
        setup_get_many_cold,
        needs_redis=True,
    ),
    Workload(
        "redis_set",
        "set to memory + Redis",
        "Cache.set(ttl=600), order memory, redis (1 KB JSON)",
        "redis-py SET PX + orjson.dumps",
        1.1,
        setup_redis_set,
        needs_redis=True,
    ),
    Workload(
        "file_get",
        "file tier get hit (1 KB JSON)",
        "Cache.get, order [file] (incl. decode)",
        "diskcache Cache.get",
        1.0,
        setup_file_get,
    ),
    Workload(
        "file_set",
        "file tier set (1 KB JSON)",
        "Cache.set(persistent=True), order [file]",
        "diskcache Cache.set(expire=600)",
        1.0,
        setup_file_set,
    ),
    Workload(
        "cached_hit",
        "@cached hit",
        "@tierkit.cached(ttl=600) on the default chain, annotated (-> dict)",
        "cachetools @cached(TTLCache)",
        1.0,
        setup_cached,
    ),
    Workload(
        "array_file",
        "100 MB float64 array: set + get through the file tier",
        "Cache.set(persistent=True) + Cache.get, order [file] (JSON codec, array bytes beside the JSON)",
        "np.save + np.load, same disk",
        1.5,
        setup_array_file,
    ),
    Workload(
        "frame_codec",
        "DataFrame 1 000 000 rows x 10 columns: encode + decode",
        "the JSON codec (Arrow IPC for the frame)",
        "pickle.dumps(protocol=5) + pickle.loads",
        1.5,
        setup_frame_codec,
    ),
    # Informational rows: what the numbers above are made of.
    Workload(
        "mem_set",
        "set to a memory-only chain (1 KB JSON)",
        "Cache.set(ttl=600), order [memory], codec json (value checked)",
        "cachetools TTLCache[key] = value",
        None,
        setup_mem_set,
        info=True,
    ),
    Workload(
        "mem_set_check",
        "memory-only set: cost of refusing values as Redis would",
        "Cache.set, order [memory], codec json (checked)",
        "Cache.set, order [memory], codec objects (not checked)",
        None,
        setup_mem_set_check,
        info=True,
    ),
    Workload(
        "redis_get_many_floor",
        "get_many of 100 keys copied into a memory LRU: the floor",
        "hand-written: MGET, headers checked, 100 \u00d7 orjson.loads, copied into an OrderedDict LRU",
        "redis-py MGET + 100 \u00d7 orjson.loads",
        None,
        setup_get_many_floor,
        needs_redis=True,
        info=True,
    ),
    Workload(
        "redis_set_compress",
        "small-value set, compression on (16 KiB threshold) vs off",
        "Cache.set, memory + redis, compress_min_bytes=16384 (1 KB value)",
        "Cache.set, memory + redis, compression off",
        None,
        setup_redis_set_compress,
        needs_redis=True,
        info=True,
    ),
    Workload(
        "mem_hit_dict",
        "memory hit, full default chain",
        FULL_CHAIN,
        "dict.get (floor)",
        None,
        setup_mem_dict,
        info=True,
    ),
    Workload(
        "cached_hit_plain",
        "@cached hit, no return annotation",
        "@tierkit.cached(ttl=600) on the default chain",
        "cachetools @cached(TTLCache)",
        None,
        setup_cached_plain,
        info=True,
    ),
    Workload(
        "cached_method_hit",
        "@cached method hit",
        "@tierkit.cached(ttl=600) on a method, default chain, annotated (-> dict)",
        "cachetools @cachedmethod(TTLCache)",
        None,
        setup_cached_method,
        info=True,
    ),
    Workload(
        "file_get_raw",
        "file tier get hit, hook only",
        "FileTier.tierkit_get (bytes, no decode)",
        "diskcache Cache.get",
        None,
        setup_file_get_raw,
        info=True,
    ),
    Workload(
        "file_set_raw",
        "file tier set, hook only",
        "FileTier.tierkit_set (encoded once, outside the loop)",
        "diskcache Cache.set(expire=600)",
        None,
        setup_file_set_raw,
        info=True,
    ),
)


def run_workload(ctx: Context, workload: Workload) -> PairResult:
    result = PairResult(
        key=workload.key,
        workload=workload.workload,
        tierkit_label=workload.tierkit_label,
        peer_label=workload.peer_label,
        target=workload.target,
        stretch=workload.stretch,
        ops_per_batch=0,
        rounds=0,
        tierkit_times=[],
        peer_times=[],
        note=workload.note,
        info=workload.info,
    )
    if workload.needs_redis and ctx.redis_url is None:
        result.skipped = "no redis-server on this machine"
        return result
    tk, peer, extra = workload.setup(ctx)
    attempts = []
    best: tuple[int, list[float], list[float]] | None = None
    for _ in range(max(1, ctx.mode.attempts)):
        n, (tk_times, peer_times) = interleave([tk, peer], ctx.mode)
        result.ops_per_batch, result.rounds = n, ctx.mode.rounds
        result.tierkit_times, result.peer_times = tk_times, peer_times
        attempts.append({"ratio": result.ratio, "p25_p75": list(result.spread), "width": result.width})
        if best is None or result.width < min(a["width"] for a in attempts[:-1]):
            best = (n, tk_times, peer_times)
        if result.width <= ctx.mode.steady:
            break
    assert best is not None
    result.ops_per_batch, result.tierkit_times, result.peer_times = best
    extra["attempts"] = attempts
    result.extra = extra
    if ctx.redis_url is None and "tiers" in extra:
        result.note = (result.note + " " if result.note else "") + "(no redis-server: chain without redis)"
    return result
