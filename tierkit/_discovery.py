"""Finding tier classes through the ``tierkit.tiers`` entry-point group.

Only the kinds a configuration names are imported (:func:`load_tier_class`);
:func:`describe_installed` loads them all, for ``tierkit tiers``, and reports a
failure per plugin instead of failing as a whole.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel

from tierkit.errors import ConfigError, PluginError
from tierkit.hookspecs import PROJECT_NAME, REQUIRED_HOOKS

GROUP = f"{PROJECT_NAME}.tiers"
"""The entry-point group tier distributions declare (name = kind, value = tier class)."""

_MARKER = f"{PROJECT_NAME}_impl"
_KNOWN_DISTRIBUTIONS = {"redis": "tierkit-redis", "session": "tierkit-session"}


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
    installed = ", ".join(installed_entry_points()) or "none"
    dist = _KNOWN_DISTRIBUTIONS.get(kind, f"the distribution that provides tier kind {kind!r}")
    hint = f"pip install {dist}" if kind in _KNOWN_DISTRIBUTIONS else f"install {dist}"
    return ConfigError(
        f"tier {tier_name!r}: unknown kind {kind!r}; installed kinds: {installed}. To use it, {hint}."
    )


@cache
def load_tier_class(kind: str, tier_name: str = "") -> type:
    """Import and check the tier class registered for ``kind``."""
    eps = installed_entry_points().get(kind)
    if not eps:
        raise unknown_kind_error(kind, tier_name or kind)
    if len(eps) > 1:
        owners = ", ".join(f"{_distribution(ep)[0]} ({ep.value})" for ep in eps)
        raise PluginError(f"tier kind {kind!r} is declared by several distributions: {owners}")
    return _load_and_check(eps[0])


def _load_and_check(ep: EntryPoint) -> type:
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


def check_tier_class(cls: Any) -> list[str]:
    """What is wrong with ``cls`` as a tier class (empty when nothing is).

    pluggy checks hook argument names when a tier is registered; this checks
    what pluggy does not: the options model, the storage kind, required hooks.
    """
    if not inspect.isclass(cls):
        return [f"entry point must name a class, got {type(cls).__name__}"]
    problems = []
    options = getattr(cls, "Options", None)
    if not (inspect.isclass(options) and issubclass(options, BaseModel)):
        problems.append("Options must be a pydantic BaseModel subclass")
    elif options.model_config.get("extra") != "forbid":
        problems.append("Options must set model_config extra='forbid' so typos are reported")
    if getattr(cls, "holds", None) not in ("objects", "bytes"):
        problems.append("holds must be 'objects' or 'bytes'")
    if getattr(cls, "default_write", "always") not in ("always", "persistent", "never"):
        problems.append("default_write must be 'always', 'persistent' or 'never'")
    missing = [hook for hook in REQUIRED_HOOKS if not hasattr(getattr(cls, hook, None), _MARKER)]
    if missing:
        problems.append("missing @tierkit.hookimpl methods: " + ", ".join(missing))
    return problems


def implemented_hooks(cls: type) -> tuple[str, ...]:
    """Names of the hookimpls a tier class carries."""
    return tuple(
        sorted(
            name for name in dir(cls) if name.startswith("tierkit_") and hasattr(getattr(cls, name), _MARKER)
        )
    )


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
            schema = cls.Options.model_json_schema().get("properties", {})  # type: ignore[attr-defined]
            options = {name: prop.get("description", "") for name, prop in schema.items()}
            reports.append(
                replace(
                    report, hooks=implemented_hooks(cls), holds=getattr(cls, "holds", None), options=options
                )
            )
    return reports
