"""The chain: order, read-through with backfill, write policies, TTL caps, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

import tierkit
from tierkit import MISSING, Cache
from tierkit._codec import JsonCodec
from tierkit.testing import FakeClock

from ._tiers import KINDS, DictTier


@pytest.fixture(autouse=True)
def fresh_stores() -> None:
    DictTier.stores.clear()


def chain(clock: FakeClock, order: list[str], **tiers: dict[str, Any]) -> Cache:
    settings = {name: {"kind": name.rstrip("0123456789")} for name in order if name != "memory"}
    for name, extra in tiers.items():
        settings.setdefault(name, {}).update(extra)
    return Cache(order=order, tiers=settings, clock=clock, kinds=KINDS)


def store(name: str) -> dict[str, tierkit.Entry]:
    return DictTier.stores[name]


def test_chain_follows_the_configured_order(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "bytes1", "dict2", "bytes3"])
    assert cache.tiers == ("memory", "bytes1", "dict2", "bytes3")
    assert list(cache.health().tiers) == ["memory", "bytes1", "dict2", "bytes3"]


def test_order_from_environment_and_toml(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    with open("tierkit.toml", "w") as f:
        f.write('order = ["memory", "dict1"]\n[tiers.dict1]\nkind = "dict"\n[tiers.bytes1]\nkind = "bytes"\n')
    assert Cache(clock=clock, kinds=KINDS).tiers == ("memory", "dict1")
    monkeypatch.setenv("TIERKIT_ORDER", "bytes1,memory")
    assert Cache(clock=clock, kinds=KINDS).tiers == ("bytes1", "memory")


def test_first_hit_wins_and_is_copied_upward_with_the_remaining_ttl(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "dict1", "bytes2"])
    start = clock()
    cache.set("k", {"v": 1}, ttl=100)
    cache.clear(tiers=["memory", "dict1"])
    clock.advance(30)
    assert cache.get("k") == {"v": 1}
    assert cache.stats()["tiers"]["bytes2"]["hits"] == 1
    assert store("dict1")["k"].expires_at == start + 100  # remaining 70 s, not a fresh 100
    assert cache.get("k") == {"v": 1}
    assert cache.stats()["tiers"]["memory"]["hits"] == 1
    clock.advance(70)
    assert cache.get("k") is None


def test_backfill_respects_max_ttl_of_the_upper_tier(clock: FakeClock) -> None:
    cache = chain(clock, ["dict1", "bytes2"], dict1={"max_ttl": 10})
    cache.set("k", "v", ttl=100)
    assert store("dict1")["k"].expires_at == clock() + 10
    assert store("bytes2")["k"].expires_at == clock() + 100
    clock.advance(11)
    assert cache.get("k") == "v"  # from bytes2
    assert store("dict1")["k"].expires_at == clock() + 10


def test_backfill_copies_tags_so_invalidation_reaches_upper_tiers(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "bytes1"])
    cache.set("k", 1, tags=["t"])
    cache.clear(tiers=["memory"])
    assert cache.get("k") == 1  # backfills memory
    assert cache.invalidate(tags=["t"]) == 2
    assert cache.get("k") is None


def test_write_policies(clock: FakeClock) -> None:
    cache = chain(
        clock,
        ["memory", "dict1", "bytes2", "dict3"],
        bytes2={"write": "persistent"},
        dict3={"write": "never"},
    )
    store("dict3")["ro"] = tierkit.Entry("read-only value", None, ())
    cache.set("plain", 1)
    cache.set("kept", 2, persistent=True)
    assert "plain" in store("dict1") and "plain" not in store("bytes2")
    assert "kept" in store("dict1") and "kept" in store("bytes2")
    assert "plain" not in store("dict3") and "kept" not in store("dict3")
    assert cache.get("ro") == "read-only value"  # read through, and backfilled into dict1
    assert cache.delete("ro") is True  # the backfilled copies go
    assert "ro" not in store("dict1")
    assert "ro" in store("dict3")  # read-only tiers are never written, deletes included


def test_persistent_tier_is_not_backfilled_by_ordinary_reads(clock: FakeClock) -> None:
    cache = chain(clock, ["bytes1", "dict2"], bytes1={"write": "persistent"})
    store("dict2")["k"] = tierkit.Entry("v", None, ())
    assert cache.get("k") == "v"
    assert "k" not in store("bytes1")


def test_none_is_a_value_and_missing_tells_it_apart(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "bytes1"])
    cache.set("none", None)
    assert cache.get("none", "default") is None
    assert cache.get("absent", "default") == "default"
    assert cache.get("absent", MISSING) is MISSING
    cache.clear(tiers=["memory"])
    assert cache.get("none", MISSING) is None  # decoded from the byte tier
    assert cache.get_many(["none", "absent"]) == {"none": None}
    assert cache.get_or_set("none", lambda: pytest.fail("factory must not run for a cached None")) is None


def test_encode_once_per_set_decode_once_per_hit_and_backfill_reuses_bytes(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"encode": 0, "decode": 0}
    for name in calls:
        original = getattr(JsonCodec, name)

        def counted(self: JsonCodec, *args: Any, _name: str = name, _original: Any = original) -> Any:
            calls[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(JsonCodec, name, counted)
    cache = chain(clock, ["memory", "bytes1", "bytes2"])
    cache.set("k", {"rows": [1, 2, 3]})
    assert calls["encode"] == 1
    assert store("bytes1")["k"].value is store("bytes2")["k"].value
    cache.clear(tiers=["memory", "bytes1"])
    assert cache.get("k") == {"rows": [1, 2, 3]}
    assert calls == {"encode": 1, "decode": 1}
    assert store("bytes1")["k"].value is store("bytes2")["k"].value  # backfilled with the same bytes
    assert Cache(order=["memory"], clock=clock).chain.encode_plain is False


def test_unserializable_value_raises_before_anything_is_written(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "bytes1"])
    with pytest.raises(TypeError, match=r"cannot cache key 'k': value of type builtins.object"):
        cache.set("k", object())
    assert cache.get("k", MISSING) is MISSING
    assert "k" not in store("bytes1")


def test_fast_path_returns_what_the_pluggy_firstresult_path_returns(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "dict1", "bytes2"])
    cache.set("everywhere", 1)
    store("dict1")["middle"] = tierkit.Entry("from dict1", None, ())
    store("bytes2")["bottom"] = tierkit.Entry(JsonCodec().encode("bottom", ("t", 1)), None, ())
    for key in ("everywhere", "middle", "bottom", "absent"):
        reference = cache.chain.pm.hook.tierkit_get(key=key)
        expected = MISSING
        if reference is not None:
            value = reference.value
            expected = JsonCodec().decode(value) if isinstance(value, bytes) else value
        assert cache.get(key, MISSING) == expected, key


def test_get_many_and_set_many_batch_per_tier(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "bytes1"])
    cache.set_many({f"k{n}": n for n in range(10)}, ttl=60, tags=["batch"])
    cache.clear(tiers=["memory"])
    cache.set("k0", "fresh in memory")
    assert cache.get_many(["k0", "k1", "k2", "absent", "k1"]) == {"k0": "fresh in memory", "k1": 1, "k2": 2}
    stats = cache.stats()["tiers"]
    assert stats["memory"]["hits"] == 1 and stats["bytes1"]["hits"] == 2
    assert cache.get("k2") == 2 and cache.stats()["tiers"]["memory"]["hits"] == 2  # backfilled
    assert cache.invalidate(tags=["batch"]) >= 10


def test_invalidate_by_tag_and_prefix_reaches_every_tier(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "dict1", "bytes2"], bytes2={"write": "persistent"})
    cache.set("recipes:page:1", [1], tags=["recipes"], persistent=True)
    cache.set("recipes:page:2", [2], persistent=True)
    cache.set("users:1", "u", tags=["users"], persistent=True)
    assert cache.invalidate(tags=["recipes"]) == 3
    assert cache.get("recipes:page:2") == [2]
    assert cache.invalidate(prefix="recipes:") == 3
    assert cache.get("recipes:page:2") is None
    assert cache.get("users:1") == "u"
    assert all("users:1" in store(n) for n in ("dict1", "bytes2"))


def test_bad_arguments_raise_clear_errors(clock: FakeClock) -> None:
    cache = chain(clock, ["memory"])
    with pytest.raises(TypeError, match="cache keys must be non-empty str"):
        cache.get(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache keys must be non-empty str"):
        cache.set("", 1)
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        cache.set("k", 1, ttl=-1)
    with pytest.raises(TypeError, match="tags must be a list of str"):
        cache.set("k", 1, tags="recipes")
    with pytest.raises(ValueError, match="needs tags"):
        cache.invalidate()
    with pytest.raises(ValueError, match="not in the chain: nope"):
        cache.clear(tiers=["nope"])
    assert cache.get("k", MISSING) is MISSING


def test_default_ttl_applies_when_set_gives_none(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], default_ttl=5, clock=clock)
    cache.set("k", 1)
    clock.advance(5)
    assert cache.get("k") is None


def test_failing_tier_never_reaches_the_caller_and_is_skipped_by_the_breaker(clock: FakeClock) -> None:
    cache = chain(
        clock,
        ["memory", "remote1", "dict2"],
        remote1={"breaker": {"threshold": 3, "cooldown": 0.05, "max_cooldown": 0.05}},
    )
    remote = cache.chain.slots[1].tier
    remote.failing = True
    for n in range(10):
        cache.set(f"k{n}", n)
        cache.clear(tiers=["memory"])
        assert cache.get(f"k{n}") == n  # served by dict2 although remote1 is down
    assert remote.calls == 3, "after 3 failures the breaker stops calling the tier"
    report = cache.health().tiers["remote1"]
    assert report.status == "down" and report.details["breaker"] == "open"
    assert cache.stats()["tiers"]["remote1"]["errors"] == 3
    remote.failing = False
    clock.advance(0.06)  # the breaker runs on the cache's clock
    cache.set("back", 1)  # the probe succeeds and closes the breaker
    assert cache.health().tiers["remote1"].status == "ok"
    assert "back" in store("remote1")


def test_a_miss_between_failures_resets_the_breakers_count(clock: FakeClock) -> None:
    """The breaker opens on *consecutive* failures: an answered get (a miss too) ends the streak."""
    cache = chain(clock, ["memory", "remote1", "dict2"], remote1={"breaker": {"threshold": 2}})
    remote = cache.chain.slots[1].tier
    for n in range(3):
        remote.failing = True
        assert cache.get(f"absent{n}") is None
        remote.failing = False
        assert cache.get(f"absent{n}") is None  # remote1 answers: a miss
    assert cache.health().tiers["remote1"].details["breaker"] == "closed"
    assert remote.calls == 6, "never skipped: no two failures in a row"


def test_health_is_worst_of_configured_tiers(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "dict1"], dict1={"options": {"fail": True}})
    health = cache.health()
    assert health.status == "down"
    assert health.tiers["dict1"].reason == "switched off"
    assert health.to_dict()["tiers"]["memory"]["status"] == "ok"


def test_get_or_set_runs_the_factory_once_under_50_threads(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "bytes1"])
    calls = 0
    gate = threading.Barrier(50)

    def factory() -> list[int]:
        nonlocal calls
        calls += 1
        time.sleep(0.2)
        return [1, 2, 3]

    results: list[Any] = []

    def worker() -> None:
        gate.wait()
        results.append(cache.get_or_set("hot", factory, ttl=60))

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == 1
    assert results == [[1, 2, 3]] * 50


def test_get_or_set_shares_the_factory_error_and_caches_nothing(clock: FakeClock) -> None:
    cache = chain(clock, ["memory"])

    def boom() -> int:
        raise RuntimeError("backend exploded")

    with pytest.raises(RuntimeError, match="backend exploded"):
        cache.get_or_set("k", boom)
    assert cache.get("k", MISSING) is MISSING
    assert cache.get_or_set("k", lambda: 7) == 7


def test_corrupt_bytes_are_a_miss_removed_and_counted(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "bytes1", "dict2"])
    store("bytes1")["k"] = tierkit.Entry(b"e{not json", None, ())
    store("dict2")["k"] = tierkit.Entry("good", None, ())
    assert cache.get("k") == "good"
    assert cache.stats()["tiers"]["bytes1"]["corrupt"] == 1
    assert "k" not in store("bytes1") or store("bytes1")["k"].value != b"e{not json"


def test_stats_count_hits_misses_and_sets(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "bytes1"])
    cache.set("k", 1)
    cache.get("k")
    cache.get("absent")
    stats = cache.stats()
    assert (stats["gets"], stats["hits"], stats["misses"], stats["hit_ratio"]) == (2, 1, 1, 0.5)
    assert stats["tiers"]["memory"]["sets"] == 1 and stats["tiers"]["bytes1"]["misses"] == 1


def test_close_releases_tiers_once(clock: FakeClock) -> None:
    with chain(clock, ["memory"]) as cache:
        cache.set("k", 1)
    cache.close()
    assert cache.chain.pm.get_plugins() == set()


def test_get_cache_is_built_once() -> None:
    assert tierkit.get_cache() is tierkit.get_cache()


def test_a_value_whose_class_is_not_importable_here_is_a_miss_and_kept(clock: FakeClock) -> None:
    cache = chain(clock, ["memory", "bytes1"])
    foreign = b'e{"\\u0000t":"dataclass","v":{"a":1},"c":"app_only_module:Thing"}'
    store("bytes1")["k"] = tierkit.Entry(foreign, None, ())
    assert cache.get("k", MISSING) is MISSING
    assert store("bytes1")["k"].value == foreign  # another process can still read it
    stats = cache.stats()["tiers"]["bytes1"]
    assert (stats["corrupt"], stats["errors"]) == (0, 1)


class RoomyTier(DictTier):
    """An object tier that makes room: records each count, and what the codec had decoded by then."""

    rooms: ClassVar[list[tuple[int, int]]] = []
    decoded: ClassVar[list[int]] = []
    refuse = False

    def make_room(self, count: int) -> None:
        if self.refuse:
            raise MemoryError("no room")
        self.rooms.append((count, len(self.decoded)))


@pytest.fixture
def roomy(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Cache:
    """roomy1 (makes room) over dict2 (an object tier that does not) over bytes3; decodes counted."""
    RoomyTier.rooms.clear()
    RoomyTier.decoded.clear()
    cache = Cache(
        order=["roomy1", "dict2", "bytes3"],
        tiers={"roomy1": {"kind": "roomy"}, "dict2": {"kind": "dict"}, "bytes3": {"kind": "bytes"}},
        clock=clock,
        kinds={**KINDS, "roomy": RoomyTier},
    )
    codec = cache.chain.codec
    decode_many = codec.decode_many

    def counted(payloads: Sequence[bytes]) -> list[Any]:
        RoomyTier.decoded.append(len(payloads))
        return decode_many(payloads)

    monkeypatch.setattr(codec, "decode_many", counted)
    return cache


def test_get_many_makes_room_for_the_hits_before_decoding_them(roomy: Cache) -> None:
    codec = JsonCodec()
    store("bytes3").update({f"k{n}": tierkit.Entry(codec.encode("k", n), None, ()) for n in range(3)})
    assert roomy.get_many(["k0", "k1", "k2", "absent", "gone"]) == {"k0": 0, "k1": 1, "k2": 2}
    assert RoomyTier.rooms == [(3, 0)]  # the hits, not the keys asked; nothing decoded yet
    assert RoomyTier.decoded == [3] and set(store("roomy1")) == {"k0", "k1", "k2"}
    assert roomy.get_many(["absent", "gone"]) == {}
    assert RoomyTier.rooms == [(3, 0)]  # no hit: nothing made room for
    store("dict2")["k3"] = tierkit.Entry(3, None, ())
    assert roomy.get_many(["k3"]) == {"k3": 3}
    assert RoomyTier.rooms == [(3, 0)]  # an object tier's hits need no decoding: copied as they are


def test_a_tier_without_make_room_or_with_the_default_is_not_asked(roomy: Cache) -> None:
    assert [slot.make_room is not None for slot in roomy.chain.slots] == [True, False, False]
    assert roomy.chain.room_makers[2] == ((roomy.chain.slots[0], roomy.chain.slots[0].make_room),)


def test_a_failing_make_room_is_the_tier_failing_and_the_read_goes_on(roomy: Cache) -> None:
    roomy.chain.slots[0].tier.refuse = True
    store("bytes3")["k"] = tierkit.Entry(JsonCodec().encode("k", "v"), None, ())
    assert roomy.get_many(["k"]) == {"k": "v"}
    assert roomy.stats()["tiers"]["roomy1"]["errors"] == 1
    assert "k" in store("roomy1")  # still copied up


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_aget_many_makes_room_on_non_blocking_tiers_only(roomy: Cache) -> None:
    store("bytes3")["k"] = tierkit.Entry(JsonCodec().encode("k", "v"), None, ())
    assert await roomy.aget_many(["k"]) == {"k": "v"}
    assert RoomyTier.rooms == []  # DictTier declares nothing: it may block, so not called on the loop
    RoomyTier.blocking = False
    try:
        fresh = Cache(
            order=["roomy1", "bytes3"],
            tiers={"roomy1": {"kind": "roomy"}, "bytes3": {"kind": "bytes"}},
            clock=roomy.chain.clock,
            kinds={**KINDS, "roomy": RoomyTier},
        )
        store("roomy1").clear()
        assert await fresh.aget_many(["k"]) == {"k": "v"}
        assert [count for count, _ in RoomyTier.rooms] == [1]
    finally:
        del RoomyTier.blocking
