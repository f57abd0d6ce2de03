"""The tier conformance suite from ``tierkit.testing``, against a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from redis_helpers import free_port
from tierkit_redis import Options, RedisTier

from tierkit.testing import FakeClock, TierConformance, make_context

pytestmark = pytest.mark.redis

Build = Callable[..., RedisTier]


class TestRedisConformance(TierConformance):
    persistent = True  # entries live in Redis, not in the instance; so `shared` is checked too

    @pytest.fixture
    def make_tier(self, make_tier: Build, redis_url: str, clock: FakeClock) -> Callable[[str], RedisTier]:
        """The kit's ``make_tier(namespace)``, built on conftest's ``make_tier`` (overridden
        here; it clears and closes every tier after the test).  A prefix of the test's own
        keeps tests apart on a shared server."""
        prefix = f"conf-{uuid.uuid4().hex[:12]}"
        return lambda namespace: make_tier(redis_url, namespace=f"{prefix}-{namespace}", clock=clock)

    @pytest.fixture
    def reopen(self, make_tier: Callable[[str], RedisTier]) -> Callable[[], RedisTier]:
        return lambda: make_tier("conformance")

    @pytest.fixture
    def tier(self, reopen: Callable[[], RedisTier]) -> RedisTier:
        return reopen()

    @pytest.fixture
    def broken_tier(self, clock: FakeClock) -> Iterator[RedisTier]:
        """A tier whose server is not there: a loopback port nothing listens on."""
        tier = RedisTier(Options(url=f"redis://127.0.0.1:{free_port()}/0"), make_context(clock, name="redis"))
        yield tier
        tier.tierkit_close()
