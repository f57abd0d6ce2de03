"""The other processes of the file-tier fault scenarios (``python -m tests.faults._file_worker``).

Each mode opens a real file tier on ``DIRECTORY/NAMESPACE`` and prints what it saw as one JSON
line (modes that run until killed print one acknowledged number per line)::

    count DIRECTORY NAMESPACE PREFIX N …   which of PREFIX0..PREFIX{N-1} (for each PREFIX N pair)
                                           a fresh process sees, intact, and the integrity check
    digest DIRECTORY NAMESPACE             for each key of the JSON list on stdin: [length, crc32]
                                           of its value, or null
    touch DIRECTORY NAMESPACE              open the store, read once, close (a short-lived process)
    hold-lock DIRECTORY NAMESPACE SECONDS  hold SQLite's write lock, printing "locked" once held
    write DIRECTORY NAMESPACE PREFIX       write PREFIX0, PREFIX1, … until killed, printing each
                                           number once its write has returned
    fill-then-read DIRECTORY NAMESPACE N [cold]
                                           write N values, checkpoint, read them, print "ready",
                                           wait for a line on stdin (the test damages the file),
                                           read all again (``cold``: after reopening the tier)
    full-disk DIRECTORY NAMESPACE LIMIT    write until the disk is full (or RLIMIT_FSIZE=LIMIT is
                                           reached, if LIMIT > 0), report, wait for a line on
                                           stdin (space freed), write again
    namespace DIRECTORY NAMESPACE N        write N keys, clear, write them again, check them
    cache DIRECTORY                        a Cache of memory + file in DIRECTORY: set, get, health
"""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from tests._file_helpers import make_value, parse_value
from tierkit import Entry, TierContext
from tierkit.tiers.file import FileOptions, FileTier


def open_tier(directory: str, namespace: str) -> FileTier:
    """A file tier with the default options, as an application would open it."""
    return FileTier(FileOptions(directory=Path(directory), busy_timeout=30), TierContext("file", namespace))


def integrity(tier: FileTier) -> str:
    """``PRAGMA integrity_check`` of the store, on a separate read-only connection."""
    conn = sqlite3.connect(f"file:{tier.path}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def report(**figures: Any) -> None:
    print(json.dumps(figures), flush=True)


def count(directory: str, namespace: str, spans: dict[str, int]) -> None:
    tier = open_tier(directory, namespace)
    visible = intact = 0
    for prefix, n in spans.items():
        found = tier.tierkit_get_many([f"{prefix}{i}" for i in range(n)])
        visible += len(found)
        intact += sum(parse_value(e.value) == int(key[len(prefix) :]) for key, e in found.items())
    report(
        visible=visible,
        intact=intact,
        entries=tier.tierkit_stats()["entries"],
        integrity=integrity(tier),
        moved_aside=len(list(tier.path.parent.glob("*.corrupt-*"))),
    )
    tier.tierkit_close()


def digest(directory: str, namespace: str) -> None:
    tier = open_tier(directory, namespace)
    keys = json.loads(sys.stdin.read())
    found = tier.tierkit_get_many(keys)
    report(digests=[[len(found[k].value), zlib.crc32(found[k].value)] if k in found else None for k in keys])


def touch(directory: str, namespace: str) -> None:
    tier = open_tier(directory, namespace)
    tier.tierkit_get("anything")
    tier.tierkit_close()
    report(ok=True)


def hold_lock(directory: str, namespace: str, seconds: float) -> None:
    tier = open_tier(directory, namespace)
    tier.tierkit_close()
    conn = sqlite3.connect(tier.path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


def write_until_killed(directory: str, namespace: str, prefix: str) -> None:
    tier = open_tier(directory, namespace)
    n = 0
    while True:
        tier.tierkit_set(f"{prefix}{n}", Entry(make_value(n, 2000 + n % 5000), None, (prefix,)))
        print(n, flush=True)
        n += 1


def fill_then_read(directory: str, namespace: str, n: int, cold: bool) -> None:
    tier = open_tier(directory, namespace)
    tier.tierkit_set_many({f"k{i}": Entry(make_value(i, 3000), None, ()) for i in range(n)})
    conn = sqlite3.connect(tier.path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the values are in the database file now
    conn.close()
    for i in range(n):  # read through the tier: the file as it is now is in use (mapped, if mmap)
        tier.tierkit_get(f"k{i}")
    print("ready", flush=True)
    sys.stdin.readline()
    if cold:
        tier.tierkit_close()  # reopened on the next read, with nothing cached: read from disk
    hits = misses = errors = 0
    for i in range(n):
        try:
            entry = tier.tierkit_get(f"k{i}")
        except sqlite3.DatabaseError:
            errors += 1  # the chain counts these and carries on
            continue
        if entry is None:
            misses += 1
        else:
            assert parse_value(entry.value) == i
            hits += 1
    for _ in range(2):  # the first write may be the one that finds the damage
        try:
            tier.tierkit_set("after", Entry(b"works", None, ()))
            break
        except sqlite3.DatabaseError:
            errors += 1
    health = tier.tierkit_health()
    report(
        hits=hits,
        misses=misses,
        errors=errors,
        works_after=tier.tierkit_get("after") == Entry(b"works", None, ()),
        health=health.status,
        moved_aside=len(tier.tierkit_stats()["corrupt_files_moved"]),
        corrupt_rows_removed=tier.tierkit_stats()["corrupt_removed"],
    )


def full_disk(directory: str, namespace: str, limit: int) -> None:
    """Write until the disk is full, report, wait for a line (the test frees space; with
    ``limit`` > 0 the "disk" is RLIMIT_FSIZE, and this process lifts it), write again."""
    tier = open_tier(directory, namespace)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    acked = 0
    error = ""
    while acked < 100_000:
        try:
            tier.tierkit_set(f"k{acked}", Entry(make_value(acked, 20_000), None, ()))
        except sqlite3.OperationalError as exc:
            error = str(exc)
            break
        acked += 1
    report(acked_before_full=acked, error=error, health_when_full=tier.tierkit_health().status)
    sys.stdin.readline()
    if limit:
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    after = acked + 50
    for n in range(acked, after):
        tier.tierkit_set(f"k{n}", Entry(make_value(n, 20_000), None, ()))
    found = tier.tierkit_get_many([f"k{n}" for n in range(after)])
    report(
        written_after_freeing=after - acked,
        present=sum(parse_value(found[f"k{n}"].value) == n for n in range(after) if f"k{n}" in found),
        expected=after,
        integrity=integrity(tier),
    )


def namespace_round(directory: str, namespace: str, n: int) -> None:
    tier = open_tier(directory, namespace)
    for round_ in range(2):
        tier.tierkit_set_many({f"k{i}": Entry(f"{namespace}:{i}".encode(), None, ()) for i in range(n)})
        if round_ == 0:
            tier.tierkit_clear()  # must clear this namespace only
    found = tier.tierkit_get_many([f"k{i}" for i in range(n)])
    mine = sum(entry.value == f"{namespace}:{key[1:]}".encode() for key, entry in found.items())
    report(mine=mine, entries=tier.tierkit_stats()["entries"])


def cache_in(directory: str) -> None:
    import tierkit

    options = {"directory": directory}
    with tierkit.Cache(order=["memory", "file"], tiers={"file": {"options": options}}) as cache:
        cache.set("k", "v", persistent=True)
        file_health = cache.health().tiers["file"]
        report(
            got=cache.get("k"),
            file_status=file_health.status,
            file_reason=file_health.reason,
        )


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "count":
        count(args[0], args[1], dict(zip(args[2::2], map(int, args[3::2]), strict=True)))
    elif mode == "digest":
        digest(args[0], args[1])
    elif mode == "touch":
        touch(args[0], args[1])
    elif mode == "hold-lock":
        hold_lock(args[0], args[1], float(args[2]))
    elif mode == "write":
        write_until_killed(args[0], args[1], args[2])
    elif mode == "fill-then-read":
        fill_then_read(args[0], args[1], int(args[2]), args[3:] == ["cold"])
    elif mode == "full-disk":
        full_disk(args[0], args[1], int(args[2]))
    elif mode == "namespace":
        namespace_round(args[0], args[1], int(args[2]))
    elif mode == "cache":
        cache_in(args[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
