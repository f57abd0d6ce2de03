"""Outages seen by the tier itself: it fails fast with a clear reason and recovers alone."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from redis_helpers import RedisServer
from tierkit_redis import RedisTier

from tierkit import Entry

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def timed_failure(call: Callable[[], object]) -> float:
    """Seconds until ``call`` raised a redis error (it must raise one)."""
    start = time.perf_counter()
    with pytest.raises(redis.RedisError):
        call()
    return time.perf_counter() - start


def test_killed_server_fails_fast_then_serves_again_on_restart(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory()
    tier = make_tier(server.url)
    tier.tierkit_set("k", Entry(b"v", None, ()))
    assert tier.tierkit_get("k") == Entry(b"v", None, ())

    server.stop()
    for call in (
        lambda: tier.tierkit_get("k"),
        lambda: tier.tierkit_set("k", Entry(b"v", None, ())),
        lambda: tier.tierkit_get_many(["k", "j"]),
        lambda: tier.tierkit_set_many({"k": Entry(b"v", None, ()), "j": Entry(b"w", None, ())}),
        lambda: tier.tierkit_delete("k"),
    ):
        assert timed_failure(call) < 0.5
    health = tier.tierkit_health()
    assert health.status == "down"
    assert "connection refused" in health.reason and str(server.port) in health.reason
    assert "server_error" in tier.tierkit_stats()

    server.start()  # same port, same tier object: no restart of the application
    tier.tierkit_set("k", Entry(b"again", None, ()))
    assert tier.tierkit_get("k") == Entry(b"again", None, ())
    assert tier.tierkit_health().status == "ok"


def test_paused_server_costs_one_timeout_not_a_hang(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory()
    tier = make_tier(server.url, socket_timeout=0.2)
    tier.tierkit_set("k", Entry(b"v", None, ()))
    server.admin().execute_command("CLIENT", "PAUSE", 1500, "ALL")
    assert timed_failure(lambda: tier.tierkit_get("k")) < 0.5
    assert timed_failure(lambda: tier.tierkit_set("k", Entry(b"v", None, ()))) < 0.5
    start = time.perf_counter()
    health = tier.tierkit_health()
    assert time.perf_counter() - start < 0.5
    assert health.status == "down" and "timed out" in health.reason
    time.sleep(1.5)
    assert tier.tierkit_get("k") == Entry(b"v", None, ())


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_unresponsive_endpoint_times_out(silent_listener: int, make_tier: Callable[..., RedisTier]) -> None:
    tier = make_tier(f"redis://127.0.0.1:{silent_listener}/0", connect_timeout=0.2, socket_timeout=0.2)
    assert timed_failure(lambda: tier.tierkit_get("k")) < 0.6
    health = tier.tierkit_health()
    assert health.status == "down" and "timed out" in health.reason


def test_slow_server_is_degraded(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory()
    tier = make_tier(server.url, slow_threshold=0.02, socket_timeout=1)
    assert tier.tierkit_health().status == "ok"
    server.admin().execute_command("CLIENT", "PAUSE", 100, "ALL")
    health = tier.tierkit_health()
    assert health.status == "degraded"
    assert health.reason.startswith("slow: PING took")
    assert "threshold 20 ms" in health.reason
    assert health.details["latency_ms"] >= 50
