"""A write or invalidation Redis did not take is never reported as done and never serves old values.

Two caches on one Redis stand for two worker processes (each has its own memory
tier; they share only Redis).  Redis is made to fail the way deployments see it:
paused longer than the socket timeout, out of memory under ``noeviction``, or
taken out by an open circuit breaker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from redis_helpers import RedisServer

from tierkit import MISSING, Cache

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PAUSE_MS = 700
TIMEOUT = 0.15


@pytest.fixture
def pair(redis_factory: Callable[..., RedisServer]) -> Iterator[tuple[Cache, Cache, RedisServer]]:
    """Two caches ("workers") of one namespace on a private Redis with short timeouts."""
    server = redis_factory()
    namespace = f"w{uuid.uuid4().hex[:8]}"
    redis_options = {"url": server.url, "socket_timeout": TIMEOUT, "connect_timeout": TIMEOUT}
    tiers = {"redis": {"options": redis_options, "breaker": {"threshold": 2, "cooldown": 0.05}}}
    worker_a = Cache(namespace=namespace, order=["memory", "redis"], tiers=tiers)
    worker_b = Cache(namespace=namespace, order=["memory", "redis"], tiers=tiers)
    yield worker_a, worker_b, server
    worker_a.close()
    worker_b.close()


def pause(server: RedisServer) -> None:
    server.admin().execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")


def fresh_read(cache: Cache, key: str) -> object:
    """What a worker whose memory tier lost the key would now read (from Redis)."""
    cache.clear(tiers=["memory"])
    return cache.get(key, MISSING)


def test_invalidate_during_a_pause_reports_it_and_no_one_serves_the_old_value(
    pair: tuple[Cache, Cache, RedisServer],
) -> None:
    worker_a, worker_b, server = pair
    worker_a.set("price", 10, tags=["prices"])
    assert fresh_read(worker_b, "price") == 10
    pause(server)
    removed = worker_a.invalidate(tags=["prices"])
    assert removed.pending == ("redis",), "the invalidation did not reach Redis and must say so"
    assert worker_a.health().tiers["redis"].status != "ok"
    assert worker_a.get("price", MISSING) is MISSING  # the invalidating worker never serves it again
    time.sleep(PAUSE_MS / 1000 + 0.1)
    assert worker_a.get("price", MISSING) is MISSING  # Redis is back: the invalidation is applied first
    assert fresh_read(worker_b, "price") is MISSING  # so the other worker does not see it either
    assert worker_a.health().tiers["redis"].details["pending_invalidations"] == 0


def test_set_during_a_pause_returns_false_and_the_old_value_is_gone_everywhere(
    pair: tuple[Cache, Cache, RedisServer],
) -> None:
    worker_a, worker_b, server = pair
    worker_a.set("price", 10)
    pause(server)
    assert worker_a.set("price", 11) is False
    assert worker_a.get("price") == 11  # its own memory tier took it
    time.sleep(PAUSE_MS / 1000 + 0.1)
    worker_a.get("other")  # any call to Redis applies the missed removal first
    assert fresh_read(worker_b, "price") in (MISSING, 11)  # never the old 10


def test_writes_while_the_breaker_is_open_are_caught_up_before_redis_serves(
    pair: tuple[Cache, Cache, RedisServer],
) -> None:
    worker_a, worker_b, server = pair
    worker_a.set("k", "old", tags=["t"])
    server.stop()
    for n in range(3):  # open the breaker
        worker_a.set(f"x{n}", n)
    assert worker_a.health().tiers["redis"].details["breaker"] == "open"
    assert worker_a.set("k", "new") is False  # skipped by the open breaker: remembered
    assert worker_a.delete("gone") is False
    server.start()
    time.sleep(0.3)  # past the cooldown: the next call probes, catching up first
    assert fresh_read(worker_a, "k") is MISSING
    assert fresh_read(worker_b, "k") is MISSING


def test_a_write_refused_out_of_memory_leaves_no_old_value(
    redis_factory: Callable[..., RedisServer],
) -> None:
    server = redis_factory()
    namespace = f"o{uuid.uuid4().hex[:8]}"
    tiers = {"redis": {"options": {"url": server.url}}}
    worker_a = Cache(namespace=namespace, order=["memory", "redis"], tiers=tiers)
    worker_b = Cache(namespace=namespace, order=["memory", "redis"], tiers=tiers)
    worker_a.set("report", "v1")
    admin = server.admin()
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", used + 64 * 1024)
    stored = worker_a.set("report", "v2" + "x" * 1_000_000)
    assert stored is False
    assert fresh_read(worker_b, "report") is MISSING  # the DEL of the stale v1 was allowed at OOM
    assert worker_a.stats()["tiers"]["redis"]["pending_invalidations"] == 0
    worker_a.close()
    worker_b.close()
