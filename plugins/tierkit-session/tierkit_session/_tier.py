"""The session tier: the hooks tierkit calls, each on the current session's bucket."""

from __future__ import annotations

import threading
from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tierkit import Entry, SettingsSource, Tier, TierContext, TierHealth, hookimpl
from tierkit_session._binding import bind, current_session
from tierkit_session._bucket import Bucket
from tierkit_session._namespace import streamlit_namespace
from tierkit_session._streamlit import StreamlitSecrets

NO_SESSION = "no active session: wrap requests in tierkit_session.bind(mapping) or run under Streamlit"

# Creating a session's first bucket is a get-then-set on the host mapping; this
# lock makes it happen once when two threads of one session race.  Taken only
# on a session's first write, so it is never contended in steady state.
_create_lock = threading.Lock()


class SessionOptions(BaseModel):
    """Options of the ``session`` tier, validated by tierkit from the configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_entries: int = Field(
        1000, gt=0, description="Per session and namespace; least recently used entries go first."
    )
    state_key: str = Field(
        "tierkit",
        min_length=1,
        description="Key under which the tier keeps its state inside the host's session mapping.",
    )


class SessionTier(Tier[SessionOptions]):
    """Python objects cached in the current user's session.

    The session is whatever mapping :func:`tierkit_session.bind` made current
    (else Streamlit's ``st.session_state``).  Inside it, under
    ``options.state_key``, the tier keeps a dict namespace → :class:`Bucket`.
    Outside any session every hook is a cheap no-op: reads miss, writes are
    dropped, and health reports the tier as skipped.
    """

    Options = SessionOptions
    holds = "objects"  # the chain hands this tier Python objects, not encoded bytes
    blocking = False  # a dict in the bound session: the async API calls it inline
    default_write = "always"
    default_rank = 300  # after memory and redis, before file

    @classmethod
    def default_namespace(cls) -> str | None:
        """Under Streamlit, one namespace per app, from its main script's path (else no opinion)."""
        return streamlit_namespace()

    @classmethod
    def bind_session(cls, session: MutableMapping[str, Any]) -> AbstractContextManager[Any]:
        """:func:`tierkit_session.bind`: how the web-framework integrations bind each request."""
        return bind(session)

    @classmethod
    def settings_sources(cls) -> tuple[SettingsSource, ...]:
        """Streamlit's secrets: where Streamlit apps keep ``REDIS_URL`` and the like."""
        return (StreamlitSecrets(),)

    def __init__(self, options: SessionOptions, context: TierContext) -> None:
        super().__init__(options, context)
        # Copied into attributes once, so no hook looks through the options.
        self._max_entries = options.max_entries
        self._state_key = options.state_key
        self._namespace = context.namespace
        self._clock = context.clock
        self._log: Any = None

    def follow_invalidations(self, log: Any) -> None:
        """Called by tierkit's backplane (docs/coherence.md): changes other processes make reach
        every session, each when it is next used (:meth:`tierkit._backplane.InvalidationLog.catch_up`)."""
        self._log = log

    def _bucket(self) -> Bucket | None:
        """This namespace's bucket in the current session, or ``None`` (read paths)."""
        session = current_session()
        if session is None:
            return None
        buckets: dict[str, Bucket] | None = session.get(self._state_key)
        bucket = None if buckets is None else buckets.get(self._namespace)
        if bucket is not None and self._log is not None and bucket.mark is not self._log.mark:
            self._catch_up(bucket)
        return bucket

    def _catch_up(self, bucket: Bucket) -> None:
        """Apply to ``bucket`` the invalidations made since it was last in use (other sessions' too)."""
        bucket.mark = self._log.catch_up(
            bucket.mark, bucket.delete, bucket.invalidate_tags, bucket.invalidate_prefix, bucket.clear
        )

    def _bucket_for_write(self) -> Bucket | None:
        """Like :meth:`_bucket`, but creates the bucket in a session that has none yet."""
        session = current_session()
        if session is None:
            return None
        buckets: dict[str, Bucket] | None = session.get(self._state_key)
        bucket = None if buckets is None else buckets.get(self._namespace)
        if bucket is None:
            mark = None if self._log is None else self._log.mark
            with _create_lock:
                buckets = session.setdefault(self._state_key, {})
                bucket = buckets.setdefault(self._namespace, Bucket(mark))
        elif self._log is not None and bucket.mark is not self._log.mark:
            self._catch_up(bucket)
        return bucket

    @hookimpl
    def tierkit_get(self, key: str) -> Entry | None:
        bucket = self._bucket()
        return None if bucket is None else bucket.get(key, self._clock)

    @hookimpl
    def tierkit_get_many(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        bucket = self._bucket()
        if bucket is None:
            return {}
        found = {}
        for key in keys:
            entry = bucket.get(key, self._clock)
            if entry is not None:
                found[key] = entry
        return found

    @hookimpl
    def tierkit_set(self, key: str, entry: Entry) -> None:
        bucket = self._bucket_for_write()
        if bucket is not None:
            bucket.set_many(((key, entry),), self._max_entries)

    @hookimpl
    def tierkit_set_many(self, entries: Mapping[str, Entry]) -> None:
        bucket = self._bucket_for_write()
        if bucket is not None:
            bucket.set_many(entries.items(), self._max_entries)

    @hookimpl
    def tierkit_delete(self, key: str) -> bool:
        bucket = self._bucket()
        return bucket is not None and bucket.delete(key)

    # -- atomic operations, under the bucket's lock (one session's threads: Streamlit has several)

    @hookimpl
    def tierkit_add(self, key: str, entry: Entry) -> bool:
        bucket = self._bucket_for_write()
        return bucket is not None and bucket.add(key, entry, self._clock, self._max_entries)

    @hookimpl
    def tierkit_incr(self, key: str, delta: int) -> Entry | None:
        bucket = self._bucket()
        return None if bucket is None else bucket.incr(key, delta, self._clock)

    @hookimpl
    def tierkit_touch(self, key: str, expires_at: float | None) -> bool:
        bucket = self._bucket()
        return bucket is not None and bucket.touch(key, expires_at, self._clock)

    @hookimpl
    def tierkit_has(self, key: str) -> bool:
        bucket = self._bucket()
        return bucket is not None and bucket.get(key, self._clock) is not None

    @hookimpl
    def tierkit_delete_many(self, keys: Sequence[str]) -> int:
        bucket = self._bucket()
        return 0 if bucket is None else bucket.delete_many(keys)

    @hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        bucket = self._bucket()
        return 0 if bucket is None else bucket.invalidate_tags(tags)

    @hookimpl
    def tierkit_invalidate_prefix(self, prefix: str) -> int:
        bucket = self._bucket()
        return 0 if bucket is None else bucket.invalidate_prefix(prefix)

    @hookimpl
    def tierkit_clear(self) -> None:
        """Clear this namespace in the current session; other sessions are out of reach."""
        bucket = self._bucket()
        if bucket is not None:
            bucket.clear()

    @hookimpl
    def tierkit_health(self) -> TierHealth:
        if current_session() is None:
            return TierHealth("skipped", NO_SESSION)
        bucket = self._bucket()
        entries = 0 if bucket is None else len(bucket.entries)
        return TierHealth("ok", f"entries in this session: {entries}", {"entries": entries})

    @hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        """Figures for the current session only: other sessions are out of reach."""
        bucket = self._bucket()
        return {
            "active_session": current_session() is not None,
            "entries": 0 if bucket is None else len(bucket.entries),
            "evictions": 0 if bucket is None else bucket.evictions,
            "max_entries": self._max_entries,
        }
