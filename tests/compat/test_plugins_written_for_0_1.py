"""Backward compatibility: a tier written against tierkit 0.1.0's documented API works unchanged."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tierkit import MISSING, Cache
from tierkit._contract import check_tier_class
from tierkit.testing import FakeClock, TierConformance, make_context

from .dict_tier_v0_1 import DictOptions, DictTier


def test_the_validator_accepts_it_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_tier_class(DictTier) == []


def test_it_runs_in_a_chain_between_memory_and_file(clock: FakeClock, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = Cache(
            order=["memory", "dict", "file"],
            tiers={
                "file": {"options": {"directory": str(tmp_path)}},
                "dict": {"options": {"max_entries": 5}},
            },
            clock=clock,
            kinds={"dict": DictTier},
        )
        assert cache.set("k", {"v": 1}, ttl=60, tags=["t"], persistent=True) is True
        cache.clear(tiers=["memory"])
        assert cache.get("k") == {"v": 1}
        assert cache.stats()["tiers"]["dict"]["hits"] == 1
        assert cache.invalidate(tags=["t"]) == 3
        assert cache.get("k", MISSING) is MISSING
        assert cache.health().tiers["dict"].status == "ok"
        assert cache.inspect("k")["dict"].status == "absent"
        assert cache.stats()["tiers"]["dict"]["errors"] == 0


class TestTheConformanceKitStillPassesIt(TierConformance):
    """The conformance class as the 0.1.0 tutorial wrote it."""

    supports_batch = False  # no tierkit_get_many / tierkit_set_many: the chain loops over get / set

    @pytest.fixture
    def tier(self, clock: FakeClock) -> DictTier:
        return DictTier(DictOptions(), make_context(clock))
