"""The one validator of tier classes, used by ``tierkit tiers``, ``Cache()`` and the conformance kit.

pluggy checks a hookimpl's argument names when a tier is registered, and only
then, with its own wording and no tier name.  :func:`check_tier_class` checks
everything the chain relies on before anything is registered — the same
answer wherever it is asked — and says how to fix each problem.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from tierkit import hookspecs
from tierkit.hookspecs import ASYNC_HOOKS, PROJECT_NAME, REQUIRED_HOOKS

_MARKER = f"{PROJECT_NAME}_impl"
_PREFIX = f"{PROJECT_NAME}_"


def _spec_parameters(spec: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(spec).parameters)


SPECS: dict[str, tuple[str, ...]] = {
    name: _spec_parameters(getattr(hookspecs, name))
    for name in dir(hookspecs)
    if name.startswith(_PREFIX) and hasattr(getattr(hookspecs, name), f"{PROJECT_NAME}_spec")
}
"""Every hook name → its parameter names, read from :mod:`tierkit.hookspecs`."""


def suggest(name: str, candidates: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_tier_class(cls: Any) -> list[str]:
    """What is wrong with ``cls`` as a tier class; empty when nothing is.

    Checks the options model, ``holds``, ``default_write``, the declared
    configuration, the required hooks, and every ``tierkit_*`` attribute: an
    unknown hook name, a hook method without ``@tierkit.hookimpl``, or
    parameter names the spec does not have.
    """
    if not inspect.isclass(cls):
        return [f"entry point must name a class, got {type(cls).__name__}"]
    problems = _check_declarations(cls)
    missing = [hook for hook in REQUIRED_HOOKS if not hasattr(getattr(cls, hook, None), _MARKER)]
    if missing:
        problems.append("missing @tierkit.hookimpl methods: " + ", ".join(missing))
    for name in sorted(dir(cls)):
        if name.startswith(_PREFIX):
            problems += _check_hook(cls, name)
    return problems


def _check_declarations(cls: type) -> list[str]:
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
    rank = getattr(cls, "default_rank", None)
    if rank is not None and type(rank) is not int:
        problems.append(f"default_rank must be an int or None, got {rank!r}")
    aliases = getattr(cls, "settings_aliases", {})
    if not (isinstance(aliases, dict) and all(type(k) is str and type(v) is str for k, v in aliases.items())):
        problems.append("settings_aliases must map variable names (str) to option names (str)")
    elif inspect.isclass(options) and issubclass(options, BaseModel):
        unknown = sorted(v for v in aliases.values() if v not in options.model_fields)
        if unknown:
            problems.append(f"settings_aliases name options the Options model lacks: {', '.join(unknown)}")
    return problems


def _check_hook(cls: type, name: str) -> list[str]:
    method = getattr(cls, name)
    marked = hasattr(method, _MARKER)
    if name not in SPECS:
        hint = suggest(name, SPECS)
        if marked:
            return [f"{name} is not a tierkit hook{hint}; hooks: {', '.join(sorted(SPECS))}"]
        return [f"{name}: names starting with {_PREFIX!r} are reserved for hooks{hint}"]
    if not marked:
        return [f"{name} is not marked @tierkit.hookimpl, so tierkit would never call it"]
    if not callable(method):
        return [f"{name} must be a method"]
    is_async = name.removeprefix(_PREFIX + "a") in ASYNC_HOOKS
    if is_async and not inspect.iscoroutinefunction(method):
        return [f"{name} is an async hook: define it with `async def` (or drop it to use {_sync_twin(name)})"]
    if not is_async and inspect.iscoroutinefunction(method):
        return [f"{name} is called without await: define it with `def`, not `async def`"]
    try:
        params = [p for p in inspect.signature(method).parameters if p != "self"]
    except (TypeError, ValueError):
        return []
    extra = [p for p in params if p not in SPECS[name]]
    if extra:
        spec = f"{name}({', '.join(SPECS[name])})"
        return [f"{name}: parameter {p!r} is not in the spec {spec}{suggest(p, SPECS[name])}" for p in extra]
    return []


def _sync_twin(name: str) -> str:
    return _PREFIX + name.removeprefix(_PREFIX + "a")


def implemented_hooks(cls: type) -> tuple[str, ...]:
    """Names of the hookimpls a tier class carries."""
    return tuple(sorted(name for name in dir(cls) if name in SPECS and hasattr(getattr(cls, name), _MARKER)))
