"""The session tier's hooks inside a bound session: LRU, TTL, tags, prefixes, scope."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pluggy
import pytest
from pydantic import ValidationError
from tierkit_session import SessionTier, bind

from tierkit import Entry, TierHealth, hookspecs
from tierkit.testing import FakeClock


def test_set_then_get_returns_the_entry_with_its_tags(tier: SessionTier) -> None:
    with bind({}):
        tier.tierkit_set("k", Entry({"a": 1}, None, ("t",)))
        assert tier.tierkit_get("k") == Entry({"a": 1}, None, ("t",))
        assert tier.tierkit_get("other") is None


def test_none_is_a_cached_value_not_a_miss(tier: SessionTier) -> None:
    with bind({}):
        tier.tierkit_set("k", Entry(None, None))
        assert tier.tierkit_get("k") == Entry(None, None)


def test_objects_are_stored_as_is(tier: SessionTier) -> None:
    value = object()
    with bind({}):
        tier.tierkit_set("k", Entry(value, None))
        hit = tier.tierkit_get("k")
        assert hit is not None and hit.value is value


def test_reads_do_not_write_to_the_host_session(tier: SessionTier) -> None:
    session: dict[str, Any] = {}
    with bind(session):
        assert tier.tierkit_get("k") is None
        assert tier.tierkit_get_many(["k"]) == {}
        assert tier.tierkit_delete("k") is False
        assert tier.tierkit_invalidate_tags(["t"]) == 0
        assert tier.tierkit_invalidate_prefix("") == 0
        tier.tierkit_clear()
        assert tier.tierkit_health().status == "ok"
    assert session == {}


def test_state_lives_under_state_key_then_namespace(make_tier: Callable[..., SessionTier]) -> None:
    session: dict[str, Any] = {"user_id": 7}
    with bind(session):
        make_tier(namespace="ns", state_key="_cache").tierkit_set("k", Entry(1, None))
    assert set(session) == {"user_id", "_cache"}
    assert list(session["_cache"]) == ["ns"]
    assert list(session["_cache"]["ns"].entries) == ["k"]


def test_lru_evicts_least_recently_used_above_max_entries(
    make_tier: Callable[..., SessionTier],
) -> None:
    tier = make_tier(max_entries=3)
    with bind({}):
        for key in "abc":
            tier.tierkit_set(key, Entry(key, None))
        assert tier.tierkit_get("a") is not None  # a becomes most recently used
        tier.tierkit_set("d", Entry("d", None))
        assert tier.tierkit_get("b") is None
        assert {k for k in "acd" if tier.tierkit_get(k) is not None} == set("acd")
        tier.tierkit_set("c", Entry("c2", None))  # overwrite: refreshes, no eviction
        stats = tier.tierkit_stats()
        assert stats["entries"] == 3
        assert stats["evictions"] == 1


def test_eviction_also_drops_the_evicted_key_from_the_tag_index(
    make_tier: Callable[..., SessionTier],
) -> None:
    tier = make_tier(max_entries=1)
    with bind({}):
        tier.tierkit_set("a", Entry(1, None, ("t",)))
        tier.tierkit_set("b", Entry(2, None))
        assert tier.tierkit_invalidate_tags(["t"]) == 0
        assert tier.tierkit_get("b") is not None


def test_ttl_is_lazy_and_uses_the_context_clock(tier: SessionTier, clock: FakeClock) -> None:
    session: dict[str, Any] = {}
    with bind(session):
        tier.tierkit_set("k", Entry("v", clock() + 10, ("t",)))
        tier.tierkit_set("forever", Entry("v", None))
        clock.advance(9.5)
        assert tier.tierkit_get("k") is not None
        clock.advance(0.5)  # deadline reached: expired
        assert tier.tierkit_get("k") is None
        assert tier.tierkit_get_many(["k", "forever"]).keys() == {"forever"}
    bucket = session["tierkit"]["app"]
    assert "k" not in bucket.entries  # removed on the read that found it expired
    assert bucket.tag_index == {}


def test_invalidate_tags_uses_the_index_and_keeps_it_exact(tier: SessionTier) -> None:
    session: dict[str, Any] = {}
    with bind(session):
        tier.tierkit_set("a", Entry(1, None, ("t1",)))
        tier.tierkit_set("b", Entry(2, None, ("t1", "t2")))
        tier.tierkit_set("c", Entry(3, None, ("t2",)))
        tier.tierkit_set("d", Entry(4, None))
        assert tier.tierkit_invalidate_tags(["t1", "unknown"]) == 2
        assert [k for k in "abcd" if tier.tierkit_get(k)] == ["c", "d"]
        assert session["tierkit"]["app"].tag_index == {"t2": {"c"}}
        assert tier.tierkit_invalidate_tags(["t1", "t2"]) == 1


def test_overwriting_replaces_the_tags(tier: SessionTier) -> None:
    with bind({}):
        tier.tierkit_set("k", Entry(1, None, ("old",)))
        tier.tierkit_set("k", Entry(2, None, ("new",)))
        assert tier.tierkit_invalidate_tags(["old"]) == 0
        assert tier.tierkit_invalidate_tags(["new"]) == 1
        assert tier.tierkit_get("k") is None


def test_invalidate_prefix(tier: SessionTier) -> None:
    with bind({}):
        for key in ("user:1", "user:2", "users", "item:1"):
            tier.tierkit_set(key, Entry(key, None, ("t",)))
        assert tier.tierkit_invalidate_prefix("user:") == 2
        assert sorted(tier.tierkit_get_many(["user:1", "user:2", "users", "item:1"])) == [
            "item:1",
            "users",
        ]
        assert tier.tierkit_invalidate_tags(["t"]) == 2


def test_delete(tier: SessionTier) -> None:
    with bind({}):
        tier.tierkit_set("k", Entry(1, None, ("t",)))
        assert tier.tierkit_delete("k") is True
        assert tier.tierkit_delete("k") is False
        assert tier.tierkit_get("k") is None
        assert tier.tierkit_invalidate_tags(["t"]) == 0


def test_set_many_and_get_many(make_tier: Callable[..., SessionTier]) -> None:
    tier = make_tier(max_entries=2)
    with bind({}):
        tier.tierkit_set_many({"a": Entry(1, None), "b": Entry(2, None), "c": Entry(3, None)})
        assert tier.tierkit_get_many(["a", "b", "c", "x"]) == {
            "b": Entry(2, None),
            "c": Entry(3, None),
        }


def test_clear_touches_only_this_namespace_in_this_session(
    make_tier: Callable[..., SessionTier],
) -> None:
    app, other_ns = make_tier(namespace="app"), make_tier(namespace="other")
    mine: dict[str, Any] = {}
    theirs: dict[str, Any] = {}
    for session in (mine, theirs):
        with bind(session):
            app.tierkit_set("k", Entry(1, None))
            other_ns.tierkit_set("k", Entry(2, None))
    with bind(mine):
        app.tierkit_clear()
        assert app.tierkit_get("k") is None
        assert other_ns.tierkit_get("k") == Entry(2, None)
    with bind(theirs):
        assert app.tierkit_get("k") == Entry(1, None)


def test_health_and_stats_report_this_session(make_tier: Callable[..., SessionTier]) -> None:
    tier = make_tier(max_entries=5)
    with bind({}):
        assert tier.tierkit_health() == TierHealth("ok", "entries in this session: 0", {"entries": 0})
        tier.tierkit_set("k", Entry(1, None))
        assert tier.tierkit_health() == TierHealth("ok", "entries in this session: 1", {"entries": 1})
        assert tier.tierkit_stats() == {
            "active_session": True,
            "entries": 1,
            "evictions": 0,
            "max_entries": 5,
        }


def test_session_state_survives_pickling(tier: SessionTier) -> None:
    """Server-side session backends may pickle the session between requests."""
    session: dict[str, Any] = {}
    with bind(session):
        tier.tierkit_set("k", Entry([1, 2], None, ("t",)))
    restored = pickle.loads(pickle.dumps(session))
    with bind(restored):
        assert tier.tierkit_get("k") == Entry([1, 2], None, ("t",))
        tier.tierkit_set("k2", Entry(2, None, ("t",)))  # the new lock works
        assert tier.tierkit_invalidate_tags(["t"]) == 2


@pytest.mark.parametrize(
    "options",
    [{"max_entries": 0}, {"max_entries": -1}, {"state_key": ""}, {"max_entrie": 10}],
)
def test_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SessionTier.Options(**options)


def test_options_are_frozen_and_documented() -> None:
    options = SessionTier.Options()
    with pytest.raises(ValidationError):
        options.max_entries = 5  # type: ignore[misc]
    for name, field in SessionTier.Options.model_fields.items():
        assert field.description, name


def test_pluggy_accepts_the_tier_against_the_hookspecs(tier: SessionTier) -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(tier)
    with bind({}):
        pm.hook.tierkit_set(key="k", entry=Entry(1, None))
        assert pm.hook.tierkit_get(key="k") == Entry(1, None)
        assert [h.status for h in pm.hook.tierkit_health()] == ["ok"]
    for name in hookspecs.REQUIRED_HOOKS:
        assert getattr(pm.hook, name).get_hookimpls(), name
