"""Django cache backend: a tierkit chain behind ``django.core.cache`` (``pip install tierkit[django]``).

::

    CACHES = {
        "default": {
            "BACKEND": "tierkit.integrations.django.TierkitCache",
            "LOCATION": "myapp",  # the tierkit namespace
            "TIMEOUT": 300,
            "OPTIONS": {"order": ["memory", "redis"], "tiers": {"redis": {"max_ttl": 3600}}},
        }
    }

``OPTIONS`` takes tierkit settings as ``tierkit.toml`` does (``order``, ``tiers``,
``codec``, ``signing_key`` …); what it leaves out comes from tierkit's usual
sources (``TIERKIT_…`` variables, ``REDIS_URL``, ``tierkit.toml``).  Unless a
codec is configured, values go through signed pickle (as Django's own backends
pickle) with a key derived from ``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS``, so
a rotated secret still reads what the old one signed).  ``MAX_ENTRIES`` and
``CULL_FREQUENCY``, when given, bound the memory tier the way they bound
``LocMemCache``.  ``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION`` and ``TIMEOUT``
work as for every Django backend.

Every write goes to every writable tier (``persistent=True``): Django's cache is
one cache.  Django's timeouts map to tierkit's: ``None`` is
:data:`tierkit.FOREVER`, ``0`` or less expires the key now (a delete).

Django builds a backend per thread and calls ``close()`` after every request:
backends of one configuration share one :class:`tierkit.Cache` (built on first
use, so the memory tier is shared by every thread), and ``close()`` leaves it
open — closing it would empty the memory tier after each request.
"""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.utils.crypto import salted_hmac

from tierkit._cache import Cache
from tierkit._config import Settings, load_settings
from tierkit._types import FOREVER

__all__ = ["TierkitCache", "signing_key"]

_SALT = "tierkit.integrations.django.TierkitCache"
_caches: dict[str, Cache] = {}
_lock = threading.Lock()


def signing_key(secret: str | bytes) -> str:
    """The pickle signing key derived from a Django secret (HMAC-SHA256, salted for tierkit)."""
    digest: str = salted_hmac(_SALT, "pickle signing key", secret=secret, algorithm="sha256").hexdigest()
    return digest


def cache_settings(location: str, options: Mapping[str, Any]) -> Settings:
    """tierkit settings for one ``CACHES`` entry: ``OPTIONS`` over tierkit's sources, Django's defaults."""
    options = dict(options)
    max_entries = options.pop("MAX_ENTRIES", None)
    cull_frequency = options.pop("CULL_FREQUENCY", None)
    if location:
        options["namespace"] = location
    if max_entries is not None:
        entries = int(max_entries)
        frequency = 3 if cull_frequency is None else int(cull_frequency)
        batch = entries if frequency == 0 else max(1, entries // frequency)
        tiers = {name: dict(tier) for name, tier in options.get("tiers", {}).items()}
        memory = tiers.setdefault("memory", {})
        memory["options"] = {"max_entries": entries, "evict_batch": batch, **memory.get("options", {})}
        options["tiers"] = tiers
    settings = load_settings(**options)
    if "codec" not in settings.model_fields_set:
        settings = load_settings(**options, codec="pickle")
    if settings.codec == "pickle" and settings.signing_key is None:
        secrets = [django_settings.SECRET_KEY, *getattr(django_settings, "SECRET_KEY_FALLBACKS", ())]
        keys = [signing_key(secret) for secret in secrets]
        settings = load_settings(**{**options, "codec": "pickle"}, signing_key=keys)
    return settings


def shared_cache(location: str, options: Mapping[str, Any]) -> Cache:
    """The one :class:`~tierkit.Cache` of this configuration in this process (built on first use)."""
    identity = json.dumps([location, options], sort_keys=True, default=repr)
    cache = _caches.get(identity)
    if cache is None:
        with _lock:
            cache = _caches.get(identity)
            if cache is None:
                cache = _caches[identity] = Cache(cache_settings(location, options))
    return cache


_EXPIRED = -1.0
"""What :meth:`TierkitCache.ttl` answers for a timeout of 0 or less: expire now."""


class TierkitCache(BaseCache):  # type: ignore[misc]
    """``django.core.cache`` backend over a tierkit chain (see the module docstring)."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._location = location
        self._options = dict(params.get("OPTIONS") or {})
        self._tierkit: Cache | None = None

    @property
    def tierkit(self) -> Cache:
        """The shared :class:`tierkit.Cache` behind this backend."""
        cache = self._tierkit
        if cache is None:
            cache = self._tierkit = shared_cache(self._location, self._options)
        return cache

    def ttl(self, timeout: Any = DEFAULT_TIMEOUT) -> float:
        """A Django timeout as a tierkit TTL: ``FOREVER`` for ``None``, ``-1.0`` for expire-now."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return FOREVER
        return float(timeout) if timeout > 0 else _EXPIRED

    def _check_picklable(self, value: Any) -> None:
        """Refuse what Django's backends refuse (``PicklingError``) when no tier of the chain encodes."""
        if not self.tierkit.chain.encode_persistent:
            pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    # Each method makes the key (KEY_PREFIX, VERSION, KEY_FUNCTION; Django's key warnings) and maps
    # the timeout; its async twin does the same and awaits tierkit's async API, which serves a
    # memory hit inline and never blocks the loop (Django's default runs each call in a thread).

    def _write(self, key: Any, value: Any, timeout: Any, version: int | None) -> tuple[str, float]:
        self._check_picklable(value)
        return self.make_and_validate_key(key, version=version), self.ttl(timeout)

    def _items(
        self, data: Mapping[Any, Any], timeout: Any, version: int | None
    ) -> tuple[dict[str, Any], dict[str, Any], float]:
        made = {self.make_and_validate_key(key, version=version): key for key in data}
        items = {key: data[original] for key, original in made.items()}
        for value in items.values():
            self._check_picklable(value)
        return made, items, self.ttl(timeout)

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key, ttl = self._write(key, value, timeout, version)
        if ttl == _EXPIRED:
            return not self.tierkit.has(key)  # added, and expired at once
        return self.tierkit.add(key, value, ttl, persistent=True)

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        key, ttl = self._write(key, value, timeout, version)
        if ttl == _EXPIRED:
            return not await self.tierkit.ahas(key)
        return await self.tierkit.aadd(key, value, ttl, persistent=True)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self.tierkit.get(self.make_and_validate_key(key, version=version), default)

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return await self.tierkit.aget(self.make_and_validate_key(key, version=version), default)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        key, ttl = self._write(key, value, timeout, version)
        if ttl == _EXPIRED:
            self.tierkit.delete(key)
        else:
            self.tierkit.set(key, value, ttl, persistent=True)

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        key, ttl = self._write(key, value, timeout, version)
        if ttl == _EXPIRED:
            await self.tierkit.adelete(key)
        else:
            await self.tierkit.aset(key, value, ttl, persistent=True)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key, ttl = self.make_and_validate_key(key, version=version), self.ttl(timeout)
        return self.tierkit.delete(key) if ttl == _EXPIRED else self.tierkit.touch(key, ttl)

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key, ttl = self.make_and_validate_key(key, version=version), self.ttl(timeout)
        return await (self.tierkit.adelete(key) if ttl == _EXPIRED else self.tierkit.atouch(key, ttl))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self.tierkit.delete(self.make_and_validate_key(key, version=version))

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return await self.tierkit.adelete(self.make_and_validate_key(key, version=version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self.tierkit.has(self.make_and_validate_key(key, version=version))

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return await self.tierkit.ahas(self.make_and_validate_key(key, version=version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self.tierkit.incr(self.make_and_validate_key(key, version=version), delta)

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return await self.tierkit.aincr(self.make_and_validate_key(key, version=version), delta)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        return {made[key]: value for key, value in self.tierkit.get_many(made).items()}

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        return {made[key]: value for key, value in (await self.tierkit.aget_many(made)).items()}

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        made, items, ttl = self._items(data, timeout, version)
        if ttl == _EXPIRED:
            self.tierkit.delete_many(items)
            return []
        return [made[key] for key in self.tierkit.set_many(items, ttl, persistent=True)]

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        made, items, ttl = self._items(data, timeout, version)
        if ttl == _EXPIRED:
            await self.tierkit.adelete_many(items)
            return []
        return [made[key] for key in await self.tierkit.aset_many(items, ttl, persistent=True)]

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        self.tierkit.delete_many([self.make_and_validate_key(key, version=version) for key in keys])

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        await self.tierkit.adelete_many([self.make_and_validate_key(key, version=version) for key in keys])

    def clear(self) -> None:
        self.tierkit.clear()

    async def aclear(self) -> None:
        await self.tierkit.aclear()

    def close(self, **kwargs: Any) -> None:
        """Nothing to release per request: the shared chain stays open for the next one."""

    async def aclose(self, **kwargs: Any) -> None:
        """As :meth:`close`."""
