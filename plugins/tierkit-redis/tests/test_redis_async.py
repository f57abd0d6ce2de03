"""The Redis tier's native async hooks, and the async API over memory + Redis, against real servers.

The loop-lag tests are the promise of docs/async.md that no tier blocks the loop: with Redis
frozen (``CLIENT PAUSE``) or unreachable (a socket that accepts and never answers), 100
concurrent requests keep the event loop's lag under 20 ms at p99 (a blocking
call would stall it for the whole 250 ms timeout, as the sync API did: 762 ms), every call
returns within the timeouts, and the breaker opens as in sync code.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis_helpers import RedisServer, TlsFiles
from test_redis_faults import silent_listener
from tierkit_redis import Options, RedisTier

from tierkit import Cache, Entry
from tierkit.testing import AsyncTierConformance, FakeClock, make_context

pytestmark = [pytest.mark.redis, pytest.mark.anyio]
__all__ = ["silent_listener"]  # a fixture, used below

TIMEOUT = 0.25
LAG_LIMIT = 0.020
"""Issue 11's promise, held as written.  Measured with this test on the 2-core CI machine: p99
1.1-1.7 ms idle, 4.3-5.6 ms with two other processes spinning on both cores (a blocking call would
stall the loop for the whole 250 ms timeout).  Earlier figures of 12-58 ms came from a machine
running seven test suites at once, where an idle 5 ms ticker alone lagged 7-15 ms."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_cache() -> Iterator[Callable[..., Cache]]:
    caches: list[Cache] = []

    def make(url: str, order: tuple[str, ...] = ("memory", "redis"), **options: Any) -> Cache:
        cache = Cache(
            namespace=f"a{uuid.uuid4().hex[:12]}",
            order=list(order),
            tiers={"redis": {"options": {"url": url, **options}}},
        )
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.close()


class TestRedisAsyncConformance(AsyncTierConformance):
    native_async = True

    @pytest.fixture
    def tier(self, redis_url: str, clock: FakeClock) -> Iterator[RedisTier]:
        context = make_context(clock, name="redis", namespace=f"aconf-{uuid.uuid4().hex[:12]}")
        tier = RedisTier(Options(url=redis_url, socket_timeout=2, connect_timeout=2), context)
        yield tier
        tier.tierkit_clear()
        tier.tierkit_close()


async def test_async_redis_hit_is_decoded_and_backfills_memory(
    redis_url: str, make_cache: Callable[..., Cache]
) -> None:
    cache = make_cache(redis_url)
    cache.set("from-sync", {"v": [1, 2]}, ttl=60, tags=["t"])
    await cache.aclear(["memory"])
    assert await cache.aget("from-sync") == {"v": [1, 2]}
    assert cache.stats()["tiers"]["redis"]["hits"] == 1
    assert await cache.aget("from-sync") == {"v": [1, 2]}
    assert cache.stats()["tiers"]["memory"]["hits"] == 1
    assert await cache.aset_many({f"k{n}": n for n in range(100)}) == []
    await cache.aclear(["memory"])
    assert await cache.aget_many([f"k{n}" for n in range(100)]) == {f"k{n}": n for n in range(100)}
    assert await cache.ainvalidate(tags=["t"]) == 1  # Redis only: memory was cleared since
    assert cache.get("from-sync") is None
    assert (await cache.ahealth()).tiers["redis"].status == "ok"
    assert (await cache.astats())["tiers"]["redis"]["redis_version"]
    await cache.aclose()


async def test_200_coroutines_on_one_cold_key_run_the_factory_once(
    redis_url: str, make_cache: Callable[..., Cache]
) -> None:
    cache = make_cache(redis_url, socket_timeout=2, connect_timeout=2)  # 200 GETs at once on a busy CI box
    calls = 0

    async def factory() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"v": 1}

    results = await asyncio.gather(*(cache.aget_or_set("cold", factory, ttl=60) for _ in range(200)))
    assert calls == 1 and all(r == {"v": 1} for r in results)
    await cache.aclear(["memory"])
    assert await cache.aget("cold") == {"v": 1}  # stored in Redis too
    await cache.aclose()


async def test_past_max_connections_calls_wait_for_a_free_connection(
    redis_url: str, make_cache: Callable[..., Cache]
) -> None:
    cache = make_cache(redis_url, order=("redis",), max_connections=2, socket_timeout=2, connect_timeout=2)
    assert await cache.aset_many({f"k{n}": n for n in range(50)}) == []
    assert await asyncio.gather(*(cache.aget(f"k{n}") for n in range(50))) == list(range(50))
    assert await asyncio.gather(*(cache.aget_many([f"k{n}"]) for n in range(50))) == [
        {f"k{n}": n} for n in range(50)
    ]
    assert cache.stats()["tiers"]["redis"]["errors"] == 0
    pool = cache.chain.slots[0].tier._aclients.current().connection_pool  # type: ignore[attr-defined]
    assert len(pool._in_use_connections) + len(pool._available_connections) <= 2
    await cache.aclose()


async def test_a_waiter_cancelled_after_its_wake_up_passes_it_on(redis_url: str) -> None:
    from tierkit_redis._apool import WaitingConnectionPool

    pool = WaitingConnectionPool.from_url(redis_url, max_connections=1, wait_timeout=5)
    held = await pool.get_connection()
    first = asyncio.create_task(pool.get_connection())
    second = asyncio.create_task(pool.get_connection())
    await asyncio.sleep(0.01)  # both wait
    await pool.release(held)  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs: `second` must get the connection
    connection = await asyncio.wait_for(second, 5)
    assert first.cancelled()
    await pool.release(connection)
    await pool.disconnect()


def test_each_event_loop_gets_its_own_client(redis_url: str, make_cache: Callable[..., Cache]) -> None:
    cache = make_cache(redis_url, order=("redis",))
    for n in range(3):  # asyncio.run makes a new loop each time; a shared pool would break
        asyncio.run(cache.aset(f"k{n}", n))
        assert asyncio.run(cache.aget(f"k{n}")) == n
    assert cache.stats()["tiers"]["redis"]["errors"] == 0


async def test_async_client_uses_tls_and_acl(
    redis_factory: Callable[..., RedisServer], tls_files: TlsFiles, make_cache: Callable[..., Cache]
) -> None:
    server = redis_factory(tls=tls_files, users={"alice": "Right-Pa55"})
    good = make_cache(
        server.url_for("alice", "Right-Pa55"), order=("redis",), ssl_ca_certs=tls_files.ca, connect_timeout=2
    )
    assert await good.aset("k", "secret-value") is True
    assert await good.aget("k") == "secret-value"
    wrong_ca = make_cache(server.url, order=("redis",), ssl_ca_certs=tls_files.other_ca)
    assert await wrong_ca.aset("k", 1) is False
    assert wrong_ca.stats()["tiers"]["redis"]["errors"] >= 1
    wrong_password = make_cache(server.url_for("alice", "Wrong-Pa55"), ssl_ca_certs=tls_files.ca)
    assert await wrong_password.aget("k", "default") == "default"
    texts = repr(wrong_password.stats()) + repr((await wrong_password.ahealth()).to_dict())
    assert "Wrong-Pa55" not in texts and "Right-Pa55" not in texts


# -- never block the loop --------------------------------------------------------------------------


async def lag_during(work: Awaitable[Any]) -> list[float]:
    """The event loop's lag (how late a 5 ms ticker wakes up) while ``work`` runs."""
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - start - 0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    try:
        await work
    finally:
        done = True
        await task
    return lags


async def requests(cache: Cache, n: int, seconds: float) -> list[float]:
    """``n`` concurrent request handlers using the cache for ``seconds``; each cache call's duration.

    They arrive over the first 200 ms, as requests reach a server, rather than
    all in one iteration of the loop (whose length would then be the sum of their work).
    """
    durations: list[float] = []
    deadline = time.perf_counter() + seconds

    async def timed(call: Awaitable[Any]) -> Any:
        start = time.perf_counter()
        result = await call
        durations.append(time.perf_counter() - start)
        return result

    async def handler(worker: int) -> None:
        await asyncio.sleep(0.2 * worker / n)
        round_ = 0
        while time.perf_counter() < deadline:
            round_ += 1
            await timed(cache.aget("warm"))
            await timed(cache.aget(f"cold-{worker}-{round_}"))
            await timed(cache.aset(f"w-{worker}", round_, ttl=60))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(handler(w) for w in range(n)))
    return durations


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


@pytest.mark.slow
async def test_frozen_redis_does_not_block_the_loop(
    redis_factory: Callable[..., RedisServer], make_cache: Callable[..., Cache]
) -> None:
    server = redis_factory()
    cache = make_cache(server.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    await cache.aset("warm", {"hot": True}, ttl=60)
    await requests(cache, 100, 0.2)  # the pool is warm, as in a running app
    server.admin().execute_command("CLIENT", "PAUSE", 3000, "ALL")
    durations: list[float] = []

    async def work() -> None:
        durations.extend(await requests(cache, 100, 1.5))

    lags = await lag_during(work())
    assert p99(lags) < LAG_LIMIT, f"loop lag p99 {p99(lags) * 1000:.1f} ms"
    assert max(durations) < 2 * TIMEOUT + 0.3, f"slowest call {max(durations):.2f} s"
    figures = cache.stats()["tiers"]["redis"]
    assert figures["breaker"] in ("open", "half-open") and figures["errors"] >= 3
    assert await cache.aget("warm") == {"hot": True}  # memory kept serving
    await cache.aclose()


@pytest.mark.slow
async def test_unreachable_redis_does_not_block_the_loop(
    silent_listener: int, make_cache: Callable[..., Cache]
) -> None:
    url = f"redis://127.0.0.1:{silent_listener}/0"
    cache = make_cache(url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    cache.set("warm", 1)  # memory only: the write to Redis times out (sync, before the loop starts)
    durations: list[float] = []

    async def work() -> None:
        durations.extend(await requests(cache, 100, 1.5))

    lags = await lag_during(work())
    assert p99(lags) < LAG_LIMIT, f"loop lag p99 {p99(lags) * 1000:.1f} ms"
    assert max(durations) < 2 * (2 * TIMEOUT) + 0.3, f"slowest call {max(durations):.2f} s"
    assert cache.stats()["tiers"]["redis"]["breaker"] in ("open", "half-open")
    start = time.perf_counter()
    assert (await cache.ahealth()).tiers["redis"].status == "down"
    assert time.perf_counter() - start < 1.0
    await cache.aclose()


async def test_a_failed_async_write_is_removed_before_redis_serves_again(
    redis_factory: Callable[..., RedisServer], make_cache: Callable[..., Cache]
) -> None:
    server = redis_factory()
    cache = make_cache(server.url, socket_timeout=TIMEOUT)
    await cache.aset("k", "old")
    server.admin().execute_command("CLIENT", "PAUSE", 700, "WRITE")
    assert await cache.aset("k", "new") is False
    await asyncio.sleep(0.8)
    await cache.aclear(["memory"])
    got = await cache.aget("k", "nothing")
    assert got in ("new", "nothing"), "Redis must not serve the value the failed write meant to replace"
    assert server.admin().get(cache.chain.slots[1].tier.key_prefix + "k:k") is None or got == "new"
    await cache.aclose()


async def test_tier_hooks_match_the_sync_ones_on_one_key(redis_url: str, clock: FakeClock) -> None:
    tier = RedisTier(Options(url=redis_url), make_context(clock, namespace=f"h{uuid.uuid4().hex[:8]}"))
    entry = Entry(b"payload", clock() + 30, ("a", "b"))
    await tier.tierkit_aset("k", entry)
    assert tier.tierkit_get("k") == entry
    tier.tierkit_set("j", entry)
    assert await tier.tierkit_aget("j") == entry
    assert await tier.tierkit_ainvalidate_tags(["b"]) == 2
    await tier.tierkit_aclose()
    tier.tierkit_close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())
