"""Atomic operations on the Redis tier: scripts that decide on the server, across processes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tierkit import FOREVER, Cache, NotACounter
from tierkit.testing import race_in_processes

pytestmark = pytest.mark.redis

SIGNING_KEY = "Lh1mXq7vT0bR4cZy9wP2sK8nF3jD6gA5eU0iO7tY1rQ"


@pytest.fixture
def namespace() -> str:
    return f"atomics-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_cache(redis_url: str, namespace: str) -> Iterator[Callable[..., Cache]]:
    caches: list[Cache] = []

    def make(**settings: Any) -> Cache:
        cache = Cache(
            namespace=namespace,
            order=["memory", "redis"],
            tiers={"redis": {"options": {"url": redis_url}}},
            **settings,
        )
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.clear()
        cache.close()


def test_add_first_writer_wins_across_processes(make_cache: Callable[..., Cache]) -> None:
    def worker(index: int) -> bool:
        return make_cache().add("lock", index, ttl=60)

    winners = race_in_processes(worker, 8)
    assert winners.count(True) == 1
    assert make_cache().get("lock") == winners.index(True)


def test_incr_is_exact_across_processes_and_keeps_the_ttl(make_cache: Callable[..., Cache]) -> None:
    make_cache().set("hits", 0, ttl=600)

    def worker(index: int) -> None:
        cache = make_cache()
        for _ in range(100):
            cache.incr("hits")

    race_in_processes(worker, 4)
    cache = make_cache()
    assert cache.get("hits") == 400
    assert 590 < (cache.inspect("hits")["redis"].ttl or 0) <= 600


def test_a_value_set_under_the_pickle_codec_counts(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache(codec="pickle", signing_key=SIGNING_KEY)
    cache.set("n", 5)
    cache.set("s", "five")
    assert cache.incr("n") == 6
    assert make_cache(codec="pickle", signing_key=SIGNING_KEY).get("n") == 6
    with pytest.raises(NotACounter):
        cache.incr("s")
    with pytest.raises(ValueError, match="not in the cache"):
        cache.incr("absent")


def test_counts_beyond_what_a_script_adds_exactly_are_refused(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache()
    cache.set("big", 2**53)
    with pytest.raises(NotACounter, match="2\\*\\*53"):
        cache.incr("big")
    assert cache.get("big") == 2**53


def test_touch_rewrites_the_deadline_on_the_server(
    make_cache: Callable[..., Cache], redis_url: str, namespace: str
) -> None:
    cache = make_cache()
    cache.set("k", "v", ttl=5, tags=["t"])
    assert cache.touch("k", 1000) is True
    server = redis.Redis.from_url(redis_url)
    assert 990_000 < server.pttl(f"tierkit:{namespace}:k:k") <= 1_000_000
    assert server.pttl(f"tierkit:{namespace}:t:t") >= 990_000, "the tag set lives as long as the entry"
    assert cache.touch("k", FOREVER) is True
    assert server.pttl(f"tierkit:{namespace}:k:k") == -1
    assert make_cache().get("k") == "v"
    assert make_cache().inspect("k")["redis"].ttl is None
    assert cache.touch("absent", 10) is False


def test_has_reads_no_value_and_sees_expiry(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache()
    reader = make_cache()  # made first: starting a cache (its backplane) must not eat into the TTL
    cache.set("none", None, ttl=0.5)
    assert reader.has("none") is True
    assert reader.inspect("none")["memory"].status == "absent", "has copies nothing up"
    time.sleep(0.6)
    assert reader.has("none") is False


def test_delete_many_is_one_unlink(make_cache: Callable[..., Cache]) -> None:
    cache = make_cache()
    cache.set_many({"a": 1, "b": 2, "c": 3})
    assert cache.delete_many(["a", "b", "zz"]) == 4  # memory and redis each held a and b
    assert make_cache().get_many(["a", "b", "c"]) == {"c": 3}
