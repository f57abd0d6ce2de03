"""Fixtures shared by the session tier tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tierkit_session import SessionTier

from tierkit import TierContext
from tierkit.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_tier(clock: FakeClock) -> Callable[..., SessionTier]:
    """Build a SessionTier as tierkit would: validated options plus a context."""

    def make(namespace: str = "app", **options: Any) -> SessionTier:
        return SessionTier(SessionTier.Options(**options), TierContext("session", namespace, clock))

    return make


@pytest.fixture
def tier(make_tier: Callable[..., SessionTier]) -> SessionTier:
    return make_tier()
