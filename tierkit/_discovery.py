"""Finding tier classes through the ``tierkit.tiers`` entry-point group.

Only the kinds a configuration names are imported (:func:`load_tier_class`);
:func:`describe_installed` loads them all, for ``tierkit tiers``, and reports a
failure per plugin instead of failing as a whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from tierkit._contract import check_tier_class, implemented_hooks, suggest
from tierkit.errors import ConfigError, PluginError
from tierkit.hookspecs import PROJECT_NAME

__all__ = [
    "GROUP",
    "KindReport",
    "check_tier_class",
    "default_order",
    "describe_installed",
    "installed_entry_points",
    "load_tier_class",
]

GROUP = f"{PROJECT_NAME}.tiers"
"""The entry-point group tier distributions declare (name = kind, value = tier class)."""

log = logging.getLogger("tierkit")


@dataclass(frozen=True)
class KindReport:
    """What ``tierkit tiers`` shows for one installed kind."""

    kind: str
    distribution: str | None
    version: str | None
    target: str
    hooks: tuple[str, ...] = ()
    holds: str | None = None
    error: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def installed_entry_points() -> dict[str, list[EntryPoint]]:
    """Kind → entry points declaring it (more than one is a conflict), without importing any."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, []).append(ep)
    return dict(sorted(found.items()))


def _distribution(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = ep.dist
    return (dist.metadata["Name"], dist.version) if dist is not None else (None, None)


def unknown_kind_error(kind: str, tier_name: str) -> ConfigError:
    """The error for a configured kind that no installed distribution provides."""
    kinds = installed_entry_points()
    hint = suggest(kind, kinds)
    fix = (  # a near miss of an installed kind is a typo, not a plugin to install
        "Fix the name."
        if hint
        else f"To use it, install the distribution that provides tier kind {kind!r} (tierkit's own "
        f"tier plugins are named tierkit-<kind>: pip install tierkit-{kind})."
    )
    installed = ", ".join(kinds) or "none"
    return ConfigError(
        f"tier {tier_name!r}: unknown kind {kind!r}{hint}; installed kinds: {installed}. " + fix
    )


@cache
def load_tier_class(kind: str, tier_name: str = "") -> Any:
    """Import and check the tier class registered for ``kind``."""
    eps = installed_entry_points().get(kind)
    if not eps:
        raise unknown_kind_error(kind, tier_name or kind)
    if len(eps) > 1:
        owners = ", ".join(f"{_distribution(ep)[0]} ({ep.value})" for ep in eps)
        raise PluginError(f"tier kind {kind!r} is declared by several distributions: {owners}")
    return _load_and_check(eps[0])


def _load_and_check(ep: EntryPoint) -> Any:
    dist = _distribution(ep)[0] or "an unknown distribution"
    where = f"tier kind {ep.name!r} ({ep.value} from {dist})"
    try:
        cls = ep.load()
    except Exception as exc:
        raise PluginError(f"{where} failed to import: {type(exc).__name__}: {exc}") from exc
    problems = check_tier_class(cls)
    if problems:
        raise PluginError(f"{where} is not a valid tier: " + "; ".join(problems))
    assert isinstance(cls, type)
    return cls


def default_order() -> tuple[str, ...]:
    """The installed kinds that declare a ``default_rank``, lowest first (the order without configuration).

    Loads every installed kind; one that fails to load is logged and left out.
    """
    ranked: list[tuple[int, str]] = []
    for kind in installed_entry_points():
        try:
            rank = getattr(load_tier_class(kind), "default_rank", None)
        except (ConfigError, PluginError) as exc:
            log.warning("tier kind %r left out of the default order: %s", kind, exc)
            continue
        if rank is not None:
            ranked.append((rank, kind))
    return tuple(kind for _, kind in sorted(ranked))


def describe_installed() -> list[KindReport]:
    """Load every installed kind and report it, one failure per plugin rather than a crash."""
    reports = []
    for kind, eps in installed_entry_points().items():
        for ep in eps:
            dist, version = _distribution(ep)
            report = KindReport(kind=kind, distribution=dist, version=version, target=ep.value)
            if len(eps) > 1:
                reports.append(replace(report, error="kind declared by several distributions"))
                continue
            try:
                cls = _load_and_check(ep)
            except PluginError as exc:
                reports.append(replace(report, error=str(exc)))
                continue
            schema = cls.Options.model_json_schema().get("properties", {})
            options = {name: prop.get("description", "") for name, prop in schema.items()}
            reports.append(
                replace(
                    report, hooks=implemented_hooks(cls), holds=getattr(cls, "holds", None), options=options
                )
            )
    return reports
