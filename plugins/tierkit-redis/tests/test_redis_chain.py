"""The Redis tier inside ``tierkit.Cache``: sharing, outages, the breaker and secrets."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_helpers import RedisServer

from tierkit import Cache

pytestmark = pytest.mark.redis


@pytest.fixture
def make_cache() -> Iterator[Callable[..., Cache]]:
    caches: list[Cache] = []

    def make(url: str, namespace: str | None = None, **options: Any) -> Cache:
        cache = Cache(
            namespace=namespace or f"c{uuid.uuid4().hex[:12]}",
            order=["memory", "redis"],
            tiers={"redis": {"options": {"url": url, **options}}},
        )
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.close()


def redis_figures(cache: Cache) -> dict[str, Any]:
    figures: dict[str, Any] = cache.stats()["tiers"]["redis"]
    return figures


def test_redis_hit_through_the_chain_backfills_memory(
    redis_url: str, make_cache: Callable[..., Cache]
) -> None:
    namespace = f"hit-{uuid.uuid4().hex[:10]}"
    writer = make_cache(redis_url, namespace=namespace)
    reader = make_cache(redis_url, namespace=namespace)
    writer.set("user:1", {"name": "Ada", "tags": ("a", "b")}, ttl=60, tags=["users"])
    received = reader.stats()["backplane"]["received"]
    deadline = time.monotonic() + 5  # the write's own announcement: a read racing it is not
    while reader.stats()["backplane"]["received"] == received and time.monotonic() < deadline:
        time.sleep(0.001)  # backfilled (docs/coherence.md), so let it arrive first
    assert reader.get("user:1") == {"name": "Ada", "tags": ("a", "b")}
    assert redis_figures(reader)["hits"] == 1
    assert reader.get("user:1") == {"name": "Ada", "tags": ("a", "b")}
    assert redis_figures(reader)["hits"] == 1, "the second read is served by memory"
    assert reader.invalidate(tags=["users"]) == 2  # reader's memory and Redis
    assert make_cache(redis_url, namespace=namespace).get("user:1") is None
    writer.clear()


def test_get_many_through_the_chain(redis_url: str, make_cache: Callable[..., Cache]) -> None:
    namespace = f"many-{uuid.uuid4().hex[:10]}"
    writer = make_cache(redis_url, namespace=namespace)
    reader = make_cache(redis_url, namespace=namespace)
    writer.set_many({f"k{i}": i for i in range(100)}, ttl=60)
    assert reader.get_many([f"k{i}" for i in range(100)]) == {f"k{i}": i for i in range(100)}
    assert redis_figures(reader)["hits"] == 100
    writer.clear()


CHILD = """
import json, sys
from tierkit import Cache
url, namespace = sys.argv[1:3]
cache = Cache(namespace=namespace, order=["memory", "redis"], tiers={"redis": {"options": {"url": url}}})
cache.set("from-child", {"pid": "child", "items": [1, 2, 3]}, ttl=60)
print(json.dumps(cache.get("from-parent")))
cache.close()
"""


def test_two_processes_share_entries(
    redis_url: str, make_cache: Callable[..., Cache], tmp_path: Path
) -> None:
    namespace = f"procs-{uuid.uuid4().hex[:8]}"
    cache = make_cache(redis_url, namespace=namespace)
    cache.set("from-parent", {"pid": "parent"}, ttl=60)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, redis_url, namespace],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == {"pid": "parent"}
    assert cache.get("from-child") == {"pid": "child", "items": [1, 2, 3]}
    cache.clear()


class Workload(threading.Thread):
    """Gets and sets in a loop, recording any exception and the slowest call."""

    def __init__(self, cache: Cache) -> None:
        super().__init__(daemon=True)
        self.cache = cache
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.calls = 0
        self.slowest = 0.0

    def run(self) -> None:
        cache = self.cache
        while not self.stop.is_set():
            n = self.calls
            start = time.perf_counter()
            try:
                cache.set(f"w{n % 50}", n, ttl=60)
                cache.get(f"fresh-{n}")  # a memory miss: goes to Redis
                cache.get_many([f"fresh-{n}-{i}" for i in range(5)])
            except BaseException as exc:
                self.errors.append(exc)
            self.slowest = max(self.slowest, time.perf_counter() - start)
            self.calls += 1
            time.sleep(0.002)


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.slow
def test_server_killed_mid_workload_then_back_without_restart(
    redis_factory: Callable[..., RedisServer], make_cache: Callable[..., Cache]
) -> None:
    server = redis_factory()
    cache = make_cache(server.url)
    workload = Workload(cache)
    workload.start()
    try:
        time.sleep(0.3)
        server.stop()
        time.sleep(0.8)
        figures = redis_figures(cache)
        assert figures["errors"] >= 3
        assert figures["breaker"] in ("open", "half-open")
        report = cache.health().tiers["redis"]
        assert report.status in ("down", "degraded")
        cache.set("during-outage", "not kept", ttl=60)  # nothing raises …
        assert cache.get("during-outage") is None  # … and the disconnected backplane keeps memory unused

        server.start()  # same port
        admin = server.admin()
        key = f"tierkit:{cache.settings.namespace}:k:back"

        def redis_serves_again() -> bool:
            cache.set("back", "in redis", ttl=60)
            return admin.exists(key) == 1

        assert wait_until(redis_serves_again, timeout=10) < 10
        assert cache.health().tiers["redis"].status == "ok"
        assert redis_figures(cache)["breaker"] == "closed"
    finally:
        workload.stop.set()
        workload.join(5)
    assert not workload.errors, workload.errors[:3]
    assert workload.calls > 50
    assert workload.slowest < 1.0


@pytest.mark.slow
def test_paused_server_costs_no_timeout_per_call_once_the_breaker_opens(
    redis_factory: Callable[..., RedisServer], make_cache: Callable[..., Cache]
) -> None:
    server = redis_factory()
    cache = make_cache(server.url, socket_timeout=0.25)
    cache.set("warm", 1, ttl=60)
    server.admin().execute_command("CLIENT", "PAUSE", 2500, "ALL")
    start = time.perf_counter()
    for n in range(40):
        assert cache.get(f"absent-{n}", "default") == "default"
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"40 gets took {elapsed:.2f} s (a timeout each would be 10 s)"
    assert redis_figures(cache)["breaker"] in ("open", "half-open")

    def serves_again() -> bool:
        cache.get(f"probe-{time.monotonic()}")
        return redis_figures(cache)["breaker"] == "closed"

    wait_until(serves_again, timeout=10)


def test_secrets_stay_out_of_health_stats_and_logs(
    redis_factory: Callable[..., RedisServer],
    make_cache: Callable[..., Cache],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = redis_factory(users={"alice": "Right-Pa55-Alice"})
    cache = make_cache(server.url_for("alice", "Wrong-Pa55-Alice"))
    for n in range(5):
        cache.set(f"k{n}", n)  # nothing raises; memory stays unused without a backplane (docs/coherence.md)
        assert cache.get(f"k{n}") is None
    report = cache.health()
    assert report.tiers["redis"].status == "down"
    assert "authentication failed" in report.tiers["redis"].reason
    texts = [
        json.dumps(report.to_dict(), default=str),
        json.dumps(cache.stats(), default=str),
        repr(cache),
        caplog.text,
    ]
    for text in texts:
        assert "Wrong-Pa55-Alice" not in text
        assert "Right-Pa55-Alice" not in text
    assert "alice:***@" in texts[0]
