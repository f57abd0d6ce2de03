"""The Redis tier's native async hooks on a Redis Cluster and on a Sentinel-managed master.

The async conformance kit against a real 3-master cluster and a real Sentinel group,
then a failover of each during an awaited workload: the reachable shards keep
serving, no exception reaches the caller, and writes heal without a restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tierkit_redis import Options, RedisTier
from tierkit_redis._cluster import RedisClusterTier
from tierkit_redis._slots import key_slot
from topology_helpers import Cluster, SentinelGroup

from tierkit import Cache, Entry
from tierkit.testing import AsyncTierConformance, FakeClock, make_context

pytestmark = pytest.mark.redis

HEAL_WITHIN = 15.0
"""Seconds allowed from a master's death to healed writes (as in the sync failover tests)."""


def scaled_tier(clock: FakeClock, **options: object) -> RedisTier:
    context = make_context(clock, name="redis", namespace=f"aso-{uuid.uuid4().hex[:12]}")
    return RedisTier(Options(socket_timeout=2, connect_timeout=2, **options), context)


class TestRedisClusterAsyncConformance(AsyncTierConformance):
    native_async = True

    @pytest.fixture
    def tier(self, redis_cluster: Cluster, clock: FakeClock) -> Iterator[RedisTier]:
        tier = scaled_tier(clock, url=redis_cluster.url, cluster=True)
        assert isinstance(tier, RedisClusterTier)
        yield tier
        tier.tierkit_clear()
        tier.tierkit_close()


class TestRedisSentinelAsyncConformance(AsyncTierConformance):
    native_async = True

    @pytest.fixture
    def tier(self, redis_sentinels: SentinelGroup, clock: FakeClock) -> Iterator[RedisTier]:
        tier = scaled_tier(clock, sentinels=redis_sentinels.addresses, service_name=redis_sentinels.service)
        yield tier
        tier.tierkit_clear()
        tier.tierkit_close()


def test_async_batches_and_tags_span_every_master(redis_cluster: Cluster) -> None:
    tier = scaled_tier(FakeClock(time.time()), url=redis_cluster.url, cluster=True)
    keys = [f"k{i}" for i in range(300)]

    async def scenario() -> None:
        await tier.tierkit_aset_many({key: Entry(key.encode(), None, ("t",)) for key in keys})
        assert await tier.tierkit_aget_many([*keys, "absent"]) == {
            key: Entry(key.encode(), None, ("t",)) for key in keys
        }
        assert await tier.tierkit_ainvalidate_tags(["t"]) == 300
        assert await tier.tierkit_aget_many(keys) == {}
        await tier.tierkit_aclose()

    asyncio.run(scenario())
    tier.tierkit_close()


async def heal(write: Callable[[], object], since: float) -> float:
    """Await ``write()`` until it succeeds; the seconds from ``since`` (monotonic) to that success."""
    while True:
        try:
            await write()  # type: ignore[misc]
        except Exception:
            if time.monotonic() - since > HEAL_WITHIN:
                raise
            await asyncio.sleep(0.05)
        else:
            return time.monotonic() - since


@pytest.mark.slow
def test_async_killed_cluster_master_costs_only_its_keys_then_heals(
    make_cluster: Callable[[], Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster()
    namespace = f"akill-{uuid.uuid4().hex[:8]}"
    cache = Cache(
        namespace=namespace,
        order=["redis", "file"],
        tiers={
            "redis": {"options": {"url": cluster.url, "cluster": True}},
            "file": {"options": {"directory": str(tmp_path / "files")}},
        },
    )
    tier = cache.chain.slots[0].tier
    assert isinstance(tier, RedisClusterTier)
    keys = [f"k{i}" for i in range(300)]
    victim_port = cluster.nodes[0].port  # the node the url names: the client must not need it
    lost_slots = {
        slot
        for start, end, *owners in cluster.node_at(victim_port).admin().execute_command("CLUSTER", "SLOTS")
        if int(owners[0][1]) == victim_port
        for slot in range(int(start), int(end) + 1)
    }
    on_victim = {key for key in keys if key_slot(f"{tier.key_prefix}k:{key}".encode()) in lost_slots}
    assert 50 < len(on_victim) < 150

    async def scenario() -> float:
        assert await cache.aset_many({key: key.upper() for key in keys}, persistent=True) == []
        assert len(await tier.tierkit_aget_many(keys)) == 300
        cluster.node_at(victim_port).stop()
        killed = time.monotonic()
        served = await tier.tierkit_aget_many(keys)
        # The victim's keys come back only if its replica has taken over meanwhile (1 s node
        # timeout: a slow machine's retries can outlast it); every other key is served throughout.
        assert set(keys) - on_victim <= set(served), "the reachable shards keep serving"
        assert await cache.aget_many(keys) == {key: key.upper() for key in keys}, (
            "the file tier serves the rest"
        )
        new = {k: Entry(b"new", None, ()) for k in keys}
        healed = await heal(lambda: tier.tierkit_aset_many(new), killed)
        assert await tier.tierkit_aget_many(keys) == new
        assert await cache.aset("after", "failover") is True
        assert await cache.aget("after") == "failover"
        await cache.aclose()
        return healed

    healed = asyncio.run(scenario())
    print(f"\nasync cluster: master killed -> writes healed in {healed:.2f} s")


@pytest.mark.slow
def test_async_sentinel_failover_during_a_workload_reaches_no_caller(
    make_sentinels: Callable[[], SentinelGroup],
) -> None:
    group = make_sentinels()
    assert group.master is not None and group.replica is not None
    cache = Cache(
        namespace=f"asent-{uuid.uuid4().hex[:8]}",
        order=["redis"],
        tiers={
            "redis": {
                "options": {"sentinels": group.addresses, "service_name": group.service},
                "breaker": {"cooldown": 0.05, "max_cooldown": 0.2},
            }
        },
    )
    tier = cache.chain.slots[0].tier
    old_master = group.current_master()

    async def scenario() -> tuple[float, int]:
        killed = 0.0
        i = 0
        while True:
            i += 1
            await cache.aset(f"k{i}", i)  # neither may raise, before, during or after the failover
            value = await cache.aget(f"k{i}")
            if i == 50:
                group.master.stop()  # type: ignore[union-attr]
                killed = time.monotonic()
            elif killed and value == i and group.current_master() != old_master:
                return time.monotonic() - killed, i
            assert not killed or time.monotonic() - killed < HEAL_WITHIN, "no failover in time"
            await asyncio.sleep(0.005)

    async def run() -> tuple[float, int]:
        try:
            return await scenario()
        finally:
            await cache.aclose()

    healed, last = asyncio.run(run())
    print(f"\nasync sentinel: master killed -> writes and reads healed in {healed:.2f} s")
    assert group.current_master() == ("127.0.0.1", group.replica.port)
    assert group.replica.admin().get(f"{tier.key_prefix}k:k{last}") is not None
