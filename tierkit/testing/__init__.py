"""Test kit for tier authors: a conformance suite every tier must pass, and a fake clock.

Use it from your plugin's tests (it is not loaded into pytest runs by itself)::

    import pytest
    from tierkit.testing import FakeClock, TierConformance, make_context
    from my_tier import MyTier

    class TestMyTier(TierConformance):
        @pytest.fixture
        def tier(self, clock: FakeClock):
            tier = MyTier(MyTier.Options(), make_context(clock))
            yield tier
            tier.tierkit_clear()

Capability flags (class attributes) switch off what a tier does not claim:
``supports_ttl``, ``supports_batch`` (``tierkit_get_many``/``tierkit_set_many``);
a persistent tier sets ``persistent = True`` and provides a ``reopen`` fixture
returning a fresh instance over the same storage; ``shared`` (by default the same
as ``persistent``) checks that two live instances see each other's writes, through
the ``second_instance`` fixture.  Optional fixtures switch on more checks:
``make_tier(namespace)`` (namespaces are kept apart) and ``broken_tier`` (health
reports a broken backend).  Every failure says what was expected and what came back.

Codec authors subclass :class:`CodecConformance` and provide a ``codec`` fixture.

:func:`stampede` runs real processes against one cold key with ``lock=True`` and counts
the factory calls: a check for tiers that implement the lock hooks.
"""

from __future__ import annotations

from tierkit.testing._async import AsyncTierConformance
from tierkit.testing._codecs import CodecConformance
from tierkit.testing._conformance import OTHER_NAMESPACE, TierConformance
from tierkit.testing._context import FakeClock, make_context
from tierkit.testing._processes import race_in_processes
from tierkit.testing._stampede import StampedeResult, stampede

__all__ = [
    "OTHER_NAMESPACE",
    "AsyncTierConformance",
    "CodecConformance",
    "FakeClock",
    "StampedeResult",
    "TierConformance",
    "make_context",
    "race_in_processes",
    "stampede",
]
