"""Atomic operations: add, incr/decr, touch, has, delete_many, and the TTL sentinels."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tierkit
from tierkit import FOREVER, Cache, NotACounter
from tierkit.testing import FakeClock, race_in_processes

from .compat.dict_tier_v0_1 import DictTier


@pytest.fixture
def make_cache(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Cache]]:
    caches: list[Cache] = []

    def make(
        order: tuple[str, ...] = ("memory", "file"),
        use_clock: bool = True,
        tiers: dict[str, Any] | None = None,
        **settings: Any,
    ) -> Cache:
        file_tier = {"write": "always", "options": {"directory": str(tmp_path / "store")}}
        cache = Cache(
            namespace="atomics",
            order=list(order),
            tiers={"file": file_tier, **(tiers or {})},
            clock=clock if use_clock else None,
            kinds={"dict": DictTier},
            **settings,
        )
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.close()


CHAINS = [("memory",), ("file",), ("memory", "file"), ("dict",), ("memory", "dict")]
"""``dict``: a tier written for tierkit 0.1.0, with none of the atomic hooks (the fallbacks serve)."""


@pytest.mark.parametrize("order", CHAINS)
def test_add_stores_only_when_absent(make_cache: Callable[..., Cache], order: tuple[str, ...]) -> None:
    cache = make_cache(order)
    assert cache.add("k", "first") is True
    assert cache.add("k", "second") is False
    assert cache.get("k") == "first"
    cache.delete("k")
    assert cache.add("k", None) is True, "a cached None counts as present afterwards"
    assert cache.add("k", "third") is False


@pytest.mark.parametrize("order", CHAINS)
def test_add_treats_an_expired_entry_as_absent(
    make_cache: Callable[..., Cache], clock: FakeClock, order: tuple[str, ...]
) -> None:
    cache = make_cache(order)
    cache.set("k", "old", ttl=10)
    clock.advance(10)
    assert cache.add("k", "new", ttl=10) is True
    assert cache.get("k") == "new"


@pytest.mark.parametrize("order", CHAINS)
def test_incr_and_decr_count_and_get_returns_an_int(
    make_cache: Callable[..., Cache], order: tuple[str, ...]
) -> None:
    cache = make_cache(order)
    cache.set("n", 5)
    assert cache.incr("n") == 6
    assert cache.incr("n", 10) == 16
    assert cache.decr("n", 20) == -4
    assert cache.get("n") == -4
    assert type(cache.get("n")) is int


@pytest.mark.parametrize("order", CHAINS)
def test_incr_refuses_a_missing_key_and_a_value_that_is_not_an_integer(
    make_cache: Callable[..., Cache], order: tuple[str, ...]
) -> None:
    cache = make_cache(order)
    with pytest.raises(ValueError, match="'absent': it is not in the cache"):
        cache.incr("absent")
    for value in ("12", 1.5, None, True, [1]):
        cache.set("v", value)
        with pytest.raises(NotACounter, match="cannot incr/decr key 'v'"):
            cache.incr("v")
        with pytest.raises(TypeError):  # NotACounter is a TypeError, as "1" + 1 would raise
            cache.decr("v")
    with pytest.raises(TypeError, match="delta must be an int"):
        cache.incr("v", 1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("order", CHAINS)
def test_incr_keeps_the_remaining_ttl_and_tags(
    make_cache: Callable[..., Cache], clock: FakeClock, order: tuple[str, ...]
) -> None:
    cache = make_cache(order)
    cache.set("n", 1, ttl=100, tags=["counters"])
    clock.advance(60)
    assert cache.incr("n") == 2
    for report in cache.inspect("n").values():
        assert report.status == "absent" or (report.ttl, report.tags) == (40.0, ("counters",))
    clock.advance(40)
    assert cache.get("n") is None, "the counter expires when the original entry would have"
    cache.set("m", 1, tags=["counters"])
    cache.incr("m")
    assert cache.invalidate(tags=["counters"]) >= 1
    assert cache.has("m") is False


def test_incr_leaves_the_count_in_the_deepest_tier_and_drops_the_copies_above(
    make_cache: Callable[..., Cache],
) -> None:
    cache = make_cache(("memory", "file"))
    cache.set("n", 1)
    assert cache.incr("n") == 2
    held = {name: report.status for name, report in cache.inspect("n").items()}
    assert held == {"memory": "absent", "file": "held"}
    assert cache.get("n") == 2  # read through, copied up again
    assert cache.inspect("n")["memory"].status == "held"


def test_incr_in_the_tier_that_holds_the_key_when_deeper_ones_do_not(
    make_cache: Callable[..., Cache],
) -> None:
    cache = make_cache(
        ("memory", "file"), tiers={"file": {"write": "persistent", "options": {"directory": "store"}}}
    )
    cache.set("n", 1)  # memory only: the file tier takes persistent writes
    assert cache.incr("n") == 2
    assert cache.get("n") == 2


@pytest.mark.parametrize("order", [("memory",), ("file",), ("memory", "file")])
def test_incr_is_atomic_across_threads(make_cache: Callable[..., Cache], order: tuple[str, ...]) -> None:
    cache = make_cache(order, use_clock=False)
    cache.set("n", 0)
    threads = [threading.Thread(target=lambda: [cache.incr("n") for _ in range(200)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("n") == 800


def _file_cache(directory: Path) -> Cache:
    return Cache(
        namespace="atomics",
        order=["memory", "file"],
        tiers={"file": {"write": "always", "options": {"directory": str(directory), "busy_timeout": 60}}},
    )


def test_add_first_writer_wins_across_processes(tmp_path: Path) -> None:
    def worker(index: int) -> bool:
        with _file_cache(tmp_path) as cache:
            return cache.add("lock", index, ttl=60)

    winners = race_in_processes(worker, 6)
    assert winners.count(True) == 1
    with _file_cache(tmp_path) as cache:
        assert cache.get("lock") == winners.index(True)


def test_incr_is_exact_across_processes(tmp_path: Path) -> None:
    with _file_cache(tmp_path) as cache:
        cache.set("hits", 0, ttl=600)

    def worker(index: int) -> int:
        with _file_cache(tmp_path) as cache:
            for _ in range(50):
                cache.incr("hits")
            return 0

    race_in_processes(worker, 4)
    with _file_cache(tmp_path) as cache:
        assert cache.get("hits") == 4 * 50


@pytest.mark.parametrize("order", CHAINS)
def test_touch_sets_a_new_ttl_without_changing_the_value(
    make_cache: Callable[..., Cache], clock: FakeClock, order: tuple[str, ...]
) -> None:
    cache = make_cache(order)
    cache.set("k", {"v": 1}, ttl=10, tags=["t"])
    assert cache.touch("k", 100) is True
    clock.advance(50)
    assert cache.get("k") == {"v": 1}
    assert cache.touch("k", FOREVER) is True
    clock.advance(10_000)
    assert cache.get("k") == {"v": 1}
    assert cache.invalidate(tags=["t"]) >= 1, "touch keeps the tags"
    assert cache.touch("k", 10) is False
    assert cache.touch("never-set", 10) is False


def test_touch_without_ttl_applies_the_default_ttl(
    make_cache: Callable[..., Cache], clock: FakeClock
) -> None:
    cache = make_cache(("memory", "file"), default_ttl=30)
    cache.set("k", 1, ttl=FOREVER)
    assert cache.touch("k") is True
    clock.advance(30)
    assert cache.has("k") is False


@pytest.mark.parametrize("order", CHAINS)
def test_has_sees_live_entries_and_cached_none(
    make_cache: Callable[..., Cache], clock: FakeClock, order: tuple[str, ...]
) -> None:
    cache = make_cache(order)
    cache.set("none", None, ttl=10)
    assert cache.has("none") is True
    assert cache.has("absent") is False
    clock.advance(10)
    assert cache.has("none") is False


def test_has_neither_backfills_nor_counts_a_read(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache(("memory", "file"))
    cache.set("k", "v")
    cache.clear(tiers=["memory"])
    assert cache.has("k") is True
    assert cache.inspect("k")["memory"].status == "absent"
    assert cache.stats()["gets"] == 0


@pytest.mark.parametrize("order", CHAINS)
def test_delete_many_removes_the_keys_from_every_tier(
    make_cache: Callable[..., Cache], order: tuple[str, ...]
) -> None:
    cache = make_cache(order)
    cache.set_many({"a": 1, "b": 2, "c": 3})
    removed = cache.delete_many(["a", "b", "missing", "a"])
    assert removed == 2 * len(order)
    assert removed.pending == ()
    assert cache.get_many(["a", "b", "c"]) == {"c": 3}
    assert cache.delete_many([]) == 0


def test_forever_is_no_expiry_whatever_the_default_ttl(
    make_cache: Callable[..., Cache], clock: FakeClock
) -> None:
    cache = make_cache(("memory", "file"), default_ttl=30)
    cache.set("default", 1)
    cache.set("forever", 1, ttl=FOREVER)
    assert {r.ttl for r in cache.inspect("default").values()} == {30.0}
    assert {r.ttl for r in cache.inspect("forever").values()} == {None}
    clock.advance(31)
    assert cache.get("default") is None
    assert cache.get("forever") == 1
    assert float("inf") == tierkit.FOREVER


def test_forever_is_still_capped_by_a_tier_max_ttl(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache(("memory", "file"), tiers={"memory": {"max_ttl": 5}})
    cache.set("k", 1, ttl=FOREVER)
    assert cache.inspect("k")["memory"].ttl == 5.0


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
def test_a_ttl_that_is_not_positive_is_refused(make_cache: Callable[..., Cache], ttl: float) -> None:
    cache = make_cache(("memory",))
    for call in (
        lambda: cache.set("k", 1, ttl=ttl),
        lambda: cache.add("k", 1, ttl=ttl),
        lambda: cache.touch("k", ttl),
    ):
        with pytest.raises(ValueError, match="ttl must be a positive number"):
            call()
    assert cache.has("k") is False


def test_add_writes_nothing_when_the_deciding_tier_cannot_answer(
    make_cache: Callable[..., Cache], tmp_path: Path
) -> None:
    cache = make_cache(("memory", "file"))
    file_slot = cache.chain.slots[1]
    file_slot.breaker.failure("test: down")  # open after enough failures
    while file_slot.breaker.state != "open":
        file_slot.breaker.failure("test: down")
    assert cache.add("k", 1) is False
    assert cache.inspect("k")["memory"].status == "absent"


@pytest.mark.anyio
async def test_async_twins(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache(("memory", "file"))
    assert await cache.aadd("n", 1) is True
    assert await cache.aadd("n", 2) is False
    assert await cache.aincr("n", 5) == 6
    assert await cache.adecr("n") == 5
    assert await cache.atouch("n", 60) is True
    assert await cache.ahas("n") is True
    assert await cache.adelete_many(["n"]) == 1  # only the file tier: decr dropped the memory copy
    assert await cache.ahas("n") is False
    results = await asyncio.gather(*(cache.aadd("once", i) for i in range(5)))
    assert results.count(True) == 1
