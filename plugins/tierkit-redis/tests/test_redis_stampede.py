"""One computation per cold key across processes through Redis (docs/stampede.md), on private servers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from topology_helpers import Cluster, SentinelGroup

from tierkit import Cache
from tierkit.testing import FakeClock, stampede


def redis_cache(options: dict[str, Any], namespace: str, **settings: Any) -> Callable[[], Cache]:
    """A memory → redis chain (built in each process after the fork)."""

    def make() -> Cache:
        return Cache(
            namespace=namespace, order=["memory", "redis"], tiers={"redis": {"options": options}}, **settings
        )

    return make


@pytest.fixture
def namespace() -> str:
    return f"stampede-{uuid.uuid4().hex[:8]}"


def test_four_processes_of_fifty_threads_compute_a_cold_key_once(redis_url: str, namespace: str) -> None:
    result = stampede(redis_cache({"url": redis_url}, namespace), processes=4, threads=50)
    assert (result.calls, result.wrong_values, result.failed_processes) == (1, 0, 0)


def test_a_holder_killed_while_computing_costs_at_most_one_more_computation(
    redis_url: str, namespace: str
) -> None:
    lock_timeout = 4.0
    result = stampede(
        redis_cache({"url": redis_url}, namespace),
        processes=4,
        threads=50,
        kill_first=True,
        lock_timeout=lock_timeout,
    )
    assert result.killed is not None
    assert result.calls <= 2
    assert (result.wrong_values, result.failed_processes) == (0, 0)
    assert result.longest_wait < lock_timeout + 2  # the dead holder's lease ran out: a waiter took over


def test_the_lock_is_renewed_while_its_computation_runs(redis_url: str, namespace: str) -> None:
    holder, other = (redis_cache({"url": redis_url}, namespace)() for _ in range(2))
    locks = holder.chain.guard.locks
    lease = locks.acquire("k", 0.1)
    assert lease is not None and not isinstance(lease, str)
    time.sleep(0.5)  # five leases long: only the renewals keep it
    assert other.chain.guard.locks.acquire("k", 0.1) is None
    locks.release(lease)
    assert isinstance(other.chain.guard.locks.acquire("k", 0.1), type(lease))


def test_only_the_holder_releases_a_lock(redis_url: str, namespace: str) -> None:
    tier = redis_cache({"url": redis_url}, namespace)().chain.slots[1].tier
    assert tier.tierkit_lock("k", "a", 5) is True
    assert tier.tierkit_lock("k", "b", 5) is False
    assert tier.tierkit_unlock("k", "b") is False
    assert tier.tierkit_unlock("k", "a") is True
    assert tier.tierkit_lock("k", "b", 5) is True
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.pttl(f"tierkit:{namespace}:l:k") <= 5000  # SET NX PX: a dead holder's lock expires


def test_a_stale_copy_is_served_across_processes(redis_url: str, namespace: str) -> None:
    writer, reader = (redis_cache({"url": redis_url}, namespace)() for _ in range(2))
    writer.set("k", "v1", 1, stale_ttl=60)
    client = redis.Redis.from_url(redis_url)
    client.delete(f"tierkit:{namespace}:k:k")  # the value expired; its stale copy lives on
    assert reader.get("k") is None
    assert reader.get_or_set("k", lambda: 1 / 0, 1, stale_ttl=60) == "v1"
    assert reader.stats()["stale_served"] == 1


def test_a_cluster_locks_each_key_on_its_slot(redis_cluster: Cluster, namespace: str) -> None:
    result = stampede(
        redis_cache({"url": redis_cluster.url, "cluster": True}, namespace), processes=3, threads=10
    )
    assert (result.calls, result.wrong_values, result.failed_processes) == (1, 0, 0)


def test_sentinel_mode_locks_on_the_master(
    make_sentinels: Callable[[], SentinelGroup], namespace: str
) -> None:
    group = make_sentinels()
    options = {"sentinels": group.addresses, "service_name": group.service}
    result = stampede(redis_cache(options, namespace), processes=3, threads=10)
    assert (result.calls, result.wrong_values, result.failed_processes) == (1, 0, 0)


def test_an_early_refresh_is_left_to_the_process_holding_the_lock(redis_url: str, namespace: str) -> None:
    clock = FakeClock(time.time())
    ours, theirs = (redis_cache({"url": redis_url}, namespace, clock=clock)() for _ in range(2))
    assert ours.get_or_set("k", lambda: 1, 100, lock=True, early_refresh=0.1) == 1
    clock.advance(95)  # the last tenth of its life
    lease = theirs.chain.guard.locks.acquire("k", 5.0)  # another process is refreshing it
    assert lease is not None and not isinstance(lease, str)
    calls: list[int] = []
    assert ours.get_or_set("k", lambda: calls.append(1) or 2, 100, lock=True, early_refresh=0.1) == 1
    for _ in range(500):  # the refresh thread gives up on the taken lock
        if not ours.chain.guard.claim("k"):
            time.sleep(0.01)
            continue
        ours.chain.guard.unclaim("k")
        break
    theirs.chain.guard.locks.release(lease)
    assert calls == [] and ours.stats()["early_refreshes"] == 0
