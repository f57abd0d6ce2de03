"""A Redis shared with other programs: foreign keys under the prefix, tag sets that would grow."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from redis_helpers import RedisServer
from tierkit_redis import RedisTier

from tierkit import MISSING, Cache, Entry
from tierkit.testing import FakeClock

pytestmark = [pytest.mark.redis]


def test_a_foreign_value_of_another_type_is_a_miss_not_a_failure(redis_url: str) -> None:
    """Issue 9 item 11: a hash under the prefix (WRONGTYPE) must not open the breaker."""
    cache = Cache(
        namespace="hostile", order=["memory", "redis"], tiers={"redis": {"options": {"url": redis_url}}}
    )
    client = redis.Redis.from_url(redis_url)
    client.hset("tierkit:hostile:k:foreign", mapping={"a": "1"})
    try:
        for _ in range(5):
            assert cache.get("foreign", MISSING) is MISSING
        figures = cache.stats()["tiers"]["redis"]
        assert (figures["errors"], figures["breaker"]) == (0, "closed")
        assert cache.set("foreign", "ours") is True  # SET replaces the foreign value
        cache.clear(tiers=["memory"])
        assert cache.get("foreign") == "ours"
    finally:
        client.delete("tierkit:hostile:k:foreign")
        cache.close()


def test_tag_sets_stay_bounded_as_entries_expire(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    """Issue 9 item 14: 44 632 members for ~5 500 live entries before; now about 2x live at most."""
    server = redis_factory()
    clock = FakeClock()
    tier = make_tier(server.url, clock=clock)
    client = server.admin()
    live = 500
    for n in range(20 * live):
        # each entry lives for `live` writes: Redis expires it natively, so use real short TTLs
        tier.tierkit_set(f"k{n}", Entry(b"v", clock() + 60, ("hot",)))
        if n >= live:
            client.delete(tier.key_prefix + f"k:k{n - live}")  # as if it had expired
    members = client.scard(tier.key_prefix + "t:hot")
    assert members <= 2.5 * live, f"{members} members for {live} live entries"
