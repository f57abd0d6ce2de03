"""Outside any session the tier is a cheap no-op and health says why."""

from __future__ import annotations

from tierkit_session import SessionTier, bind, current_session

from tierkit import Entry, TierHealth


def test_no_session_outside_bind() -> None:
    assert current_session() is None


def test_every_hook_is_a_no_op_outside_a_session(tier: SessionTier) -> None:
    tier.tierkit_set("k", Entry(1, None, ("t",)))
    tier.tierkit_set_many({"k": Entry(1, None)})
    assert tier.tierkit_get("k") is None
    assert tier.tierkit_get_many(["k"]) == {}
    assert tier.tierkit_delete("k") is False
    assert tier.tierkit_invalidate_tags(["t"]) == 0
    assert tier.tierkit_invalidate_prefix("") == 0
    tier.tierkit_clear()


def test_writes_outside_do_not_reach_a_later_session(tier: SessionTier) -> None:
    tier.tierkit_set("k", Entry(1, None))
    with bind({}):
        assert tier.tierkit_get("k") is None


def test_health_is_skipped_with_the_remedy(tier: SessionTier) -> None:
    assert tier.tierkit_health() == TierHealth(
        "skipped",
        "no active session: wrap requests in tierkit_session.bind(mapping) or run under Streamlit",
    )


def test_stats_outside_a_session(tier: SessionTier) -> None:
    assert tier.tierkit_stats() == {
        "active_session": False,
        "entries": 0,
        "evictions": 0,
        "max_entries": 1000,
    }
