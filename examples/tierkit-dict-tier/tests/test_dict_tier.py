"""The dict tier against tierkit's conformance suite, plus what is particular to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tierkit_dict_tier import DictTier

import tierkit
from tierkit import Entry
from tierkit.testing import FakeClock, TierConformance, make_context


class TestDictTierConformance(TierConformance):
    """Every test of the suite, run against a fresh DictTier."""

    supports_batch = False  # no tierkit_get_many / tierkit_set_many: the chain loops over get / set

    @pytest.fixture
    def tier(self, clock: FakeClock) -> DictTier:
        return DictTier(DictTier.Options(), make_context(clock))

    @pytest.fixture
    def make_tier(self, clock: FakeClock) -> Callable[[str], DictTier]:
        """Each instance is its own storage: another namespace is another instance."""
        return lambda namespace: DictTier(DictTier.Options(), make_context(clock, namespace=namespace))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_the_oldest_entry_goes_first(clock: FakeClock) -> None:
    tier = DictTier(DictTier.Options(max_entries=2), make_context(clock))
    for key in ("a", "b", "c"):
        tier.tierkit_set(key=key, entry=Entry(key.upper(), None, ()))
    assert tier.tierkit_get(key="a") is None
    assert tier.tierkit_get(key="c") == Entry("C", None, ())
    assert tier.tierkit_stats()["evictions"] == 1


def test_an_expired_entry_is_a_miss_and_is_removed(clock: FakeClock) -> None:
    tier = DictTier(DictTier.Options(), make_context(clock))
    tier.tierkit_set(key="k", entry=Entry("v", clock() + 10, ()))
    clock.advance(10)
    assert tier.tierkit_get(key="k") is None
    assert tier.tierkit_stats()["entries"] == 0


def test_an_entry_stored_already_expired_is_never_served(clock: FakeClock) -> None:
    """The chain may hand over an entry whose deadline has passed (a backfill that raced the clock)."""
    tier = DictTier(DictTier.Options(), make_context(clock))
    tier.tierkit_set(key="k", entry=Entry("stale", clock() - 1, ()))
    assert tier.tierkit_get(key="k") is None


def test_invalidation_counts_the_entries_this_tier_removed(clock: FakeClock) -> None:
    tier = DictTier(DictTier.Options(), make_context(clock))
    tier.tierkit_set(key="a", entry=Entry(1, None, ("t",)))
    tier.tierkit_set(key="b", entry=Entry(2, None, ("t", "u")))
    assert tier.tierkit_invalidate_tags(tags=["t", "u"]) == 2  # two entries, whatever the tags
    assert tier.tierkit_invalidate_tags(tags=["t"]) == 0  # nothing left to remove


def test_in_a_chain_between_memory_and_file(clock: FakeClock, tmp_path: Path) -> None:
    cache = tierkit.Cache(
        order=["memory", "dict", "file"],
        tiers={"file": {"options": {"directory": str(tmp_path)}}},
        kinds={"dict": DictTier},  # the class itself: no need to install the package for this test
        clock=clock,
    )
    cache.set("greeting", {"text": "hello"}, ttl=60)
    cache.clear(tiers=["memory"])
    assert cache.get("greeting") == {"text": "hello"}
    assert cache.stats()["tiers"]["dict"]["hits"] == 1
    cache.close()
