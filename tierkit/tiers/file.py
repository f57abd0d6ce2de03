"""The file tier: a persistent, size-bounded cache in one SQLite database per namespace.

Entries live in ``<directory>/<namespace>/cache.sqlite3`` (SQLite in WAL mode, from the
standard library); keys never become paths.  A value of at least ``file_min_bytes`` is
written to a file of its own beside the database (``values/xx/<random>.val``, diskcache's
design: SQLite writes a large blob at a fraction of the disk's speed), and its row holds
the file's name and size; a payload in pieces (``tierkit_set_parts``) is written to it piece by
piece, and ``tierkit_get_buffer`` reads it into memory handed over to the codec, so a numpy
array is copied neither way.  Every write is one atomic transaction: a process killed mid-write
leaves the old value or the new one (a value file is complete before the row naming it
commits).  A value in the database carries a CRC-32; a value file is checked by its length
and a CRC-32 of its first and last 64 KiB (a CRC of the whole file would cost as much as
reading it).  A row that fails its check, or whose file is missing, is a miss, and is
removed and counted.  A database file that is not a database is moved aside
(``.corrupt-<timestamp>``), its value files deleted, and replaced by an empty one.

Value files are removed by triggers, never by hand-kept lists: every statement that deletes
a row or replaces its file (delete, overwrite, eviction, expiry, invalidation, clear, a
corrupt row) records the old file in the ``dropped`` table in the same transaction; after
committing, the writer unlinks the recorded files.  Files a crash left behind (written but
never committed, or committed as dropped but not yet unlinked) are swept when a tier opens
the store: a file no row names is deleted once it is older than ``_ORPHAN_GRACE``, so that a
file another process has written but not yet committed is never taken.

Nothing scans the store per operation: triggers keep the entry count and byte total in a
one-row ``meta`` table and the ``tag → entry`` index in step; writes are upserts in place
that stamp a ``seq`` (store order), so eviction walks the ``seq`` index oldest first;
expiry purges use an index on ``expires_at``; prefix invalidation is a range on the key
index.

Each tier holds two connections, one for reads and one for writes, so that a read never
queues behind a write waiting for another process's lock (WAL readers do not block).  No
descriptor of the database is ever opened or closed outside SQLite: closing one would drop
the POSIX locks SQLite holds on the file for every connection of this process.  Before a
``fork`` every connection is closed, so that no SQLite state crosses into the child; both
sides reopen on their next operation.  Every ``_CHECK_EVERY`` operations a connection checks
(one ``stat``) that the path still names its file, and reopens if the store was deleted or
replaced."""

from __future__ import annotations

import functools
import logging
import mmap
import os
import re
import shutil
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal
from zlib import crc32

import orjson
import platformdirs
from pydantic import BaseModel, ConfigDict, Field

from tierkit._atomics import counter_payload, counter_value
from tierkit._events import emit
from tierkit._types import Entry, Holds, Tier, TierContext, TierHealth, WritePolicy
from tierkit.errors import ConfigError, TierkitError
from tierkit.hookspecs import hookimpl
from tierkit.tiers._lockfiles import LockFiles

if sys.platform != "win32":
    import fcntl

__all__ = ["FileTier", "FileOptions"]

logger = logging.getLogger("tierkit.file")

DB_NAME = "cache.sqlite3"
VALUES_DIR = "values"
"""Sub-directory of the namespace holding the value files (``xx/<30 hex digits>.val``)."""
SCHEMA_VERSION = 2
_CORRUPTION_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_NAMESPACE_RE = re.compile(r"(?!\.{1,2}\Z)[A-Za-z0-9_.\-]{1,128}")
"""Used with ``fullmatch``; ``\\Z``, not ``$``, which also matches before a final newline."""
_CHECK_EVERY = 64
"""Operations of one connection between two checks that its file is still the store."""
_IN_WIDTHS = (1, 4, 16, 64, 256)
"""Widths of the ``IN (?, …)`` lists of batch reads (a few cached statements, not one per size)."""
_EVICT_SLACK = 1 << 20
"""Eviction frees this much below ``max_bytes`` (at most a tenth of it): batches that are
neither one per write nor a long pause."""
_TOKEN_RE = re.compile(r"[0-9a-f]{32}")
"""A value file's name in its row: 32 hex digits (checked before it becomes a path)."""
_EDGE = 64 << 10
"""A value file's CRC-32 covers its first and last this many bytes."""
_ORPHAN_GRACE = 600.0
"""Seconds after its last write before a value file no row names may be swept: a writer
commits its row right after writing the file, so only a crash leaves one that old."""
Buffer = bytes | bytearray | memoryview
"""A value file's bytes, or one piece of them (:class:`tierkit.Parts`)."""
_HUGEPAGE: int | None = getattr(mmap, "MADV_HUGEPAGE", None)
_HUGE_MIN = 4 << 20
"""Value files read for the codec to keep from this size on go to memory that may use huge pages."""
_DROP_BATCH = 256
_REREADS = 4
"""Times a read re-reads a row whose value file a writer replaced under it."""

_SCHEMA_1 = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    value BLOB NOT NULL,
    crc INTEGER NOT NULL,
    size INTEGER NOT NULL,
    expires_at REAL,
    tags BLOB,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_seq ON entries (seq);
CREATE INDEX IF NOT EXISTS entries_expires_at ON entries (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS tags (
    tag TEXT NOT NULL,
    entry_id INTEGER NOT NULL,
    PRIMARY KEY (tag, entry_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_entry_id ON tags (entry_id);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    evictions INTEGER NOT NULL,
    expired INTEGER NOT NULL,
    corrupt INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta VALUES (0, 0, 0, 0, 0, 0);
CREATE TRIGGER IF NOT EXISTS entries_insert AFTER INSERT ON entries BEGIN
    UPDATE meta SET entries = entries + 1, bytes = bytes + new.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_resize AFTER UPDATE OF size ON entries
    WHEN new.size != old.size BEGIN
    UPDATE meta SET bytes = bytes + new.size - old.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_delete AFTER DELETE ON entries BEGIN
    UPDATE meta SET entries = entries - 1, bytes = bytes - old.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_untag AFTER DELETE ON entries
    WHEN old.tags IS NOT NULL BEGIN
    DELETE FROM tags WHERE entry_id = old.id;
END;
CREATE TRIGGER IF NOT EXISTS entries_retag AFTER UPDATE OF tags ON entries
    WHEN old.tags IS NOT NULL BEGIN
    DELETE FROM tags WHERE entry_id = old.id;
END;
PRAGMA user_version = 1;
COMMIT;
"""
"""Schema version 1, created once per file.  ``seq`` is the store order (eviction walks its
index); the triggers keep ``meta`` (count, bytes) and the tag index in step with ``entries``."""

_SCHEMA_2 = """
BEGIN IMMEDIATE;
ALTER TABLE entries ADD COLUMN file TEXT;
ALTER TABLE meta ADD COLUMN files INTEGER NOT NULL DEFAULT 0;
CREATE INDEX entries_file ON entries (file) WHERE file IS NOT NULL;
CREATE TABLE dropped (file TEXT PRIMARY KEY) WITHOUT ROWID;
DROP TRIGGER entries_insert;
CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
    UPDATE meta SET entries = entries + 1, bytes = bytes + new.size,
        files = files + (new.file IS NOT NULL) WHERE id = 0;
END;
DROP TRIGGER entries_resize;
CREATE TRIGGER entries_resize AFTER UPDATE OF size, file ON entries
    WHEN new.size != old.size OR old.file IS NOT new.file BEGIN
    UPDATE meta SET bytes = bytes + new.size - old.size,
        files = files + (new.file IS NOT NULL) - (old.file IS NOT NULL) WHERE id = 0;
    INSERT OR IGNORE INTO dropped SELECT old.file WHERE old.file IS NOT new.file AND old.file IS NOT NULL;
END;
DROP TRIGGER entries_delete;
CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
    UPDATE meta SET entries = entries - 1, bytes = bytes - old.size,
        files = files - (old.file IS NOT NULL) WHERE id = 0;
    INSERT OR IGNORE INTO dropped SELECT old.file WHERE old.file IS NOT NULL;
END;
PRAGMA user_version = 2;
COMMIT;
"""
"""Version 2: value files.  ``file`` names a row's value file (NULL: the value is in the
row); the triggers record every file a statement drops in ``dropped`` (unlinked after the
commit) and keep the count of rows with a file in ``meta.files``.  They are version 1's
triggers rewritten, not new ones: each trigger that fires runs a sub-program, which would
cost every small write ~5% more."""

_GET = "SELECT id, value, crc, expires_at, tags, size, file FROM entries WHERE key = ?"
_GET_ID = "SELECT id, value, crc, expires_at, tags, size, file FROM entries WHERE id = ?"
_GET_SOME = "SELECT key, id, value, crc, expires_at, tags, size, file FROM entries WHERE key IN ({})"
"""Batch read of up to one ``_IN_WIDTHS`` width of keys.  Keys are bound parameters, never
JSON through ``json_each``, which cuts a string at its first NUL."""
_SET = (
    "INSERT INTO entries (key, value, crc, size, expires_at, tags, file, seq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT IFNULL(MAX(seq), 0) + 1 FROM entries))"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, crc = excluded.crc,"
    " size = excluded.size, expires_at = excluded.expires_at, tags = excluded.tags,"
    " file = excluded.file, seq = excluded.seq"
    " RETURNING id, (SELECT bytes FROM meta WHERE id = 0) AS b, (SELECT files FROM meta WHERE id = 0) AS f"
)
"""Upsert in place (far fewer pages written than a REPLACE), returning the entry's id, the
byte total and the count of rows with a value file, both *before* this row (RETURNING does
not see the triggers' effect): with no file before, this write dropped none.  Short column
names: the sqlite3 module builds every statement's column names on every execute."""
_SET_TAG = "INSERT OR IGNORE INTO tags (tag, entry_id) VALUES (?, ?)"
_DELETE = "DELETE FROM entries WHERE key = ? RETURNING file"
_DELETE_SOME = "DELETE FROM entries WHERE key IN ({})"
_LIVE = (
    "SELECT id, value, crc, expires_at, tags, size, file FROM entries"
    " WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
)
_HAS = "SELECT 1 FROM entries WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
_REWRITE = "UPDATE entries SET value = ?, crc = ?, size = ?, file = NULL WHERE id = ?"
_TOUCH = "UPDATE entries SET expires_at = ? WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
_DELETE_CORRUPT = "DELETE FROM entries WHERE id = ? AND file IS ?"
"""By id *and* file: a row rewritten since it was read (same id, new file) is not the corrupt one."""
_COUNT_CORRUPT = "UPDATE meta SET corrupt = corrupt + 1 WHERE id = 0"
_DELETE_TAGGED = "DELETE FROM entries WHERE id IN (SELECT entry_id FROM tags WHERE tag IN ({}))"
_DELETE_RANGE = "DELETE FROM entries WHERE key >= ? AND key < ?"
_DELETE_FROM = "DELETE FROM entries WHERE key >= ?"
_CLEAR = "DELETE FROM entries"
_TOTAL_BYTES = "SELECT bytes FROM meta WHERE id = 0"
_BYTES_AND_FILES = "SELECT bytes, files FROM meta WHERE id = 0"
_STATS = "SELECT entries, bytes, evictions, expired, corrupt, files FROM meta WHERE id = 0"
_DROPPED = f"SELECT file FROM dropped LIMIT {_DROP_BATCH}"
_UNDROP = "DELETE FROM dropped WHERE file = ?"
_NAMES_FILE = "SELECT 1 FROM entries WHERE file = ?"
_PURGE_EXPIRED = "DELETE FROM entries WHERE expires_at <= ?"
_COUNT_EXPIRED = "UPDATE meta SET expired = expired + ? WHERE id = 0"
_OLDEST = "SELECT seq, size FROM entries ORDER BY seq"
_EVICT = "DELETE FROM entries WHERE seq <= ?"
_COUNT_EVICTED = "UPDATE meta SET evictions = evictions + ? WHERE id = 0"

_live_tiers: weakref.WeakSet[FileTier] = weakref.WeakSet()
_forking: list[FileTier] = []
_fork_lock = threading.Lock()
"""Held from before a fork to after it: two threads forking at once take turns."""


def _before_fork() -> None:
    """Close every connection, holding the tiers' locks through the fork, so that neither
    process inherits SQLite state (its locks and shared memory belong to one process)."""
    _fork_lock.acquire()
    _forking[:] = list(_live_tiers)
    for tier in _forking:
        tier._hold()


def _after_fork() -> None:
    for tier in _forking:
        tier._release()
    _forking.clear()
    _fork_lock.release()


if sys.platform != "win32":
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)


class FileOptions(BaseModel):
    """Options of the ``file`` tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    directory: Path | None = Field(
        default=None,
        description="Directory holding one sub-directory per namespace; "
        "None means the user cache directory (platformdirs.user_cache_dir('tierkit')).",
    )
    max_bytes: int = Field(
        default=1 << 30,
        gt=0,
        description="Upper bound on the total size of stored values, in bytes; the least "
        "recently stored entries are evicted beyond it. SQLite's own overhead comes on top.",
    )
    busy_timeout: float = Field(
        default=5.0,
        ge=0,
        description="Seconds to wait for another process's write lock before failing.",
    )
    synchronous: Literal["off", "normal", "full"] = Field(
        default="normal",
        description="SQLite synchronous mode. 'normal': no fsync per write, an atomic commit "
        "survives a killed process and power loss can lose only the last writes; 'full': an "
        "fsync per write, nothing committed is lost; 'off': no fsync at all, fastest, still "
        "safe when the process is killed, but an OS crash or power loss may corrupt the file.",
    )
    file_min_bytes: int = Field(
        default=512 << 10,
        gt=0,
        description="Values of at least this many bytes are written to a file of their own "
        "beside the database, checked by length and a CRC-32 of their first and last 64 KiB; "
        "smaller values stay in the database with a CRC-32 of the whole value.",
    )
    purge_every: int = Field(
        default=256,
        gt=0,
        description="Purge expired entries (through the expiry index) once every this many "
        "writes of this process.",
    )
    mmap_bytes: int = Field(
        default=0,
        ge=0,
        description="Bytes of the database file SQLite may memory-map (0: none). Reads then "
        "cost no system call, but a database file truncated or overwritten by anything else, "
        "or a disk read error, kills the process with SIGBUS instead of raising an error.",
    )


class _Handle:
    """One connection of a tier and the lock that serialises its use.

    ``with handle as conn`` holds the lock; every ``_CHECK_EVERY`` uses (or at once, after
    ``recheck``) it makes sure the connection is open on the file the path names, reopening it
    when closed, after a fork, or when the store was deleted or replaced.
    """

    __slots__ = ("_tier", "conn", "cursor", "inode", "is_open", "lock", "ops_left", "reads_only")

    def __init__(self, tier: FileTier, *, reads_only: bool) -> None:
        self._tier = tier
        self.reads_only = reads_only
        self.lock = threading.Lock()
        self.conn, self.inode = tier._open(reads_only=reads_only)
        self.cursor = self.conn.cursor()
        self.is_open = True
        self.ops_left = _CHECK_EVERY

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        self.ops_left -= 1
        if self.ops_left <= 0:
            try:
                self._refresh()
            except BaseException:
                self.lock.release()
                raise
        return self.conn

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if isinstance(exc, sqlite3.DatabaseError):
                self._tier._failed(exc, self)
        finally:
            self.lock.release()

    def fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """The rows of ``sql``, read to the end on this connection's own cursor.

        What ``with handle as conn: conn.execute(sql, params).fetchall()`` does, in one
        call and without a new cursor per statement: a file-tier miss of every
        ``Cache.get`` pays it.  Read to the end, so no statement keeps a read
        transaction open between calls.
        """
        self.lock.acquire()
        try:
            self.ops_left -= 1
            if self.ops_left <= 0:
                self._refresh()
            try:
                return self.cursor.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                self._tier._failed(exc, self)
                raise
        finally:
            self.lock.release()

    def recheck(self) -> None:
        """Check the file at the next use (its owner may be in the middle of one now)."""
        self.ops_left = 0

    def close(self) -> None:
        """Close the connection (lock held); the next use reopens it."""
        if self.is_open:
            self.is_open = False
            self.conn.close()
        self.ops_left = 0

    def _refresh(self) -> None:
        tier = self._tier
        self.ops_left = _CHECK_EVERY
        replaced = self.is_open
        if replaced:
            if self.inode is not None and _inode(tier.path) == self.inode:
                return
            self.close()
        self.conn, self.inode = tier._open(reads_only=self.reads_only)
        self.cursor = self.conn.cursor()
        self.is_open = True
        if replaced and self.inode != tier._store:  # the first of the two handles to notice
            tier._reopened += 1
            logger.warning("file tier: %s was deleted or replaced; reopened it", tier.path)
        tier._store = self.inode


class FileTier(Tier[FileOptions]):
    """Persistent byte tier backed by one SQLite database (WAL mode) per namespace.

    Safe to share between threads (a read connection and a write connection, each behind a
    lock), between instances and between processes (SQLite's locking, ``busy_timeout``); a
    fork closes the connections, and each process reopens its own.
    """

    Options: ClassVar[type[BaseModel]] = FileOptions
    holds: ClassVar[Holds] = "bytes"
    default_write: ClassVar[WritePolicy] = "persistent"
    remote: ClassVar[bool] = False
    default_rank: ClassVar[int | None] = 400  # last: the slowest, and the one that outlives the process

    def __init__(self, options: FileOptions, context: TierContext) -> None:
        if not isinstance(options, FileOptions):
            raise TypeError(f"FileTier needs FileOptions, got {type(options).__name__}")
        if not _NAMESPACE_RE.fullmatch(context.namespace):
            raise ConfigError(
                f"file tier {context.name!r}: namespace {context.namespace!r} is not a safe "
                "directory name: use 1-128 letters, digits, '_', '.' or '-', not '.' or '..'"
            )
        super().__init__(options, context)
        self._opts = options
        self._clock = context.clock
        self._max_bytes = options.max_bytes
        directory = options.directory
        if directory is None:
            directory = Path(platformdirs.user_cache_dir("tierkit"))
        self._root = directory.expanduser()
        self._dir = self._root / context.namespace
        self.path = self._dir / DB_NAME
        """The SQLite database of this namespace."""
        self._quarantined: list[Path] = []
        self._reopened = 0
        self._writes_left = options.purge_every
        self._values = self._dir / VALUES_DIR
        self._min_file = options.file_min_bytes
        self._lock_files = LockFiles(self._dir / "locks")
        self._writer = _Handle(self, reads_only=False)
        self._reader = _Handle(self, reads_only=True)
        self._store = self._reader.inode
        """The database file this tier last opened (device, inode)."""
        _live_tiers.add(self)
        self._sweep()

    # -- connection management ------------------------------------------------------------

    def _open(self, *, reads_only: bool) -> tuple[sqlite3.Connection, tuple[int, int] | None]:
        """Open (creating the store if need be) and set up a connection, and say on which
        file; a corrupt database is moved aside once."""
        for attempt in (1, 2):
            self._create()
            inode = _inode(self.path)  # before connecting: a later swap is seen, never missed
            conn = sqlite3.connect(
                self.path,
                timeout=self._opts.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                # Serialized between processes: switching to WAL and creating the schema
                # can fail at once with "database is locked" (SQLite's busy handler is not
                # consulted for the journal-mode switch) when two processes open together.
                with _file_lock(self._lock_path):
                    self._setup(conn)
                if reads_only:
                    conn.execute("PRAGMA query_only = ON")
            except BaseException as exc:
                conn.close()
                if (
                    attempt == 2
                    or not isinstance(exc, sqlite3.DatabaseError)
                    or getattr(exc, "sqlite_errorcode", None) not in _CORRUPTION_CODES
                ):
                    raise
                self._quarantine(inode, exc)
            else:
                return conn, inode
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def _lock_path(self) -> Path:
        return self._dir / (DB_NAME + ".lock")

    def _create(self) -> None:
        """Create the directories (0700) and an empty database file (0600) if missing.

        Only a file this call has just created is opened here: closing a descriptor of a file
        SQLite has open would drop its locks.  Under the lock file, so that no connection of
        this process is setting the new file up meanwhile.
        """
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir.mkdir(mode=0o700, exist_ok=True)
        if self.path.exists():
            return
        with _file_lock(self._lock_path):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            os.close(fd)

    def _setup(self, conn: sqlite3.Connection) -> None:
        opts = self._opts
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {opts.synchronous.upper()}")
        conn.execute(f"PRAGMA mmap_size = {opts.mmap_bytes}")
        conn.execute("PRAGMA cache_size = -16384")
        conn.execute("PRAGMA journal_size_limit = 67108864")
        # Checkpoint every 8192 WAL pages (32 MiB) rather than SQLite's 1000: random writes
        # over a large store dirty distinct pages, and rarer checkpoints coalesce them and
        # fsync less often — set cost from 1k to 100k entries grew 1.8x before, ~1.25x now.
        conn.execute("PRAGMA wal_autocheckpoint = 8192")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise TierkitError(
                f"{self.path} has file-tier schema version {version}, this tierkit reads "
                f"version {SCHEMA_VERSION}; point the file tier at another directory"
            )
        if version == 0:
            conn.executescript(_SCHEMA_1)
        conn.executescript(_SCHEMA_2)

    def _quarantine(self, inode: tuple[int, int] | None, exc: BaseException) -> None:
        """Move the database aside if it is still the file that failed (under a lock file)."""
        with _file_lock(self._lock_path):
            if inode is None or _inode(self.path) != inode:
                return  # gone, or another process already replaced it
            suffix = time.strftime(".corrupt-%Y%m%dT%H%M%S") + f"-{os.getpid()}"
            aside = self.path.with_name(DB_NAME + suffix)
            os.rename(self.path, aside)
            for ext in ("-wal", "-shm"):
                side = self.path.with_name(DB_NAME + ext)
                if side.exists():
                    os.rename(side, aside.with_name(aside.name + ext))
            # The value files belonged to the rows of the corrupt database: nothing names them now.
            values = aside.with_name(VALUES_DIR + suffix)
            if self._values.exists():
                os.rename(self._values, values)
        shutil.rmtree(values, ignore_errors=True)
        self._quarantined.append(aside)
        emit(
            "store_moved_aside",
            "file tier %(tier)s: the store is corrupt (%(reason)s); moved it aside and started empty",
            tier=self.context.name,
            kind="file",
            namespace=self.context.namespace,
            reason=f"{exc}; moved {self.path} to {aside}",
        )

    def _failed(self, exc: sqlite3.DatabaseError, handle: _Handle) -> None:
        """After an error on ``handle`` (lock held), replace a database that turned out to be
        corrupt; the other connection notices the new file at its next use."""
        if getattr(exc, "sqlite_errorcode", None) in _CORRUPTION_CODES:
            handle.close()
            self._quarantine(handle.inode, exc)
            for other in (self._writer, self._reader):
                other.recheck()

    def _hold(self) -> None:
        """Before a fork: take both locks (released by ``_release``) and close both connections."""
        for handle in (self._writer, self._reader):
            handle.lock.acquire()
            handle.close()

    def _release(self) -> None:
        for handle in (self._writer, self._reader):
            handle.lock.release()

    # -- reads ----------------------------------------------------------------------------

    @hookimpl
    def tierkit_get(self, key: str) -> Entry | None:
        rows = self._reader.fetch(_GET, (key,))  # keys are unique: no row or one
        return self._entry(rows[0]) if rows else None

    @hookimpl
    def tierkit_get_buffer(self, key: str) -> Entry | None:
        """``tierkit_get``, a value file read into writable memory the codec keeps (no copy)."""
        rows = self._reader.fetch(_GET, (key,))
        return self._entry(rows[0], handed=True) if rows else None

    @hookimpl
    def tierkit_get_many(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        rows = []
        with self._reader as conn:
            for sql, chunk in _in_chunks(_GET_SOME, keys):
                rows += conn.execute(sql, chunk).fetchall()
        found: dict[str, Entry] = {}
        for key, *row in rows:
            entry = self._entry(row)
            if entry is not None:
                found[key] = entry
        return found

    def _entry(self, row: Sequence[Any], rereads: int = _REREADS, handed: bool = False) -> Entry | None:
        """Turn an ``_GET`` row into an Entry; ``None`` if expired, or if corrupt (then removed).

        A value file is read here, after the read connection's lock is released (into memory
        handed over to the codec if ``handed``).  When the row was rewritten meanwhile (its file dropped
        under this reader) it is read again.
        """
        rowid, value, crc, expires_at, tags, size, file = row
        if expires_at is not None and expires_at <= self._clock():
            return None
        if file is not None:
            value = self._read_file(file, size, crc, handed)
        elif type(value) is not bytes or crc32(value) != crc:
            value = None
        if value is not None:
            if tags is None:
                return Entry(value, expires_at)
            try:
                return Entry(value, expires_at, tuple(orjson.loads(tags)))
            except (orjson.JSONDecodeError, TypeError):
                pass
        if self._remove_corrupt(rowid, file) or file is None or not rereads:
            return None
        with self._reader as conn:
            row = conn.execute(_GET_ID, (rowid,)).fetchone()
        return None if row is None else self._entry(row, rereads - 1, handed)

    def _remove_corrupt(self, rowid: int, file: str | None) -> bool:
        """Delete the row ``rowid`` if it still names ``file``, count it as corrupt, and say
        whether it did.

        A row rewritten since it was read names another file (or none): its value file was
        dropped under the reader, which is not a corrupt entry.
        """
        with self._writer as conn:
            with _transaction(conn):
                removed = conn.execute(_DELETE_CORRUPT, (rowid, file)).rowcount
                if removed:
                    conn.execute(_COUNT_CORRUPT)
            if removed and file is not None:
                self._drop_files(conn)
        if removed:
            logger.warning("file tier: removed a corrupt entry from %s", self.path)
        return bool(removed)

    # -- value files ----------------------------------------------------------------------

    def _file_path(self, token: str, suffix: str = ".val") -> Path:
        return self._values / token[:2] / (token[2:] + suffix)

    def _write_file(self, parts: Sequence[Buffer]) -> str:
        """Write the bytes of ``parts`` to a new value file and return its name (its row is not
        written yet).

        Written under a temporary name and renamed: a ``.val`` file is always complete.
        """
        token = os.urandom(16).hex()
        tmp = self._file_path(token, ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:
            self._values.mkdir(mode=0o700, exist_ok=True)
            tmp.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        durable = self._opts.synchronous == "full"
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, self._file_path(token))
        if durable and sys.platform != "win32":
            _fsync_directory(tmp.parent)
        return token

    def _read_file(self, token: Any, size: Any, crc: int, handed: bool = False) -> Buffer | None:
        """The value in file ``token`` (read into new writable memory, :func:`_memory`, if
        ``handed``); ``None`` if it is missing, not ``size`` bytes long, or fails its CRC
        (:func:`_edge_crc`)."""
        if type(token) is not str or not _TOKEN_RE.fullmatch(token) or type(size) is not int:
            return None
        try:
            fd = os.open(self._file_path(token), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            if os.fstat(fd).st_size != size:
                return None
            value: Buffer
            if handed:  # read in place: the decoder keeps this memory
                value = _memory(size)
                got = 0
                while got < size:
                    read = os.readv(fd, [value[got:]])
                    if not read:
                        return None
                    got += read
            else:
                value = os.read(fd, size)  # one read into a bytes of the final size: no join, no copy
                if len(value) < size:
                    parts = [value]
                    while size > (got := sum(map(len, parts))):
                        part = os.read(fd, size - got)
                        if not part:
                            return None
                        parts.append(part)
                    value = b"".join(parts)
        finally:
            os.close(fd)
        return value if _edge_crc((value,)) == crc else None

    def _unlink(self, token: str) -> None:
        if type(token) is str and _TOKEN_RE.fullmatch(token):
            try:
                os.unlink(self._file_path(token))
            except FileNotFoundError:
                pass
            except OSError as exc:  # left to the sweep at the next open
                logger.warning("file tier: cannot remove value file %s: %s", token, exc)

    def _drop_files(self, conn: sqlite3.Connection) -> None:
        """Unlink the value files committed statements dropped (writer lock held, no transaction)."""
        while True:
            names = conn.execute(_DROPPED).fetchall()
            if not names:
                return
            for (token,) in names:
                self._unlink(token)
            with _transaction(conn):
                conn.executemany(_UNDROP, names)
            if len(names) < _DROP_BATCH:
                return

    def _sweep(self) -> None:
        """Remove what a crash left: files dropped but not unlinked, and value files no row
        names that are older than the grace period (younger ones may be about to commit)."""
        oldest = time.time() - max(_ORPHAN_GRACE, 10 * self._opts.busy_timeout)
        with self._writer as conn:
            self._drop_files(conn)
            try:
                folders = [f for f in os.scandir(self._values) if f.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                return
            for folder in folders:
                for item in os.scandir(folder.path):
                    stem, _, suffix = item.name.partition(".")
                    if suffix not in ("val", "tmp"):
                        continue
                    try:
                        if item.stat(follow_symlinks=False).st_mtime > oldest:
                            continue
                    except FileNotFoundError:
                        continue
                    token = folder.name + stem
                    if suffix == "val" and conn.execute(_NAMES_FILE, (token,)).fetchone() is not None:
                        continue
                    Path(item.path).unlink(missing_ok=True)

    # -- writes ---------------------------------------------------------------------------

    def _row(
        self, key: str, value: bytes, expires_at: float | None, tags: tuple[str, ...], file: str | None
    ) -> tuple[Any, ...]:
        """The ``_SET`` parameters: the value in the row, or the name of its value file."""
        if file is None:
            return (key, value, crc32(value), len(value), expires_at, _tags_blob(tags), None)
        return (key, b"", _edge_crc((value,)), len(value), expires_at, _tags_blob(tags), file)

    def _maybe_file(self, value: bytes) -> str | None:
        """Write ``value`` to a value file if it is to have one (before the row's transaction)."""
        size = len(value)
        if size < self._min_file or size > self._max_bytes:
            return None
        return self._write_file((value,))

    @hookimpl
    def tierkit_set(self, key: str, entry: Entry) -> None:
        value, expires_at, tags = entry
        size = len(value)
        if size < self._min_file:  # the common case, spelled out: no call, no file
            file = None
            row = (key, value, crc32(value), size, expires_at, _tags_blob(tags) if tags else None, None)
        else:
            file = self._maybe_file(value)
            row = self._row(key, value, expires_at, tags, file)
        self._commit_row(key, row, size, tags, file)

    @hookimpl
    def tierkit_set_parts(self, key: str, entry: Entry) -> None:
        """``tierkit_set`` of a payload in pieces: a value file is written from the pieces
        themselves (a numpy array's own memory), never joined into one ``bytes``."""
        parts, expires_at, tags = entry
        size = parts.nbytes
        if size < self._min_file:
            self.tierkit_set(key, Entry(parts.join(), expires_at, tags))
            return
        buffers = parts.buffers
        file = None if size > self._max_bytes else self._write_file(buffers)
        row = (key, b"", _edge_crc(buffers), size, expires_at, _tags_blob(tags), file)
        self._commit_row(key, row, size, tags, file)

    def _commit_row(
        self, key: str, row: tuple[Any, ...], size: int, tags: tuple[str, ...], file: str | None
    ) -> None:
        """Commit the ``_SET`` ``row`` of ``key`` (its value file, if any, already written)."""
        with self._writer as conn:
            if size > self._max_bytes:
                self._delete(conn, key)
                return
            try:
                if tags:
                    with _transaction(conn):
                        rowid, before, files = conn.execute(_SET, row).fetchone()
                        conn.executemany(_SET_TAG, [(tag, rowid) for tag in tags])
                else:
                    rowid, before, files = conn.execute(_SET, row).fetchone()
            except BaseException:
                if file is not None:
                    self._unlink(file)
                raise
            self._after_write(conn, 1, before + size, files)

    @hookimpl
    def tierkit_set_many(self, entries: Mapping[str, Entry]) -> None:
        if not entries:
            return
        max_bytes = self._max_bytes
        written: list[str] = []
        try:
            files = {}
            for key, (value, _, _) in entries.items():
                file = files[key] = self._maybe_file(value)
                if file is not None:
                    written.append(file)
            with self._writer as conn:
                with _transaction(conn):
                    with_files = conn.execute(_BYTES_AND_FILES).fetchone()[1]
                    for key, (value, expires_at, tags) in entries.items():
                        if len(value) > max_bytes:
                            conn.execute(_DELETE, (key,)).fetchall()
                            continue
                        row = self._row(key, value, expires_at, tags, files[key])
                        rowid = conn.execute(_SET, row).fetchone()[0]
                        if tags:
                            conn.executemany(_SET_TAG, [(tag, rowid) for tag in tags])
                    ceiling = conn.execute(_TOTAL_BYTES).fetchone()[0]
                written = []
                self._after_write(conn, len(entries), ceiling, with_files)
        finally:
            for file in written:  # not committed
                self._unlink(file)

    def _after_write(self, conn: sqlite3.Connection, count: int, ceiling: int, files: int) -> None:
        """Purge expired entries now and then; evict if the total may exceed ``max_bytes``;
        unlink the value files dropped meanwhile.

        ``ceiling`` is an upper bound of the byte total after the write; ``files`` the count
        of rows with a value file before it (none: the write dropped no file).
        """
        removed = 0
        self._writes_left -= count
        if self._writes_left <= 0:
            self._writes_left = self._opts.purge_every
            removed += self._purge_expired(conn)
        if ceiling > self._max_bytes:
            removed += self._evict(conn)
        if files or removed:
            self._drop_files(conn)

    def _purge_expired(self, conn: sqlite3.Connection) -> int:
        with _transaction(conn):
            purged: int = conn.execute(_PURGE_EXPIRED, (self._clock(),)).rowcount
            if purged:
                conn.execute(_COUNT_EXPIRED, (purged,))
        return purged

    def _evict(self, conn: sqlite3.Connection) -> int:
        """Delete the least recently stored entries, down to ``_EVICT_SLACK`` below the bound;
        return how many entries were removed (expired ones included)."""
        removed = self._purge_expired(conn)
        with _transaction(conn):
            total = conn.execute(_TOTAL_BYTES).fetchone()[0]
            if total <= self._max_bytes:
                return removed
            excess = total - self._max_bytes + min(self._max_bytes // 10, _EVICT_SLACK)
            cutoff = 0
            cursor = conn.execute(_OLDEST)
            for seq, size in cursor:
                cutoff = seq
                excess -= size
                if excess <= 0:
                    break
            cursor.close()
            evicted: int = conn.execute(_EVICT, (cutoff,)).rowcount
            conn.execute(_COUNT_EVICTED, (evicted,))
        return removed + evicted

    def _delete(self, conn: sqlite3.Connection, key: str) -> bool:
        """Delete ``key`` (writer lock held, no transaction) and its value file."""
        found = conn.execute(_DELETE, (key,)).fetchall()
        if found and found[0][0] is not None:
            self._drop_files(conn)
        return bool(found)

    @hookimpl
    def tierkit_delete(self, key: str) -> bool:
        with self._writer as conn:
            return self._delete(conn, key)

    # -- atomic operations: each one SQLite transaction (BEGIN IMMEDIATE), so across processes

    @hookimpl
    def tierkit_add(self, key: str, entry: Entry) -> bool:
        """First writer wins: the check and the insert are one write transaction (a value file,
        written before it, is removed again if the key is taken)."""
        value, expires_at, tags = entry
        size = len(value)
        file = self._maybe_file(value)
        added = False
        try:
            with self._writer as conn:
                with _transaction(conn):
                    if conn.execute(_HAS, (key, self._clock())).fetchone() is not None:
                        return False
                    if size > self._max_bytes:  # absent, so added, but too large to keep (as set does)
                        ceiling, files = conn.execute(_BYTES_AND_FILES).fetchone()
                        conn.execute(_DELETE, (key,)).fetchall()  # an expired row
                    else:
                        row = self._row(key, value, expires_at, tags, file)
                        rowid, before, files = conn.execute(_SET, row).fetchone()
                        ceiling = before + size
                        if tags:
                            conn.executemany(_SET_TAG, [(tag, rowid) for tag in tags])
                added = True
                self._after_write(conn, 1, ceiling, files)
        finally:
            if not added and file is not None:
                self._unlink(file)
        return True

    @hookimpl
    def tierkit_incr(self, key: str, delta: int) -> Entry | None:
        """Read, add and rewrite the value in one write transaction; deadline and tags untouched."""
        with self._writer as conn:
            with _transaction(conn):
                row = conn.execute(_LIVE, (key, self._clock())).fetchone()
                if row is None:
                    return None
                rowid, value, crc, expires_at, tags, size, file = row
                if file is not None:
                    value = self._read_file(file, size, crc)
                elif type(value) is not bytes or crc32(value) != crc:
                    value = None
                if value is None:
                    conn.execute(_DELETE_CORRUPT, (rowid, file))
                    conn.execute(_COUNT_CORRUPT)
                else:
                    payload = counter_payload(counter_value(value) + delta)
                    conn.execute(_REWRITE, (payload, crc32(payload), len(payload), rowid))
            if file is not None:
                self._drop_files(conn)
        if value is None:
            return None
        return Entry(payload, expires_at, tuple(orjson.loads(tags)) if tags is not None else ())

    @hookimpl
    def tierkit_touch(self, key: str, expires_at: float | None) -> bool:
        """Only the ``expires_at`` column is rewritten, never the value."""
        with self._writer as conn:
            return conn.execute(_TOUCH, (expires_at, key, self._clock())).rowcount > 0

    @hookimpl
    def tierkit_has(self, key: str) -> bool:
        with self._reader as conn:
            return conn.execute(_HAS, (key, self._clock())).fetchone() is not None

    @hookimpl
    def tierkit_delete_many(self, keys: Sequence[str]) -> int:
        removed = 0
        with self._writer as conn:
            with _transaction(conn):
                for sql, chunk in _in_chunks(_DELETE_SOME, keys):
                    removed += conn.execute(sql, chunk).rowcount
            self._drop_files(conn)
        return removed

    @hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        removed = 0
        with self._writer as conn:
            with _transaction(conn):
                for sql, chunk in _in_chunks(_DELETE_TAGGED, tags):
                    removed += conn.execute(sql, chunk).rowcount
            self._drop_files(conn)
        return removed

    @hookimpl
    def tierkit_invalidate_prefix(self, prefix: str) -> int:
        upper = _prefix_upper_bound(prefix)
        with self._writer as conn:
            if upper is None:
                removed: int = conn.execute(_DELETE_FROM, (prefix,)).rowcount
            else:
                removed = conn.execute(_DELETE_RANGE, (prefix, upper)).rowcount
            self._drop_files(conn)
        return removed

    @hookimpl
    def tierkit_clear(self) -> None:
        with self._writer as conn:
            conn.execute(_CLEAR)
            self._drop_files(conn)

    # -- broadcast hooks ------------------------------------------------------------------

    @hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        with self._reader as conn:
            entries, total, evictions, expired, corrupt, files = conn.execute(_STATS).fetchone()
        return {
            "entries": entries,
            "bytes": total,
            "value_files": files,
            "max_bytes": self._max_bytes,
            "evictions": evictions,
            "expired_removed": expired,
            "corrupt_removed": corrupt,
            "corrupt_files_moved": [str(p) for p in self._quarantined],
            "reopened": self._reopened,
            "path": str(self.path),
        }

    @hookimpl
    def tierkit_health(self) -> TierHealth:
        self._writer.recheck()
        self._reader.recheck()
        try:
            stats = self.tierkit_stats()
        except Exception as exc:  # health must answer, never raise
            return TierHealth("down", f"{self.path}: {exc}")
        reasons = []
        if self._quarantined:
            reasons.append(f"corrupt database moved aside to {self._quarantined[-1]}; started empty")
        if self._reopened:
            reasons.append(f"the store was deleted or replaced while open; reopened {self._reopened}x")
        return TierHealth("ok", "; ".join(reasons), stats)

    @hookimpl
    def tierkit_lock(self, key: str, token: str, ttl: float) -> bool:
        """A lock file of this namespace, held with ``flock`` (:mod:`tierkit.tiers._lockfiles`).

        ``ttl`` is not needed: the kernel releases the lock of a process that died.
        """
        return self._lock_files.lock(key, token)

    @hookimpl
    def tierkit_unlock(self, key: str, token: str) -> bool:
        return self._lock_files.unlock(key, token)

    @hookimpl
    def tierkit_close(self) -> None:
        self._lock_files.close()
        for handle in (self._writer, self._reader):
            with handle.lock:
                handle.close()


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite rolls back by itself after some errors
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` between processes (none on Windows)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform != "win32":
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _inode(path: Path) -> tuple[int, int] | None:
    """The identity of the file at ``path`` (device, inode), ``None`` if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


@functools.cache
def _in_statement(template: str, width: int) -> str:
    return template.format(", ".join("?" * width))


def _in_chunks(template: str, values: Sequence[str]) -> Iterator[tuple[str, Sequence[str]]]:
    """``template`` with an ``IN (?, …)`` list and the values to bind, in chunks of one of
    ``_IN_WIDTHS``; a short chunk repeats its last value (an ``IN`` list ignores repeats)."""
    widest = _IN_WIDTHS[-1]
    for start in range(0, len(values), widest):
        chunk = list(values[start : start + widest])
        width = next(w for w in _IN_WIDTHS if w >= len(chunk))
        chunk += chunk[-1:] * (width - len(chunk))
        yield _in_statement(template, width), chunk


def _edge_crc(parts: Sequence[Buffer]) -> int:
    """The CRC-32 of a value file, the bytes of ``parts`` end to end: of its first and last
    ``_EDGE`` bytes (all of a short one).

    A torn or truncated file, a zeroed tail or a swapped file fails it; a bit flipped in the
    middle of a large value does not (a CRC of every byte would cost as much as the read).
    """
    views = [memoryview(part).cast("B") for part in parts]
    size = sum(map(len, views))
    if size <= 2 * _EDGE:
        return _crc_span(views, 0, size, 0)
    return _crc_span(views, size - _EDGE, size, _crc_span(views, 0, _EDGE, 0))


def _memory(size: int) -> memoryview:
    """``size`` bytes of writable memory to read a value file into and hand over to the codec.

    Large ones are anonymous private mappings the kernel may back with huge pages, as numpy
    does for its own arrays: reading 100 MB then faults 50 pages in instead of 25 600, which
    halves the time of the read (``bytearray`` memory does not get them).
    """
    if size < _HUGE_MIN or _HUGEPAGE is None:
        return memoryview(bytearray(size))
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    memory.madvise(_HUGEPAGE)
    return memoryview(memory)


def _crc_span(views: Sequence[memoryview], start: int, stop: int, crc: int) -> int:
    """``crc`` carried over bytes ``start:stop`` of ``views`` end to end."""
    offset = 0
    for view in views:
        end = offset + len(view)
        if end > start and offset < stop:
            crc = crc32(view[max(start - offset, 0) : min(stop, end) - offset], crc)
        offset = end
    return crc


def _fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable (``synchronous = "full"``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tags_blob(tags: tuple[str, ...]) -> bytes | None:
    """The ``tags`` column: a JSON array, or NULL for none."""
    return orjson.dumps(tags) if tags else None


def _prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (None: no bound)."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if code == 0xD800:
            code = 0xE000  # surrogates cannot be stored; UTF-8 order is code point order
        if code <= sys.maxunicode:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None
