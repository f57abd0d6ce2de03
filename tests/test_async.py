"""The async API: one chain and one memory tier for sync and async callers; no tier blocks the loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

import tierkit
from tierkit import MISSING, Cache, Entry, hookimpl
from tierkit._contract import check_tier_class
from tierkit.testing import AsyncTierConformance, FakeClock, make_context
from tierkit.tiers.file import FileTier
from tierkit.tiers.memory import MemoryTier

from ._tiers import KINDS, DictTier

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def fresh_stores() -> None:
    DictTier.stores.clear()


class ThreadRecordingTier(DictTier):
    """A sync-only tier that records the thread each hook ran in."""

    threads: ClassVar[list[int]] = []

    def _check(self) -> None:
        self.threads.append(threading.get_ident())
        super()._check()


class InlineTier(ThreadRecordingTier):
    blocking = False


class NativeTier(DictTier):
    """A tier with native async hooks: they are awaited and the sync twins are left alone."""

    awaited: ClassVar[list[str]] = []

    @hookimpl
    async def tierkit_aget(self, key: str) -> Entry | None:
        self.awaited.append("get")
        await asyncio.sleep(0)
        return self.data.get(key)

    @hookimpl
    async def tierkit_aset(self, key: str, entry: Entry) -> None:
        self.awaited.append("set")
        await asyncio.sleep(0)
        self.data[key] = entry

    @hookimpl
    async def tierkit_adelete(self, key: str) -> bool:
        self.awaited.append("delete")
        return self.data.pop(key, None) is not None

    def _check(self) -> None:
        raise AssertionError("a sync hook was called although an async one exists")


ALL_KINDS: dict[str, type] = {
    **KINDS,
    "thread": ThreadRecordingTier,
    "inline": InlineTier,
    "native": NativeTier,
}


def make(clock: FakeClock, order: list[str], **tiers: dict[str, Any]) -> Cache:
    settings = {name: {"kind": name.rstrip("0123456789")} for name in order if name != "memory"}
    for name, extra in tiers.items():
        settings.setdefault(name, {}).update(extra)
    return Cache(order=order, tiers=settings, clock=clock, kinds=ALL_KINDS)


@pytest.fixture
async def cache(clock: FakeClock) -> AsyncIterator[Cache]:
    cache = make(clock, ["memory", "bytes1"])
    yield cache
    await cache.aclose()


# -- the API --------------------------------------------------------------------------------------


async def test_sync_and_async_callers_share_the_memory_tier(cache: Cache) -> None:
    cache.set("from-sync", {"a": 1})
    assert await cache.aget("from-sync") == {"a": 1}
    assert await cache.aset("from-async", [1, 2]) is True
    assert cache.get("from-async") == [1, 2]
    assert cache.stats()["tiers"]["memory"]["hits"] == 2


async def test_aget_miss_default_and_missing(cache: Cache) -> None:
    assert await cache.aget("absent") is None
    assert await cache.aget("absent", 7) == 7
    await cache.aset("none", None)
    assert await cache.aget("none", MISSING) is None
    assert await cache.aget("absent", MISSING) is MISSING


async def test_bad_arguments_raise_as_in_sync_code(cache: Cache) -> None:
    with pytest.raises(TypeError, match="cache keys must be non-empty str"):
        await cache.aget(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache keys must be non-empty str"):
        await cache.aset("", 1)
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        await cache.aset("k", 1, ttl=-1)
    with pytest.raises(ValueError, match="needs tags"):
        await cache.ainvalidate()
    with pytest.raises(ValueError, match="names tiers not in the chain: nope"):
        await cache.aclear(["nope"])


async def test_a_byte_tier_hit_is_decoded_and_backfilled(cache: Cache, clock: FakeClock) -> None:
    await cache.aset("k", {"v": 1}, ttl=60, tags=["t"])
    await cache.aclear(["memory"])
    assert cache.chain.slots[0].tier.tierkit_get("k") is None
    assert await cache.aget("k") == {"v": 1}
    backfilled = cache.chain.slots[0].tier.tierkit_get("k")
    assert backfilled is not None and backfilled.expires_at == clock() + 60 and backfilled.tags == ("t",)


async def test_many_invalidate_delete_and_control_plane(cache: Cache) -> None:
    assert await cache.aset_many({"a": 1, "b": 2, "c": 3}, tags=["t"]) == []
    await cache.aclear(["memory"])
    assert await cache.aget_many(["a", "b", "zz"]) == {"a": 1, "b": 2}
    assert await cache.adelete("a") is True
    assert await cache.aget("a") is None
    removed = await cache.ainvalidate(tags=["t"])
    assert removed == 3 and removed.pending == ()  # b in both tiers, c in bytes1
    assert await cache.aget_many(["b", "c"]) == {}
    assert (await cache.ahealth()).status == "ok"
    stats = await cache.astats()
    assert stats == cache.stats()


async def test_async_context_manager_closes(clock: FakeClock) -> None:
    async with make(clock, ["memory"]) as cache:
        await cache.aset("k", 1)
    assert cache.chain.closed


# -- single flight ----------------------------------------------------------------------------------


async def test_200_coroutines_on_one_cold_key_run_the_factory_once(cache: Cache) -> None:
    calls = 0

    async def factory() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return {"v": 42}

    results = await asyncio.gather(*(cache.aget_or_set("cold", factory, ttl=60) for _ in range(200)))
    assert calls == 1
    assert all(r == {"v": 42} for r in results)
    assert cache.get("cold") == {"v": 42}


async def test_a_plain_factory_works_too(cache: Cache) -> None:
    assert await cache.aget_or_set("plain", lambda: 5) == 5
    assert await cache.aget_or_set("plain", lambda: 6) == 5


async def test_a_raising_computation_reaches_every_waiter_and_is_not_cached(cache: Cache) -> None:
    calls = 0

    async def factory() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise LookupError("backend said no")

    outcomes = await asyncio.gather(
        *(cache.aget_or_set("k", factory) for _ in range(20)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(o, LookupError) for o in outcomes)
    assert await cache.aget("k", MISSING) is MISSING
    assert await cache.aget_or_set("k", lambda: 1) == 1


async def test_a_cancelled_waiter_does_not_cancel_the_computation(cache: Cache) -> None:
    started = asyncio.Event()

    async def factory() -> str:
        started.set()
        await asyncio.sleep(0.05)
        return "done"

    first = asyncio.ensure_future(cache.aget_or_set("k", factory))
    await started.wait()
    second = asyncio.ensure_future(cache.aget_or_set("k", factory))
    first.cancel()
    assert await second == "done"
    assert await cache.aget("k") == "done"


async def test_a_computation_asking_for_its_own_key_raises(cache: Cache) -> None:
    async def factory() -> int:
        return await cache.aget_or_set("loop", factory)  # type: ignore[no-any-return]

    with pytest.raises(RuntimeError, match="asked for 'loop' while computing it"):
        await cache.aget_or_set("loop", factory)


# -- what runs where ----------------------------------------------------------------------------------


async def test_a_blocking_sync_tier_runs_in_a_worker_thread(clock: FakeClock) -> None:
    ThreadRecordingTier.threads.clear()
    cache = make(clock, ["thread"])
    await cache.aset("k", 1)
    assert await cache.aget("k") == 1
    loop_thread = threading.get_ident()
    assert ThreadRecordingTier.threads and loop_thread not in ThreadRecordingTier.threads
    await cache.aclose()


async def test_a_non_blocking_sync_tier_runs_inline(clock: FakeClock) -> None:
    InlineTier.threads.clear()
    cache = make(clock, ["inline"])
    await cache.aset("k", 1)
    assert await cache.aget("k") == 1
    assert set(InlineTier.threads) == {threading.get_ident()}
    await cache.aclose()


def test_memory_and_session_tiers_declare_themselves_non_blocking() -> None:
    from tierkit_session import SessionTier

    assert MemoryTier.blocking is False and SessionTier.blocking is False
    assert FileTier.blocking is True and tierkit.Tier.blocking is True


async def test_native_async_hooks_are_awaited(clock: FakeClock) -> None:
    NativeTier.awaited.clear()
    cache = make(clock, ["native"])
    await cache.aset("k", 1)
    assert await cache.aget("k") == 1
    assert await cache.adelete("k") is True
    assert NativeTier.awaited == ["set", "get", "delete", "delete"]  # the key, then its stale copy


async def test_a_failing_tier_is_counted_and_skipped_and_catches_up(clock: FakeClock) -> None:
    cache = make(clock, ["memory", "dict1"])
    await cache.aset("k", "old")
    tier = cache.chain.slots[1].tier
    tier.failing = True
    assert await cache.aset("k", "new") is False  # dict1 missed it: pending removal there
    assert cache.chain.slots[1].pending
    tier.failing = False
    clock.advance(10)  # past the breaker's cooldown
    await cache.aclear(["memory"])
    assert await cache.aget("k") is None, "dict1 must apply the missed removal before serving"
    assert not cache.chain.slots[1].pending
    assert cache.stats()["tiers"]["dict1"]["errors"] >= 1


def test_the_validator_requires_async_def_for_async_hooks() -> None:
    class SyncNamedAsync(DictTier):
        @hookimpl
        def tierkit_aget(self, key: str) -> Entry | None:
            return None

    problems = check_tier_class(SyncNamedAsync)
    assert problems == [
        "tierkit_aget is an async hook: define it with `async def` (or drop it to use tierkit_get)"
    ]
    assert check_tier_class(NativeTier) == []


# -- @cached on async def ------------------------------------------------------------------------------


async def test_cached_async_function_caches_the_result_not_the_coroutine(clock: FakeClock) -> None:
    cache = make(clock, ["memory", "bytes1"])
    calls = 0

    @tierkit.cached(ttl=60, cache=cache)
    async def load(n: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return {"n": n}

    assert await load(1) == {"n": 1}
    assert await load(1) == {"n": 1}
    assert await load(n=1) == {"n": 1}
    assert calls == 1
    await cache.aclear(["memory"])
    assert await load(1) == {"n": 1} and calls == 1  # from the byte tier, decoded
    assert await load.ainvalidate(1) is True
    assert await load(1) == {"n": 1} and calls == 2
    assert load.invalidate(1) is True


async def test_cached_async_function_single_flight(clock: FakeClock) -> None:
    cache = make(clock, ["memory"])
    calls = 0

    @tierkit.cached(cache=cache)
    async def slow(x: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return x * 2

    assert await asyncio.gather(*(slow("a") for _ in range(200))) == ["aa"] * 200
    assert calls == 1


async def test_cached_async_function_keys_match_the_sync_decorator(clock: FakeClock) -> None:
    cache = make(clock, ["memory"])

    @tierkit.cached(cache=cache, namespace="same")
    async def a(x: int, y: int = 2) -> int:
        return x + y

    @tierkit.cached(cache=cache, namespace="same")
    def s(x: int, y: int = 2) -> int:
        return x + y

    assert a.key(1) == s.key(1) == s.key(x=1, y=2)
    assert await a(1) == 3
    assert cache.get(s.key(1)) == 3


def test_cached_refuses_what_it_cannot_cache() -> None:
    async def agen() -> AsyncIterator[int]:
        yield 1

    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="cannot cache an async generator function"):
        tierkit.cached()(agen)
    with pytest.raises(TypeError, match="cannot cache a generator function"):
        tierkit.cached()(gen)
    with pytest.raises(TypeError, match="decorates a function, got int"):
        tierkit.cached()(5)  # type: ignore[call-overload]


@pytest.mark.slow
def test_mypy_sees_an_awaitable_result(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import assert_type\nimport tierkit\n\n"
        "@tierkit.cached(ttl=5)\nasync def load(n: int) -> list[int]:\n    return [n]\n\n"
        "@tierkit.cached(ttl=5)\ndef plain(n: int) -> str:\n    return str(n)\n\n"
        "async def use() -> None:\n"
        "    assert_type(await load(1), list[int])\n"
        "    assert_type(plain(1), str)\n"
        "    x: int = await load(1)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(sample)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert 'Incompatible types in assignment (expression has type "list[int]"' in result.stdout
    assert result.stdout.count("error:") == 1, result.stdout


# -- the conformance kit's async half, on the core tiers -----------------------------------------------


class TestMemoryAsyncConformance(AsyncTierConformance):
    @pytest.fixture
    def tier(self, clock: FakeClock) -> MemoryTier:
        return MemoryTier(MemoryTier.Options(), make_context(clock))


class TestFileAsyncConformance(AsyncTierConformance):
    @pytest.fixture
    def tier(self, clock: FakeClock, tmp_path: Path) -> Iterator[FileTier]:
        tier = FileTier(FileTier.Options(directory=tmp_path), make_context(clock))
        yield tier
        tier.tierkit_close()


class TestNativeAsyncConformance(AsyncTierConformance):
    @pytest.fixture
    def tier(self, clock: FakeClock) -> NativeTier:
        return NativeTierComplete(DictTier.Options(), make_context(clock))


class NativeTierComplete(DictTier):
    """Every hook native (delegating to the sync ones, which do not fail here)."""

    @hookimpl
    async def tierkit_aget(self, key: str) -> Entry | None:
        return self.tierkit_get(key)

    @hookimpl
    async def tierkit_aset(self, key: str, entry: Entry) -> None:
        self.tierkit_set(key, entry)

    @hookimpl
    async def tierkit_aget_many(self, keys: list[str]) -> Mapping[str, Entry]:
        return self.tierkit_get_many(keys)

    @hookimpl
    async def tierkit_aset_many(self, entries: Mapping[str, Entry]) -> None:
        for key, entry in entries.items():
            self.tierkit_set(key, entry)

    @hookimpl
    async def tierkit_adelete(self, key: str) -> bool:
        return self.tierkit_delete(key)

    @hookimpl
    async def tierkit_ainvalidate_tags(self, tags: list[str]) -> int:
        return self.tierkit_invalidate_tags(tags)

    @hookimpl
    async def tierkit_ainvalidate_prefix(self, prefix: str) -> int:
        return self.tierkit_invalidate_prefix(prefix)

    @hookimpl
    async def tierkit_aclear(self) -> None:
        self.tierkit_clear()

    @hookimpl
    async def tierkit_aclose(self) -> None:
        return None
