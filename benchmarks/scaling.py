"""Cost per operation as the store grows: it must stay flat (≤ 1.3x from smallest to largest).

All sizes of one series are built first and then timed *interleaved*, like a pair, so
the ratio largest ÷ smallest is not a comparison of two moments of a noisy machine.
The same series is run for a plain ``dict`` (memory) so that what the CPU caches do
to a large table is visible apart from what tierkit does.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import cachetools

import tierkit
from benchmarks._timing import Batch, interleave
from benchmarks.pairs import TTL, Context

LIMIT = 1.3
SAMPLE = 1 << 16
"""Random keys drawn per size (cycled), so a run touches the whole table, not one hot key."""


def _series(
    ctx: Context,
    name: str,
    sizes: list[int],
    sides: dict[int, Batch],
) -> dict[str, Any]:
    n, times = interleave([sides[size] for size in sizes], ctx.mode)
    medians = [sorted(t)[len(t) // 2] for t in times]
    ratio = medians[-1] / medians[0]
    return {
        "series": name,
        "sizes": sizes,
        "per_op_s": medians,
        "ops_per_batch": n,
        "largest_over_smallest": ratio,
        "limit": LIMIT,
        "flat": ratio <= LIMIT,
    }


def _random_keys(keys: list[str], rng: random.Random) -> list[str]:
    return [keys[rng.randrange(len(keys))] for _ in range(min(SAMPLE, max(len(keys), 1024)))]


def file_scaling(ctx: Context, sizes: list[int]) -> list[dict[str, Any]]:
    rng = random.Random(1)
    caches: dict[int, tierkit.Cache] = {}
    samples: dict[int, list[str]] = {}
    for size in sizes:
        cache = ctx.cache(f"bench-file-scale-{size}", order=["file"])
        keys = [f"bench:fs:{i:07d}" for i in range(size)]
        for start in range(0, size, 1000):
            chunk = dict.fromkeys(keys[start : start + 1000], ctx.value)
            cache.set_many(chunk, ttl=TTL, persistent=True)
        stats = cache.stats()["tiers"]["file"]
        if stats["entries"] != size:
            raise AssertionError(f"file tier holds {stats['entries']} entries, expected {size}")
        caches[size], samples[size] = cache, _random_keys(keys, rng)

    def getter(size: int) -> Batch:
        get, source = caches[size].get, itertools.cycle(samples[size])

        def batch(n: int) -> None:
            for key in itertools.islice(source, n):
                get(key)

        return batch

    def setter(size: int) -> Batch:
        set_, source, value = caches[size].set, itertools.cycle(samples[size]), ctx.value

        def batch(n: int) -> None:
            for key in itertools.islice(source, n):
                set_(key, value, ttl=TTL, persistent=True)

        return batch

    return [
        _series(
            ctx,
            "file tier get hit (Cache.get, order [file], 1 KB JSON)",
            sizes,
            {s: getter(s) for s in sizes},
        ),
        _series(ctx, "file tier set, overwrite (Cache.set persistent)", sizes, {s: setter(s) for s in sizes}),
    ]


def memory_scaling(ctx: Context, sizes: list[int]) -> list[dict[str, Any]]:
    rng = random.Random(2)
    value = ("a small", "shared", "value")
    get_caches: dict[int, tierkit.Cache] = {}
    set_caches: dict[int, tierkit.Cache] = {}
    lrus: dict[int, cachetools.LRUCache[str, Any]] = {}
    dicts: dict[int, dict[str, Any]] = {}
    samples: dict[int, list[str]] = {}
    for size in sizes:
        keys = [f"bench:ms:{i:08d}" for i in range(size)]
        for store in (get_caches, set_caches):
            cache = ctx.cache(
                f"bench-mem-scale-{size}",
                order=["memory"],
                tiers={"memory": {"options": {"max_entries": size}}},
            )
            tier = cache.chain.slots[0].tier  # fill through the tier: a million chain sets would take long
            expires = cache.chain.clock() + 10 * TTL
            for key in keys:
                tier.tierkit_set(key, tierkit.Entry(value, expires))
            store[size] = cache
        lru: cachetools.LRUCache[str, Any] = cachetools.LRUCache(maxsize=size)
        for key in keys:
            lru[key] = value
        lrus[size] = lru
        dicts[size] = dict.fromkeys(keys, value)
        samples[size] = _random_keys(keys, rng)

    def cycling(func: Callable[[str], object], keys: list[str]) -> Batch:
        source = itertools.cycle(keys)

        def batch(n: int) -> None:
            for key in itertools.islice(source, n):
                func(key)

        return batch

    def new_keys(func: Callable[[str, Any], object], size: int) -> Batch:
        counter = itertools.count()

        def batch(n: int) -> None:
            for i in itertools.islice(counter, n):
                func(f"bench:new:{size}:{i:09d}", value)

        return batch

    def tk_set(size: int) -> Callable[[str, Any], object]:
        set_ = set_caches[size].set

        def op(key: str, v: Any) -> None:
            set_(key, v, ttl=TTL)

        return op

    results = [
        _series(
            ctx,
            "memory tier get hit (Cache.get, random keys)",
            sizes,
            {s: cycling(get_caches[s].get, samples[s]) for s in sizes},
        ),
        _series(
            ctx,
            "memory tier set of a new key, evicting (Cache.set, order [memory])",
            sizes,
            {s: new_keys(tk_set(s), s) for s in sizes},
        ),
        _series(
            ctx,
            "reference: cachetools LRUCache.get (random keys)",
            sizes,
            {s: cycling(lrus[s].get, samples[s]) for s in sizes},
        ),
        _series(
            ctx,
            "reference: cachetools LRUCache set of a new key, evicting",
            sizes,
            {s: new_keys(lrus[s].__setitem__, s) for s in sizes},
        ),
        _series(
            ctx,
            "reference: dict.get (random keys) — the CPU-cache floor",
            sizes,
            {s: cycling(dicts[s].get, samples[s]) for s in sizes},
        ),
    ]
    floor = results[-1]["per_op_s"]
    for series in results[:-1]:
        relative = [t / f for t, f in zip(series["per_op_s"], floor, strict=True)]
        series["over_dict_floor"] = relative
        series["largest_over_smallest_vs_floor"] = relative[-1] / relative[0]
    for store in (get_caches, set_caches):
        for size, cache in store.items():
            evictions = cache.stats()["tiers"]["memory"]["evictions"]
            if store is set_caches and evictions == 0:
                raise AssertionError(f"memory tier of {size} entries never evicted")
    return results
