"""How much memory a Python value holds, roughly: for the memory tier's byte bound and ``inspect``."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["estimate_size"]


def estimate_size(value: Any, _seen: set[int] | None = None) -> int:
    """Approximate the memory held by ``value`` (containers followed, shared objects counted once)."""
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(estimate_size(k, seen) + estimate_size(v, seen) for k, v in value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        size += sum(estimate_size(item, seen) for item in value)
    elif hasattr(value, "__dict__"):
        size += estimate_size(vars(value), seen)
    return size
