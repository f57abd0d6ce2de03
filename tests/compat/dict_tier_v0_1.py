"""The tutorial's dict tier exactly as tierkit 0.1.0 documented it (examples/tierkit-dict-tier at e5d3edb).

Kept verbatim below this docstring: a third-party tier written against the 0.1.0 docs must keep
working unchanged. Do not modernise it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import tierkit
from tierkit import Entry, TierContext


# --8<-- [start:options]
class DictOptions(BaseModel):
    """Options of the ``dict`` tier: ``[tiers.<name>.options]`` in the configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_entries: int = Field(1000, gt=0, description="Entries kept; beyond it the oldest is dropped.")
    # --8<-- [end:options]


# --8<-- [start:class]
class DictTier(tierkit.Tier):
    """Python objects in a dict, in insertion order, with a tag → keys index."""

    Options = DictOptions
    holds = "objects"  # the chain hands us Python objects, not encoded bytes
    default_write = "always"  # written by every cache.set()

    def __init__(self, options: DictOptions, context: TierContext) -> None:
        super().__init__(options, context)
        self._max_entries = options.max_entries
        self._clock = context.clock  # the chain's clock: a FakeClock in tests
        self._entries: dict[str, Entry] = {}
        self._tags: dict[str, set[str]] = {}  # tag → keys, so invalidation reads no entries
        self._evictions = 0
        self._lock = threading.Lock()  # one lock around every hook: simple and thread-safe
        # --8<-- [end:class]

    # --8<-- [start:hooks]
    @tierkit.hookimpl
    def tierkit_get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at is not None and entry.expires_at <= self._clock():
                self._remove(key)  # expired: a miss, and gone
                return None
            return entry

    @tierkit.hookimpl
    def tierkit_set(self, key: str, entry: Entry) -> None:
        with self._lock:
            if key in self._entries:
                self._remove(key)  # a replaced entry loses its old tags and becomes the newest
            self._entries[key] = entry
            for tag in entry.tags:
                self._tags.setdefault(tag, set()).add(key)
            while len(self._entries) > self._max_entries:
                self._remove(next(iter(self._entries)))  # dicts keep insertion order: oldest first
                self._evictions += 1

    @tierkit.hookimpl
    def tierkit_delete(self, key: str) -> bool:
        with self._lock:
            if key not in self._entries:
                return False
            self._remove(key)
            return True

    @tierkit.hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        with self._lock:
            keys = set().union(*(self._tags.get(tag, ()) for tag in tags))
            for key in keys:
                self._remove(key)
            return len(keys)

    @tierkit.hookimpl
    def tierkit_invalidate_prefix(self, prefix: str) -> int:
        with self._lock:
            keys = [key for key in self._entries if key.startswith(prefix)]
            for key in keys:
                self._remove(key)
            return len(keys)

    @tierkit.hookimpl
    def tierkit_clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._tags.clear()
            # --8<-- [end:hooks]

    # --8<-- [start:rest]
    @tierkit.hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        return {
            "entries": len(self._entries),
            "max_entries": self._max_entries,
            "evictions": self._evictions,
        }

    def _remove(self, key: str) -> None:
        """Drop ``key`` and its tag references; the caller holds the lock."""
        for tag in self._entries.pop(key).tags:
            keys = self._tags[tag]
            keys.discard(key)
            if not keys:
                del self._tags[tag]
                # --8<-- [end:rest]
