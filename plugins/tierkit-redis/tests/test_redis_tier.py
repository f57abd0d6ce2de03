"""The Redis tier's data hooks, called directly, against a real redis-server."""

from __future__ import annotations

import struct
import threading
import time
import uuid
from collections.abc import Callable

import pytest
import redis
from redis.connection import Connection
from redis_helpers import RedisServer
from tierkit_redis import RedisTier
from tierkit_redis._format import HEADER_SIZE, as_entries, pack, unpack, unpack_columns

from tierkit import Entry

pytestmark = pytest.mark.redis


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


def raw_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_roundtrip(tier: RedisTier) -> None:
    assert tier.tierkit_get("k") is None
    tier.tierkit_set("k", Entry(b"\x00value\xff", None, ()))
    assert tier.tierkit_get("k") == Entry(b"\x00value\xff", None, ())
    tier.tierkit_set("k", Entry(b"", None, ()))
    assert tier.tierkit_get("k") == Entry(b"", None, ())
    assert tier.tierkit_delete("k") is True
    assert tier.tierkit_delete("k") is False
    assert tier.tierkit_get("k") is None


def test_keys_live_under_the_namespace_prefix(redis_url: str, make_tier: Callable[..., RedisTier]) -> None:
    namespace = unique("ns")
    tier = make_tier(redis_url, namespace=namespace)
    assert tier.key_prefix == f"tierkit:{namespace}:"
    tier.tierkit_set("user:1", Entry(b"v", None, ()))
    assert raw_client(redis_url).exists(f"tierkit:{namespace}:k:user:1") == 1
    prefix = unique("app{x}") + ":"
    custom = make_tier(redis_url, key_prefix=prefix)
    custom.tierkit_set("a", Entry(b"v", None, ()))
    assert raw_client(redis_url).exists(f"{prefix}k:a") == 1


def test_native_expiry_px(tier: RedisTier, redis_url: str) -> None:
    tier.tierkit_set("short", Entry(b"v", time.time() + 0.3, ()))
    pttl = raw_client(redis_url).pttl(tier.key_prefix + "k:short")
    assert 0 < pttl <= 300
    got = tier.tierkit_get("short")
    assert got is not None and got.expires_at is not None
    time.sleep(0.35)
    assert tier.tierkit_get("short") is None
    assert raw_client(redis_url).exists(tier.key_prefix + "k:short") == 0


def test_no_expiry_means_persistent_key(tier: RedisTier, redis_url: str) -> None:
    tier.tierkit_set("forever", Entry(b"v", None, ()))
    assert raw_client(redis_url).pttl(tier.key_prefix + "k:forever") == -1


def test_the_chain_clock_decides_expiry(redis_url: str, make_tier: Callable[..., RedisTier]) -> None:
    clock = FakeClock()
    tier = make_tier(redis_url, clock=clock)
    tier.tierkit_set("k", Entry(b"v", clock.now + 10, ("t",)))
    assert tier.tierkit_get("k") == Entry(b"v", clock.now + 10, ("t",))
    assert 9_000 < raw_client(redis_url).pttl(tier.key_prefix + "k:k") <= 10_000
    clock.now += 10
    assert tier.tierkit_get("k") is None
    assert tier.tierkit_get_many(["k"]) == {}


def test_setting_an_expired_entry_removes_the_key(tier: RedisTier) -> None:
    tier.tierkit_set("k", Entry(b"old", None, ()))
    tier.tierkit_set("k", Entry(b"new", time.time() - 1, ()))
    assert tier.tierkit_get("k") is None
    tier.tierkit_set_many({"k": Entry(b"v", None, ()), "gone": Entry(b"v", time.time() - 1, ())})
    assert tier.tierkit_get_many(["k", "gone"]) == {"k": Entry(b"v", None, ())}


def test_header_layout(tier: RedisTier, redis_url: str) -> None:
    tier.tierkit_set("k", Entry(b"payload", 2_000_000_000.5, ("a", "é")))
    raw = raw_client(redis_url).get(tier.key_prefix + "k:k")
    assert isinstance(raw, bytes)
    version, expires_at, tags_len = struct.unpack_from("<BdH", raw)
    assert (version, expires_at) == (1, 2_000_000_000.5)
    assert raw[HEADER_SIZE : HEADER_SIZE + tags_len] == b"\x01\x00a\x02\x00\xc3\xa9"
    assert raw[HEADER_SIZE + tags_len :] == b"payload"
    assert unpack(raw, 0.0) == Entry(b"payload", 2_000_000_000.5, ("a", "é"))


@pytest.mark.parametrize(
    "raw",
    [b"", b"plain string", b"\x02" + bytes(10) + b"v", pack(b"v", None, ("tag",))[:-3] + b"\xff\xff\xff"],
)
def test_foreign_or_corrupt_values_are_misses(raw: bytes) -> None:
    assert unpack(raw, 0.0) is None


@pytest.mark.parametrize(
    "raws",
    [
        [pack(b"a", 50.0, ()), pack(b"b", None, ()), pack(b"c", 60.0, ())],  # all live and untagged
        [pack(b"a", 50.0, ()), None, pack(b"c", None, ())],  # a miss
        [pack(b"a", 50.0, ()), pack(b"b", 10.0, ()), pack(b"c", None, ())],  # one expired
        [pack(b"a", 50.0, ()), pack(b"b", 20.0, ()), pack(b"c", None, ())],  # one at its deadline
        [pack(b"a", 50.0, ("t",)), pack(b"b", None, ()), pack(b"c", 60.0, ("u", "v"))],  # tagged
        [pack(b"a", 50.0, ()), b"plain string", b"\x02" + bytes(10) + b"v"],  # not ours
        [b"", b"x", pack(b"c", None, ())],  # too short for a header
    ],
    ids=["live", "miss", "expired", "at-deadline", "tagged", "foreign", "short"],
)
def test_unpack_columns_says_what_unpack_says_value_by_value(raws: list[bytes | None]) -> None:
    keys = ["a", "b", "c"]
    expected = {
        key: entry for key, raw in zip(keys, raws, strict=True) if raw and (entry := unpack(raw, 20.0))
    }
    assert as_entries(unpack_columns(keys, raws, 20.0)) == expected


def test_corrupt_stored_value_is_a_miss(tier: RedisTier, redis_url: str) -> None:
    raw_client(redis_url).set(tier.key_prefix + "k:k", b"not a tierkit value")
    assert tier.tierkit_get("k") is None
    assert tier.tierkit_get_many(["k"]) == {}


def test_tags_roundtrip_and_no_expiry_value(tier: RedisTier) -> None:
    entry = Entry(b"v", None, ("x", "y:z", "[*]"))
    tier.tierkit_set("k", entry)
    assert tier.tierkit_get("k") == entry


class SendCounter:
    """Counts packets this thread sends to Redis: a pipeline or MGET is one send, one round trip.

    Only this thread's: a backplane subscriber left by an earlier test PINGs its server after a
    second of silence, through the same method (a CI run once counted one of those).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sends = 0
        original = Connection.send_packed_command
        counted = threading.get_ident()

        def counting(conn: Connection, command: object, check_health: bool = True) -> None:
            self.sends += threading.get_ident() == counted
            original(conn, command, check_health)

        monkeypatch.setattr(Connection, "send_packed_command", counting)


def test_get_many_and_set_many_take_one_round_trip(tier: RedisTier, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = {
        f"k{i}": Entry(f"v{i}".encode(), time.time() + 60, ("even",) if i % 2 else ()) for i in range(100)
    }
    # Connection set-up (a connect's handshake, a reconnect) happens outside the count, through
    # both paths the batch uses: a write (the pool's) and a read (gets and get_many have a lane).
    tier.tierkit_get("warm-up")
    tier.tierkit_set_many({"warm-up": Entry(b"w", None, ())})
    counter = SendCounter(monkeypatch)
    tier.tierkit_set_many(entries)
    assert counter.sends == 1
    found = tier.tierkit_get_many([*entries, "missing"])
    assert counter.sends == 2
    assert found == entries


def test_get_many_uses_mget(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory()
    tier = make_tier(server.url)
    admin = server.admin()
    tier.tierkit_set_many({f"k{i}": Entry(b"v", None, ()) for i in range(100)})
    admin.config_resetstat()
    assert len(tier.tierkit_get_many([f"k{i}" for i in range(100)])) == 100
    stats = admin.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] == 1
    assert "cmdstat_get" not in stats


def test_empty_batches_do_nothing(tier: RedisTier, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = SendCounter(monkeypatch)
    assert tier.tierkit_get_many([]) == {}
    tier.tierkit_set_many({})
    assert tier.tierkit_invalidate_tags([]) == 0
    assert counter.sends == 0


def test_invalidate_tags(tier: RedisTier) -> None:
    tier.tierkit_set("a", Entry(b"1", None, ("red",)))
    tier.tierkit_set("b", Entry(b"2", time.time() + 60, ("red", "blue")))
    tier.tierkit_set_many({"c": Entry(b"3", None, ("blue",)), "d": Entry(b"4", None, ())})
    assert tier.tierkit_invalidate_tags(["red"]) == 2
    assert tier.tierkit_get_many(["a", "b", "c", "d"]).keys() == {"c", "d"}
    assert tier.tierkit_invalidate_tags(["blue", "nothing"]) == 1
    assert tier.tierkit_get_many(["a", "b", "c", "d"]).keys() == {"d"}
    assert tier.tierkit_invalidate_tags(["red", "blue"]) == 0


def test_invalidation_follows_the_current_tags(tier: RedisTier, redis_url: str) -> None:
    tier.tierkit_set("k", Entry(b"v1", None, ("old", "both")))
    tier.tierkit_set("k", Entry(b"v2", None, ("new", "both")))
    assert tier.tierkit_invalidate_tags(["old"]) == 0
    assert tier.tierkit_get("k") == Entry(b"v2", None, ("new", "both"))
    assert raw_client(redis_url).exists(tier.key_prefix + "t:old") == 0
    tier.tierkit_set("k", Entry(b"v3", None, ()))
    assert tier.tierkit_invalidate_tags(["new", "both"]) == 0
    assert tier.tierkit_get("k") == Entry(b"v3", None, ())
    tier.tierkit_set("k", Entry(b"v4", None, ("both",)))
    assert tier.tierkit_invalidate_tags(["both"]) == 1
    assert tier.tierkit_get("k") is None


def test_invalidate_tag_with_many_members(tier: RedisTier) -> None:
    tier.tierkit_set_many({f"k{i}": Entry(b"v", None, ("bulk",)) for i in range(1234)})
    assert tier.tierkit_invalidate_tags(["bulk"]) == 1234
    assert tier.tierkit_get_many([f"k{i}" for i in range(1234)]) == {}


def test_tag_set_lives_as_long_as_its_longest_member(tier: RedisTier, redis_url: str) -> None:
    client = raw_client(redis_url)
    tag_set = tier.key_prefix + "t:news"
    tier.tierkit_set("a", Entry(b"v", time.time() + 5, ("news",)))
    assert 4_000 < client.pttl(tag_set) <= 5_000
    tier.tierkit_set("b", Entry(b"v", time.time() + 50, ("news",)))
    assert 49_000 < client.pttl(tag_set) <= 50_000
    tier.tierkit_set("c", Entry(b"v", time.time() + 1, ("news",)))
    assert client.pttl(tag_set) > 49_000, "a shorter-lived member must not shorten the set"
    tier.tierkit_set("d", Entry(b"v", None, ("news",)))
    assert client.pttl(tag_set) == -1
    tier.tierkit_set("e", Entry(b"v", time.time() + 1, ("news",)))
    assert client.pttl(tag_set) == -1
    assert tier.tierkit_invalidate_tags(["news"]) == 5
    assert client.exists(tag_set) == 0


def test_tag_set_expires_with_its_members(tier: RedisTier, redis_url: str) -> None:
    tier.tierkit_set("a", Entry(b"v", time.time() + 0.2, ("brief",)))
    time.sleep(0.3)
    assert raw_client(redis_url).exists(tier.key_prefix + "t:brief") == 0


def test_invalidate_prefix_escapes_glob_characters(tier: RedisTier) -> None:
    keys = ["a*b:1", "a*b:2", "axb:3", "a*bc", "q?[x]\\:1", "q?[x]\\:2", "qz[x]\\:3", "other"]
    tier.tierkit_set_many({key: Entry(key.encode(), None, ()) for key in keys})
    assert tier.tierkit_invalidate_prefix("a*b:") == 2
    assert tier.tierkit_invalidate_prefix("q?[x]\\") == 2
    left = tier.tierkit_get_many(keys)
    assert sorted(left) == ["a*bc", "axb:3", "other", "qz[x]\\:3"]
    assert tier.tierkit_invalidate_prefix("nothing") == 0


def test_invalidate_prefix_in_batches(tier: RedisTier) -> None:
    tier.tierkit_set_many({f"p:{i}": Entry(b"v", None, ()) for i in range(1500)})
    tier.tierkit_set("q:1", Entry(b"v", None, ()))
    assert tier.tierkit_invalidate_prefix("p:") == 1500
    assert tier.tierkit_get("q:1") is not None


def test_clear_removes_only_this_namespace(redis_url: str, make_tier: Callable[..., RedisTier]) -> None:
    client = raw_client(redis_url)
    run = unique("clear")
    mine = make_tier(redis_url, namespace=f"{run}-a")
    nested = make_tier(redis_url, namespace=f"{run}-a.b")
    other = make_tier(redis_url, namespace=f"{run}-b")
    star = make_tier(redis_url, key_prefix=f"{run}*:")
    starred = make_tier(redis_url, key_prefix=f"{run}x:")
    foreign, outside = f"foreign:{run}", f"tierkit:{run}-a"
    for tier in (mine, nested, other, star, starred):
        tier.tierkit_set_many({f"k{i}": Entry(b"v", None, ("t",)) for i in range(700)})
    client.set(foreign, b"x")
    client.set(outside, b"not in the namespace either")
    try:
        mine.tierkit_clear()
        star.tierkit_clear()
        assert mine.tierkit_get_many([f"k{i}" for i in range(700)]) == {}
        assert client.exists(mine.key_prefix + "t:t") == 0
        assert mine.tierkit_invalidate_tags(["t"]) == 0
        for kept in (nested, other, starred):
            assert len(kept.tierkit_get_many([f"k{i}" for i in range(700)])) == 700
        assert client.get(foreign) == b"x"
        assert client.exists(outside) == 1
    finally:
        client.delete(foreign, outside)


def test_two_tiers_with_the_same_namespace_share_entries(
    redis_url: str, make_tier: Callable[..., RedisTier]
) -> None:
    namespace = unique("shared")
    writer = make_tier(redis_url, namespace=namespace)
    reader = make_tier(redis_url, namespace=namespace)
    writer.tierkit_set("k", Entry(b"v", None, ("t",)))
    assert reader.tierkit_get("k") == Entry(b"v", None, ("t",))
    assert reader.tierkit_invalidate_tags(["t"]) == 1
    assert writer.tierkit_get("k") is None
