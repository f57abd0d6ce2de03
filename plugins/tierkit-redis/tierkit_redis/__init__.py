"""Redis tier for tierkit: one cache shared by every process that reaches the same Redis.

Installed, it registers the tier kind ``redis`` (entry point group ``tierkit.tiers``).
Importing this package does not import redis-py; that happens when a tier is built.
"""

from __future__ import annotations

from tierkit_redis._options import Options, redacted_url
from tierkit_redis._probe import is_available
from tierkit_redis._tier import RedisTier

__all__ = ["Options", "RedisTier", "is_available", "redacted_url"]
__version__ = "0.1.0"
