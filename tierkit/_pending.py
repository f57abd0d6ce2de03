"""Invalidations a tier missed, applied before it serves again.

When a write, delete, invalidation or clear cannot reach a tier (its backend
failed, timed out, or its breaker is open), that tier may still hold the old
value — or, after a timeout, a write the client gave up on.  Serving it would
be serving a stale value, so the chain remembers what the tier missed here and
applies it before the tier answers anything else.  Too much to remember
collapses into "clear this namespace", the safe superset.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

MAX_REMEMBERED = 10_000
"""Keys, tags and prefixes remembered per tier before collapsing into a clear of the namespace."""


class Pending:
    """What one tier must still remove: keys, tags, prefixes, or everything (``clear``)."""

    __slots__ = ("_lock", "clear", "keys", "prefixes", "tags")

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.tags: set[str] = set()
        self.prefixes: set[str] = set()
        self.clear = False
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return self.clear or bool(self.keys or self.tags or self.prefixes)

    def __len__(self) -> int:
        return len(self.keys) + len(self.tags) + len(self.prefixes) + self.clear

    def add(self, *, keys: Iterable[str] = (), tags: Iterable[str] = (), prefix: str | None = None) -> None:
        with self._lock:
            if self.clear:
                return
            self.keys.update(keys)
            self.tags.update(tags)
            if prefix is not None:
                self.prefixes.add(prefix)
            if len(self) > MAX_REMEMBERED:
                self._collapse()

    def add_clear(self) -> None:
        with self._lock:
            self._collapse()

    def _collapse(self) -> None:
        self.keys.clear()
        self.tags.clear()
        self.prefixes.clear()
        self.clear = True

    def apply(
        self,
        delete: Callable[[str], Any],
        invalidate_tags: Callable[[list[str]], Any],
        invalidate_prefix: Callable[[str], Any],
        clear: Callable[[], Any],
    ) -> None:
        """Apply everything remembered through the tier's hooks; what raises stays remembered."""
        with self._lock:
            if self.clear:
                clear()
                self.clear = False
                self.keys.clear()
                self.tags.clear()
                self.prefixes.clear()
                return
            for key in list(self.keys):
                delete(key)
                self.keys.discard(key)
            if self.tags:
                invalidate_tags(sorted(self.tags))
                self.tags.clear()
            for prefix in list(self.prefixes):
                invalidate_prefix(prefix)
                self.prefixes.discard(prefix)
