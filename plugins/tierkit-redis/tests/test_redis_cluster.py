"""The Redis tier on a 3-master Redis Cluster (a replica each): spread, batches, invalidation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from redis_helpers import free_port
from tierkit_redis import Options, RedisTier
from tierkit_redis._cluster import RedisClusterTier
from tierkit_redis._slots import key_slot
from topology_helpers import Cluster, wait_for

from tierkit import Cache, ConfigError, Entry, TierContext
from tierkit.testing import FakeClock, TierConformance, make_context

pytestmark = pytest.mark.redis


class TestRedisClusterConformance(TierConformance):
    persistent = True  # entries live in the cluster, not in the instance; so `shared` is checked too

    @pytest.fixture
    def make_tier(
        self, make_tier: Callable[..., RedisTier], redis_cluster: Cluster, clock: FakeClock
    ) -> Callable[[str], RedisTier]:
        """The kit's ``make_tier(namespace)`` on the shared cluster, under a prefix of the test's own."""
        prefix = f"conf-{uuid.uuid4().hex[:12]}"
        return lambda namespace: make_tier(
            redis_cluster.url, namespace=f"{prefix}-{namespace}", clock=clock, cluster=True
        )

    @pytest.fixture
    def reopen(self, make_tier: Callable[[str], RedisTier]) -> Callable[[], RedisTier]:
        return lambda: make_tier("conformance")

    @pytest.fixture
    def tier(self, reopen: Callable[[], RedisTier]) -> RedisTier:
        return reopen()

    @pytest.fixture
    def broken_tier(self, clock: FakeClock) -> Iterator[RedisTier]:
        """A cluster tier whose url names a loopback port nothing listens on."""
        options = Options(url=f"redis://127.0.0.1:{free_port()}/0", cluster=True)
        tier = RedisTier(options, make_context(clock, name="redis"))
        yield tier
        tier.tierkit_close()


@pytest.fixture
def cluster_tier(redis_cluster: Cluster, make_tier: Callable[..., RedisTier]) -> RedisTier:
    return make_tier(redis_cluster.url, cluster=True)


def keys_per_master(cluster: Cluster, pattern: str) -> dict[int, int]:
    """How many keys matching ``pattern`` each master holds (port → count)."""
    masters = cluster.masters_seen_by(cluster.live()[0])
    return {
        port: sum(1 for _ in cluster.node_at(port).admin().scan_iter(match=pattern, count=1000))
        for port in masters
    }


def entry(value: bytes, *tags: str) -> Entry:
    return Entry(value, None, tags)


def test_cluster_option_builds_the_cluster_tier(cluster_tier: RedisTier) -> None:
    assert type(cluster_tier) is RedisClusterTier
    assert repr(cluster_tier).startswith("RedisTier(name='redis', url='redis://127.0.0.1:")


def test_ten_thousand_keys_land_on_every_master(redis_cluster: Cluster, cluster_tier: RedisTier) -> None:
    cluster_tier.tierkit_set_many({f"user:{i}": entry(b"v") for i in range(10_000)})
    counts = keys_per_master(redis_cluster, f"{cluster_tier.key_prefix}k:*")
    assert sum(counts.values()) == 10_000
    assert len(counts) == 3 and min(counts.values()) > 2_500, counts  # ~3 333 each: the prefix pins no slot


def test_get_many_reads_keys_from_every_slot_range(redis_cluster: Cluster, cluster_tier: RedisTier) -> None:
    stored = {f"item:{i}": entry(f"v{i}".encode(), "odd" if i % 2 else "even") for i in range(3_000)}
    cluster_tier.tierkit_set_many(stored)
    slots = {key_slot(f"{cluster_tier.key_prefix}k:{key}".encode()) for key in stored}
    assert len(slots) > 2_000 and min(slots) < 5_461 and max(slots) > 10_922  # ~2 700 expected
    wanted = [*stored, "absent:1", "absent:2"]
    assert cluster_tier.tierkit_get_many(wanted) == stored
    assert cluster_tier.tierkit_get_many(["absent:3"]) == {}


def test_tag_invalidation_reaches_every_shard(redis_cluster: Cluster, cluster_tier: RedisTier) -> None:
    cluster_tier.tierkit_set_many({f"a:{i}": entry(b"a", "red") for i in range(600)})
    cluster_tier.tierkit_set_many({f"b:{i}": entry(b"b", "blue") for i in range(600)})
    cluster_tier.tierkit_set("both", entry(b"ab", "red", "blue"))
    cluster_tier.tierkit_set("a:0", entry(b"rewritten"))  # no longer red: survives
    red_per_master = keys_per_master(redis_cluster, f"{cluster_tier.key_prefix}k:a:*")
    assert min(red_per_master.values()) > 100, red_per_master

    assert cluster_tier.tierkit_invalidate_tags(["red"]) == 600  # 599 a:* + both
    left = cluster_tier.tierkit_get_many([f"a:{i}" for i in range(600)])
    assert left == {"a:0": entry(b"rewritten")}
    assert len(cluster_tier.tierkit_get_many([f"b:{i}" for i in range(600)])) == 600
    assert cluster_tier.tierkit_get("both") is None
    assert cluster_tier.tierkit_invalidate_tags(["red"]) == 0
    assert cluster_tier.tierkit_invalidate_tags(["blue", "green"]) == 600


def test_tagged_single_sets_are_found_by_invalidation(cluster_tier: RedisTier) -> None:
    for i in range(200):
        cluster_tier.tierkit_set(f"one:{i}", Entry(b"v", 1e12, ("t",)))
    assert cluster_tier.tierkit_invalidate_tags(["t"]) == 200
    assert cluster_tier.tierkit_get_many([f"one:{i}" for i in range(200)]) == {}


def test_prefix_invalidation_reaches_every_shard(redis_cluster: Cluster, cluster_tier: RedisTier) -> None:
    cluster_tier.tierkit_set_many({f"page:{i}": entry(b"p") for i in range(900)})
    cluster_tier.tierkit_set_many({f"pager:{i}": entry(b"q") for i in range(30)})
    cluster_tier.tierkit_set("other:1", entry(b"o"))
    assert min(keys_per_master(redis_cluster, f"{cluster_tier.key_prefix}k:page:*").values()) > 150
    assert cluster_tier.tierkit_invalidate_prefix("page:") == 900
    assert keys_per_master(redis_cluster, f"{cluster_tier.key_prefix}k:page:*") == dict.fromkeys(
        redis_cluster.masters_seen_by(redis_cluster.live()[0]), 0
    )
    assert len(cluster_tier.tierkit_get_many([f"pager:{i}" for i in range(30)])) == 30
    assert cluster_tier.tierkit_get("other:1") == entry(b"o")


def test_clear_empties_this_namespace_on_every_master_and_nothing_else(
    redis_cluster: Cluster, make_tier: Callable[..., RedisTier]
) -> None:
    mine = make_tier(redis_cluster.url, cluster=True)
    other = make_tier(redis_cluster.url, cluster=True)
    for tier in (mine, other):
        tier.tierkit_set_many({f"k:{i}": entry(b"v", "tag") for i in range(900)})
    admin = redis_cluster.client()
    foreign = {f"foreign:{i}": b"untouched" for i in range(30)}  # outside any tier's prefix
    admin.mset_nonatomic(foreign)
    before = keys_per_master(redis_cluster, f"{mine.key_prefix}*")
    assert min(before.values()) > 300  # entries, per-slot tag sets and the registry
    others = keys_per_master(redis_cluster, f"{other.key_prefix}*")

    mine.tierkit_clear()

    assert set(keys_per_master(redis_cluster, f"{mine.key_prefix}*").values()) == {0}
    assert keys_per_master(redis_cluster, f"{other.key_prefix}*") == others
    assert admin.mget_nonatomic(list(foreign)) == list(foreign.values())
    assert len(other.tierkit_get_many([f"k:{i}" for i in range(900)])) == 900
    admin.delete(*foreign)


def test_health_shows_every_master_and_its_slots(cluster_tier: RedisTier) -> None:
    health = cluster_tier.tierkit_health()
    assert health.status == "ok", health.reason
    masters = [node for node in health.details["nodes"] if node["role"] == "master"]
    assert len(masters) == health.details["masters"] == 3
    covered = set()
    for node in masters:
        assert node["latency_ms"] >= 0 and node["address"].startswith("127.0.0.1:")
        for span in node["slots"].split(","):
            start, _, end = span.partition("-")
            covered.update(range(int(start), int(end or start) + 1))
    assert covered == set(range(16384))
    replicas = [node for node in health.details["nodes"] if node["role"] == "replica"]
    assert sorted(node["master"] for node in replicas) == sorted(node["address"] for node in masters)
    stats = cluster_tier.tierkit_stats()
    assert stats["masters"] == 3 and stats["redis_version"]


def test_a_hash_tag_in_the_prefix_is_refused(redis_cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="key_prefix must not contain"):
        Options(url=redis_cluster.url, cluster=True, key_prefix="app:{x}:")
    context = TierContext(name="redis", namespace="{pinned}", clock=FakeClock())
    with pytest.raises(ConfigError, match=r"namespace '\{pinned\}'.*one slot"):
        RedisTier(Options(url=redis_cluster.url, cluster=True), context)


def test_user_hash_tags_keep_their_keys_together_and_indexed(cluster_tier: RedisTier) -> None:
    stored = {f"user:{{42}}:{field}": entry(b"x", "u42") for field in ("name", "mail", "plan")}
    cluster_tier.tierkit_set_many(stored)
    assert cluster_tier.tierkit_get_many(list(stored)) == stored
    assert cluster_tier.tierkit_invalidate_tags(["u42"]) == 3


def test_atomic_operations_keep_entries_indexed_on_every_shard(cluster_tier: RedisTier) -> None:
    """add, incr, touch, has and delete_many run on the key's own shard (scripts with the entry's
    tag sets in its slot); what add and touch index, tag invalidation still finds everywhere."""
    keys = [f"atomic:{i}" for i in range(40)]  # spread over every master
    assert all(cluster_tier.tierkit_add(key, entry(b"1", "batch")) for key in keys)
    assert not any(cluster_tier.tierkit_add(key, entry(b"2", "batch")) for key in keys)
    counted = cluster_tier.tierkit_incr(keys[0], 41)
    assert counted is not None and counted.value == b"42" and counted.tags == ("batch",)
    assert all(cluster_tier.tierkit_touch(key, time.time() + 600) for key in keys)
    assert all(cluster_tier.tierkit_has(key) for key in keys)
    assert cluster_tier.tierkit_delete_many(keys[:10]) == 10
    assert not cluster_tier.tierkit_has(keys[0])
    assert cluster_tier.tierkit_invalidate_tags(["batch"]) == 30
    assert cluster_tier.tierkit_get_many(keys) == {}


def test_a_cache_on_the_cluster_shares_values_between_instances(redis_cluster: Cluster) -> None:
    namespace = f"chain-{uuid.uuid4().hex[:10]}"
    options = {"redis": {"options": {"url": redis_cluster.url, "cluster": True}}}
    writer = Cache(namespace=namespace, order=["memory", "redis"], tiers=options)
    reader = Cache(namespace=namespace, order=["memory", "redis"], tiers=options)
    try:
        writer.set_many({f"k{i}": {"i": i} for i in range(200)}, ttl=60, tags=["batch"])
        assert reader.get_many([f"k{i}" for i in range(200)]) == {f"k{i}": {"i": i} for i in range(200)}
        assert writer.invalidate(tags=["batch"]) >= 200
        fresh = Cache(namespace=namespace, order=["redis"], tiers=options)
        assert fresh.get_many([f"k{i}" for i in range(200)]) == {}
        fresh.close()
        assert reader.health().tiers["redis"].status == "ok"
    finally:
        writer.clear()
        writer.close()
        reader.close()


def replica_hits(cluster: Cluster) -> int:
    clients = [node.admin() for node in cluster.live()]
    replicas = [c for c in clients if c.info("replication")["role"] == "slave"]
    return sum(int(c.info("stats")["keyspace_hits"]) for c in replicas)


def test_reads_from_replicas_when_asked(redis_cluster: Cluster, make_tier: Callable[..., RedisTier]) -> None:
    tier = make_tier(redis_cluster.url, cluster=True, read_from_replicas=True)
    stored = {f"r:{i}": entry(b"v") for i in range(300)}
    tier.tierkit_set_many(stored)
    wait_for(lambda: tier.tierkit_get_many(list(stored)) == stored, 5, "the replicas to have every key")
    before = replica_hits(redis_cluster)
    for _ in range(4):
        assert tier.tierkit_get_many(list(stored)) == stored
        assert tier.tierkit_get("r:1") == entry(b"v")
    assert replica_hits(redis_cluster) - before >= 300  # round robin over master and replica
