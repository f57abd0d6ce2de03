"""The tier conformance suite from ``tierkit.testing``, against a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from tierkit_redis import Options, RedisTier

from tierkit.testing import FakeClock, TierConformance, make_context

pytestmark = pytest.mark.redis


class TestRedisConformance(TierConformance):
    @pytest.fixture
    def tier(self, redis_url: str, clock: FakeClock) -> Iterator[RedisTier]:
        context = make_context(clock, name="redis", namespace=f"conf-{uuid.uuid4().hex[:12]}")
        tier = RedisTier(Options(url=redis_url), context)
        yield tier
        tier.tierkit_clear()
        tier.tierkit_close()
