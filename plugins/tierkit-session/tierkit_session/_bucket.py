"""One session's entries for one namespace: an O(1) LRU with a tag index."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tierkit import Entry, NotACounter


class Bucket:
    """Key → :class:`~tierkit.Entry`, least recently used first, plus tag → keys.

    It lives inside the host's session mapping, so it dies with the session.
    Reads take no lock (each ``OrderedDict`` operation is atomic under the GIL
    and entries are immutable tuples); writes and invalidations hold the
    bucket's lock so the tag index always matches the entries, even when
    several threads serve the same session (Streamlit does).
    """

    __slots__ = ("entries", "evictions", "lock", "mark", "tag_index")

    def __init__(self, mark: Any = None) -> None:
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.tag_index: dict[str, set[str]] = {}
        self.evictions = 0
        self.lock = threading.Lock()
        self.mark = mark
        """Where it stands in the backplane's invalidation log (``None``: no backplane)."""

    # Session backends that pickle the session between requests need a
    # picklable bucket: drop the lock, make a new one on load.
    def __getstate__(self) -> dict[str, Any]:
        state = {"entries": self.entries, "tag_index": self.tag_index, "evictions": self.evictions}
        return {**state, "mark": self.mark}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.entries = state["entries"]
        self.tag_index = state["tag_index"]
        self.evictions = state["evictions"]
        self.mark = state.get("mark", ("unknown", 0))  # pickled before the backplane: history unknown
        self.lock = threading.Lock()

    def get(self, key: str, clock: Callable[[], float]) -> Entry | None:
        """The live entry under ``key``, now most recently used; ``None`` if absent or expired."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= clock():
            with self.lock:
                if self.entries.get(key) is entry:  # not replaced meanwhile
                    self._remove(key)
            return None
        # try/except, not contextlib.suppress, which would triple the cost of a hit.
        try:
            self.entries.move_to_end(key)
        except KeyError:  # removed by another thread since the lookup: still a hit
            pass
        return entry

    def set_many(self, entries: Iterable[tuple[str, Entry]], max_entries: int) -> None:
        """Store entries (each becomes most recently used), then evict down to ``max_entries``."""
        with self.lock:
            self._store(entries, max_entries)

    def _store(self, entries: Iterable[tuple[str, Entry]], max_entries: int) -> None:
        """:meth:`set_many` with the lock held."""
        for key, entry in entries:
            if key in self.entries:
                self._remove(key)
            self.entries[key] = entry
            for tag in entry.tags:
                self.tag_index.setdefault(tag, set()).add(key)
        while len(self.entries) > max_entries:
            self._remove(next(iter(self.entries)))
            self.evictions += 1

    def add(self, key: str, entry: Entry, clock: Callable[[], float], max_entries: int) -> bool:
        """Store ``entry`` unless a live one is there, under the lock; True if stored."""
        with self.lock:
            if self._live(key, clock) is not None:
                return False
            self._store(((key, entry),), max_entries)
            return True

    def incr(self, key: str, delta: int, clock: Callable[[], float]) -> Entry | None:
        """Add ``delta`` to the ``int`` under ``key``, under the lock; deadline and tags kept."""
        with self.lock:
            entry = self._live(key, clock)
            if entry is None:
                return None
            if type(entry.value) is not int:
                raise NotACounter(f"the stored value is a {type(entry.value).__name__}, not an int")
            updated = Entry(entry.value + delta, entry.expires_at, entry.tags)
            self.entries[key] = updated
            return updated

    def touch(self, key: str, expires_at: float | None, clock: Callable[[], float]) -> bool:
        """Give the live entry under ``key`` a new deadline, under the lock."""
        with self.lock:
            entry = self._live(key, clock)
            if entry is None:
                return False
            self.entries[key] = Entry(entry.value, expires_at, entry.tags)
            return True

    def delete_many(self, keys: Iterable[str]) -> int:
        with self.lock:
            held = [key for key in keys if key in self.entries]
            for key in held:
                self._remove(key)
            return len(held)

    def _live(self, key: str, clock: Callable[[], float]) -> Entry | None:
        """The unexpired entry under ``key`` (an expired one is removed); the caller holds the lock."""
        entry = self.entries.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= clock():
            self._remove(key)
            return None
        return entry

    def delete(self, key: str) -> bool:
        with self.lock:
            if key not in self.entries:
                return False
            self._remove(key)
            return True

    def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove the entries carrying any of ``tags``, found through the index."""
        with self.lock:
            keys = set().union(*(self.tag_index.get(tag, ()) for tag in tags))
            for key in keys:
                self._remove(key)
            return len(keys)

    def invalidate_prefix(self, prefix: str) -> int:
        """Remove the entries whose key starts with ``prefix``."""
        with self.lock:
            # A scan of this session's keys: at most max_entries, and sessions
            # are small, so a sorted index would cost more than it saves.
            # list() copies the keys in one C call: readers move entries (LRU) without the lock.
            keys = [key for key in list(self.entries) if key.startswith(prefix)]
            for key in keys:
                self._remove(key)
            return len(keys)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.tag_index.clear()

    def _remove(self, key: str) -> None:
        """Drop ``key`` (present) and its tag-index references; the caller holds the lock."""
        for tag in self.entries.pop(key).tags:
            keys = self.tag_index[tag]
            keys.discard(key)
            if not keys:
                del self.tag_index[tag]
