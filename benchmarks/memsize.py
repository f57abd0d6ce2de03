"""Bytes per memory-tier entry, against cachetools' TTLCache holding the same values.

Keys and values are created before measuring and shared by every store, so the figure
is each store's own overhead per entry (index, links, expiry bookkeeping), counted by
``tracemalloc`` as the growth of traced memory while the entries are inserted.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import cachetools

import tierkit
from benchmarks.pairs import TTL, Context


def _measure(fill: Callable[[], Any]) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, store


def bytes_per_entry(ctx: Context, count: int) -> dict[str, Any]:
    keys = [f"bench:mem:{i:08d}" for i in range(count)]
    values = [{"id": i, "name": "user", "score": 0.5} for i in range(count)]
    items = list(zip(keys, values, strict=True))

    def fill_tierkit() -> tierkit.Cache:
        cache = ctx.cache(
            "bench-memsize", order=["memory"], tiers={"memory": {"options": {"max_entries": count}}}
        )
        set_ = cache.set
        for key, value in items:
            set_(key, value, ttl=TTL)
        return cache

    def fill_ttlcache() -> cachetools.TTLCache[str, Any]:
        store: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=count, ttl=TTL)
        for key, value in items:
            store[key] = value
        return store

    def fill_lru() -> cachetools.LRUCache[str, Any]:
        store: cachetools.LRUCache[str, Any] = cachetools.LRUCache(maxsize=count)
        for key, value in items:
            store[key] = value
        return store

    def fill_dict() -> dict[str, Any]:
        return dict(items)

    figures: dict[str, float] = {}
    keep = []
    for name, fill in (
        ("tierkit memory tier (Cache.set with ttl)", fill_tierkit),
        ("cachetools TTLCache", fill_ttlcache),
        ("cachetools LRUCache", fill_lru),
        ("dict (floor)", fill_dict),
    ):
        grown, store = _measure(fill)
        keep.append(store)  # alive until every store is measured
        figures[name] = grown / count
    tk = figures["tierkit memory tier (Cache.set with ttl)"]
    ttl = figures["cachetools TTLCache"]
    return {
        "entries": count,
        "bytes_per_entry": figures,
        "tierkit_over_ttlcache": tk / ttl,
        "note": "keys and values pre-built and shared; the figure is each store's own overhead",
    }
