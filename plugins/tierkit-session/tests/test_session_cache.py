"""The session tier in a real tierkit.Cache, found through its entry point."""

from __future__ import annotations

from tierkit_session import bind

import tierkit


def test_a_session_only_cache_keeps_sessions_apart() -> None:
    cache = tierkit.Cache(
        namespace="session-test", order=["session"], tiers={"session": {"options": {"max_entries": 2}}}
    )
    alice: dict[str, object] = {}
    with bind(alice):
        cache.set("greeting", "hello alice", tags=["greetings"])
        assert cache.get("greeting") == "hello alice"
    with bind({}):
        assert cache.get("greeting", "miss") == "miss"
    with bind(alice):
        assert cache.health().tiers["session"].status == "ok"
        assert cache.invalidate(tags=["greetings"]) == 1
    assert cache.get("greeting", "miss") == "miss"
    assert cache.health().tiers["session"].status == "skipped"
