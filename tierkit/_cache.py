"""The public ``Cache``: a thin typed front over the :class:`~tierkit._chain.Chain` it builds.

Every call to a tier happens in :mod:`tierkit._chain`; this module checks the
caller's arguments where the chain does not and documents the API.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from tierkit._achain import AsyncChain
from tierkit._atomics import AsyncAtomics, Atomics
from tierkit._build import build_chain
from tierkit._chain import Chain, Invalidated
from tierkit._codec import Codec
from tierkit._codecs import Codecs
from tierkit._config import Settings, load_settings
from tierkit._policy import Miss, Policy, make_policy
from tierkit._types import MISSING, Clock, HealthReport, KeyReport

T = TypeVar("T")
_POLICIES_KEPT = 256
"""Distinct ``get_or_set`` keyword combinations whose checked policy a cache remembers."""


class Cache:
    """A multi-tier cache built from configuration.

    ``Cache()`` reads the configuration (environment, dotenv files, the
    settings sources tier plugins declare, TOML); keyword arguments override
    it, e.g. ``Cache(namespace="app", order=["memory", "file"])``.
    ``settings=`` takes a ready :class:`~tierkit.Settings` instead.  ``clock``
    replaces ``time.time`` for expiry and circuit breakers (tests use
    :class:`tierkit.testing.FakeClock`).  ``kinds`` adds tier classes by kind
    without packaging them (an application's own tier, a test double); they
    are checked like installed ones; ``codecs`` does the same for codec
    classes by name (see docs/values.md).

    Read: tiers are asked in order; the first hit wins and is copied into the
    tiers above it (those whose write policy is ``always``) with its
    *remaining* TTL.  Write: every tier whose policy accepts the write gets
    it, with the TTL capped by the tier's ``max_ttl``.  A failing tier is
    counted and skipped: no backend failure reaches the caller.  Programming
    errors (bad key, bad TTL, unserializable value) raise before anything is
    written.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        kinds: Mapping[str, type] | None = None,
        codecs: Mapping[str, type[Codec]] | None = None,
        **overrides: Any,
    ) -> None:
        if settings is not None and overrides:
            raise TypeError("pass either settings= or configuration keywords, not both")
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.codecs = Codecs(self.settings, codecs)
        """This cache's codecs: the configured one and the others by name (``@cached(codec=...)``)."""
        self._chain: Chain = build_chain(self.settings, clock or time.time, kinds, self.codecs.default)
        # The chain's fastest read for this order, bound once: a memory hit is one call.
        self.get = self._chain.get  # type: ignore[method-assign,assignment]
        self._achain = AsyncChain(self._chain)
        self._policies: dict[tuple[Any, ...], Policy] = {}
        self.aget = self._achain.get  # type: ignore[method-assign,assignment]
        self._atomics = Atomics(self._chain)
        self._aatomics = AsyncAtomics(self._atomics, self._achain.blocking)

    @property
    def chain(self) -> Chain:
        """The built chain of tiers (for integrations such as ``@cached``)."""
        return self._chain

    @property
    def achain(self) -> AsyncChain:
        """The async view of :attr:`chain` (same tiers and state), for integrations such as ``@cached``."""
        return self._achain

    @property
    def codec(self) -> Codec:
        """The codec byte tiers' values go through."""
        return self._chain.codec

    # -- reads --------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The cached value, or ``default`` on a miss (``tierkit.MISSING`` tells a cached ``None`` apart)."""
        return self._chain.get(key, default)  # pragma: no cover - replaced per instance in __init__

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the keys that hit (misses are absent), one batch per tier."""
        return self._chain.get_many(keys)

    # -- writes -------------------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
        stale_ttl: float | None = None,
    ) -> bool:
        """Store ``value`` in every tier whose write policy accepts it.

        ``ttl`` in seconds (``None``: the configured ``default_ttl``, which may
        be no expiry); ``tags`` for :meth:`invalidate`; ``persistent=True`` also
        writes the tiers with the ``persistent`` policy (the file tier).
        ``stale_ttl`` (``None``: the configured one; 0: none) keeps a stale copy that
        long after the value expires, for :meth:`get_or_set` to serve when
        recomputing fails (docs/stampede.md); ``get`` never returns it.

        Returns True when every such tier took the write.  False means some
        tier failed (its error is counted, never raised): it may still hold an
        older value for ``key``, so the key is removed there before that tier
        serves anything again.
        """
        if stale_ttl is None:
            stale_ttl = self.settings.stale_ttl
        return self._chain.set(key, value, ttl, tags, persistent, self._chain.codec, stale_ttl)

    def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
    ) -> list[str]:
        """:meth:`set` for several keys, one batch per tier.

        Returns the keys some tier did not take (empty when all were stored);
        as with :meth:`set`, those keys are removed there before it serves again.
        """
        return self._chain.set_many(items, ttl, tags, persistent, self._chain.codec)

    def get_or_set(
        self,
        key: str,
        factory: Callable[[], T],
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
        lock: bool = False,
        lock_timeout: float | None = None,
        stale_ttl: float | None = None,
        soft_timeout: float | None = None,
        early_refresh: float | None = None,
    ) -> T:
        """The cached value, or ``factory()`` stored and returned.

        Concurrent callers for the same key in this process wait for one
        ``factory`` call (single flight) instead of stampeding.  The other
        keywords are explained in docs/stampede.md:

        * ``lock=True``: one ``factory`` call across processes too (through the
          Redis or file tier); the others wait up to ``lock_timeout`` seconds
          (default: the ``lock_timeout`` setting) for its value, then compute it
          themselves.
        * ``stale_ttl``: keep the value that many seconds past its TTL, and serve
          it when ``factory`` raises or runs longer than ``soft_timeout``
          (the slow call goes on in the background and stores its value).
        * ``early_refresh``: a fraction of the TTL; a hit in that last part of
          the entry's life recomputes it in the background, once.
        """
        if early_refresh is None:
            value = self.get(key, MISSING)
            if value is not MISSING:
                return cast(T, value)
        policy = self._policy(lock, lock_timeout, stale_ttl, soft_timeout, early_refresh)
        chain, codec = self._chain, self._chain.codec
        if policy.early_refresh:
            value = chain.guard.hit(Miss(key, factory, ttl, tags, persistent, codec, policy))
            if value is not MISSING:
                return cast(T, value)
        return chain.compute(key, factory, ttl, tags, persistent, codec, policy)

    def _policy(
        self,
        lock: bool = False,
        lock_timeout: float | None = None,
        stale_ttl: float | None = None,
        soft_timeout: float | None = None,
        early_refresh: float | None = None,
    ) -> Policy:
        """The checked computation policy of these keywords, with this cache's settings as defaults.

        Remembered per distinct keywords (a call site passes the same ones every time).
        """
        keywords = (lock, lock_timeout, stale_ttl, soft_timeout, early_refresh)
        try:
            return self._policies[keywords]
        except (KeyError, TypeError):  # new, or unhashable (make_policy then says what is wrong)
            pass
        policy = make_policy(
            lock=lock,
            lock_timeout=lock_timeout,
            stale_ttl=stale_ttl,
            soft_timeout=soft_timeout,
            early_refresh=early_refresh,
            default_lock_timeout=self.settings.lock_timeout,
            default_stale_ttl=self.settings.stale_ttl,
        )
        if len(self._policies) < _POLICIES_KEPT:
            self._policies[keywords] = policy
        return policy

    # -- atomic operations (tierkit._atomics: which tier decides, and the fallbacks) ------------

    def add(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
    ) -> bool:
        """Store ``value`` only if ``key`` is absent; True if this call stored it.

        Decided atomically by the deepest tier the write goes to (Redis ``SET NX``,
        a SQLite transaction, a lock), so of concurrent adds across processes
        exactly one wins.  False also when that tier cannot answer (down): two
        callers must never both believe they won.  Arguments as for :meth:`set`.
        """
        return self._atomics.add(key, value, ttl, tags, persistent, self._chain.codec)

    def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key``, atomically, and return the new value.

        The entry keeps its remaining TTL and tags; a value stored with
        ``set(key, 5)`` counts, and ``get`` returns an ``int`` afterwards.
        Raises ``ValueError`` if ``key`` is not in the cache and
        :class:`~tierkit.errors.NotACounter` (a ``TypeError``) if its value is
        not an integer.
        """
        return self._atomics.incr(key, delta)

    def decr(self, key: str, delta: int = 1) -> int:
        """:meth:`incr` by ``-delta``."""
        return self._atomics.incr(key, -delta)

    def touch(self, key: str, ttl: float | None = None) -> bool:
        """Give ``key`` a new TTL without rewriting its value; True if it was in the cache.

        ``ttl`` as for :meth:`set` (``None``: the default TTL, ``tierkit.FOREVER``: no expiry).
        """
        return self._atomics.touch(key, ttl)

    def has(self, key: str) -> bool:
        """Whether ``key`` is in the cache (a cached ``None`` counts); decodes and copies nothing."""
        return self._atomics.has(key)

    # -- removal ------------------------------------------------------------------------------

    def delete(self, key: str) -> bool:
        """Remove ``key`` from every writable tier; True if any tier held it."""
        return self._chain.delete(key)

    def delete_many(self, keys: Iterable[str]) -> Invalidated:
        """Remove ``keys`` from every writable tier, one round trip per tier.

        Returns the number of entries removed, summed over tiers, with
        ``pending`` naming the tiers it could not reach now (as :meth:`invalidate`).
        """
        return self._atomics.delete_many(keys)

    def invalidate(self, *, tags: Iterable[str] = (), prefix: str | None = None) -> Invalidated:
        """Remove entries carrying any of ``tags`` and/or whose key starts with ``prefix``.

        Returns the number of entries removed, summed over tiers (an ``int``);
        its ``pending`` attribute names the tiers the invalidation could not
        reach now — it is applied there before they serve again.
        """
        return self._chain.invalidate(tags, prefix)

    def clear(self, tiers: Sequence[str] | None = None) -> None:
        """Remove every entry of this cache's namespace, in every writable tier or in ``tiers``."""
        self._chain.clear(tiers)

    # -- control plane ------------------------------------------------------------------------

    def inspect(self, key: str) -> dict[str, KeyReport]:
        """Where ``key`` is: for each tier of the order, whether it holds it, the TTL left, the
        size, the tags and the breaker state.  Nothing is backfilled and no read is counted."""
        return self._chain.inspect(key)

    def health(self) -> HealthReport:
        """Each tier's status (ok / degraded / down / skipped) with the reason."""
        return self._chain.health()

    def stats(self) -> dict[str, Any]:
        """Counters of the chain and of each tier (cheap: no scan of any store)."""
        return self._chain.stats(self.settings.namespace)

    @property
    def tiers(self) -> tuple[str, ...]:
        """Names of the tiers in the chain, in order (skipped tiers left out)."""
        return tuple(slot.name for slot in self._chain.slots)

    def close(self) -> None:
        """Release every tier's resources; the cache must not be used afterwards."""
        self._chain.close()

    # -- async twins (docs/async.md): same arguments and semantics, never blocking the loop ----

    async def aget(self, key: str, default: Any = None) -> Any:
        """:meth:`get`, awaited; a memory hit is served inline."""
        return await self._achain.get(key, default)  # pragma: no cover - replaced per instance

    async def aget_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """:meth:`get_many`, awaited."""
        return await self._achain.get_many(keys)

    async def aset(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
        stale_ttl: float | None = None,
    ) -> bool:
        """:meth:`set`, awaited."""
        if stale_ttl is None:
            stale_ttl = self.settings.stale_ttl
        return await self._achain.set(key, value, ttl, tags, persistent, self._chain.codec, stale_ttl)

    async def aset_many(
        self,
        items: Mapping[str, Any],
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
    ) -> list[str]:
        """:meth:`set_many`, awaited."""
        return await self._achain.set_many(items, ttl, tags, persistent, self._chain.codec)

    async def aget_or_set(
        self,
        key: str,
        factory: Callable[[], T | Awaitable[T]],
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
        lock: bool = False,
        lock_timeout: float | None = None,
        stale_ttl: float | None = None,
        soft_timeout: float | None = None,
        early_refresh: float | None = None,
    ) -> T:
        """:meth:`get_or_set`, awaited; ``factory`` may be a plain or an ``async`` function.

        Concurrent coroutines of one event loop asking for the same cold key
        await one ``factory`` call; if it raises, every one of them gets the
        exception and nothing is stored (unless a stale value is served: the
        keywords are :meth:`get_or_set`'s).
        """
        if early_refresh is None:
            value = await self._achain.get(key, MISSING)
            if value is not MISSING:
                return cast(T, value)
        policy = self._policy(lock, lock_timeout, stale_ttl, soft_timeout, early_refresh)
        achain, codec = self._achain, self._chain.codec
        if policy.early_refresh:
            value = await achain.guard.hit(Miss(key, factory, ttl, tags, persistent, codec, policy))
            if value is not MISSING:
                return cast(T, value)
        result = await achain.compute(key, factory, ttl, tags, persistent, codec, policy)
        return cast(T, result)

    async def aadd(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
    ) -> bool:
        """:meth:`add`, awaited."""
        atomics = self._atomics
        return await self._aatomics.run(atomics.add, key, value, ttl, tags, persistent, self._chain.codec)

    async def aincr(self, key: str, delta: int = 1) -> int:
        """:meth:`incr`, awaited."""
        return await self._aatomics.run(self._atomics.incr, key, delta)

    async def adecr(self, key: str, delta: int = 1) -> int:
        """:meth:`decr`, awaited."""
        return await self._aatomics.run(self._atomics.incr, key, -delta)

    async def atouch(self, key: str, ttl: float | None = None) -> bool:
        """:meth:`touch`, awaited."""
        return await self._aatomics.run(self._atomics.touch, key, ttl)

    async def ahas(self, key: str) -> bool:
        """:meth:`has`, awaited."""
        return await self._aatomics.run(self._atomics.has, key)

    async def adelete_many(self, keys: Iterable[str]) -> Invalidated:
        """:meth:`delete_many`, awaited."""
        return await self._aatomics.run(self._atomics.delete_many, list(keys))

    async def adelete(self, key: str) -> bool:
        """:meth:`delete`, awaited."""
        return await self._achain.delete(key)

    async def ainvalidate(self, *, tags: Iterable[str] = (), prefix: str | None = None) -> Invalidated:
        """:meth:`invalidate`, awaited."""
        return await self._achain.invalidate(tags, prefix)

    async def aclear(self, tiers: Sequence[str] | None = None) -> None:
        """:meth:`clear`, awaited."""
        await self._achain.clear(tiers)

    async def ahealth(self) -> HealthReport:
        """:meth:`health`, awaited (checks that may block run in a worker thread)."""
        return await self._achain.health()

    async def astats(self) -> dict[str, Any]:
        """:meth:`stats`, awaited."""
        return await self._achain.stats(self.settings.namespace)

    async def aclose(self) -> None:
        """:meth:`close`, awaited: closes the tiers' async clients of the running loop too."""
        await self._achain.close()

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tierkit.Cache namespace={self.settings.namespace!r} tiers={list(self.tiers)!r}>"


_default_cache: Cache | None = None
_default_lock = threading.Lock()


def get_cache() -> Cache:
    """The process-wide default cache, built from configuration on first use."""
    global _default_cache
    cache = _default_cache
    if cache is None:
        with _default_lock:
            if _default_cache is None:
                _default_cache = Cache()
            cache = _default_cache
    return cache
