"""Failures of a scaled-out Redis: a cluster master dies, a Sentinel-managed master dies.

Each test starts its own topology and kills with SIGKILL; the tier must keep serving
what it can, never let an exception reach the caller of the chain, and heal without
being rebuilt once the cluster or the Sentinels have promoted a replica.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from tierkit_redis import Options, RedisTier
from tierkit_redis._slots import key_slot
from topology_helpers import Cluster, SentinelGroup, wait_for

from tierkit import Cache, Entry, TierContext

pytestmark = [pytest.mark.redis, pytest.mark.slow]

HEAL_WITHIN = 15.0
"""Seconds allowed from a master's death to healed writes (node timeout 1 s here)."""


def until_healed(write: Callable[[], object], since: float) -> float:
    """Retry ``write`` until it succeeds; the seconds from ``since`` (monotonic) to that success."""
    while True:
        try:
            write()
        except Exception:
            if time.monotonic() - since > HEAL_WITHIN:
                raise
            time.sleep(0.05)
        else:
            return time.monotonic() - since


def test_killed_cluster_master_costs_only_its_keys_then_heals(
    make_cluster: Callable[[], Cluster], make_tier: Callable[..., RedisTier], tmp_path: Path
) -> None:
    cluster = make_cluster()
    namespace = f"kill-{uuid.uuid4().hex[:8]}"
    tier = make_tier(cluster.url, namespace=namespace, cluster=True)
    cache = Cache(
        namespace=namespace,
        order=["redis", "file"],
        tiers={
            "redis": {"options": {"url": cluster.url, "cluster": True}},
            "file": {"options": {"directory": str(tmp_path / "files")}},
        },
    )
    keys = [f"k{i}" for i in range(300)]
    cache.set_many({key: key.upper() for key in keys}, persistent=True)
    assert len(tier.tierkit_get_many(keys)) == 300  # connected: it knows the slot map
    victim_port = cluster.nodes[0].port  # the node the url names: the client must not need it
    victim = cluster.node_at(victim_port)
    lost_slots = {
        slot
        for start, end, *owners in victim.admin().execute_command("CLUSTER", "SLOTS")
        if int(owners[0][1]) == victim_port
        for slot in range(int(start), int(end) + 1)
    }
    on_victim = {key for key in keys if key_slot(f"{tier.key_prefix}k:{key}".encode()) in lost_slots}
    assert 50 < len(on_victim) < 150

    victim.stop()
    killed = time.monotonic()

    served = tier.tierkit_get_many(keys)
    # The victim's keys come back only if its replica has taken over meanwhile (1 s node
    # timeout: a slow machine's retries can outlast it); every other key is served throughout.
    assert set(keys) - on_victim <= set(served), "the reachable shards keep serving"
    survivor = next(key for key in keys if key not in on_victim)
    assert tier.tierkit_get(survivor) == served[survivor]
    health = tier.tierkit_health()
    assert health.status == "degraded", health.reason
    assert f"127.0.0.1:{victim_port}" in health.reason and "1 of 3 masters unreachable" in health.reason
    assert cache.get_many(keys) == {key: key.upper() for key in keys}, "the file tier serves the rest"
    assert all(cache.get(key) == key.upper() for key in sorted(on_victim)[:10])

    healed = until_healed(lambda: tier.tierkit_set_many({k: Entry(b"new", None, ()) for k in keys}), killed)
    print(f"\ncluster: master killed -> writes healed in {healed:.2f} s")
    assert tier.tierkit_get_many(keys) == {k: Entry(b"new", None, ()) for k in keys}
    assert tier.tierkit_health().status == "ok"

    def cache_writes_again() -> None:  # the cache's own client and breaker heal on their own schedule
        cache.set("after", "failover")
        if cache.get("after") != "failover":
            raise AssertionError("the cache does not write to the cluster yet")

    until_healed(cache_writes_again, killed)
    cache.close()


def test_sentinel_failover_during_a_workload_reaches_no_caller(
    make_sentinels: Callable[[], SentinelGroup], tmp_path: Path
) -> None:
    group = make_sentinels()
    options = {"sentinels": group.addresses, "service_name": group.service}
    cache = Cache(
        namespace=f"sent-{uuid.uuid4().hex[:8]}",
        order=["redis"],
        tiers={"redis": {"options": options, "breaker": {"cooldown": 0.05, "max_cooldown": 0.2}}},
    )
    tier = RedisTier(
        Options(**options), TierContext(name="redis", namespace=cache.settings.namespace, clock=time.time)
    )
    assert cache.health().tiers["redis"].details["master"] == f"127.0.0.1:{group.master.port}"  # type: ignore[union-attr]
    old_master = group.current_master()
    killed = 0.0
    healed_at = None
    i = 0
    while healed_at is None:
        i += 1
        cache.set(f"k{i}", i)  # neither may raise, before, during or after the failover
        value = cache.get(f"k{i}")
        if i == 50:
            group.master.stop()  # type: ignore[union-attr]
            killed = time.monotonic()
        elif killed and value == i and group.current_master() != old_master:
            healed_at = time.monotonic() - killed
        assert not killed or time.monotonic() - killed < HEAL_WITHIN, "no failover in time"
        time.sleep(0.005)
    print(f"\nsentinel: master killed -> writes and reads healed in {healed_at:.2f} s")
    new_master = group.current_master()
    assert new_master == ("127.0.0.1", group.replica.port)  # type: ignore[union-attr]
    assert group.replica.admin().get(f"{tier.key_prefix}k:k{i}") is not None  # type: ignore[union-attr]
    health = tier.tierkit_health()
    assert health.status == "ok" and health.details["master"] == f"127.0.0.1:{new_master[1]}"
    tier.tierkit_set("direct", Entry(b"v", None, ("t",)))
    assert tier.tierkit_invalidate_tags(["t"]) == 1
    tier.tierkit_clear()
    tier.tierkit_close()
    cache.close()


def test_sentinel_reads_from_the_replica_when_asked(
    make_sentinels: Callable[[], SentinelGroup], make_tier: Callable[..., RedisTier]
) -> None:
    group = make_sentinels()
    assert group.replica is not None
    tier = make_tier(None, sentinels=group.addresses, service_name=group.service, read_from_replicas=True)
    tier.tierkit_set("k", Entry(b"v", None, ("t",)))
    replica = group.replica.admin()
    wait_for(lambda: replica.get(f"{tier.key_prefix}k:k") is not None, 5, "the replica to have the key")
    hits = int(replica.info("stats")["keyspace_hits"])
    assert tier.tierkit_get("k") == Entry(b"v", None, ("t",))
    assert tier.tierkit_get_many(["k", "x"]) == {"k": Entry(b"v", None, ("t",))}
    assert int(replica.info("stats")["keyspace_hits"]) == hits + 2
    health = tier.tierkit_health()
    assert health.status == "ok"
    assert health.details["replicas"] == [f"127.0.0.1:{group.replica.port}"]
    assert tier.tierkit_invalidate_tags(["t"]) == 1  # writes go to the master
