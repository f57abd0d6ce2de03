"""Events: one structured record each on ``tierkit.events``, with the documented fields."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from tierkit import Cache, Entry
from tierkit._events import LEVELS
from tierkit.testing import FakeClock

from ._tiers import KINDS, DictTier

FIELDS = ("tierkit_event", "tier", "kind", "namespace", "reason")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "monitoring.md"


@pytest.fixture
def events(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="tierkit.events")
    return caplog


def emitted(events: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    found = [r for r in events.records if getattr(r, "tierkit_event", None) == event]
    for record in found:
        assert all(hasattr(record, name) for name in FIELDS), record.__dict__
        assert record.levelno == LEVELS[event]  # type: ignore[index]
        assert record.name == "tierkit.events"
    return found


def failing_chain(clock: FakeClock) -> tuple[Cache, DictTier]:
    tiers = {
        "remote1": {"kind": "remote", "breaker": {"threshold": 2, "cooldown": 1}},
        "dict2": {"kind": "dict"},
    }
    cache = Cache(
        namespace="shop", order=["memory", "remote1", "dict2"], tiers=tiers, clock=clock, kinds=KINDS
    )
    tier = cache.chain.slots[1].tier
    assert isinstance(tier, DictTier)
    return cache, tier


def test_breaker_opened_then_closed(clock: FakeClock, events: pytest.LogCaptureFixture) -> None:
    cache, remote = failing_chain(clock)
    remote.failing = True
    for n in range(4):
        cache.clear(tiers=["memory"])
        cache.get(f"k{n}")
    [opened] = emitted(events, "breaker_opened")
    assert (opened.tier, opened.kind, opened.namespace) == ("remote1", "remote", "shop")  # type: ignore[attr-defined]
    assert opened.reason == "ConnectionError: remote1 is down"  # type: ignore[attr-defined]
    remote.failing = False
    clock.advance(1.5)
    cache.get("again")
    [closed] = emitted(events, "breaker_closed")
    assert closed.tier == "remote1"  # type: ignore[attr-defined]


def test_tier_left_out(events: pytest.LogCaptureFixture) -> None:
    class Broken(DictTier):
        def __init__(self, *args: object) -> None:
            raise OSError("disk gone")

    cache = Cache(order=None, kinds={**KINDS, "memory": Broken})
    [left] = emitted(events, "tier_left_out")
    assert left.tier == "memory" and "failed to start: OSError: disk gone" in left.reason  # type: ignore[attr-defined]
    cache.close()


def test_corrupt_entry_removed(clock: FakeClock, events: pytest.LogCaptureFixture) -> None:
    cache = Cache(order=["bytes1"], tiers={"bytes1": {"kind": "bytes"}}, clock=clock, kinds=KINDS)
    DictTier.stores["bytes1"]["k"] = Entry(b"e{not json", None, ())
    assert cache.get("k") is None
    [removed] = emitted(events, "corrupt_entry_removed")
    assert removed.tier == "bytes1" and removed.reason.startswith("key 'k': ")  # type: ignore[attr-defined]


def test_store_moved_aside(tmp_path: Path, events: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "default"
    store.mkdir()
    (store / "cache.sqlite3").write_bytes(b"this is not a database" * 100)
    cache = Cache(order=["file"], tiers={"file": {"options": {"directory": str(tmp_path)}}})
    [moved] = emitted(events, "store_moved_aside")
    assert moved.tier == "file" and "moved" in moved.reason  # type: ignore[attr-defined]
    cache.close()


def test_invalidations_pending(clock: FakeClock, events: pytest.LogCaptureFixture) -> None:
    cache, remote = failing_chain(clock)
    remote.failing = True
    assert cache.set("k", 1) is False
    [pending] = emitted(events, "invalidations_pending")
    assert pending.tier == "remote1"  # type: ignore[attr-defined]
    cache.set("j", 2)
    assert len(emitted(events, "invalidations_pending")) == 1  # once per episode, not per write


def test_the_documented_event_table_is_the_code_s() -> None:
    table = DOCS.read_text().split("<!-- events-table -->")[1].split("<!-- /events-table -->")[0]
    documented = dict(re.findall(r"^\| `(\w+)`\s+\| (\w+)", table, re.M))
    assert documented == {event: logging.getLevelName(level) for event, level in LEVELS.items()}
