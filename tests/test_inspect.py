"""``Cache.inspect(key)``: where a key is, tier by tier, without moving or counting anything."""

from __future__ import annotations

from tierkit import Cache, KeyReport
from tierkit.testing import FakeClock

from ._tiers import KINDS, DictTier


def test_inspect_reports_every_tier_without_backfilling_or_counting(clock: FakeClock) -> None:
    DictTier.stores.clear()
    tiers = {"bytes1": {"kind": "bytes"}, "remote2": {"kind": "remote", "breaker": {"threshold": 1}}}
    cache = Cache(order=["memory", "bytes1", "remote2", "redis"], tiers=tiers, clock=clock, kinds=KINDS)
    cache.set("k", {"rows": [1, 2]}, ttl=100, tags=["t"])
    cache.clear(tiers=["memory"])
    clock.advance(40)
    remote = cache.chain.slots[2].tier
    remote.failing = True
    before = cache.stats()
    reports = cache.inspect("k")
    assert list(reports) == ["memory", "bytes1", "remote2", "redis"]
    assert reports["memory"] == KeyReport("memory", "memory", "absent", breaker="closed")
    held = reports["bytes1"]
    assert (held.status, held.ttl, held.tags, held.breaker) == ("held", 60.0, ("t",), "closed")
    assert held.size == len(DictTier.stores["bytes1"]["k"].value)
    assert reports["remote2"].status == "unavailable" and "remote2 is down" in reports["remote2"].reason
    assert reports["redis"].status == "skipped" and reports["redis"].reason.startswith("not configured")
    after = cache.stats()
    assert after["tiers"]["memory"]["sets"] == before["tiers"]["memory"]["sets"]  # nothing backfilled
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])
    assert cache.inspect("other")["bytes1"].status == "absent"


def test_object_tiers_report_an_estimated_size(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    cache.set("big", list(range(1000)))
    report = cache.inspect("big")["memory"]
    assert report.status == "held" and report.ttl is None and report.size is not None and report.size > 8000
