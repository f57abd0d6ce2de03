"""Private redis-servers for the fault scenarios: the Redis plugin's own test helpers, reused."""

from __future__ import annotations

import sys

from ._suite import ROOT

sys.path.insert(0, str(ROOT / "plugins" / "tierkit-redis" / "tests"))

from redis_helpers import REDIS_SERVER, RedisServer, unavailable

__all__ = ["REDIS_SERVER", "RedisServer", "unavailable"]
