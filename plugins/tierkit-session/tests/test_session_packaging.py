"""The distribution declares the tier the way tierkit discovers it."""

from __future__ import annotations

from importlib.metadata import entry_points

from tierkit_session import SessionTier


def test_entry_point_names_the_session_kind() -> None:
    (ep,) = entry_points(group="tierkit.tiers", name="session")
    assert ep.value == "tierkit_session:SessionTier"
    assert ep.load() is SessionTier
    assert ep.dist is not None and ep.dist.metadata["Name"] == "tierkit-session"


def test_tier_class_declarations() -> None:
    assert (SessionTier.holds, SessionTier.default_write, SessionTier.remote) == (
        "objects",
        "always",
        False,
    )
