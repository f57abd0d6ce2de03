"""tierkit's conformance suite, run against the session tier inside a bound session."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tierkit_session import SessionTier, bind

from tierkit.testing import FakeClock, TierConformance, make_context


class TestSessionTierConformance(TierConformance):
    shared = True  # instances of one namespace share the session's bucket

    @pytest.fixture
    def make_tier(self, clock: FakeClock) -> Iterator[Callable[[str], SessionTier]]:
        """Instances in the one session bound for the test.

        The binding set here stays in force for the test: pytest runs fixture
        setup and the test in the same thread and context.
        """
        with bind({}):
            yield lambda namespace: SessionTier(
                SessionTier.Options(), make_context(clock, namespace=namespace)
            )

    @pytest.fixture
    def tier(self, make_tier: Callable[[str], SessionTier]) -> SessionTier:
        return make_tier("conformance")

    @pytest.fixture
    def second_instance(self, make_tier: Callable[[str], SessionTier]) -> SessionTier:
        return make_tier("conformance")

    def test_threads_do_not_corrupt_entries(self, tier: Any) -> None:
        """The inherited test, with its threads all in the test's session.

        A new thread starts with an empty context, so without this every
        worker would run outside any session and the test would pass vacuously.
        Each thread runs in a copy of the test's context, as threads serving one
        Streamlit session would.
        """
        context = contextvars.copy_context()
        run = threading.Thread.run
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(threading.Thread, "run", lambda thread: context.copy().run(run, thread))
            super().test_threads_do_not_corrupt_entries(tier)
        assert tier.tierkit_stats()["entries"] == 8 * 5  # the workers wrote to this session
