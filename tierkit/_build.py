"""Building a :class:`~tierkit._chain.Chain` from settings: resolve kinds, validate options, build tiers.

The control plane: everything here runs once, when a cache is built.  The
data plane — every call to a tier afterwards — is :mod:`tierkit._chain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from tierkit import hookspecs
from tierkit._backplane import start as start_backplane
from tierkit._breaker import Breaker
from tierkit._chain import Chain, Skipped, TierSlot
from tierkit._codec import Codec, JsonCodec
from tierkit._config import Settings, describe_validation_error, redact
from tierkit._contract import check_tier_class, suggest
from tierkit._discovery import installed_entry_points, load_tier_class
from tierkit._events import emit
from tierkit._types import Clock, TierContext
from tierkit.errors import ConfigError, PluginError


def validate_options(model: type[BaseModel], raw: Mapping[str, Any], name: str, kind: str) -> BaseModel:
    """The tier's options model from configuration; an error names the tier, the kind and the field."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        valid = sorted(model.model_fields)
        message = describe_validation_error(f"options for tier {name!r} (kind {kind!r})", exc, valid)
        if any(error["type"] == "extra_forbidden" for error in exc.errors()):
            message += f"\n  valid options of kind {kind!r}: {', '.join(valid) or 'none'}"
        raise ConfigError(message) from None


def resolve_kind(kind: str, tier_name: str, kinds: Mapping[str, type]) -> Any:
    """The tier class for ``kind``: from ``kinds`` (given in code) or an installed entry point."""
    cls = kinds.get(kind)
    if cls is None:
        return load_tier_class(kind, tier_name)
    problems = check_tier_class(cls)
    if problems:
        raise PluginError(
            f"tier kind {kind!r} ({cls!r}, given in code) is not a valid tier: " + "; ".join(problems)
        )
    return cls


def check_tier_tables(settings: Settings, kinds: Mapping[str, type]) -> None:
    """Refuse a ``[tiers.X]`` table that can configure nothing: a typo would silently run defaults.

    A table is meaningful when ``X`` is in the order, is an installed (or given)
    kind, or names its ``kind`` explicitly (kept for another order).
    """
    names = set(settings.tier_names())
    known = names | set(kinds) | set(installed_entry_points())
    for table, tier in settings.tiers.items():
        if table in known or tier.kind is not None:
            continue
        raise ConfigError(
            f"[tiers.{table}] configures no tier: {table!r} is not in the order "
            f"({', '.join(settings.tier_names())}) and is not an installed kind"
            f"{suggest(table, known)}; fix the name, add it to order, or give it a kind"
        )


def left_out(skipped: Skipped, namespace: str) -> Skipped:
    """Report a tier that should run but cannot (health shows it ``down``): the ``tier_left_out`` event."""
    emit(
        "tier_left_out",
        "tier %(tier)s (%(kind)s) is left out of the chain: %(reason)s",
        tier=skipped.name,
        kind=skipped.kind,
        namespace=namespace,
        reason=skipped.reason,
    )
    return skipped


def build_chain(
    settings: Settings, clock: Clock, kinds: Mapping[str, type] | None = None, codec: Codec | None = None
) -> Chain:
    """Build every tier of the configured order into a :class:`~tierkit._chain.Chain`.

    ``codec``: the cache's codec (default: the JSON codec); with one that stores no
    bytes (``objects``), a byte tier is an error in an explicit order and skipped otherwise.
    """
    kinds = kinds or {}
    codec = codec or JsonCodec()
    check_tier_tables(settings, kinds)
    explicit = settings.explicit_order
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    slots: list[TierSlot] = []
    skipped: list[Skipped] = []
    for name in settings.tier_names():
        tier_settings = settings.tier(name)
        kind = tier_settings.kind or name
        try:
            cls: Any = resolve_kind(kind, name, kinds)
        except (ConfigError, PluginError) as exc:
            if explicit:
                raise
            if isinstance(exc, ConfigError):
                skipped.append(Skipped(name, kind, "skipped", "not installed"))
            else:
                skipped.append(left_out(Skipped(name, kind, "down", str(exc)), settings.namespace))
            continue
        options = validate_options(cls.Options, tier_settings.options, name, kind)
        context = TierContext(name=name, namespace=settings.namespace, clock=clock)
        if not codec.stores_bytes and cls.holds == "bytes":
            reason = f"holds bytes, and codec {settings.codec!r} keeps values as Python objects"
            if explicit:
                raise ConfigError(f"tier {name!r} (kind {kind!r}) {reason}: order object tiers only")
            skipped.append(Skipped(name, kind, "skipped", reason))
            continue
        reason = cls.unavailable_reason(options, context)
        if reason:
            skipped.append(Skipped(name, kind, "skipped", reason))
            continue
        try:
            tier = cls(options, context)
        except Exception as exc:
            detail = redact(f"{type(exc).__name__}: {exc}")
            skipped.append(
                left_out(Skipped(name, kind, "down", f"failed to start: {detail}"), settings.namespace)
            )
            continue
        write = tier_settings.write or cls.default_write
        breaker = Breaker(**tier_settings.breaker.model_dump(), clock=clock)
        slots.append(
            TierSlot(
                name,
                kind,
                tier,
                write,
                tier_settings.max_ttl,
                breaker,
                settings.namespace,
                settings.latency_sampling,
            )
        )
    # pluggy calls the most recently registered implementation first: register
    # in reverse so pm.hook.tierkit_get visits tiers in configured order.
    for slot in reversed(slots):
        try:
            pm.register(slot.tier, name=slot.name)
        except pluggy.PluginValidationError as exc:  # check_tier_class should have said it first
            raise PluginError(
                f"tier {slot.name!r} (kind {slot.kind!r}) does not match the hook specs: {exc}"
            ) from exc
    backplane = None
    if settings.backplane == "auto":
        backplane = start_backplane(slots, settings.namespace, codec, clock)
    return Chain(slots, skipped, pm, codec, clock, settings.default_ttl, settings.tier_names(), backplane)
