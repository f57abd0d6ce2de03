"""Options selecting a Redis Cluster or Sentinels, checked before anything connects (no server needed)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from tierkit_redis import Options, RedisTier
from tierkit_redis._client import describe
from tierkit_redis._cluster import RedisClusterTier
from tierkit_redis._slots import REDIS_CLUSTER_HASH_SLOTS, key_slot, slot_tag

from tierkit import TierContext, load_settings

SECRET = "S3cret-Pa55"
SENTINELS = ["sentinel-1:26379", "10.0.0.2:26379", "[::1]:26380"]


def context(namespace: str = "app") -> TierContext:
    return TierContext(name="redis", namespace=namespace, clock=time.time)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "redis://n1:7000", "cluster": True, "sentinels": SENTINELS, "service_name": "m"},
         "cluster and sentinels exclude each other"),
        ({"url": "unix:///run/redis.sock", "cluster": True}, "cluster = true needs a redis://"),
        ({"url": f"redis://:{SECRET}@n1:7000/2", "cluster": True}, "only database 0"),
        ({"url": "redis://n1:7000", "cluster": True, "key_prefix": "a{x}"}, "key_prefix must not contain"),
        ({"sentinels": SENTINELS}, "sentinels and service_name go together"),
        ({"url": "redis://h", "service_name": "m"}, "sentinels and service_name go together"),
        ({"url": "redis://h", "sentinel_password": SECRET}, "sentinel_password needs sentinels"),
        ({"url": "redis://h", "read_from_replicas": True}, "read_from_replicas needs cluster"),
        ({"sentinels": ["sentinel-1"], "service_name": "m"}, "'sentinel-1' is not host:port"),
        ({"sentinels": ["s:99999"], "service_name": "m"}, "'s:99999' is not host:port"),
        ({"sentinels": [], "service_name": "m"}, "at least 1 item"),
        ({"sentinels": SENTINELS, "service_name": "m", "url": "unix:///s.sock"}, "only be redis:// or rediss://"),
    ],
)  # fmt: skip
def test_bad_topology_options_say_what_is_wrong(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as raised:
        Options(**options)  # type: ignore[arg-type]
    assert SECRET not in str(raised.value) and SECRET not in repr(raised.value)


def test_tls_files_with_sentinels_need_a_rediss_url(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ValidationError, match="need a rediss:// url"):
        Options(sentinels=SENTINELS, service_name="m", ssl_ca_certs=ca)
    options = Options(sentinels=SENTINELS, service_name="m", url=f"rediss://:{SECRET}@m/1", ssl_ca_certs=ca)
    assert options.ssl_ca_certs == ca


def test_sentinels_alone_configure_the_tier() -> None:
    options = Options(sentinels=SENTINELS, service_name="mymaster")
    assert RedisTier.unavailable_reason(options, context()) is None
    assert RedisTier.unavailable_reason(Options(), context()) is not None


def test_building_cluster_and_sentinel_tiers_does_not_connect() -> None:
    start = time.perf_counter()
    cluster = RedisTier(Options(url="redis://192.0.2.1:7000", cluster=True), context())
    sentinel = RedisTier(
        Options(sentinels=["192.0.2.1:26379"], service_name="m", sentinel_password=SECRET), context()
    )
    assert time.perf_counter() - start < 0.2  # 192.0.2.1 (TEST-NET) never answers
    assert type(cluster) is RedisClusterTier and type(sentinel) is RedisTier
    assert repr(sentinel) == (
        "RedisTier(name='redis', url=\"service 'm' (sentinels 192.0.2.1:26379)\", key_prefix='tierkit:app:')"
    )
    assert SECRET not in repr(sentinel)


def test_a_sentinel_failure_names_the_service_and_masks_the_password() -> None:
    from redis.sentinel import MasterNotFoundError

    options = Options(sentinels=SENTINELS, service_name="mymaster", sentinel_password=SECRET)
    reason = describe(MasterNotFoundError(f"No master found for 'mymaster' (auth {SECRET})"), options)
    assert reason.startswith("no master found for service 'mymaster' (sentinels sentinel-1:26379, ")
    assert SECRET not in reason


def test_cluster_and_sentinels_come_from_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "tierkit.toml").write_text(
        "[tiers.redis.options]\n"
        'sentinels = ["s1:26379", "s2:26379"]\n'
        'service_name = "mymaster"\n'
        "read_from_replicas = true\n"
    )
    options = Options.model_validate(load_settings().tier("redis").options)
    assert options.sentinels == ("s1:26379", "s2:26379") and options.read_from_replicas


def test_every_slot_has_a_hash_tag_of_its_own() -> None:
    tags = [slot_tag(slot) for slot in range(REDIS_CLUSTER_HASH_SLOTS)]
    assert all(key_slot(f"app:t:{{{tag}}}:users".encode()) == slot for slot, tag in enumerate(tags))
    assert all(len(tag) == 4 and "{" not in tag and "}" not in tag for tag in tags)
