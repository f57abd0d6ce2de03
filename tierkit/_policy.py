"""How a cache miss is computed: cross-process lock, fail-safe, early refresh (docs/stampede.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from tierkit._lock import lease_for

if TYPE_CHECKING:
    from tierkit._codec import Codec

STALE_SUFFIX = "\x1fstale"
"""Appended to a key to name its stale copy (``\\x1f`` is the ASCII unit separator).

The copy is an ordinary entry: it carries the value's tags and starts with its
key, so ``invalidate(tags=...)``, ``invalidate(prefix=...)``, ``delete`` and
``clear`` remove it with the value, and a normal read of the key never sees it.
"""


def stale_key(key: str) -> str:
    """The key of ``key``'s stale copy."""
    return key + STALE_SUFFIX


@dataclass(frozen=True, slots=True)
class Policy:
    """What ``get_or_set`` / ``@cached`` do around the factory, beyond single flight in the process."""

    lock: bool = False
    """One computation per key across processes (through a lock tier)."""
    lock_timeout: float = 10.0
    """Seconds a caller waits for another process's computation before computing itself."""
    stale_ttl: float | None = None
    """Seconds an expired value is kept to be served when the factory fails or is slow."""
    soft_timeout: float | None = None
    """Seconds after which a slow factory is left running and the stale value served."""
    early_refresh: float | None = None
    """Fraction of the TTL: a hit in that last part of an entry's life refreshes it in the background."""

    @property
    def plain(self) -> bool:
        """Nothing beyond single flight in the process."""
        return not (self.lock or self.stale_ttl or self.soft_timeout or self.early_refresh)

    @property
    def lease(self) -> float:
        """Seconds the lock outlives a dead holder (:func:`tierkit._lock.lease_for`)."""
        return lease_for(self.lock_timeout)


PLAIN = Policy()


class Miss(NamedTuple):
    """One value to compute under a :class:`Policy`: what ``get_or_set`` / ``@cached`` were asked.

    A tuple: an early-refresh hit builds one per call.
    """

    key: str
    factory: Callable[[], Any]
    ttl: float | None
    tags: Iterable[str]
    persistent: bool
    codec: Codec
    policy: Policy


def make_policy(
    *,
    lock: bool,
    lock_timeout: float | None,
    stale_ttl: float | None,
    soft_timeout: float | None,
    early_refresh: float | None,
    default_lock_timeout: float,
    default_stale_ttl: float | None,
) -> Policy:
    """A checked :class:`Policy` from call arguments, ``None`` meaning the configured default."""
    if type(lock) is not bool:
        raise TypeError(f"lock must be True or False, got {lock!r}")
    lock_timeout = default_lock_timeout if lock_timeout is None else _seconds("lock_timeout", lock_timeout)
    stale_ttl = default_stale_ttl if stale_ttl is None else _seconds("stale_ttl", stale_ttl, zero=True)
    if soft_timeout is not None:
        _seconds("soft_timeout", soft_timeout)
    if early_refresh is not None and not (_number(early_refresh) and 0 < early_refresh < 1):
        raise ValueError(
            f"early_refresh must be a fraction of the TTL between 0 and 1, got {early_refresh!r}"
        )
    policy = Policy(lock, lock_timeout, stale_ttl or None, soft_timeout, early_refresh)
    return PLAIN if policy.plain else policy


class Compute:
    """The computation keywords of one ``@cached`` function: checked once, resolved per cache."""

    __slots__ = ("early_refresh", "keywords")

    def __init__(
        self,
        lock: bool,
        lock_timeout: float | None,
        stale_ttl: float | None,
        soft_timeout: float | None,
        early_refresh: float | None,
    ) -> None:
        self.keywords = (lock, lock_timeout, stale_ttl, soft_timeout, early_refresh)
        self.early_refresh = early_refresh
        self.policy_for_defaults(10.0, None)  # a bad keyword fails at decoration time

    def policy_for_defaults(self, lock_timeout: float, stale_ttl: float | None) -> Policy:
        lock, timeout, stale, soft, early = self.keywords
        return make_policy(
            lock=lock,
            lock_timeout=timeout,
            stale_ttl=stale,
            soft_timeout=soft,
            early_refresh=early,
            default_lock_timeout=lock_timeout,
            default_stale_ttl=stale_ttl,
        )

    def policy_for(self, cache: Any) -> Policy:
        """The policy with ``cache``'s settings (``lock_timeout``, ``stale_ttl``) as defaults."""
        return self.policy_for_defaults(cache.settings.lock_timeout, cache.settings.stale_ttl)


def check_stale_ttl(stale_ttl: Any) -> None:
    """``set(..., stale_ttl=...)``: a positive number of seconds (0 or ``None``: no stale copy)."""
    _seconds("stale_ttl", stale_ttl, zero=True)


def _number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _seconds(name: str, value: Any, zero: bool = False) -> float:
    if not (_number(value) and (value > 0 or (zero and value == 0))):
        what = "a number of seconds >= 0" if zero else "a positive number of seconds"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)
