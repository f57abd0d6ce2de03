"""The in-process memory tier: an O(1) LRU of Python objects with lazy TTL."""

from __future__ import annotations

import collections
import copy
import itertools
import operator
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tierkit._sizes import estimate_size
from tierkit._types import NEVER_DUE, Entry, Freshness, FrontDoor, HitCounter, Tier, TierContext, TierHealth
from tierkit.errors import NotACounter
from tierkit.hookspecs import hookimpl

_tags_of = operator.itemgetter(2)
_NEVER = NEVER_DUE.until


class MemoryOptions(BaseModel):
    """Options of the ``memory`` tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_entries: int = Field(10_000, gt=0, description="Evict least-recently-used entries above this count.")
    max_bytes: int | None = Field(
        None,
        gt=0,
        description="Also evict above this estimated size (deep sys.getsizeof); off by default.",
    )
    evict_batch: int = Field(
        1,
        gt=0,
        description="Least-recently-used entries evicted at once when max_entries is exceeded "
        "(Django's CULL_FREQUENCY maps here: max_entries // CULL_FREQUENCY).",
    )
    copy_on_read: bool = Field(
        False,
        description="Return a deep copy on every hit so callers cannot mutate cached objects.",
    )


class MemoryTier(Tier[MemoryOptions]):
    """Python objects in an ``OrderedDict``: O(1) get, set, LRU eviction and tag lookup.

    Reads take no lock (each ``OrderedDict`` operation is atomic under the GIL);
    writes, eviction and invalidation hold one lock so the tag index and the
    size total stay consistent with the entries.
    """

    Options = MemoryOptions
    holds = "objects"
    default_write = "always"
    default_rank = 100
    blocking = False  # dict operations: the async API calls it inline on the event loop

    def __init__(self, options: MemoryOptions, context: TierContext) -> None:
        super().__init__(options, context)
        self._max_entries = options.max_entries
        self._evict_batch = options.evict_batch
        self._max_bytes = options.max_bytes
        self._copy = options.copy_on_read
        self._clock = context.clock
        self._data: collections.OrderedDict[str, Entry] = collections.OrderedDict()
        self._touch = self._data.move_to_end
        self._tags: dict[str, set[str]] = {}
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self._evictions = 0
        self._expired = 0
        self._lock = threading.Lock()

    def front_door(
        self, on_miss: FrontDoor, counters: HitCounter, fresh: Freshness | None = None
    ) -> FrontDoor | None:
        """A fused ``get(key, default)`` that serves hits straight from this tier.

        A hit costs one dict lookup, a clock read, a comparison with
        ``fresh.until`` and an LRU touch, with no further call.  Anything else
        (miss, expired, odd key, a catch-up due) goes to ``on_miss``.  Not
        offered with ``copy_on_read`` (the copy dominates anyway).
        """
        if self._copy:
            return None
        data_get, touch, clock, expire = self._data.get, self._touch, self._clock, self._expire
        fresh = NEVER_DUE if fresh is None else fresh

        def get(key: str, default: Any = None) -> Any:
            try:
                entry = data_get(key)
            except TypeError:  # unhashable key: on_miss raises the proper error
                return on_miss(key, default)
            if entry is not None:
                expires_at, until = entry[1], fresh.until
                # No clock read for an entry without a TTL in a chain that never catches up.
                if (expires_at is None and until == _NEVER) or (
                    (now := clock()) < until and (expires_at is None or expires_at > now)
                ):
                    try:
                        touch(key)
                    except KeyError:  # removed by another thread since the lookup
                        pass
                    counters.hits += 1
                    return entry[0]
                if now < until:  # expired (past until, on_miss catches up and reads again)
                    expire(key, entry)
            return on_miss(key, default)

        return get

    @hookimpl
    def tierkit_get(self, key: str) -> Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires_at = entry[1]
        if expires_at is not None and expires_at <= self._clock():
            self._expire(key, entry)
            return None
        try:
            self._touch(key)
        except KeyError:  # removed by another thread since the lookup
            pass
        if self._copy:
            return Entry(copy.deepcopy(entry[0]), expires_at, entry[2])
        return entry

    def make_room(self, count: int) -> None:
        """Evict the least recently used entries that ``count`` new ones would displace (by count;
        a byte bound is kept when they are stored, their sizes being unknown until then)."""
        with self._lock:
            data = self._data
            excess = min(len(data) + count - self._max_entries, len(data))
            if excess > 0:
                self._pop_oldest(excess)

    @hookimpl
    def tierkit_get_many(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        # A cold memory tier in front of Redis is asked for every key of every get_many:
        # none of them held is one C-level pass, and a miss otherwise one membership test.
        data, get = self._data, self.tierkit_get
        if data.keys().isdisjoint(keys):
            return {}
        found: dict[str, Entry] = {}
        for key in keys:
            if key in data and (entry := get(key)) is not None:
                found[key] = entry
        return found

    @hookimpl
    def tierkit_set(self, key: str, entry: Entry) -> None:
        if self._copy:
            entry = Entry(copy.deepcopy(entry[0]), entry[1], entry[2])
        with self._lock:
            self._store(key, entry)
            if len(self._data) > self._max_entries or self._max_bytes is not None:
                self._evict()

    @hookimpl
    def tierkit_set_many(self, entries: Mapping[str, Entry]) -> None:
        if self._copy:
            entries = {k: Entry(copy.deepcopy(e[0]), e[1], e[2]) for k, e in entries.items()}
        with self._lock:  # one lock and one eviction pass for the batch (backfill of get_many)
            data = self._data
            if self._max_bytes is None and not any(map(_tags_of, entries.values())):
                # New untagged keys (a get_many backfill): one C-level insert of the batch (items()
                # hands out one reused pair, not a list of them); the keys it replaces go through
                # _store first, so their old tags are forgotten.
                if not data.keys().isdisjoint(entries):
                    for key in entries.keys() & data.keys():
                        self._store(key, entries[key])
                data.update(entries.items())
            else:
                for key, entry in entries.items():
                    self._store(key, entry)
            self._evict()

    @hookimpl
    def tierkit_delete(self, key: str) -> bool:
        with self._lock:
            if key not in self._data:
                return False
            self._remove(key)
            return True

    # -- atomic operations: each under the lock every write holds ---------------------------

    @hookimpl
    def tierkit_add(self, key: str, entry: Entry) -> bool:
        if self._copy:
            entry = Entry(copy.deepcopy(entry[0]), entry[1], entry[2])
        with self._lock:
            if self._live(key) is not None:
                return False
            self._store(key, entry)
            self._evict()
            return True

    @hookimpl
    def tierkit_incr(self, key: str, delta: int) -> Entry | None:
        with self._lock:
            entry = self._live(key)
            if entry is None:
                return None
            value = entry[0]
            if type(value) is not int:
                raise NotACounter(f"the stored value is a {type(value).__name__}, not an int")
            updated = Entry(value + delta, entry[1], entry[2])
            self._data[key] = updated  # same key, tags and (about) size: the indexes stay right
            return updated

    @hookimpl
    def tierkit_touch(self, key: str, expires_at: float | None) -> bool:
        with self._lock:
            entry = self._live(key)
            if entry is None:
                return False
            self._data[key] = Entry(entry[0], expires_at, entry[2])
            return True

    @hookimpl
    def tierkit_has(self, key: str) -> bool:
        entry = self._data.get(key)
        return entry is not None and (entry[1] is None or entry[1] > self._clock())

    @hookimpl
    def tierkit_delete_many(self, keys: Sequence[str]) -> int:
        with self._lock:
            return self._remove_all(keys)

    @hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        with self._lock:
            keys = set().union(*(self._tags.get(tag, ()) for tag in tags))
            return self._remove_all(keys)

    @hookimpl
    def tierkit_invalidate_prefix(self, prefix: str) -> int:
        with self._lock:
            # list() copies the keys in one C call: readers move entries (LRU) without the lock
            return self._remove_all([key for key in list(self._data) if key.startswith(prefix)])

    @hookimpl
    def tierkit_clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._tags.clear()
            self._sizes.clear()
            self._bytes = 0

    @hookimpl
    def tierkit_health(self) -> TierHealth:
        return TierHealth("ok", f"{len(self._data)} entries")

    @hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        stats: dict[str, Any] = {
            "entries": len(self._data),
            "max_entries": self._max_entries,
            "evictions": self._evictions,
            "expired": self._expired,
        }
        if self._max_bytes is not None:
            stats |= {"bytes": self._bytes, "max_bytes": self._max_bytes}
        return stats

    def _expire(self, key: str, entry: Entry) -> None:
        with self._lock:
            if self._data.get(key) is entry:
                self._remove(key)
                self._expired += 1

    # -- under self._lock ---------------------------------------------------------

    def _live(self, key: str) -> Entry | None:
        """The unexpired entry under ``key`` (an expired one is removed), or ``None``."""
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= self._clock():
            self._remove(key)
            self._expired += 1
            return None
        return entry

    def _store(self, key: str, entry: Entry) -> None:
        data = self._data
        old = data.pop(key, None)  # pop, then insert: a rewrite becomes the most recent entry
        if old is not None:
            self._forget(key, old)
        data[key] = entry
        for tag in entry[2]:
            self._tags.setdefault(tag, set()).add(key)
        if self._max_bytes is not None:
            size = estimate_size(entry[0])
            self._sizes[key] = size
            self._bytes += size

    def _remove(self, key: str) -> None:
        self._forget(key, self._data.pop(key))

    def _forget(self, key: str, entry: Entry) -> None:
        """Drop ``key`` (already out of the dict) from the tag index and the size total."""
        for tag in entry[2]:
            keys = self._tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[tag]
        if self._max_bytes is not None:
            self._bytes -= self._sizes.pop(key, 0)

    def _remove_all(self, keys: Iterable[str]) -> int:
        removed = 0
        for key in keys:
            if key in self._data:
                self._remove(key)
                removed += 1
        return removed

    def _pop_oldest(self, count: int) -> None:
        """Evict the ``count`` least recently used entries (there are at least that many)."""
        data = self._data
        if self._tags or self._max_bytes is not None:
            for _ in range(count):
                key, entry = data.popitem(last=False)
                self._forget(key, entry)
        else:  # no entry has tags, no sizes kept: nothing to forget; the oldest popped in one C-level pass
            collections.deque(map(data.popitem, itertools.repeat(False, count)), maxlen=0)
        self._evictions += count

    def _evict(self) -> None:
        """Drop least-recently-used entries until both bounds hold."""
        data, max_bytes = self._data, self._max_bytes
        excess = len(data) - self._max_entries
        if excess > 0:  # over the count: at least evict_batch at once (Django's culling), never the newest
            self._pop_oldest(max(excess, min(self._evict_batch, len(data) - 1)))
        if max_bytes is not None:
            while self._bytes > max_bytes:  # a value larger than the bound goes too: it is the last
                self._pop_oldest(1)
