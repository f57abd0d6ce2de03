"""A third-party-style byte tier on diskcache, written from tierkit's plugin docs alone.

It is the real tier the conformance kit is measured against (``test_kit_catches_broken_tiers``
breaks copies of it).  One diskcache directory holds every namespace: namespace ``ns``
keeps its entries under ``<len(ns)>:<ns>:k:<key>`` and its tag index under
``<len(ns)>:<ns>:t:<tag>`` (a JSON list of keys), so namespaces never collide and
``clear()`` removes exactly its own.  A stored value is ``<JSON [expires_at, tags]>\\n<payload>``:
the chain's clock decides expiry, not diskcache's, and nothing is pickled.  Every write that
touches the tag index is one diskcache transaction (SQLite ``BEGIN IMMEDIATE``), so other
threads and processes see an entry and its index change together.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

import tierkit
from tierkit import Entry, TierContext, TierHealth

if TYPE_CHECKING:
    import diskcache  # type: ignore[import-untyped]


class DiskcacheOptions(BaseModel):
    """Options of the ``diskcache`` tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    directory: Path = Field(description="The diskcache directory; namespaces share it.")


def encode(entry: Entry) -> bytes:
    """``<JSON [expires_at, tags]>\\n<payload>`` (compact JSON holds no newline)."""
    payload: bytes = entry.value
    return orjson.dumps([entry.expires_at, list(entry.tags)]) + b"\n" + payload


def decode(raw: Any) -> Entry | None:
    """The entry in ``raw``, or ``None`` if it is not one this tier wrote (the store is shared)."""
    if type(raw) is not bytes:
        return None
    header, newline, payload = raw.partition(b"\n")
    try:
        expires_at, tags = orjson.loads(header)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None
    if (
        not newline
        or not (expires_at is None or type(expires_at) in (int, float))
        or type(tags) is not list
        or not all(type(tag) is str for tag in tags)
    ):
        return None
    return Entry(payload, expires_at, tuple(tags))


class DiskcacheTier(tierkit.Tier):
    """Persistent byte tier in a diskcache directory shared by namespaces."""

    Options: ClassVar[type[BaseModel]] = DiskcacheOptions
    holds = "bytes"
    default_write = "persistent"

    def __init__(self, options: BaseModel, context: TierContext) -> None:
        if not isinstance(options, DiskcacheOptions):
            raise TypeError(f"DiskcacheTier needs DiskcacheOptions, got {type(options).__name__}")
        super().__init__(options, context)
        import diskcache

        self.directory = options.directory
        # No eviction: diskcache must never drop a tag-index record behind the tier's back.
        self.cache: diskcache.Cache = diskcache.Cache(str(options.directory), eviction_policy="none")
        namespace = context.namespace
        self.prefix = f"{len(namespace)}:{namespace}:"
        self._entries = self.prefix + "k:"
        self._tag_sets = self.prefix + "t:"
        self._clock = context.clock

    # -- reads ------------------------------------------------------------------------

    @tierkit.hookimpl
    def tierkit_get(self, key: str) -> Entry | None:
        return self.live(self.cache.get(self._entries + key))

    @tierkit.hookimpl
    def tierkit_get_many(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        found = {}
        for key in keys:
            entry = self.tierkit_get(key)
            if entry is not None:
                found[key] = entry
        return found

    @tierkit.hookimpl
    def tierkit_get_many_payloads(self, keys: Sequence[str]) -> tierkit.Payloads:
        """The same hits, column by column: the chain decodes the batch in one pass."""
        found = self.tierkit_get_many(keys)
        entries = found.values()
        return tierkit.Payloads(
            list(found),
            [entry.value for entry in entries],
            [entry.expires_at for entry in entries],
            {key: entry.tags for key, entry in found.items() if entry.tags},
        )

    @tierkit.hookimpl
    def tierkit_get_buffer(self, key: str) -> Entry | None:
        """The same hit, its payload in a new bytearray the codec may keep (the optional hook)."""
        entry = self.tierkit_get(key)
        return None if entry is None else entry._replace(value=bytearray(entry.value))

    def live(self, raw: Any) -> Entry | None:
        """The entry in ``raw`` unless it is absent, not ours, or expired (``expires_at <= now``)."""
        entry = None if raw is None else decode(raw)
        if entry is None or (entry.expires_at is not None and entry.expires_at <= self._clock()):
            return None
        return entry

    # -- writes -----------------------------------------------------------------------

    @tierkit.hookimpl
    def tierkit_set(self, key: str, entry: Entry) -> None:
        with self.cache.transact(retry=True):
            self.store(key, entry)

    @tierkit.hookimpl
    def tierkit_set_parts(self, key: str, entry: Entry) -> None:
        """A payload in pieces (the optional hook): diskcache stores bytes, so they are joined."""
        self.tierkit_set(key, entry._replace(value=entry.value.join()))

    @tierkit.hookimpl
    def tierkit_set_many(self, entries: Mapping[str, Entry]) -> None:
        with self.cache.transact(retry=True):
            for key, entry in entries.items():
                self.store(key, entry)

    def store(self, key: str, entry: Entry) -> None:
        """Write ``entry`` and index it under its tags (in a transaction)."""
        self.unindex(key)
        self.cache.set(self._entries + key, encode(entry))
        for tag in set(entry.tags):
            self.set_membership(tag, key, member=True)

    @tierkit.hookimpl
    def tierkit_delete(self, key: str) -> bool:
        with self.cache.transact(retry=True):
            return self.remove(key)

    @tierkit.hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        with self.cache.transact(retry=True):
            keys = set().union(*(self.tag_members(tag) for tag in tags))
            return sum(self.remove(key) for key in keys)

    @tierkit.hookimpl
    def tierkit_invalidate_prefix(self, prefix: str) -> int:
        """Scans this directory's keys: diskcache has no range query (fine for a test tier)."""
        start = len(self._entries)
        with self.cache.transact(retry=True):
            keys = [name[start:] for name in self.names(self._entries + prefix)]
            return sum(self.remove(key) for key in keys)

    @tierkit.hookimpl
    def tierkit_clear(self) -> None:
        with self.cache.transact(retry=True):
            for name in list(self.names(self.prefix)):
                self.cache.delete(name)

    def remove(self, key: str) -> bool:
        """Delete ``key`` and its tag-index records (in a transaction); was it there?"""
        return self.unindex(key) and bool(self.cache.delete(self._entries + key))

    def unindex(self, key: str) -> bool:
        """Take ``key``'s stored entry out of the tag index (in a transaction); was one stored?"""
        raw = self.cache.get(self._entries + key)
        if raw is None:
            return False
        entry = decode(raw)
        for tag in set(entry.tags if entry is not None else ()):
            self.set_membership(tag, key, member=False)
        return True

    def tag_members(self, tag: str) -> list[str]:
        raw = self.cache.get(self._tag_sets + tag)
        return [] if raw is None else list(orjson.loads(raw))

    def set_membership(self, tag: str, key: str, member: bool) -> None:
        members = set(self.tag_members(tag))
        (members.add if member else members.discard)(key)
        if members:
            self.cache.set(self._tag_sets + tag, orjson.dumps(sorted(members)))
        else:
            self.cache.delete(self._tag_sets + tag)

    def names(self, start: str) -> Iterator[str]:
        """The stored names beginning with ``start``."""
        return (name for name in self.cache.iterkeys() if isinstance(name, str) and name.startswith(start))

    # -- atomic operations: each one diskcache transaction, so across processes too ---

    @tierkit.hookimpl
    def tierkit_add(self, key: str, entry: Entry) -> bool:
        with self.cache.transact(retry=True):
            if self.tierkit_get(key) is not None:
                return False
            self.store(key, entry)
            return True

    @tierkit.hookimpl
    def tierkit_incr(self, key: str, delta: int) -> Entry | None:
        with self.cache.transact(retry=True):
            entry = self.tierkit_get(key)
            if entry is None:
                return None
            if not re.fullmatch(rb"-?[0-9]{1,20}", entry.value):
                raise tierkit.NotACounter("the stored value is not an integer")
            updated = Entry(b"%d" % (int(entry.value) + delta), entry.expires_at, entry.tags)
            self.cache.set(self._entries + key, encode(updated))
            return updated

    @tierkit.hookimpl
    def tierkit_touch(self, key: str, expires_at: float | None) -> bool:
        with self.cache.transact(retry=True):
            entry = self.tierkit_get(key)
            if entry is not None:
                self.cache.set(self._entries + key, encode(Entry(entry.value, expires_at, entry.tags)))
            return entry is not None

    @tierkit.hookimpl
    def tierkit_has(self, key: str) -> bool:
        return self.tierkit_get(key) is not None

    @tierkit.hookimpl
    def tierkit_delete_many(self, keys: Sequence[str]) -> int:
        with self.cache.transact(retry=True):
            return sum(self.remove(key) for key in keys)

    # -- broadcast hooks -------------------------------------------------------------

    @tierkit.hookimpl
    def tierkit_health(self) -> TierHealth:
        try:
            volume = self.cache.volume()
        except Exception as exc:  # health answers, never raises
            return TierHealth("down", f"{self.directory}: {type(exc).__name__}: {exc}")
        return TierHealth("ok", "", {"bytes_on_disk": volume})

    @tierkit.hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        return {"directory": str(self.directory)}

    @tierkit.hookimpl
    def tierkit_close(self) -> None:
        self.cache.close()
