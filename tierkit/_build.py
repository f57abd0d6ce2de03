"""Building a chain from settings: resolve kinds, validate options, register tiers with pluggy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from tierkit import hookspecs
from tierkit._breaker import Breaker
from tierkit._codec import Codec, JsonCodec, PickleCodec
from tierkit._config import Settings, describe_validation_error, redact
from tierkit._discovery import check_tier_class, load_tier_class
from tierkit._types import Clock, Entry, TierContext, WritePolicy
from tierkit.errors import ConfigError, PluginError

log = logging.getLogger("tierkit")


UNAVAILABLE: Any = object()
"""What :meth:`TierSlot.call` returns when the tier was skipped (breaker open) or failed."""


class TierSlot:
    """One tier in a built chain: its bound hook methods, policy and counters."""

    __slots__ = (
        "breaker",
        "corrupt",
        "delete",
        "deletes",
        "errors",
        "get",
        "get_many",
        "hits",
        "holds_bytes",
        "kind",
        "max_ttl",
        "misses",
        "name",
        "remote",
        "set",
        "set_many",
        "sets",
        "tier",
        "write",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        tier: Any,
        write: WritePolicy,
        max_ttl: float | None,
        breaker: Breaker,
    ) -> None:
        self.name = name
        self.kind = kind
        self.tier = tier
        self.write = write
        self.max_ttl = max_ttl
        self.holds_bytes = tier.holds == "bytes"
        self.remote = bool(getattr(tier, "remote", False))
        # The data plane: bound methods taken once, called directly (no pm.hook).
        self.get: Callable[[str], Entry | None] = tier.tierkit_get
        self.set: Callable[[str, Entry], None] = tier.tierkit_set
        self.delete: Callable[[str], bool] = tier.tierkit_delete
        self.get_many: Callable[[Sequence[str]], Mapping[str, Entry]] = getattr(
            tier, "tierkit_get_many", self._get_each
        )
        self.set_many: Callable[[Mapping[str, Entry]], None] = getattr(
            tier, "tierkit_set_many", self._set_each
        )
        self.breaker = breaker
        self.hits = self.misses = self.sets = self.deletes = self.errors = self.corrupt = 0

    def _get_each(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        found = {}
        for key in keys:
            entry = self.get(key)
            if entry is not None:
                found[key] = entry
        return found

    def _set_each(self, entries: Mapping[str, Entry]) -> None:
        for key, entry in entries.items():
            self.set(key, entry)

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        """``method(*args)`` guarded by the breaker: :data:`UNAVAILABLE` if skipped or failed."""
        breaker = self.breaker
        if breaker.open_until and not breaker.allow():  # closed breaker: no call at all
            return UNAVAILABLE
        try:
            result = method(*args)
        except Exception as exc:
            self.failed(exc)
            return UNAVAILABLE
        if breaker.failures or breaker.open_until:
            breaker.success()
        return result

    def cap(self, expires_at: float | None, now: float) -> float | None:
        """``expires_at`` limited by this tier's ``max_ttl``."""
        if self.max_ttl is None:
            return expires_at
        cap = now + self.max_ttl
        return cap if expires_at is None or expires_at > cap else expires_at

    def failed(self, exc: BaseException) -> None:
        """Count a backend failure and feed the breaker (logged once per opening)."""
        self.errors += 1
        reason = redact(f"{type(exc).__name__}: {exc}")
        if self.breaker.failure(reason):
            log.warning(
                "tier %r (%s) failing (%s); skipped for %.1fs, then probed",
                self.name,
                self.kind,
                reason,
                self.breaker.open_until - self.breaker.clock(),
            )
        else:
            log.debug("tier %r (%s) error: %s", self.name, self.kind, reason)

    def __repr__(self) -> str:
        return f"<TierSlot {self.name!r} kind={self.kind!r} write={self.write!r}>"


@dataclass
class Skipped:
    """A tier of the order that is not in the chain, and why."""

    name: str
    kind: str
    status: str  # "skipped" (not installed / not configured) or "down" (failed to start)
    reason: str


@dataclass
class BuiltChain:
    slots: list[TierSlot]
    skipped: list[Skipped]
    pm: pluggy.PluginManager
    codec: Codec


def make_codec(settings: Settings) -> Codec:
    if settings.codec == "pickle":
        if settings.signing_key is None or not settings.signing_key.get_secret_value():
            raise ConfigError(
                "codec 'pickle' needs signing_key (TIERKIT_SIGNING_KEY): pickled values are signed "
                "so a tampered shared tier cannot run code in this process"
            )
        return PickleCodec(settings.signing_key.get_secret_value().encode())
    return JsonCodec()


def validate_options(model: type[BaseModel], raw: Mapping[str, Any], name: str, kind: str) -> BaseModel:
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(
            describe_validation_error(f"options for tier {name!r} (kind {kind!r})", exc)
        ) from exc


def resolve_kind(kind: str, tier_name: str, kinds: Mapping[str, type]) -> type:
    """The tier class for ``kind``: from ``kinds`` (given in code) or an installed entry point."""
    cls = kinds.get(kind)
    if cls is None:
        return load_tier_class(kind, tier_name)
    problems = check_tier_class(cls)
    if problems:
        raise PluginError(f"tier kind {kind!r} ({cls!r}) is not a valid tier: " + "; ".join(problems))
    return cls


def build_chain(settings: Settings, clock: Clock, kinds: Mapping[str, type] | None = None) -> BuiltChain:
    """Build every tier of the configured order; see the module docstring of ``tierkit._cache``."""
    kinds = kinds or {}
    explicit = settings.explicit_order
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    slots: list[TierSlot] = []
    skipped: list[Skipped] = []
    for name in settings.tier_names():
        tier_settings = settings.tier(name)
        kind = tier_settings.kind or name
        try:
            cls = resolve_kind(kind, name, kinds)
        except (ConfigError, PluginError) as exc:
            if explicit:
                raise
            status = "skipped" if isinstance(exc, ConfigError) else "down"
            reason = "not installed" if isinstance(exc, ConfigError) else str(exc)
            skipped.append(Skipped(name, kind, status, reason))
            continue
        options = validate_options(cls.Options, tier_settings.options, name, kind)  # type: ignore[attr-defined]
        context = TierContext(name=name, namespace=settings.namespace, clock=clock)
        reason = cls.unavailable_reason(options, context)  # type: ignore[attr-defined]
        if reason:
            skipped.append(Skipped(name, kind, "skipped", reason))
            continue
        try:
            tier = cls(options, context)
        except Exception as exc:
            detail = redact(f"{type(exc).__name__}: {exc}")
            log.warning("tier %r (%s) failed to start and is left out: %s", name, kind, detail)
            skipped.append(Skipped(name, kind, "down", f"failed to start: {detail}"))
            continue
        write = tier_settings.write or cls.default_write  # type: ignore[attr-defined]
        breaker = Breaker(**tier_settings.breaker.model_dump())
        slots.append(TierSlot(name, kind, tier, write, tier_settings.max_ttl, breaker))
    # pluggy calls the most recently registered implementation first: register
    # in reverse so pm.hook.tierkit_get visits tiers in configured order.
    for slot in reversed(slots):
        try:
            pm.register(slot.tier, name=slot.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"tier {slot.name!r} (kind {slot.kind!r}) does not match the hook specs: {exc}"
            ) from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a tier implements a hook that is not in the specs: {exc}") from exc
    return BuiltChain(slots, skipped, pm, make_codec(settings))
