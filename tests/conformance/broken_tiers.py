"""Deliberately broken copies of :class:`DiskcacheTier`, one bug each.

``test_kit_catches_broken_tiers`` runs the conformance suite against every one of them and
expects the suite to fail where the bug shows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

import tierkit
from tierkit import Entry, TierContext, TierHealth

from .diskcache_tier import DiskcacheOptions, DiskcacheTier, decode


class ClearWipesOtherNamespaces(DiskcacheTier):
    """``clear()`` empties the whole directory, every namespace with it."""

    @tierkit.hookimpl
    def tierkit_clear(self) -> None:
        self.cache.clear()


class IgnoresNamespace(DiskcacheTier):
    """Every namespace writes to the same keys."""

    def __init__(self, options: BaseModel, context: TierContext) -> None:
        super().__init__(options, context)
        self.prefix, self._entries, self._tag_sets = "shared:", "shared:k:", "shared:t:"


class GetManyIgnoresExpiry(DiskcacheTier):
    """``get_many`` returns entries whose deadline has passed."""

    @tierkit.hookimpl
    def tierkit_get_many(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        found = {}
        for key in keys:
            raw = self.cache.get(self._entries + key)
            entry = None if raw is None else decode(raw)
            if entry is not None:
                found[key] = entry
        return found


class PayloadsDropTags(DiskcacheTier):
    """The column-by-column batch read forgets the tags (``get_many`` keeps them)."""

    @tierkit.hookimpl
    def tierkit_get_many_payloads(self, keys: Sequence[str]) -> tierkit.Payloads:
        found = super().tierkit_get_many_payloads(keys)
        return found._replace(tags={})


class SetPartsKeepsTheFirstPiece(DiskcacheTier):
    """A payload in pieces is stored as its first piece only."""

    @tierkit.hookimpl
    def tierkit_set_parts(self, key: str, entry: Entry) -> None:
        self.tierkit_set(key, entry._replace(value=bytes(entry.value.buffers[0])))


class GetBufferHandsOutItsOwnMemory(DiskcacheTier):
    """``tierkit_get_buffer`` answers the same bytearray every time: the codec would write into
    what the next reader gets."""

    def __init__(self, options: BaseModel, context: TierContext) -> None:
        super().__init__(options, context)
        self.held: dict[str, Entry] = {}

    @tierkit.hookimpl
    def tierkit_get_buffer(self, key: str) -> Entry | None:
        if key not in self.held:
            entry = super().tierkit_get_buffer(key)
            if entry is None:
                return None
            self.held[key] = entry
        return self.held[key]


class ExpiryOffByOne(DiskcacheTier):
    """An entry is still served at exactly ``expires_at`` (``<`` instead of ``<=``)."""

    def live(self, raw: Any) -> Entry | None:
        entry = None if raw is None else decode(raw)
        if entry is None or (entry.expires_at is not None and entry.expires_at < self._clock()):
            return None
        return entry


class TagIndexLostOnReopen(DiskcacheTier):
    """The tag index lives in the instance, not in the store: a new instance starts without it."""

    def __init__(self, options: BaseModel, context: TierContext) -> None:
        super().__init__(options, context)
        self.index: dict[str, set[str]] = {}

    def tag_members(self, tag: str) -> list[str]:
        return sorted(self.index.get(tag, ()))

    def set_membership(self, tag: str, key: str, member: bool) -> None:
        members = self.index.setdefault(tag, set())
        (members.add if member else members.discard)(key)

    @tierkit.hookimpl
    def tierkit_clear(self) -> None:
        super().tierkit_clear()
        self.index.clear()


class StaleTagIndexAfterInvalidation(DiskcacheTier):
    """Invalidation deletes the entries but leaves them in the tag index: a key set again
    without the tag is then removed by the old tag."""

    @tierkit.hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        with self.cache.transact(retry=True):
            keys = set().union(*(self.tag_members(tag) for tag in tags))
            return sum(bool(self.cache.delete(self._entries + key)) for key in keys)


class BytesAsMemoryview(DiskcacheTier):
    """Values come back as ``memoryview`` (equal to the bytes, but not ``bytes``)."""

    def live(self, raw: Any) -> Entry | None:
        entry = super().live(raw)
        return None if entry is None else Entry(memoryview(entry.value), entry.expires_at, entry.tags)


class TagsAsList(DiskcacheTier):
    """Tags come back as a list."""

    def live(self, raw: Any) -> Entry | None:
        entry = super().live(raw)
        return None if entry is None else Entry(entry.value, entry.expires_at, list(entry.tags))  # type: ignore[arg-type]


class TagsDropped(DiskcacheTier):
    """Tags are indexed but not returned: the chain would backfill upper tiers without them."""

    def live(self, raw: Any) -> Entry | None:
        entry = super().live(raw)
        return None if entry is None else Entry(entry.value, entry.expires_at, ())


class GetReturnsPlainTuple(DiskcacheTier):
    """``get`` returns a plain ``(value, expires_at, tags)`` tuple, not an ``Entry``."""

    @tierkit.hookimpl
    def tierkit_get(self, key: str) -> Entry | None:
        entry = super().tierkit_get(key)
        return None if entry is None else tuple(entry)  # type: ignore[return-value]


class DeleteReturnsNone(DiskcacheTier):
    """``delete`` answers ``None`` instead of whether it removed something."""

    @tierkit.hookimpl
    def tierkit_delete(self, key: str) -> bool:
        super().tierkit_delete(key)
        return None  # type: ignore[return-value]


class HealthRaises(DiskcacheTier):
    """``health`` lets the backend's exception escape."""

    @tierkit.hookimpl
    def tierkit_health(self) -> TierHealth:
        return TierHealth("ok", "", {"bytes_on_disk": self.cache.volume()})


class PrivateReadCache(DiskcacheTier):
    """A per-instance dict in front of the store: another instance's writes go unseen."""

    def __init__(self, options: BaseModel, context: TierContext) -> None:
        super().__init__(options, context)
        self.seen: dict[str, Entry] = {}

    @tierkit.hookimpl
    def tierkit_get(self, key: str) -> Entry | None:
        entry = self.seen.get(key)
        if entry is None:
            entry = super().tierkit_get(key)
            if entry is not None:
                self.seen[key] = entry
        elif entry.expires_at is not None and entry.expires_at <= self._clock():
            return None
        return entry

    def store(self, key: str, entry: Entry) -> None:
        super().store(key, entry)
        self.seen[key] = entry

    def remove(self, key: str) -> bool:
        self.seen.pop(key, None)
        return super().remove(key)

    @tierkit.hookimpl
    def tierkit_clear(self) -> None:
        super().tierkit_clear()
        self.seen.clear()


class UnsafeConcurrentInvalidation(DiskcacheTier):
    """Invalidation reads the tag index, then removes those keys in later round trips without
    checking they still carry the tag: an entry rewritten meanwhile without it is lost."""

    @tierkit.hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        keys = set().union(*(self.tag_members(tag) for tag in tags))
        time.sleep(0.005)  # a slow round trip to the store
        removed = 0
        for key in keys:
            with self.cache.transact(retry=True):
                removed += self.remove(key)
        return removed


class RacyAdd(DiskcacheTier):
    """``add`` checks, then writes in another round trip: two threads may both win."""

    @tierkit.hookimpl
    def tierkit_add(self, key: str, entry: Entry) -> bool:
        if self.tierkit_get(key) is not None:
            return False
        time.sleep(0.005)  # a slow round trip to the store
        self.tierkit_set(key, entry)
        return True


class IncrDropsTheDeadline(DiskcacheTier):
    """``incr`` rewrites the counter without its deadline: it then never expires."""

    @tierkit.hookimpl
    def tierkit_incr(self, key: str, delta: int) -> Entry | None:
        entry = super().tierkit_incr(key, delta)
        if entry is not None:
            entry = Entry(entry.value, None, entry.tags)
            self.tierkit_set(key, entry)
        return entry


class TypoTolerantOptions(DiskcacheOptions):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OptionsAcceptTypos(DiskcacheTier):
    """The options model ignores unknown options, so a typo in the configuration goes unnoticed."""

    Options = TypoTolerantOptions
