"""Readers apply the backplane's messages on their own thread; the subscriber thread covers the rest.

A reader busy serving memory hits catches up every millisecond (``CatchUp``): the
messages are applied by it, and the subscriber thread, seeing readers drain, leaves
the bursts to them instead of taking the GIL from them for each one.  An idle
process, a frozen clock, a front door written before ``fresh`` existed, and a
subscription that dies under a busy reader must all still stay coherent.
Real processes (``fork``) and a real redis-server; nothing is timed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from backplane_helpers import Peer, local_value, memory_redis, wait_until

from tierkit import Cache
from tierkit.tiers.memory import MemoryTier

pytestmark = pytest.mark.redis


@pytest.fixture
def settings(redis_url: str) -> dict[str, Any]:
    return memory_redis(f"drain{uuid.uuid4().hex[:10]}", {"url": redis_url})


@pytest.fixture
def peer(settings: dict[str, Any]) -> Iterator[Peer]:
    other = Peer(settings)
    yield other
    other.stop()


def subscribed(cache: Cache) -> Cache:
    wait_until(lambda: cache.stats()["backplane"]["state"] == "subscribed", "the cache to subscribe")
    return cache


def deliveries_by_thread(cache: Cache) -> dict[int, int]:
    """Count the messages the backplane of ``cache`` is handed, by the thread that hands them over."""
    backplane = cache.chain.backplane
    assert backplane is not None
    counts: dict[int, int] = {}
    deliver = backplane.on_message

    def counting(data: bytes) -> None:
        ident = threading.get_ident()
        counts[ident] = counts.get(ident, 0) + 1
        deliver(data)

    backplane.on_message = counting  # type: ignore[method-assign]
    return counts


def read_until(get: Callable[[str], Any], key: str, value: Any, what: str) -> None:
    """Spin on ``get(key)`` — never yielding the GIL on purpose — until it returns ``value``."""
    deadline = time.monotonic() + 10
    while get(key) != value:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {get(key)!r} after 10 s, expected {value!r}")


def test_a_busy_reader_applies_the_messages_itself(settings: dict[str, Any], peer: Peer) -> None:
    cache = subscribed(Cache(**settings))
    counts = deliveries_by_thread(cache)
    for version in range(30):
        peer.call("set", "k", version)
        read_until(cache.get, "k", version, "the reader to see the peer's set")
    on_reader = counts.get(threading.get_ident(), 0)
    assert on_reader >= sum(counts.values()) / 2, f"deliveries by thread: {counts}"
    assert cache.stats()["backplane"]["received"] == 30
    cache.close()


def test_an_idle_process_is_kept_coherent_by_the_subscriber_thread(
    settings: dict[str, Any], peer: Peer
) -> None:
    cache = subscribed(Cache(**settings))
    cache.set("k", "old")
    counts = deliveries_by_thread(cache)
    peer.call("set", "k", "new")  # carried: replaces the copy held here, with no read in this process
    wait_until(lambda: local_value(cache, "k") == "new", "the copy to be replaced without a read")
    assert threading.get_ident() not in counts, f"deliveries by thread: {counts}"
    cache.close()


def test_a_frozen_clock_leaves_coherence_to_the_subscriber_thread(
    settings: dict[str, Any], peer: Peer
) -> None:
    """Catch-ups are due on the cache's clock; one that never moves still gets the messages."""
    cache = subscribed(Cache(**settings, clock=lambda: 1_000_000_000.0))
    cache.set("k", "old", ttl=None)
    for version in range(5):
        peer.call("set", "k", version)
        read_until(cache.get, "k", version, "a reader with a frozen clock to see the peer's set")
    cache.close()


class OldMemoryTier(MemoryTier):
    """A front door written against the contract before ``fresh``: two parameters."""

    def front_door(self, on_miss: Any, counters: Any) -> Any:  # type: ignore[override]
        return super().front_door(on_miss, counters)


def test_a_front_door_without_fresh_is_kept_coherent_by_the_subscriber_thread(
    settings: dict[str, Any], peer: Peer
) -> None:
    cache = subscribed(Cache(**settings, kinds={"memory": OldMemoryTier}))
    assert isinstance(cache.chain.slots[0].tier, OldMemoryTier)
    for version in range(5):
        peer.call("set", "k", version)
        read_until(cache.get, "k", version, "an old front door to see the peer's set")
    cache.close()


def test_a_subscription_killed_under_a_busy_reader_is_noticed_and_restored(
    redis_url: str, settings: dict[str, Any], peer: Peer
) -> None:
    cache = subscribed(Cache(**settings))
    cache.set("k", 1)
    wait_until(lambda: peer.call("get", "k") == 1 and peer.call("memory_holds", "k"), "the peer to cache k")
    read_until(cache.get, "k", 1, "the reader")
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill_filter(_type="pubsub") >= 2
    peer.call("set", "k", 2)  # published while nobody listens: this process never gets its message
    deadline = time.monotonic() + 10
    while cache.stats()["backplane"]["subscriptions"] < 2:  # a reader's drain meets the dead connection
        assert cache.get("k") in (1, 2)
        assert time.monotonic() < deadline, f"not resubscribed: {cache.stats()['backplane']}"
    assert cache.stats()["backplane"]["disconnects"] >= 1
    assert cache.get("k") == 2, "what changed while it was away is not served from memory"
    peer.call("set", "k", 3)
    read_until(cache.get, "k", 3, "the backplane to work again")
    cache.close()
