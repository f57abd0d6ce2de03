"""Value types shared by the chain and the tiers."""

from __future__ import annotations

import enum
import functools
import math
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Final, Generic, Literal, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from tierkit.hookspecs import hookimpl

Clock = Callable[[], float]
"""A zero-argument callable returning seconds since the epoch (``time.time``)."""

WritePolicy = Literal["always", "persistent", "never"]
Holds = Literal["objects", "bytes"]
HealthStatus = Literal["ok", "degraded", "down", "skipped"]
BreakerState = Literal["closed", "open", "half-open"]


class Unavailable(enum.Enum):
    """Type of :data:`UNAVAILABLE` (an enum member, so type checkers narrow ``is`` tests)."""

    UNAVAILABLE = "unavailable"

    def __repr__(self) -> str:
        return "tierkit.UNAVAILABLE"


UNAVAILABLE: Final = Unavailable.UNAVAILABLE
"""What a guarded tier call yields when the tier was skipped (breaker open) or failed."""


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
"""Pass it as ``get``'s ``default`` to tell a miss (then returned) from a cached ``None``."""


FOREVER: Final = math.inf
"""``ttl=tierkit.FOREVER``: the entry never expires, whatever ``default_ttl`` says
(``ttl=None`` means *use the default*).  Each tier's ``max_ttl`` still caps it."""


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

NO_TAGS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({})


class Parts:
    """A payload in pieces, for a byte tier with ``tierkit_set_parts``: its bytes are the
    buffers' bytes end to end.

    A large value (a numpy array) is encoded as a small header and views of the value's
    own memory: a tier that writes the pieces itself (the file tier) never needs the
    whole payload as one ``bytes``, so a 100 MB array is not copied to be stored.  The
    views are valid only during the call that receives them: a tier that keeps the
    payload keeps :meth:`join`'s bytes.
    """

    __slots__ = ("_joined", "buffers", "nbytes")

    def __init__(self, buffers: Sequence[Any]) -> None:
        self.buffers: tuple[memoryview, ...] = tuple(memoryview(b).cast("B") for b in buffers)
        """The pieces, in order, as flat byte views."""
        self.nbytes: int = sum(map(len, self.buffers))
        """The payload's length."""
        self._joined: bytes | None = None

    def join(self) -> bytes:
        """The payload as one ``bytes`` (built once, then the same object)."""
        if self._joined is None:
            self._joined = b"".join(self.buffers)
        return self._joined

    def __repr__(self) -> str:
        return f"tierkit.Parts({len(self.buffers)} buffers, {self.nbytes} bytes)"


class Payloads(NamedTuple):
    """A byte tier's answer to ``tierkit_get_many_payloads``: its hits, column by column.

    ``keys[i]`` holds ``payloads[i]`` (the bytes as stored, ``bytes``) until
    ``expires_at[i]`` (``None``: no expiry): what an :class:`Entry` per key
    would say, without an object per key, so that the chain decodes and copies
    a batch in one pass.  ``tags`` maps the keys that carry tags to them; a key
    absent from it carries none.
    """

    keys: list[str]
    payloads: list[bytes]
    expires_at: list[float | None]
    tags: Mapping[str, tuple[str, ...]] = NO_TAGS


@dataclass(frozen=True, slots=True)
class TierHealth:
    """A tier's answer to ``tierkit_health``."""

    status: HealthStatus
    """``ok``, ``degraded``, ``down`` or ``skipped`` (not running here, e.g. outside a session)."""
    reason: str = ""
    """Why, in words a human can act on (a short summary, or nothing, when ``ok``).  Never a secret."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Cheap figures (latency, server version …); the chain adds ``breaker`` and ``pending_invalidations``."""


@dataclass(frozen=True)
class KeyReport:
    """``Cache.inspect(key)`` for one tier of the order: does it hold the key, and how."""

    name: str
    kind: str
    status: Literal["held", "absent", "unavailable", "skipped", "down"]
    """``held``/``absent``: the tier answered; ``unavailable``: its breaker is open or it failed
    now; ``skipped``/``down``: the tier is not in the chain (see health)."""
    ttl: float | None = None
    """Seconds left (``None``: no expiry, or not held)."""
    size: int | None = None
    """Bytes stored (byte tiers) or an estimate of the object's size (object tiers)."""
    tags: tuple[str, ...] = ()
    breaker: BreakerState | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "ttl": self.ttl,
            "size": self.size,
            "tags": list(self.tags),
            "breaker": self.breaker,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class TierReport:
    """Health of one tier of the order, as ``Cache.health()`` reports it."""

    name: str
    """The tier's name in the order."""
    kind: str
    """Its kind (the entry-point name)."""
    status: HealthStatus
    """The tier's own answer, made worse by the chain's view: ``down`` while its circuit breaker
    is open, ``degraded`` while half-open or with missed invalidations pending; ``skipped`` (or
    ``down``) for a tier of the order that is not in the chain (not installed, not configured,
    failed to start)."""
    reason: str = ""
    """Why, in words (a short summary, or nothing, when ``ok``).  Secrets redacted."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """The tier's ``details`` plus ``breaker`` (its state) and ``pending_invalidations``;
    empty for a tier of the order that is not in the chain."""


@dataclass(frozen=True)
class HealthReport:
    """``Cache.health()``: the worst status of the configured tiers, and each tier's."""

    status: Literal["ok", "degraded", "down"]
    """The worst status of the tiers (``skipped`` counts as ``ok``)."""
    tiers: dict[str, TierReport]
    """Tier name → its report, in the configured order (skipped tiers included)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as ``tierkit health --json`` prints it."""
        return {
            "status": self.status,
            "tiers": {
                name: {"kind": t.kind, "status": t.status, "reason": t.reason, "details": dict(t.details)}
                for name, t in self.tiers.items()
            },
        }


@dataclass(frozen=True, slots=True)
class TierContext:
    """What the chain tells a tier when it builds it."""

    name: str
    """The tier's name in the configured order (``memory``, ``l2`` …)."""
    namespace: str
    """The cache namespace; tiers sharing storage keep namespaces apart."""
    clock: Clock = time.time
    """The chain's clock; tiers compare ``expires_at`` against it."""


OptionsT = TypeVar("OptionsT", bound=BaseModel)


class NoOptions(BaseModel):
    """Options model of a tier that takes no options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SettingsSource(Protocol):
    """An extra place plain configuration variables are read from (declared by a tier class).

    Called once per settings load; returns variable name → value (e.g.
    ``{"REDIS_URL": "redis://…"}``).  ``label`` names the source in ``tierkit
    config``.  It must not raise for a missing or unreadable source: it returns
    ``{}`` (and may log why).
    """

    label: str

    def __call__(self) -> Mapping[str, Any]: ...


class HitCounter(Protocol):
    """Where a front door counts its hits (the chain's per-tier counters)."""

    hits: int


class Freshness(Protocol):
    """Until when a front door may serve local copies before the chain brings them up to date."""

    until: float
    """A time on the context's clock; from then on a hit goes to ``on_miss`` (the chain catches up)."""


class _NeverDue:
    until = float("inf")


NEVER_DUE: Freshness = _NeverDue()
"""A front door's ``fresh`` when the chain gives none: its copies are always up to date."""

FrontDoor = Callable[[str, Any], Any]
"""A fused ``get(key, default)``: see :meth:`Tier.front_door`."""


class Tier(Generic[OptionsT]):
    """Convenience base class for tier plugins.

    A tier class is what the ``tierkit.tiers`` entry point names.  tierkit
    builds it as ``TierClass(options, context)`` where ``options`` is an
    instance of the class's ``Options`` model (validated from configuration)
    and ``context`` a :class:`TierContext`.  The data hooks
    (:mod:`tierkit.hookspecs`) are methods marked ``@tierkit.hookimpl``.

    ``Tier[MyOptions]`` types ``self.options``; plain ``Tier`` works too.
    Subclassing is optional: any class with these attributes and the required
    hookimpls is a tier.
    """

    Options: ClassVar[type[BaseModel]] = NoOptions
    """pydantic model of the tier's options; must use ``extra="forbid"``."""
    holds: ClassVar[Holds] = "objects"
    """``objects`` (Python values) or ``bytes`` (values encoded by the chain)."""
    default_write: ClassVar[WritePolicy] = "always"
    """Write policy when the configuration names none."""
    remote: ClassVar[bool] = False
    """True for tiers behind a network.  Every tier has a circuit breaker; a
    remote tier is never served through the chain's local fast path (the first
    tier's :meth:`front_door`)."""
    blocking: ClassVar[bool] = True
    """Whether the sync data hooks may wait (network, disk, locks held across I/O).  The
    async API calls a tier's ``tierkit_a*`` hooks where it has them; otherwise it calls
    the sync hook inline on the event loop when this is False, in a worker thread when
    True.  Declare False only if every sync data hook returns in microseconds."""
    default_rank: ClassVar[int | None] = None
    """Place of this kind in the default order (lower first; the first-party
    tiers use 100 memory, 200 redis, 300 session, 400 file), or ``None`` to
    leave it out of the default order (it then runs only when configured)."""
    settings_aliases: ClassVar[Mapping[str, str]] = {}
    """Plain configuration variables this kind reads, variable → option name of
    the tier named after the kind (e.g. ``{"REDIS_URL": "url"}``).  They are
    read from the environment, ``.env`` files and :meth:`settings_sources`, each
    at that source's precedence, below ``TIERKIT_…`` variables."""

    def __init__(self, options: OptionsT, context: TierContext) -> None:
        self.options: OptionsT = options
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

    @classmethod
    def bind_session(cls, session: MutableMapping[str, Any]) -> AbstractContextManager[Any] | None:
        """Optional, for tiers that keep entries in the current user's session: a context manager
        that makes ``session`` (a per-user store of Python objects) current while it is entered.

        The web-framework integrations (:mod:`tierkit.integrations.flask`,
        :mod:`tierkit.integrations.fastapi`) enter it around each request.
        Default ``None``: the tier has no per-user session, nothing is bound.
        """
        return None

    @classmethod
    def default_namespace(cls) -> str | None:
        """Optional: the namespace for a configuration that sets none, derived from the host app.

        Asked of the tier kinds of the order, in order; the first answer wins.
        The session plugin answers under Streamlit with one derived from the
        main script's path, so two apps sharing a Redis server or a cache
        directory do not share entries by default.  It must be cheap and
        raise nothing.  Default ``None``: the namespace stays ``"default"``.
        """
        return None

    @classmethod
    def settings_sources(cls) -> Sequence[SettingsSource]:
        """Extra places :attr:`settings_aliases` variables are read from.

        Ranked below ``.env`` files and above the TOML file (e.g. the session
        plugin reads Streamlit's secrets).  Default: none.
        """
        return ()

    def front_door(
        self, on_miss: FrontDoor, counters: HitCounter, fresh: Freshness | None = None
    ) -> FrontDoor | None:
        """Optional fast path: a fused ``get(key, default)`` serving hits from this tier.

        When this tier comes first in a chain, holds objects and is not
        :attr:`remote`, the chain asks it for a front door for each reader it
        builds (the cache's ``get``, and one per ``@cached`` return type): a hit
        then costs what this function costs, with no further call.  The
        function (``default`` optional, ``None``) must return the cached value
        itself on a hit (after checking expiry on the context's clock) and add
        1 to ``counters.hits``; on anything else (miss, expired entry, a key it
        cannot look up) it must return ``on_miss(key, default)``, which checks
        the key, counts the miss and goes on down the chain.  With ``fresh``
        (when the signature takes it), a hit is served only while the clock is
        before ``fresh.until``; from then on it goes to ``on_miss`` too, which
        applies what other processes changed first (the backplane).  Nothing
        guards it: it must be thread-safe and raise nothing of its own.  Return
        ``None`` (the default) to offer none: the chain then calls
        :func:`~tierkit.hookspecs.tierkit_get` instead.
        """
        return None

    def make_room(self, count: int) -> None:
        """Optional: drop now what storing ``count`` new entries would evict.

        The chain calls it on a bounded local tier about to receive a batch it
        has just read from a byte tier below (``get_many`` copying hits up), with
        the number of hits, *before* it decodes them: the memory the evicted
        values free is then the memory the decoded ones reuse, still in the CPU's
        caches (a cold ``get_many`` of 100 keys costs ~5 % less than evicting
        after).  It may happen that fewer entries than ``count`` follow (an
        invalidation arrived meanwhile). It must be thread-safe and return in
        microseconds; an exception is counted as a failure of the tier.
        The default does nothing, and the chain then does not call it.
        """

    @hookimpl
    def tierkit_health(self) -> TierHealth:
        return TierHealth("ok")

    @hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        return {}


def room_maker(tier: object) -> Callable[[int], Any] | None:
    """``tier``'s :meth:`Tier.make_room`, or ``None`` if it offers none (absent, or the default's nothing)."""
    make_room = getattr(tier, "make_room", None)
    return None if getattr(make_room, "__func__", None) is Tier.make_room else make_room
