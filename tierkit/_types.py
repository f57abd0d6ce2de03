"""Value types shared by the chain and the tiers."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from tierkit.hookspecs import hookimpl

Clock = Callable[[], float]
"""A zero-argument callable returning seconds since the epoch (``time.time``)."""

WritePolicy = Literal["always", "persistent", "never"]
Holds = Literal["objects", "bytes"]
HealthStatus = Literal["ok", "degraded", "down", "skipped"]


class _Missing:
    """Type of :data:`MISSING`; a single falsy instance."""

    __slots__ = ()
    _instance: ClassVar[_Missing | None] = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "tierkit.MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""Returned for a miss where ``None`` would be ambiguous: ``None`` is a cacheable value."""


class Entry(NamedTuple):
    """What a tier stores and returns: the value, its deadline and its tags."""

    value: Any
    """A Python object (object tiers) or the encoded ``bytes`` (byte tiers)."""
    expires_at: float | None
    """Absolute deadline on the chain's clock, or ``None`` for no expiry."""
    tags: tuple[str, ...] = ()
    """Tags given to ``set``; used by ``invalidate(tags=...)``."""


new_entry: Callable[[tuple[Any, float | None, tuple[str, ...]]], Entry] = functools.partial(
    tuple.__new__, Entry
)
"""``Entry`` from a ``(value, expires_at, tags)`` tuple, without NamedTuple's Python-level ``__new__``."""


@dataclass(frozen=True, slots=True)
class TierHealth:
    """A tier's answer to ``tierkit_health``."""

    status: HealthStatus
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TierContext:
    """What the chain tells a tier when it builds it."""

    name: str
    """The tier's name in the configured order (``memory``, ``l2`` …)."""
    namespace: str
    """The cache namespace; tiers sharing storage keep namespaces apart."""
    clock: Clock = time.time
    """The chain's clock; tiers compare ``expires_at`` against it."""


class NoOptions(BaseModel):
    """Options model of a tier that takes no options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier:
    """Convenience base class for tier plugins.

    A tier class is what the ``tierkit.tiers`` entry point names.  tierkit
    builds it as ``TierClass(options, context)`` where ``options`` is an
    instance of the class's ``Options`` model (validated from configuration)
    and ``context`` a :class:`TierContext`.  The data hooks
    (:mod:`tierkit.hookspecs`) are methods marked ``@tierkit.hookimpl``.

    Subclassing is optional: any class with these attributes and the required
    hookimpls is a tier.
    """

    Options: ClassVar[type[BaseModel]] = NoOptions
    """pydantic model of the tier's options; should use ``extra="forbid"``."""
    holds: ClassVar[Holds] = "objects"
    """``objects`` (Python values) or ``bytes`` (values encoded by the chain)."""
    default_write: ClassVar[WritePolicy] = "always"
    """Write policy when the configuration names none."""
    remote: ClassVar[bool] = False
    """True for tiers behind a network: the chain guards them with a circuit breaker."""

    def __init__(self, options: BaseModel, context: TierContext) -> None:
        self.options = options
        self.context = context

    @classmethod
    def unavailable_reason(cls, options: BaseModel, context: TierContext) -> str | None:
        """Why this tier cannot run here (e.g. no URL configured), or ``None``.

        Called before the tier is built, so a tier that is not configured costs
        no import of its client library.  Such a tier is left out of the chain
        and health reports it as ``skipped`` with this reason — in the default
        order and in an explicit one alike, so that one configuration serves a
        laptop without Redis and a deployment with ``REDIS_URL``.  (An unknown
        *kind* in an explicit order is a ``ConfigError``.)
        """
        return None

    @hookimpl
    def tierkit_health(self) -> TierHealth:
        return TierHealth("ok")

    @hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        return {}
