"""Stampedes, fail-safe and early refresh (docs/stampede.md), with the file tier's lock files."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tierkit
from tierkit import Cache
from tierkit.testing import FakeClock, stampede

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def file_cache(directory: Path, **settings: Any) -> Callable[[], Cache]:
    """A memory → file chain whose file tier takes every write (shared by the processes)."""

    def make() -> Cache:
        tiers = {"file": {"options": {"directory": str(directory)}, "write": "always"}}
        return Cache(order=["memory", "file"], tiers=tiers, **settings)

    return make


# -- one computation per cold key across processes ------------------------------------------------


@needs_fork
def test_four_processes_of_fifty_threads_compute_a_cold_key_once(tmp_path: Path) -> None:
    result = stampede(file_cache(tmp_path), processes=4, threads=50)
    assert (result.calls, result.wrong_values, result.failed_processes) == (1, 0, 0)


@needs_fork
def test_a_holder_killed_while_computing_costs_one_more_computation(tmp_path: Path) -> None:
    result = stampede(file_cache(tmp_path), processes=4, threads=20, kill_first=True, lock_timeout=5)
    assert result.killed is not None
    assert result.calls == 2
    assert (result.wrong_values, result.failed_processes) == (0, 0)
    assert result.longest_wait < 5 + 3  # lock_timeout + margin: the kernel freed the dead holder's lock


@needs_fork
def test_without_the_lock_each_process_computes(tmp_path: Path) -> None:
    result = stampede(file_cache(tmp_path), processes=3, threads=5, lock=False)
    assert result.calls == 3  # single flight within each process only


@needs_fork
def test_the_file_tier_locks_the_writes_it_stores(tmp_path: Path) -> None:
    def make() -> Cache:  # the file tier's default write policy: persistent writes only
        return Cache(order=["memory", "file"], tiers={"file": {"options": {"directory": str(tmp_path)}}})

    result = stampede(make, processes=3, threads=10, persistent=True)
    assert (result.calls, result.wrong_values, result.failed_processes) == (1, 0, 0)
    assert not make().chain.guard.locks.usable(persistent=False)  # the value would not be found there


def test_a_waiter_computes_itself_after_lock_timeout(tmp_path: Path) -> None:
    holder, waiter = file_cache(tmp_path)(), file_cache(tmp_path)()
    lease = holder.chain.guard.locks.acquire("k", 1.0)
    assert lease is not None and not isinstance(lease, str)
    try:
        assert waiter.get_or_set("k", lambda: "mine", 60, lock=True, lock_timeout=0.2) == "mine"
    finally:
        holder.chain.guard.locks.release(lease)
    assert waiter.stats()["lock_timeouts"] == 1


def test_a_released_lock_is_free_and_only_its_holder_releases_it(tmp_path: Path) -> None:
    cache = file_cache(tmp_path)()
    tier = cache.chain.slots[1].tier
    assert tier.tierkit_lock("k", "a", 1.0) is True
    assert tier.tierkit_lock("k", "a", 1.0) is True  # renewal by the holder
    assert tier.tierkit_lock("k", "b", 1.0) is False
    assert tier.tierkit_unlock("k", "b") is False
    assert tier.tierkit_unlock("k", "a") is True
    assert tier.tierkit_lock("k", "b", 1.0) is True
    assert list((tmp_path / "default" / "locks").iterdir())
    cache.close()
    assert not list((tmp_path / "default" / "locks").iterdir())


def test_without_a_lock_tier_lock_true_warns_once_and_keeps_single_flight(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = Cache(order=["memory"])
    calls: list[int] = []
    with caplog.at_level(logging.WARNING, logger="tierkit"):
        assert cache.get_or_set("a", lambda: calls.append(1) or 1, 60, lock=True) == 1
        assert cache.get_or_set("b", lambda: calls.append(1) or 2, 60, lock=True) == 2
    warnings = [
        r for r in caplog.records if "no tier of this cache that stores the value can lock" in r.getMessage()
    ]
    assert len(warnings) == 1 and calls == [1, 1]


class BrokenLock(tierkit.Tier):
    """An in-memory tier whose lock hooks fail: the chain must compute anyway."""

    def __init__(self, options: Any, context: tierkit.TierContext) -> None:
        super().__init__(options, context)
        self.data: dict[str, tierkit.Entry] = {}

    @tierkit.hookimpl
    def tierkit_get(self, key: str) -> tierkit.Entry | None:
        return self.data.get(key)

    @tierkit.hookimpl
    def tierkit_set(self, key: str, entry: tierkit.Entry) -> None:
        self.data[key] = entry

    @tierkit.hookimpl
    def tierkit_delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    @tierkit.hookimpl
    def tierkit_clear(self) -> None:
        self.data.clear()

    @tierkit.hookimpl
    def tierkit_invalidate_tags(self, tags: Any) -> int:
        return 0

    @tierkit.hookimpl
    def tierkit_invalidate_prefix(self, prefix: str) -> int:
        return 0

    @tierkit.hookimpl
    def tierkit_lock(self, key: str, token: str, ttl: float) -> bool:
        raise ConnectionError("lock backend down")

    @tierkit.hookimpl
    def tierkit_unlock(self, key: str, token: str) -> bool:
        return "not a bool"  # type: ignore[return-value]


def test_a_failing_lock_tier_is_counted_and_the_value_computed() -> None:
    cache = Cache(order=["broken"], kinds={"broken": BrokenLock})
    assert cache.get_or_set("k", lambda: 7, 60, lock=True) == 7
    assert cache.stats()["tiers"]["broken"]["errors"] == 1
    assert cache.get("k") == 7


# -- fail-safe: stale values ----------------------------------------------------------------------


def test_a_failing_factory_gets_the_stale_value_counted(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    assert cache.get_or_set("k", lambda: "v1", 60, stale_ttl=600) == "v1"
    clock.advance(61)
    assert cache.get("k") is None  # a normal read: expired after its TTL

    def broken() -> str:
        raise ConnectionError("database down")

    assert cache.get_or_set("k", broken, 60, stale_ttl=600) == "v1"
    assert cache.stats()["stale_served"] == 1
    clock.advance(600)
    with pytest.raises(ConnectionError):  # past ttl + stale_ttl: nothing to serve
        cache.get_or_set("k", broken, 60, stale_ttl=600)


def test_without_stale_ttl_the_error_reaches_the_caller(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    cache.set("k", "v1", 60, stale_ttl=600)
    clock.advance(61)
    with pytest.raises(ZeroDivisionError):
        cache.get_or_set("k", lambda: 1 / 0, 60)


def test_the_stale_ttl_setting_is_the_default_of_set(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock, stale_ttl=300)
    cache.set("k", "v1", 60)
    clock.advance(100)
    assert cache.get_or_set("k", lambda: 1 / 0, 60) == "v1"


@pytest.mark.parametrize("removal", ["delete", "tags", "prefix", "clear"])
def test_removing_a_value_removes_its_stale_copy(clock: FakeClock, removal: str) -> None:
    cache = Cache(order=["memory"], clock=clock)
    cache.set("user:1", "v1", 60, tags=["users"], stale_ttl=600)
    {
        "delete": lambda: cache.delete("user:1"),
        "tags": lambda: cache.invalidate(tags=["users"]),
        "prefix": lambda: cache.invalidate(prefix="user:"),
        "clear": cache.clear,
    }[removal]()
    with pytest.raises(ZeroDivisionError):
        cache.get_or_set("user:1", lambda: 1 / 0, 60, stale_ttl=600)


def test_a_slow_factory_serves_stale_then_stores_its_value(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    cache.set("k", "old", 60, stale_ttl=600)
    clock.advance(61)
    go, done = threading.Event(), threading.Event()

    def slow() -> str:
        go.wait(10)
        return "new"

    original_set = cache.chain.set

    def observed_set(*args: Any, **kwargs: Any) -> bool:
        stored = original_set(*args, **kwargs)
        done.set()
        return stored

    cache.chain.set = observed_set  # type: ignore[method-assign]
    assert cache.get_or_set("k", slow, 60, stale_ttl=600, soft_timeout=0.05) == "old"
    assert cache.stats()["stale_served"] == 1
    go.set()
    assert done.wait(10)
    assert cache.get("k") == "new"


def test_misses_during_a_slow_computation_join_it(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    cache.set("k", "old", 60, stale_ttl=600)
    clock.advance(61)
    go = threading.Event()
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        go.wait(10)
        return "new"

    for _ in range(5):
        assert cache.get_or_set("k", slow, 60, stale_ttl=600, soft_timeout=0.01) == "old"
    go.set()
    assert wait_for(lambda: cache.get("k") == "new")
    assert calls == [1] and cache.stats()["stale_served"] == 5


def test_a_slow_factory_without_a_stale_value_is_waited_for(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    assert cache.get_or_set("k", lambda: "v", 60, stale_ttl=600, soft_timeout=0.001) == "v"
    assert cache.stats()["stale_served"] == 0


# -- early refresh --------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool]) -> bool:
    event = threading.Event()
    for _ in range(1000):
        if condition():
            return True
        event.wait(0.01)
    return False


def test_a_hit_late_in_its_life_refreshes_once_in_the_background(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    calls: list[int] = []
    release = threading.Event()

    def compute() -> int:
        calls.append(1)
        if len(calls) > 1:
            release.wait(10)
        return len(calls)

    assert cache.get_or_set("k", compute, 100, early_refresh=0.1) == 1
    clock.advance(89)
    assert cache.get_or_set("k", compute, 100, early_refresh=0.1) == 1
    assert calls == [1]  # not yet in the last tenth
    clock.advance(2)
    hits = [cache.get_or_set("k", compute, 100, early_refresh=0.1) for _ in range(20)]
    assert hits == [1] * 20  # the old value, served while one refresh runs
    release.set()
    assert wait_for(lambda: cache.get("k") == 2)
    assert calls == [1, 1] and cache.stats()["early_refreshes"] == 1


def test_early_refresh_counts_life_within_a_tiers_max_ttl(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock, tiers={"memory": {"max_ttl": 10}})
    calls: list[int] = []
    cache.get_or_set("k", lambda: calls.append(1) or 1, 1000, early_refresh=0.1)
    clock.advance(5)
    cache.get_or_set("k", lambda: calls.append(1) or 2, 1000, early_refresh=0.1)
    assert calls == [1]  # 5 s left of a 10 s life: not late


def test_a_failed_early_refresh_keeps_the_value(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    cache = Cache(order=["memory"], clock=clock)
    cache.get_or_set("k", lambda: "v", 100, early_refresh=0.5)
    clock.advance(60)
    with caplog.at_level(logging.WARNING, logger="tierkit"):
        assert cache.get_or_set("k", lambda: 1 / 0, 100, early_refresh=0.5) == "v"
        assert wait_for(lambda: "early refresh of 'k' failed" in caplog.text)
    assert cache.get("k") == "v"


# -- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"lock_timeout": 0}, "lock_timeout must be a positive number"),
        ({"stale_ttl": -1}, "stale_ttl must be a number of seconds >= 0"),
        ({"soft_timeout": "1"}, "soft_timeout must be a positive number"),
        ({"early_refresh": 1.5}, "early_refresh must be a fraction"),
        ({"lock": "yes"}, "lock must be True or False"),
    ],
)
def test_bad_arguments_are_named(keywords: dict[str, Any], message: str) -> None:
    cache = Cache(order=["memory"])
    with pytest.raises((ValueError, TypeError), match=message):
        cache.get_or_set("k", lambda: 1, 60, **keywords)
    with pytest.raises(ValueError, match="stale_ttl"):
        cache.set("k", 1, 60, stale_ttl=-5)


# -- @cached and the async API --------------------------------------------------------------------


def test_cached_takes_the_same_keywords(tmp_path: Path, clock: FakeClock) -> None:
    cache = file_cache(tmp_path, clock=clock)()
    calls: list[int] = []

    @tierkit.cached(ttl=60, cache=cache, lock=True, stale_ttl=600)
    def load(page: int) -> int:
        calls.append(page)
        if len(calls) > 1:
            raise ConnectionError("database down")
        return page * 10

    assert load(1) == 10
    clock.advance(61)
    assert load(1) == 10  # stale, served on the failure
    assert cache.stats()["stale_served"] == 1


def test_cached_refuses_bad_keywords_when_decorating() -> None:
    with pytest.raises(ValueError, match="early_refresh"):
        tierkit.cached(ttl=60, early_refresh=2)


@pytest.mark.anyio
async def test_async_stale_value_on_failure_and_past_soft_timeout(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    await cache.aset("k", "old", 60, stale_ttl=600)
    clock.advance(61)

    async def broken() -> str:
        raise ConnectionError("database down")

    assert await cache.aget_or_set("k", broken, 60, stale_ttl=600) == "old"
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "new"

    assert await cache.aget_or_set("k", slow, 60, stale_ttl=600, soft_timeout=0.01) == "old"
    assert cache.stats()["stale_served"] == 2
    release.set()
    for _ in range(100):
        if await cache.aget("k") == "new":
            break
        await asyncio.sleep(0.01)
    assert await cache.aget("k") == "new"


@pytest.mark.anyio
async def test_async_misses_during_a_slow_computation_join_it(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    await cache.aset("k", "old", 60, stale_ttl=600)
    clock.advance(61)
    release = asyncio.Event()
    calls: list[int] = []

    async def slow() -> str:
        calls.append(1)
        await release.wait()
        return "new"

    for _ in range(5):
        assert await cache.aget_or_set("k", slow, 60, stale_ttl=600, soft_timeout=0.01) == "old"
    release.set()
    for _ in range(100):
        if await cache.aget("k") == "new":
            break
        await asyncio.sleep(0.01)
    assert calls == [1] and await cache.aget("k") == "new"


@pytest.mark.anyio
async def test_async_early_refresh_and_cached_lock(tmp_path: Path, clock: FakeClock) -> None:
    cache = file_cache(tmp_path, clock=clock)()
    calls: list[int] = []

    @tierkit.cached(ttl=100, cache=cache, lock=True, early_refresh=0.1)
    async def load(page: int) -> int:
        calls.append(page)
        return len(calls)

    assert await asyncio.gather(*(load(1) for _ in range(20))) == [1] * 20
    clock.advance(95)
    assert await load(1) == 1  # late: served, and refreshed in the background
    for _ in range(100):
        if cache.get(load.key(1)) == 2:
            break
        await asyncio.sleep(0.01)
    assert cache.get(load.key(1)) == 2 and cache.stats()["early_refreshes"] == 1


@pytest.mark.anyio
async def test_async_lock_waits_for_another_process_then_computes(tmp_path: Path) -> None:
    holder, waiter = file_cache(tmp_path)(), file_cache(tmp_path)()
    lease = holder.chain.guard.locks.acquire("k", 1.0)
    assert lease is not None and not isinstance(lease, str)
    try:
        assert await waiter.aget_or_set("k", lambda: "mine", 60, lock=True, lock_timeout=0.2) == "mine"
    finally:
        holder.chain.guard.locks.release(lease)
    assert waiter.stats()["lock_timeouts"] == 1
