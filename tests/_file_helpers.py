"""Helpers for the file tier's tests; run as a script, it is the worker of the
multi-process and crash tests::

    python _file_helpers.py DIRECTORY NAMESPACE rewrite KEY
        rewrite KEY forever with large self-describing values, printing each
        value's number once its write has returned (the crash test kills it)
    python _file_helpers.py DIRECTORY NAMESPACE share MINE THEIRS COUNT
        once the other worker is running too, write COUNT keys ``MINE:n`` while
        reading ``THEIRS:n``; every value read must be complete and belong to its key
    python _file_helpers.py DIRECTORY NAMESPACE reopen KEY COUNT
        open the tier COUNT times (each open sweeps leftover value files) and read
        KEY each time: every value read must be complete

The environment variable ``FILE_MIN_BYTES`` sets the tier's ``file_min_bytes`` (value files).
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from pathlib import Path

from tierkit import Entry, TierContext
from tierkit.tiers.file import FileOptions, FileTier


def make_value(n: int, size: int) -> bytes:
    """A value that says how it must look: ``n:size:crc:`` then ``size`` bytes of a pattern."""
    body = (n.to_bytes(8, "big") + b"tierkit-file") * (size // 20 + 1)
    body = body[:size]
    return f"{n}:{size}:{zlib.crc32(body)}:".encode() + body


def parse_value(value: bytes) -> int:
    """The number ``n`` of a :func:`make_value` value; AssertionError if it is torn or altered."""
    n, size, _crc, _body = value.split(b":", 3)
    assert value == make_value(int(n), int(size)), "value is torn or altered"
    return int(n)


def open_tier(directory: Path, namespace: str) -> FileTier:
    options: dict[str, object] = {"directory": directory, "busy_timeout": 30}
    if "FILE_MIN_BYTES" in os.environ:
        options["file_min_bytes"] = int(os.environ["FILE_MIN_BYTES"])
    return FileTier(FileOptions(**options), TierContext("file", namespace))  # type: ignore[arg-type]


def rewrite_forever(tier: FileTier, key: str) -> None:
    n = 0
    while True:
        n += 1
        size = 200_000 + (n * 7919) % 600_000  # sizes vary so a torn write would show
        tier.tierkit_set(key, Entry(make_value(n, size), None, (f"gen{n % 3}",)))
        print(n, flush=True)


def share(tier: FileTier, mine: str, theirs: str, count: int) -> None:
    tier.tierkit_set(f"{mine}:ready", Entry(b"", None, ()))
    deadline = time.monotonic() + 60
    while tier.tierkit_get(f"{theirs}:ready") is None:  # start together, so writes overlap
        assert time.monotonic() < deadline, "the other worker never started"
        time.sleep(0.001)
    seen = 0
    for n in range(count):
        tier.tierkit_set(f"{mine}:{n}", Entry(make_value(n, 1000 + n), None, (mine,)))
        got = tier.tierkit_get(f"{theirs}:{n}")
        if got is not None:
            assert parse_value(got.value) == n
            seen += 1
    found = tier.tierkit_get_many([f"{theirs}:{n}" for n in range(count)])
    for key, entry in found.items():
        assert parse_value(entry.value) == int(key.rsplit(":", 1)[1])
    print(seen, len(found), flush=True)


def reopen(directory: Path, namespace: str, key: str, count: int) -> None:
    seen = 0
    for _ in range(count):
        tier = open_tier(directory, namespace)
        got = tier.tierkit_get(key)
        if got is not None:
            parse_value(got.value)
            seen += 1
        assert tier.tierkit_stats()["corrupt_removed"] == 0, "a value file was swept under a writer"
        tier.tierkit_close()
    print(seen, flush=True)


def main(argv: list[str]) -> None:
    directory, namespace, mode, *args = argv
    if mode == "reopen":
        reopen(Path(directory), namespace, args[0], int(args[1]))
        return
    tier = open_tier(Path(directory), namespace)
    if mode == "rewrite":
        rewrite_forever(tier, args[0])
    elif mode == "share":
        share(tier, args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    tier.tierkit_close()


if __name__ == "__main__":
    main(sys.argv[1:])
