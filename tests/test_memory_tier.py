"""The memory tier: conformance, LRU bounds, size bound, copy-on-read, front door."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from tierkit import Entry
from tierkit.testing import FakeClock, TierConformance, make_context
from tierkit.tiers.memory import MemoryOptions, MemoryTier, estimate_size


def build(clock: FakeClock, **options: Any) -> MemoryTier:
    return MemoryTier(MemoryOptions(**options), make_context(clock))


class TestMemoryConformance(TierConformance):
    options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def tier(self, clock: FakeClock) -> MemoryTier:
        return build(clock, **self.options)

    @pytest.fixture
    def make_tier(self, clock: FakeClock) -> Callable[[str], MemoryTier]:
        """Each instance is its own storage: another namespace is another instance."""
        return lambda namespace: MemoryTier(
            MemoryOptions(**self.options), make_context(clock, namespace=namespace)
        )


class TestMemoryConformanceCopyOnRead(TestMemoryConformance):
    options: ClassVar[dict[str, Any]] = {"copy_on_read": True}


def test_lru_evicts_least_recently_used(clock: FakeClock) -> None:
    tier = build(clock, max_entries=3)
    for key in "abc":
        tier.tierkit_set(key, Entry(key, None, ()))
    tier.tierkit_get("a")  # a becomes most recent; b is now the oldest
    tier.tierkit_set("d", Entry("d", None, ()))
    assert tier.tierkit_get("b") is None
    assert [k for k in "acd" if tier.tierkit_get(k) is not None] == ["a", "c", "d"]
    assert tier.tierkit_stats()["evictions"] == 1


def test_get_many_touches_hits_and_expires_like_get(clock: FakeClock) -> None:
    tier = build(clock, max_entries=3)
    tier.tierkit_set("a", Entry("a", None, ()))
    tier.tierkit_set("b", Entry("b", clock() + 5, ()))
    tier.tierkit_set("c", Entry("c", None, ("t",)))
    found = tier.tierkit_get_many(["a", "x", "b"])
    assert found == {"a": Entry("a", None, ()), "b": Entry("b", clock() + 5, ())}
    # a and b were read (most recent now), so the batch evicts c (and its tag) and then a
    tier.tierkit_set_many({"d": Entry("d", None, ()), "e": Entry("e", None, ())})
    assert list(tier._data) == ["b", "d", "e"]
    assert tier._tags == {}
    assert tier.tierkit_stats()["evictions"] == 2
    clock.advance(6)
    assert tier.tierkit_get_many(["b", "d"]) == {"d": Entry("d", None, ())}
    assert "b" not in tier._data


def test_eviction_cleans_the_tag_index(clock: FakeClock) -> None:
    tier = build(clock, max_entries=1)
    tier.tierkit_set("a", Entry(1, None, ("t",)))
    tier.tierkit_set("b", Entry(2, None, ()))
    assert tier._tags == {}
    assert tier.tierkit_invalidate_tags(["t"]) == 0


def test_max_bytes_bounds_the_estimated_size(clock: FakeClock) -> None:
    tier = build(clock, max_bytes=20_000)
    for n in range(50):
        tier.tierkit_set(f"k{n}", Entry("x" * 1000, None, ()))
    stats = tier.tierkit_stats()
    assert stats["bytes"] <= 20_000
    assert 10 <= stats["entries"] < 50
    assert tier.tierkit_get("k49") is not None


def test_a_value_larger_than_max_bytes_is_not_kept(clock: FakeClock) -> None:
    tier = build(clock, max_bytes=1000)
    tier.tierkit_set("big", Entry("x" * 5000, None, ()))
    assert tier.tierkit_get("big") is None
    assert tier.tierkit_stats()["bytes"] == 0


def test_copy_on_read_protects_the_cached_object(clock: FakeClock) -> None:
    tier = build(clock, copy_on_read=True)
    original = {"rows": [1, 2]}
    tier.tierkit_set("k", Entry(original, None, ()))
    original["rows"].append(3)  # the caller mutates what it stored
    got = tier.tierkit_get("k")
    assert got is not None
    got.value["rows"].append(4)  # and what it read
    again = tier.tierkit_get("k")
    assert again is not None and again.value == {"rows": [1, 2]}


def test_expired_entries_are_removed_lazily(clock: FakeClock) -> None:
    tier = build(clock)
    tier.tierkit_set("k", Entry(1, clock() + 5, ("t",)))
    clock.advance(5)
    assert tier.tierkit_get("k") is None
    assert tier.tierkit_stats() | {} == tier.tierkit_stats()
    assert tier.tierkit_stats()["entries"] == 0
    assert tier.tierkit_stats()["expired"] == 1


def test_front_door_serves_hits_and_delegates_the_rest(clock: FakeClock) -> None:
    tier = build(clock)

    class Counters:
        hits = 0

    misses: list[str] = []
    counters = Counters()
    get = tier.front_door(lambda key, default: misses.append(key) or default, counters)
    assert get is not None
    tier.tierkit_set("k", Entry("v", clock() + 10, ()))
    assert get("k") == "v"
    assert get("absent", "dflt") == "dflt"
    clock.advance(10)
    assert get("k", "gone") == "gone"
    assert misses == ["absent", "k"]
    assert counters.hits == 1


def test_front_door_sends_a_hit_to_on_miss_once_a_catch_up_is_due(clock: FakeClock) -> None:
    """``fresh.until``: past it the chain applies other processes' changes before serving (the backplane)."""
    tier = build(clock)

    class Counters:
        hits = 0

    class Fresh:
        until = clock() + 1

    asked: list[str] = []
    counters = Counters()
    get = tier.front_door(lambda key, default: asked.append(key) or "below", counters, fresh=Fresh())
    assert get is not None
    tier.tierkit_set("k", Entry("v", None, ()))  # no TTL: the clock is read all the same
    assert get("k") == "v" and asked == []
    clock.advance(1)
    assert get("k") == "below" and asked == ["k"], "due: the hit goes to on_miss"
    Fresh.until = clock() + 1
    assert get("k") == "v" and counters.hits == 2


def test_no_front_door_with_copy_on_read(clock: FakeClock) -> None:
    assert build(clock, copy_on_read=True).front_door(lambda k, d: d, object()) is None  # type: ignore[arg-type]


def test_estimate_size_counts_shared_objects_once() -> None:
    shared = "y" * 10_000
    assert estimate_size([shared, shared]) < 2 * estimate_size(shared)


@pytest.mark.parametrize("options", [{"max_entries": 0}, {"max_bytes": -1}, {"bogus": 1}])
def test_bad_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MemoryOptions(**options)


def test_set_many_replacing_a_tagged_entry_forgets_its_tags_and_makes_it_recent(clock: FakeClock) -> None:
    tier = build(clock, max_entries=4)
    tier.tierkit_set("a", Entry(1, None, ("t",)))
    tier.tierkit_set("b", Entry(2, None, ()))
    tier.tierkit_set_many({"a": Entry(10, None, ()), "c": Entry(3, None, ())})  # untagged batch
    assert tier.tierkit_invalidate_tags(["t"]) == 0
    tier.tierkit_set_many({"d": Entry(4, None, ()), "e": Entry(5, None, ())})  # evicts the oldest: b
    assert [key for key in "abcde" if tier.tierkit_get(key) is not None] == ["a", "c", "d", "e"]


def test_make_room_evicts_what_the_coming_entries_would(clock: FakeClock) -> None:
    tier = build(clock, max_entries=4)
    for key in "abcd":
        tier.tierkit_set(key, Entry(key, None, ("t",) if key == "a" else ()))
    tier.tierkit_get("a")  # most recent now: b, c are the two oldest
    tier.make_room(2)
    assert list(tier._data) == ["d", "a"] and tier.tierkit_stats()["evictions"] == 2
    tier.make_room(1)  # room for one is there already
    assert list(tier._data) == ["d", "a"]
    tier.make_room(10)  # more than it holds: everything goes, tag index included
    assert not tier._data and tier._tags == {} and tier.tierkit_stats()["evictions"] == 4
    tier.tierkit_set_many({k: Entry(k, None, ()) for k in "wxyz"})
    assert tier.tierkit_stats()["evictions"] == 4  # the batch then fits without evicting


def test_make_room_keeps_the_byte_count_of_a_size_bounded_tier(clock: FakeClock) -> None:
    tier = build(clock, max_entries=3, max_bytes=100_000)
    for key in "abc":
        tier.tierkit_set(key, Entry("x" * 1000, None, ()))
    before = tier.tierkit_stats()["bytes"]
    tier.make_room(1)
    assert list(tier._data) == ["b", "c"]
    assert tier.tierkit_stats()["bytes"] == before * 2 // 3
