"""tierkit: one cache API over an ordered chain of tiers (memory, Redis, session, file …).

Quick start::

    import tierkit

    cache = tierkit.Cache()              # the chain from configuration
    cache.set("k", {"a": 1}, ttl=600)
    cache.get("k")

    @tierkit.cached(ttl=600)
    def load(page: int) -> list[dict]: ...
"""

from __future__ import annotations

from tierkit._adecorator import AsyncCachedFunction
from tierkit._cache import Cache, get_cache
from tierkit._chain import Invalidated
from tierkit._codec import Codec, register_types
from tierkit._config import Settings, TierSettings, load_settings
from tierkit._decorator import CachedFunction, cached
from tierkit._types import (
    FOREVER,
    MISSING,
    Entry,
    HealthReport,
    KeyReport,
    NoOptions,
    Parts,
    Payloads,
    SettingsSource,
    Tier,
    TierContext,
    TierHealth,
    TierReport,
)
from tierkit.errors import CodecError, ConfigError, NotACounter, PluginError, TierkitError
from tierkit.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "FOREVER",
    "MISSING",
    "AsyncCachedFunction",
    "Cache",
    "CachedFunction",
    "Codec",
    "CodecError",
    "ConfigError",
    "Entry",
    "HealthReport",
    "Invalidated",
    "KeyReport",
    "NoOptions",
    "NotACounter",
    "Parts",
    "Payloads",
    "PluginError",
    "Settings",
    "SettingsSource",
    "Tier",
    "TierContext",
    "TierHealth",
    "TierReport",
    "TierSettings",
    "TierkitError",
    "__version__",
    "cached",
    "get_cache",
    "hookimpl",
    "load_settings",
    "register_types",
]
