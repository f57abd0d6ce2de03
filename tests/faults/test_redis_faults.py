"""Redis failing the way deployments see it: never a write reported done that is not, never old values.

Two caches on one Redis stand for two worker processes (each has its own memory tier;
they share only Redis).  ``fresh_read`` is what a worker whose memory lost the key reads.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tierkit import MISSING, Cache, Entry

from ._redis import RedisServer
from ._suite import Scenario, scale

PAUSE_MS = 700
TIMEOUT = 0.15


def two_workers(server: RedisServer, **redis_options: object) -> tuple[Cache, Cache]:
    namespace = f"w{uuid.uuid4().hex[:8]}"
    options = {"url": server.url, "socket_timeout": TIMEOUT, "connect_timeout": TIMEOUT, **redis_options}
    tiers = {"redis": {"options": options, "breaker": {"threshold": 2, "cooldown": 0.05}}}
    return (
        Cache(namespace=namespace, order=["memory", "redis"], tiers=tiers),
        Cache(namespace=namespace, order=["memory", "redis"], tiers=tiers),
    )


@pytest.fixture
def pair(redis_server: RedisServer) -> Iterator[tuple[Cache, Cache, RedisServer]]:
    worker_a, worker_b = two_workers(redis_server)
    yield worker_a, worker_b, redis_server
    worker_a.close()
    worker_b.close()


def pause(server: RedisServer, ms: int = PAUSE_MS) -> None:
    server.admin().execute_command("CLIENT", "PAUSE", ms, "WRITE")


def fresh_read(cache: Cache, key: str) -> object:
    cache.clear(tiers=["memory"])
    return cache.get(key, MISSING)


def test_invalidate_during_a_pause(record: Scenario, pair: tuple[Cache, Cache, RedisServer]) -> None:
    """An invalidation during a Redis pause longer than the timeout says so; no one serves the old value."""
    worker_a, worker_b, server = pair
    worker_a.set("price", 10, tags=["prices"])
    assert fresh_read(worker_b, "price") == 10
    pause(server)
    start = time.perf_counter()
    removed = worker_a.invalidate(tags=["prices"])
    took = time.perf_counter() - start
    own_read = worker_a.get("price", MISSING)
    time.sleep(PAUSE_MS / 1000 + 0.1)
    after_own, after_other = worker_a.get("price", MISSING), fresh_read(worker_b, "price")
    record.did(
        f"worker A invalidated a tag while Redis was paused {PAUSE_MS} ms (socket timeout "
        f"{TIMEOUT * 1000:.0f} ms); both workers read the key during and after the pause"
    )
    record.saw(
        invalidate_ms=round(took * 1000, 1),
        pending_reported=",".join(removed.pending) or "none",
        own_read_during=repr(own_read),
        own_read_after=repr(after_own),
        other_worker_read_after=repr(after_other),
    )
    assert removed.pending == ("redis",), "the invalidation did not reach Redis and must say so"
    assert own_read is MISSING and after_own is MISSING and after_other is MISSING
    assert worker_a.health().tiers["redis"].details["pending_invalidations"] == 0


def test_set_during_a_pause(record: Scenario, pair: tuple[Cache, Cache, RedisServer]) -> None:
    """A set during a Redis pause returns False, and the old value is gone everywhere afterwards."""
    worker_a, worker_b, server = pair
    worker_a.set("price", 10)
    pause(server)
    stored = worker_a.set("price", 11)
    time.sleep(PAUSE_MS / 1000 + 0.1)
    worker_a.get("other")  # any call to Redis applies the missed removal first
    seen = fresh_read(worker_b, "price")
    record.did(f"worker A overwrote a key while Redis was paused {PAUSE_MS} ms; worker B read it after")
    record.saw(set_returned=stored, other_worker_read_after=repr(seen))
    assert stored is False
    assert seen in (MISSING, 11)  # never the old 10


def test_writes_while_the_breaker_is_open(record: Scenario, pair: tuple[Cache, Cache, RedisServer]) -> None:
    """Writes skipped by an open breaker are caught up before Redis serves again."""
    worker_a, worker_b, server = pair
    worker_a.set("k", "old", tags=["t"])
    server.stop()
    for n in range(3):  # open the breaker
        worker_a.set(f"x{n}", n)
    breaker = worker_a.health().tiers["redis"].details["breaker"]
    stored = worker_a.set("k", "new")
    server.start()
    time.sleep(0.3)  # past the cooldown: the next call probes, catching up first
    seen_a, seen_b = fresh_read(worker_a, "k"), fresh_read(worker_b, "k")
    record.did("Redis was killed, the breaker opened, a key was overwritten, Redis came back on its port")
    record.saw(breaker_during=breaker, set_returned=stored, read_a=repr(seen_a), read_b=repr(seen_b))
    assert breaker == "open" and stored is False
    assert seen_a is MISSING and seen_b is MISSING


def test_a_write_refused_out_of_memory(record: Scenario, redis_server: RedisServer) -> None:
    """A write Redis refuses (OOM under noeviction) returns False and leaves no old value behind."""
    worker_a, worker_b = two_workers(redis_server, socket_timeout=1)
    worker_a.set("report", "v1")
    admin = redis_server.admin()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) + 64 * 1024)
    stored = worker_a.set("report", "v2" + "x" * 1_000_000)
    seen = fresh_read(worker_b, "report")
    pending = worker_a.stats()["tiers"]["redis"]["pending_invalidations"]
    record.did("Redis at maxmemory with noeviction refused a 1 MB overwrite; the other worker read the key")
    record.saw(set_returned=stored, other_worker_read=repr(seen), pending_invalidations=pending)
    assert stored is False and seen is MISSING and pending == 0
    worker_a.close()
    worker_b.close()


def test_calls_return_within_the_timeout_while_paused(record: Scenario, redis_server: RedisServer) -> None:
    """CLIENT PAUSE longer than the timeout under 16 threads: every call returns within the timeout."""
    worker, _ = two_workers(redis_server)
    stop, slowest, errors = threading.Event(), [0.0], []

    def hammer(n: int) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                worker.set(f"k{n}", n)
                worker.get(f"k{(n + 1) % 16}")
            except Exception as exc:
                errors.append(exc)
            slowest[0] = max(slowest[0], time.perf_counter() - start)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    redis_server.admin().execute_command("CLIENT", "PAUSE", scale(2000, 1000), "ALL")
    time.sleep(scale(2000, 1000) / 1000 + 0.3)
    stop.set()
    for thread in threads:
        thread.join()
    health = worker.health().tiers["redis"]
    record.did(f"16 threads set and got through memory + Redis while Redis was paused {scale(2000, 1000)} ms")
    record.saw(exceptions=len(errors), slowest_call_ms=round(slowest[0] * 1000, 1), redis_after=health.status)
    assert errors == []
    assert slowest[0] < 4 * TIMEOUT + 0.2  # a set and a get, each at most one timeout (and a catch-up)
    worker.close()


def test_a_foreign_value_under_the_prefix(record: Scenario, redis_server: RedisServer) -> None:
    """Another program's hash under the namespace prefix is a miss, not a failure of Redis."""
    worker, _ = two_workers(redis_server)
    prefix = worker.chain.slots[1].tier.key_prefix
    redis_server.admin().hset(prefix + "k:foreign", mapping={"a": "1"})
    reads = [worker.get("foreign", MISSING) for _ in range(5)]
    figures = worker.stats()["tiers"]["redis"]
    stored = worker.set("foreign", "ours")
    record.did("a hash was written under the cache's prefix by another client; the cache read it 5 times")
    record.saw(misses=reads.count(MISSING), errors=figures["errors"], breaker=figures["breaker"])
    assert reads == [MISSING] * 5 and (figures["errors"], figures["breaker"]) == (0, "closed")
    assert stored is True and fresh_read(worker, "foreign") == "ours"
    worker.close()


def test_tag_sets_stay_bounded(record: Scenario, redis_server: RedisServer) -> None:
    """Tag sets drop members whose entries are gone, instead of growing forever."""
    worker, _ = two_workers(redis_server)
    tier = worker.chain.slots[1].tier
    admin = redis_server.admin()
    live, writes = 500, scale(20_000, 10_000)
    for n in range(writes):
        tier.tierkit_set(f"k{n}", Entry(b"v", time.time() + 600, ("hot",)))
        if n >= live:
            admin.delete(tier.key_prefix + f"k:k{n - live}")  # as if it had expired
    members = admin.scard(tier.key_prefix + "t:hot")
    record.did(f"{writes} tagged writes, each entry gone {live} writes later (as if expired)")
    record.saw(live_entries=live, tag_set_members=members)
    assert members <= 2.5 * live, f"{members} members for {live} live entries"
    worker.close()
