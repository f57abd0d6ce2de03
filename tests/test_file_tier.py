"""The file tier: conformance, persistence, processes, crashes, corruption, bounds, plans."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pydantic
import pytest

from tierkit import ConfigError, Entry, Parts, TierkitError
from tierkit.testing import FakeClock, TierConformance, make_context
from tierkit.tiers import file as file_module
from tierkit.tiers.file import DB_NAME, FileOptions, FileTier

from ._file_helpers import make_value, parse_value

HELPER = Path(__file__).with_name("_file_helpers.py")

Build = Callable[..., FileTier]


@pytest.fixture
def build(tmp_path: Path, clock: FakeClock) -> Iterator[Build]:
    """``build(namespace="ns", **options)``: a FileTier in ``tmp_path / "cache"``, closed afterwards."""
    tiers: list[FileTier] = []

    def _build(namespace: str = "ns", **options: Any) -> FileTier:
        options.setdefault("directory", tmp_path / "cache")
        tier = FileTier(FileOptions(**options), make_context(clock, name="file", namespace=namespace))
        tiers.append(tier)
        return tier

    yield _build
    for tier in tiers:
        tier.tierkit_close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def raw(tier: FileTier) -> Iterator[sqlite3.Connection]:
    """A separate, plain connection to the tier's database (to look inside or tamper)."""
    conn = sqlite3.connect(tier.path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def put(tier: FileTier, key: str, value: bytes = b"v", expires_at: float | None = None, *tags: str) -> None:
    tier.tierkit_set(key, Entry(value, expires_at, tags))


def run_helper(directory: Path, *args: str, file_min_bytes: int | None = None) -> subprocess.Popen[str]:
    """Start ``_file_helpers.py`` as a separate Python process that imports what this one does."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    if file_min_bytes is not None:
        env["FILE_MIN_BYTES"] = str(file_min_bytes)
    return subprocess.Popen(
        [sys.executable, str(HELPER), str(directory), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


class TestFileConformance(TierConformance):
    persistent = True  # shared follows: second_instance is reopen()

    @pytest.fixture
    def tier(self, build: Build) -> FileTier:
        return build("conformance")

    @pytest.fixture
    def reopen(self, build: Build) -> Callable[[], FileTier]:
        return lambda: build("conformance")

    @pytest.fixture
    def make_tier(self, build: Build) -> Callable[[str], FileTier]:
        return build

    @pytest.fixture
    def broken_tier(self, build: Build, tmp_path: Path) -> FileTier:
        """A tier whose namespace directory became a file after it closed its connection."""
        tier = build("broken")
        tier.tierkit_close()
        shutil.rmtree(tmp_path / "cache" / "broken")
        (tmp_path / "cache" / "broken").write_text("not a directory any more")
        return tier


# -- the plugin and its options --------------------------------------------------------


def test_entry_point_names_the_file_tier() -> None:
    (point,) = entry_points(group="tierkit.tiers", name="file")
    assert point.load() is FileTier
    assert (FileTier.holds, FileTier.default_write, FileTier.remote) == ("bytes", "persistent", False)
    assert FileTier.Options is FileOptions


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": "lots"}, "max_bytes"),
        ({"busy_timeout": -1}, "busy_timeout"),
        ({"synchronous": "sometimes"}, "synchronous"),
        ({"purge_every": 0}, "purge_every"),
        ({"mmap_bytes": -1}, "mmap_bytes"),
        ({"directroy": "/tmp"}, "directroy"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        FileOptions(**options)
    assert [error["loc"] for error in info.value.errors()] == [(field,)]


def test_every_option_is_described() -> None:
    assert all(field.description for field in FileOptions.model_fields.values())


@pytest.mark.parametrize("namespace", ["..", ".", "a/b", "../escape", "", "x" * 129, "nul\x00"])
def test_unsafe_namespaces_are_rejected(build: Build, namespace: str) -> None:
    with pytest.raises(ConfigError, match="namespace") as info:
        build(namespace=namespace)
    assert repr(namespace) in str(info.value)


def test_directory_expands_the_home_directory(tmp_path: Path, clock: FakeClock) -> None:
    # conftest points HOME at tmp_path / "home"
    tier = FileTier(FileOptions(directory=Path("~/cache")), make_context(clock, namespace="app"))
    try:
        assert tier.path == tmp_path / "home" / "cache" / "app" / DB_NAME
    finally:
        tier.tierkit_close()


def test_default_directory_is_the_user_cache_dir(clock: FakeClock, tmp_path: Path) -> None:
    # conftest points XDG_CACHE_HOME at tmp_path / "xdg-cache"
    tier = FileTier(FileOptions(), make_context(clock, namespace="app"))
    try:
        assert tier.path == tmp_path / "xdg-cache" / "tierkit" / "app" / DB_NAME
        assert tier.tierkit_stats()["path"] == str(tier.path)
    finally:
        tier.tierkit_close()


# -- values, expiry, invalidation ------------------------------------------------------


def test_roundtrip_keeps_bytes_deadline_and_tags(build: Build, clock: FakeClock) -> None:
    tier = build()
    value = bytes(range(256)) * 4
    put(tier, "k", value, clock() + 60, "t1", "t2")
    got = tier.tierkit_get("k")
    assert got == Entry(value, clock() + 60, ("t1", "t2"))
    assert type(got.value) is bytes


def test_a_miss_is_none_and_empty_bytes_are_a_hit(build: Build) -> None:
    tier = build()
    assert tier.tierkit_get("absent") is None
    put(tier, "empty", b"")
    assert tier.tierkit_get("empty") == Entry(b"", None, ())


def test_expiry_follows_the_injected_clock(build: Build, clock: FakeClock) -> None:
    tier = build()
    put(tier, "k", b"v", clock() + 10)
    clock.advance(9)
    assert tier.tierkit_get("k") is not None
    clock.advance(1)  # expires_at <= now is a miss
    assert tier.tierkit_get("k") is None
    assert tier.tierkit_get_many(["k"]) == {}


def test_expired_rows_are_purged_on_writes(build: Build, clock: FakeClock) -> None:
    tier = build(purge_every=5)
    for n in range(4):
        put(tier, f"short{n}", b"v", clock() + 1)
    clock.advance(2)
    assert tier.tierkit_stats()["entries"] == 4  # reads never write; the 5th write purges
    put(tier, "fresh", b"v")
    stats = tier.tierkit_stats()
    assert (stats["entries"], stats["expired_removed"]) == (1, 4)


def test_invalidate_tags_removes_entries_and_their_tag_rows(build: Build) -> None:
    tier = build()
    put(tier, "a", b"1", None, "x", "y")
    put(tier, "b", b"2", None, "y")
    put(tier, "c", b"3", None, "z")
    assert tier.tierkit_invalidate_tags(["x", "y", "nope"]) == 2
    assert [k for k in "abc" if tier.tierkit_get(k)] == ["c"]
    with raw(tier) as conn:
        assert conn.execute("SELECT tag FROM tags").fetchall() == [("z",)]
    tier.tierkit_delete("c")
    with raw(tier) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tags").fetchone() == (0,)


def test_rewriting_an_entry_replaces_its_tags(build: Build) -> None:
    tier = build()
    put(tier, "k", b"1", None, "old", "both")
    put(tier, "k", b"2", None, "both", "new")
    assert tier.tierkit_get("k") == Entry(b"2", None, ("both", "new"))
    assert tier.tierkit_invalidate_tags(["old"]) == 0
    assert tier.tierkit_invalidate_tags(["new"]) == 1


def test_duplicate_tags_are_stored_once(build: Build) -> None:
    tier = build()
    put(tier, "k", b"1", None, "t", "t")
    assert tier.tierkit_invalidate_tags(["t"]) == 1


@pytest.mark.parametrize(
    ("prefix", "removed", "kept"),
    [
        ("", ["a", "b", "\U0010ffff"], []),
        ("a\U0010ffff", ["a\U0010ffff", "a\U0010ffffz"], ["a", "b", "a\U0010fffe"]),
        ("\U0010ffff", ["\U0010ffff", "\U0010ffff\U0010ffff"], ["a", "\U0010fffe"]),
        ("x\ud7ff", ["x\ud7ff", "x\ud7ff!"], ["x\ue000", "x"]),
        ("k%_", ["k%_1"], ["k%x", "kX_1"]),
    ],
)
def test_prefix_invalidation_is_an_exact_key_range(
    build: Build, prefix: str, removed: list[str], kept: list[str]
) -> None:
    tier = build()
    for key in removed + kept:
        put(tier, key)
    assert tier.tierkit_invalidate_prefix(prefix) == len(removed)
    assert [k for k in removed + kept if tier.tierkit_get(k)] == kept


def test_clear_empties_this_namespace_only(build: Build) -> None:
    one, two = build(namespace="one"), build(namespace="two")
    put(one, "k", b"1", None, "t")
    put(two, "k", b"2", None, "t")
    one.tierkit_clear()
    assert one.tierkit_get("k") is None
    assert two.tierkit_get("k") == Entry(b"2", None, ("t",))
    assert one.tierkit_stats()["entries"] == 0
    assert (one.path.parent.name, two.path.parent.name) == ("one", "two")


def test_get_many_and_set_many(build: Build, clock: FakeClock) -> None:
    tier = build()
    tier.tierkit_set_many(
        {
            "a": Entry(b"A", None, ("t",)),
            "b": Entry(b"B", clock() + 5, ()),
            "c": Entry(b"C", clock() + 60, ("t", "u")),
        }
    )
    tier.tierkit_set_many({})
    clock.advance(10)
    found = tier.tierkit_get_many(["a", "b", "c", "missing", "a"])
    assert found == {"a": Entry(b"A", None, ("t",)), "c": Entry(b"C", clock() + 50, ("t", "u"))}
    assert tier.tierkit_get_many([]) == {}
    assert tier.tierkit_invalidate_tags(["u"]) == 1


@pytest.mark.parametrize("count", [1, 3, 16, 17, 256, 257, 700])
def test_batches_of_any_size_are_read_and_invalidated_whole(build: Build, count: int) -> None:
    # keys and tags are bound in IN lists of a few fixed widths: every size must come out exact
    tier = build()
    tier.tierkit_set_many({f"k{n}": Entry(b"v", None, (f"t{n}",)) for n in range(count + 5)})
    wanted = [f"k{n}" for n in range(count)] + ["missing"]
    assert sorted(tier.tierkit_get_many(wanted)) == sorted(wanted[:-1])
    assert tier.tierkit_invalidate_tags([f"t{n}" for n in range(count)] + ["none"]) == count
    assert tier.tierkit_stats()["entries"] == 5


def test_set_many_is_one_transaction(build: Build) -> None:
    tier = build()
    bad: Any = 12345  # not bytes: fails inside the batch
    with pytest.raises(TypeError):
        tier.tierkit_set_many({"a": Entry(b"1", None, ("t",)), "b": Entry(bad, None, ())})
    assert tier.tierkit_get("a") is None
    assert tier.tierkit_stats()["entries"] == 0
    put(tier, "a", b"after")  # the connection is usable again
    assert tier.tierkit_get("a") == Entry(b"after", None, ())


# -- persistence, processes, threads, crashes -------------------------------------------


def test_entries_survive_a_restart(build: Build, clock: FakeClock) -> None:
    tier = build()
    put(tier, "k", b"kept", clock() + 60, "t")
    tier.tierkit_close()
    again = build()
    assert again.tierkit_get("k") == Entry(b"kept", clock() + 60, ("t",))
    assert again.tierkit_stats()["entries"] == 1


def test_a_closed_tier_reopens_on_use(build: Build) -> None:
    tier = build()
    put(tier, "k")
    tier.tierkit_close()
    tier.tierkit_close()
    assert tier.tierkit_get("k") == Entry(b"v", None, ())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_closes_the_connections_and_each_side_reopens(build: Build) -> None:
    tier = build()
    put(tier, "parent", b"p")
    before = (tier._writer.conn, tier._reader.conn)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            ok = tier.tierkit_get("parent") == Entry(b"p", None, ())
            put(tier, "child", b"c")
            fresh = {id(tier._writer.conn), id(tier._reader.conn)}.isdisjoint(map(id, before))
            code = 0 if ok and fresh else 2
        finally:
            os._exit(code)
    assert not tier._writer.is_open and not tier._reader.is_open
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tier.tierkit_get("child") == Entry(b"c", None, ())
    put(tier, "parent", b"still works")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_threads_forking_at_once_take_turns(tmp_path: Path, clock: FakeClock) -> None:
    # not from `build`: after a deadlock, closing the tier would hang the teardown
    tier = FileTier(FileOptions(directory=tmp_path), make_context(clock))
    put(tier, "k")
    codes: list[int] = []

    def fork_children() -> None:
        for _ in range(5):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through its exit status
                os._exit(0 if tier.tierkit_get("k") is not None else 1)
            codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            put(tier, "k")

    threads = [threading.Thread(target=fork_children, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "forking threads deadlocked"
    assert codes == [0] * 15
    tier.tierkit_close()


def test_threads_and_two_instances_share_one_store(build: Build) -> None:
    first, second = build(), build()
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        tier = (first, second)[worker % 2]
        try:
            for n in range(150):
                key = f"k{n % 10}"
                put(tier, key, make_value(n, 500 + worker), None, f"w{worker}")
                got = tier.tierkit_get(key)  # may be gone: other threads invalidate
                if got is not None:
                    parse_value(got.value)
                if n % 50 == 49:
                    tier.tierkit_invalidate_tags([f"w{(worker + 1) % 6}"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    stats = first.tierkit_stats()
    with raw(first) as conn:
        assert conn.execute("SELECT COUNT(*), SUM(size) FROM entries").fetchone() == (
            stats["entries"],
            stats["bytes"],
        )


def test_two_processes_share_one_store(tmp_path: Path, build: Build) -> None:
    count = 500
    workers = [
        run_helper(tmp_path / "cache", "ns", "share", "left", "right", str(count)),
        run_helper(tmp_path / "cache", "ns", "share", "right", "left", str(count)),
    ]
    seen = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        during, after = map(int, out.split())
        assert after >= during
        seen.append(during)
    assert max(seen) > 0, "the workers did not overlap"
    tier = build()
    for side in ("left", "right"):
        found = tier.tierkit_get_many([f"{side}:{n}" for n in range(count)])
        assert len(found) == count
        assert all(parse_value(found[f"{side}:{n}"].value) == n for n in range(count))
    assert tier.tierkit_stats()["entries"] == 2 * count + 2  # and the two ready marks


@pytest.mark.slow
def test_a_killed_writer_leaves_the_old_value_or_the_new_one(tmp_path: Path, build: Build) -> None:
    rng = random.Random(20240611)
    last_committed = 0
    for _ in range(8):
        writer = run_helper(tmp_path / "cache", "ns", "rewrite", "k")
        assert writer.stdout is not None
        for _ in range(rng.randint(1, 12)):  # let it commit a few values, then kill it mid-loop
            line = writer.stdout.readline()
            assert line, writer.stderr.read() if writer.stderr else ""
            last_committed = int(line)
        writer.send_signal(signal.SIGKILL)
        writer.communicate()
        tier = build()
        got = tier.tierkit_get("k")
        assert got is not None
        assert parse_value(got.value) >= last_committed  # complete, and nothing committed is lost
        assert tier.tierkit_stats()["corrupt_removed"] == 0
        tier.tierkit_close()
    with raw(tier) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- corruption -------------------------------------------------------------------------


def test_a_corrupt_entry_is_a_miss_removed_and_counted(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    tier = build()
    for key in ("flipped", "retyped", "badtags", "fine"):
        put(tier, key, make_value(1, 2000), None, "t")
    with raw(tier) as conn:
        value = bytearray(conn.execute("SELECT value FROM entries WHERE key = 'flipped'").fetchone()[0])
        value[1000] ^= 0xFF
        conn.execute("UPDATE entries SET value = ? WHERE key = 'flipped'", (bytes(value),))
        conn.execute("UPDATE entries SET value = 'text' WHERE key = 'retyped'")
        conn.execute("UPDATE entries SET tags = x'5b7b' WHERE key = 'badtags'")
    with caplog.at_level(logging.WARNING, logger="tierkit.file"):
        assert tier.tierkit_get("flipped") is None
        assert tier.tierkit_get_many(["retyped", "badtags", "fine"]).keys() == {"fine"}
    assert "corrupt entry" in caplog.text
    stats = tier.tierkit_stats()
    assert (stats["corrupt_removed"], stats["entries"]) == (3, 1)
    with raw(tier) as conn:
        assert conn.execute("SELECT key FROM entries").fetchall() == [("fine",)]
        assert conn.execute("SELECT COUNT(*) FROM tags").fetchone() == (1,)


def test_a_garbage_database_is_moved_aside(
    build: Build, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache" / "ns" / DB_NAME
    path.parent.mkdir(parents=True)
    garbage = os.urandom(10_000)
    path.write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="tierkit.file"):
        tier = build()
    (aside,) = path.parent.glob(DB_NAME + ".corrupt-*")
    assert aside.read_bytes() == garbage
    assert "corrupt" in caplog.text and str(aside) in caplog.text
    assert tier.tierkit_stats()["corrupt_files_moved"] == [str(aside)]
    health = tier.tierkit_health()
    assert health.status == "ok" and str(aside) in health.reason
    put(tier, "k", b"works")
    assert tier.tierkit_get("k") == Entry(b"works", None, ())


def test_a_database_garbled_while_open_is_replaced(build: Build) -> None:
    tier = build()
    for n in range(200):
        put(tier, f"k{n}", make_value(n, 3000))
    with raw(tier) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = tier.path.stat().st_size
    with open(tier.path, "r+b") as f:
        f.write(os.urandom(size))
    with pytest.raises(sqlite3.DatabaseError):
        tier.tierkit_get("k1")  # the chain counts this error and carries on
    assert tier.tierkit_get("k1") is None
    put(tier, "k1", b"fresh")
    assert tier.tierkit_get("k1") == Entry(b"fresh", None, ())
    assert len(tier.tierkit_stats()["corrupt_files_moved"]) == 1


def test_a_newer_schema_is_refused_not_overwritten(build: Build) -> None:
    tier = build()
    put(tier, "k")
    tier.tierkit_close()
    with raw(tier) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(TierkitError, match="schema version 99"):
        build()


def test_health_is_down_when_the_store_cannot_open(build: Build) -> None:
    tier = build()
    tier.tierkit_close()
    for side in tier.path.parent.glob(DB_NAME + "*"):
        side.unlink()
    tier.path.mkdir()
    health = tier.tierkit_health()
    assert health.status == "down" and str(tier.path) in health.reason


# -- permissions ------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_directories_are_0700_and_files_0600(tmp_path: Path, clock: FakeClock) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        tier = FileTier(FileOptions(directory=tmp_path / "a" / "cache"), make_context(clock))
        put(tier, "k")
        assert mode(tmp_path / "a" / "cache") == 0o700
        assert mode(tier.path.parent) == 0o700
        files = sorted(tier.path.parent.glob(DB_NAME + "*"))
        assert {p.name for p in files} >= {DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"}
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
        tier.tierkit_close()
    finally:
        os.umask(old)


# -- size bound -------------------------------------------------------------------------


def test_max_bytes_evicts_the_least_recently_stored(build: Build) -> None:
    tier = build(max_bytes=10_000)
    for n in range(10):
        put(tier, f"k{n}", bytes(1000))
    put(tier, "k0", bytes(1000))  # re-stored: now the newest
    for n in range(10, 40):
        put(tier, f"k{n}", bytes(1000))
        stats = tier.tierkit_stats()
        assert stats["bytes"] <= 10_000
    assert tier.tierkit_get("k39") is not None
    assert tier.tierkit_get("k1") is None
    stats = tier.tierkit_stats()
    with raw(tier) as conn:
        count, total = conn.execute("SELECT COUNT(*), SUM(size) FROM entries").fetchone()
    assert (stats["entries"], stats["bytes"]) == (count, total)
    assert stats["evictions"] == 40 - count
    assert stats["max_bytes"] == 10_000


def test_eviction_order_follows_restores(build: Build) -> None:
    tier = build(max_bytes=3_000)
    for key in "abc":
        put(tier, key, bytes(1000))
    put(tier, "a", bytes(1000))
    put(tier, "d", bytes(1000))  # evicts to a tenth below the bound: b and c are older than a
    assert [k for k in "abcd" if tier.tierkit_get(k)] == ["a", "d"]


def test_eviction_frees_a_bounded_batch(build: Build) -> None:
    chunk = 64 << 10
    tier = build(max_bytes=16 << 20)
    for n in range(256):
        put(tier, f"k{n}", bytes(chunk))
    assert tier.tierkit_stats()["evictions"] == 0
    put(tier, "over", bytes(chunk))  # 64 KiB over: frees that and 1 MiB more, not a tenth
    stats = tier.tierkit_stats()
    assert stats["evictions"] == 17
    assert stats["bytes"] == (257 - 17) * chunk


def test_set_many_respects_max_bytes(build: Build) -> None:
    tier = build(max_bytes=5_000)
    tier.tierkit_set_many({f"k{n}": Entry(bytes(1000), None, ()) for n in range(12)})
    assert tier.tierkit_stats()["bytes"] <= 5_000
    assert tier.tierkit_get("k11") is not None


def test_a_value_larger_than_max_bytes_is_not_stored(build: Build) -> None:
    tier = build(max_bytes=1_000)
    put(tier, "k", b"small")
    put(tier, "k", bytes(1001))
    assert tier.tierkit_get("k") is None
    tier.tierkit_set_many({"k": Entry(b"small", None, ()), "big": Entry(bytes(1001), None, ())})
    assert tier.tierkit_get_many(["k", "big"]).keys() == {"k"}
    assert tier.tierkit_stats()["bytes"] == 5


# -- no scans ---------------------------------------------------------------------------


def test_statements_use_indexes_not_scans(build: Build) -> None:
    tier = build()
    statements = {
        name: sql
        for name, sql in vars(file_module).items()
        if name.isupper()
        and isinstance(sql, str)
        and sql.startswith(("SELECT", "INSERT", "UPDATE", "DELETE"))
    }
    assert len(statements) >= 15
    with raw(tier) as conn:
        for name, sql in statements.items():
            sql = sql.format("?")  # noqa: PLW2901 - an IN (…) template, with one value
            params = (None,) * sql.count("?")
            plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            scans = [
                part for part in plan.split(" | ") if part.startswith("SCAN") and "VIRTUAL TABLE" not in part
            ]
            allowed = {
                "_CLEAR": "SCAN entries",
                "_OLDEST": "SCAN entries USING INDEX entries_seq",
                "_DROPPED": "SCAN dropped",  # a queue: it holds only files not unlinked yet
            }
            assert scans in ([], [allowed.get(name)]), f"{name}: {plan}"


def test_per_operation_work_does_not_grow_with_the_store(build: Build) -> None:
    """Count SQLite VM steps per operation at 100 and 5 000 entries: they must not grow."""

    def steps(tier: FileTier, op: Callable[[], object]) -> int:
        count = 0

        def tick() -> int:
            nonlocal count
            count += 1
            return 0

        for handle in (tier._writer, tier._reader):
            handle.conn.set_progress_handler(tick, 1)
        op()
        for handle in (tier._writer, tier._reader):
            handle.conn.set_progress_handler(None, 1)
        return count

    costs = []
    for size in (100, 5000):
        tier = build(namespace=f"n{size}", max_bytes=10**9)
        tier.tierkit_set_many({f"k{n}": Entry(bytes(100), None, ("t",)) for n in range(size)})
        costs.append(
            [
                steps(tier, lambda t=tier: t.tierkit_get("k50")),
                steps(tier, lambda t=tier: put(t, "k50", bytes(100), None, "t")),
                steps(tier, lambda t=tier: t.tierkit_delete("k60")),
                steps(tier, lambda t=tier: t.tierkit_invalidate_prefix("k7")),
                steps(tier, lambda t=tier: t.tierkit_stats()),
            ]
        )
    small, large = costs
    assert large[:3] == small[:3]
    assert large[3] < 30 * small[3]  # k7* matches 11 keys of 100, 111 of 5000
    assert large[4] == small[4]


def test_processes_opening_a_new_store_together_all_succeed(tmp_path: Path) -> None:
    # Regression: the switch to WAL mode failed at once with "database is locked" when
    # two processes opened a fresh store at the same moment (seen in CI).
    opener = (
        "import sys; from pathlib import Path; from tierkit import TierContext; "
        "from tierkit.tiers.file import FileOptions, FileTier; "
        "FileTier(FileOptions(directory=Path(sys.argv[1])), TierContext('file', 'ns'))"
    )
    for attempt in range(4):
        directory = tmp_path / f"store{attempt}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", opener, str(directory)], stderr=subprocess.PIPE, text=True
            )
            for _ in range(6)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err


# -- value files ------------------------------------------------------------------------

SMALL_FILES = 1000
"""``file_min_bytes`` of these tests: values of 1000 bytes and more get a file of their own."""


def files_on_disk(tier: FileTier) -> set[str]:
    """The names (as rows hold them) of the value files present, temporary ones marked ``.tmp``."""
    found = set()
    for path in (tier.path.parent / "values").glob("*/*"):
        stem, _, suffix = path.name.partition(".")
        found.add(path.parent.name + stem + ("" if suffix == "val" else "." + suffix))
    return found


def files_named(tier: FileTier) -> set[str]:
    with raw(tier) as conn:
        return {row[0] for row in conn.execute("SELECT file FROM entries WHERE file IS NOT NULL")}


def assert_files_match_rows(tier: FileTier) -> None:
    """Every value file on disk is named by a row, and every row's file is there."""
    assert files_on_disk(tier) == files_named(tier)
    with raw(tier) as conn:
        assert conn.execute("SELECT COUNT(*) FROM dropped").fetchone() == (0,)
    assert tier.tierkit_stats()["value_files"] == len(files_named(tier))


def age_value_files(tier: FileTier, seconds: float = 3600) -> None:
    """Make every value file look last written ``seconds`` ago (as a crash's leftovers would be
    by the next start)."""
    past = time.time() - seconds
    for path in (tier.path.parent / "values").glob("*/*"):
        os.utime(path, (past, past))


def test_a_large_value_lives_in_its_own_file(build: Build) -> None:
    tier = build(file_min_bytes=SMALL_FILES)
    big, small = make_value(1, 5000), make_value(2, 100)
    put(tier, "big", big, None, "t")
    put(tier, "small", small)
    assert tier.tierkit_get("big") == Entry(big, None, ("t",))
    assert tier.tierkit_get_many(["big", "small"]) == {
        "big": Entry(big, None, ("t",)),
        "small": Entry(small, None, ()),
    }
    (name,) = files_on_disk(tier)
    path = tier.path.parent / "values" / name[:2] / (name[2:] + ".val")
    assert path.read_bytes() == big
    assert mode(path) == 0o600 and mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    with raw(tier) as conn:
        rows = dict(conn.execute("SELECT key, length(value) FROM entries"))
    assert rows == {"big": 0, "small": len(small)}  # the row holds the file's name, not the value
    stats = tier.tierkit_stats()
    assert (stats["bytes"], stats["value_files"]) == (len(big) + len(small), 1)  # max_bytes counts it
    assert_files_match_rows(tier)


def test_the_threshold_is_inclusive_and_the_default_keeps_small_values_in_the_database(
    build: Build,
) -> None:
    tier = build(namespace="a", file_min_bytes=SMALL_FILES)
    put(tier, "at", bytes(SMALL_FILES))
    put(tier, "below", bytes(SMALL_FILES - 1))
    assert files_named(tier) and len(files_named(tier)) == 1
    default = build(namespace="b")
    put(default, "k", bytes((512 << 10) - 1))
    put(default, "k2", bytes(512 << 10))
    assert len(files_named(default)) == 1


DROPPING: dict[str, Callable[[FileTier, FakeClock], object]] = {
    "delete": lambda t, c: t.tierkit_delete("big"),
    "delete_many": lambda t, c: t.tierkit_delete_many(["big", "nothing"]),
    "overwrite with a large value": lambda t, c: put(t, "big", make_value(9, 3000)),
    "overwrite with a small value": lambda t, c: put(t, "big", b"small"),
    "overwrite with a value above max_bytes": lambda t, c: put(t, "big", bytes(200_000)),
    "set_many over it": lambda t, c: t.tierkit_set_many(
        {"big": Entry(make_value(9, 3000), None, ()), "other": Entry(bytes(2000), None, ())}
    ),
    "set_many of a value above max_bytes": lambda t, c: t.tierkit_set_many(
        {"big": Entry(bytes(200_000), None, ())}
    ),
    "invalidate_tags": lambda t, c: t.tierkit_invalidate_tags(["t"]),
    "invalidate_prefix": lambda t, c: t.tierkit_invalidate_prefix("bi"),
    "clear": lambda t, c: t.tierkit_clear(),
    "expiry purge": lambda t, c: (c.advance(120), put(t, "later", b"x")),
    "add over the expired value": lambda t, c: (c.advance(120), t.tierkit_add("big", Entry(b"1", None, ()))),
    "add of a large value over the expired value": lambda t, c: (
        c.advance(120),
        t.tierkit_add("big", Entry(make_value(9, 3000), None, ())),
    ),
    "eviction": lambda t, c: [put(t, f"fill{n}", bytes(9000)) for n in range(12)],
}


@pytest.mark.parametrize("operation", list(DROPPING))
def test_every_path_that_drops_a_row_removes_its_file(build: Build, clock: FakeClock, operation: str) -> None:
    tier = build(file_min_bytes=SMALL_FILES, max_bytes=100_000, purge_every=1)
    put(tier, "big", make_value(1, 5000), clock() + 60, "t")
    put(tier, "keep", make_value(2, 4000))  # stored later, so eviction takes "big" first
    (dropped,) = files_named(tier) - {n for n in files_named(tier) if _key_of(tier, n) == "keep"}
    DROPPING[operation](tier, clock)
    assert dropped not in files_on_disk(tier)
    assert_files_match_rows(tier)
    got = tier.tierkit_get("keep")
    if operation == "clear":
        assert got is None and files_on_disk(tier) == set()
    elif operation == "eviction":  # a batch: a tenth below max_bytes, more than "big" alone
        assert got is None and tier.tierkit_stats()["evictions"] >= 2
    else:
        assert got is not None and parse_value(got.value) == 2


def _key_of(tier: FileTier, name: str) -> str:
    with raw(tier) as conn:
        return str(conn.execute("SELECT key FROM entries WHERE file = ?", (name,)).fetchone()[0])


def test_incr_of_a_counter_in_a_value_file_moves_it_into_the_database(build: Build) -> None:
    tier = build(file_min_bytes=2)
    put(tier, "n", b"41")
    assert len(files_named(tier)) == 1
    assert tier.tierkit_incr("n", 1) == Entry(b"42", None, ())
    assert tier.tierkit_get("n") == Entry(b"42", None, ())
    assert files_named(tier) == set()
    assert_files_match_rows(tier)


def test_touch_and_a_refused_add_keep_the_file(build: Build, clock: FakeClock) -> None:
    tier = build(file_min_bytes=SMALL_FILES)
    value = make_value(1, 5000)
    put(tier, "big", value)
    before = files_on_disk(tier)
    assert tier.tierkit_touch("big", clock() + 60)
    assert not tier.tierkit_add("big", Entry(make_value(2, 6000), None, ()))  # its file is removed
    assert files_on_disk(tier) == before
    assert tier.tierkit_get("big") == Entry(value, clock() + 60, ())
    assert_files_match_rows(tier)


def test_a_payload_in_pieces_is_stored_like_its_bytes(build: Build) -> None:
    """``tierkit_set_parts``: in the row below ``file_min_bytes``, in a value file above it, and
    dropped (with what the key held) above ``max_bytes``; counted in bytes like any value."""
    tier = build(file_min_bytes=SMALL_FILES, max_bytes=50_000)
    small, big = make_value(1, 500), make_value(2, 20_000)
    tier.tierkit_set_parts("small", Entry(Parts([small[:7], memoryview(small)[7:]]), None, ("t",)))
    tier.tierkit_set_parts("big", Entry(Parts([big[:3], memoryview(big)[3:]]), None, ()))
    assert tier.tierkit_get("small") == Entry(small, None, ("t",))
    assert tier.tierkit_get("big") == Entry(big, None, ())
    handed = tier.tierkit_get_buffer("big")
    assert handed is not None and bytes(handed.value) == big
    stats = tier.tierkit_stats()
    assert (stats["bytes"], stats["value_files"]) == (len(small) + len(big), 1)
    assert_files_match_rows(tier)
    tier.tierkit_set_parts("big", Entry(Parts([bytes(60_000)]), None, ()))
    assert tier.tierkit_get("big") is None
    assert tier.tierkit_stats()["value_files"] == 0
    assert_files_match_rows(tier)


def test_a_failed_write_leaves_no_file(build: Build) -> None:
    tier = build(file_min_bytes=SMALL_FILES)
    with raw(tier) as conn:  # a write lock held elsewhere: the row cannot be written
        conn.execute("BEGIN IMMEDIATE")
        blocked = build(file_min_bytes=SMALL_FILES, busy_timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            put(blocked, "big", make_value(1, 5000))
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            blocked.tierkit_set_many({"a": Entry(bytes(5000), None, ()), "b": Entry(bytes(6000), None, ())})
        conn.execute("ROLLBACK")
    assert files_on_disk(tier) == set()


def _corrupt_file(tier: FileTier, how: str) -> None:
    (name,) = files_named(tier)
    path = tier.path.parent / "values" / name[:2] / (name[2:] + ".val")
    data = bytearray(path.read_bytes())
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(data[:-1])
    elif how == "longer":
        path.write_bytes(data + b"x")
    elif how == "head flipped":
        data[10] ^= 0xFF
        path.write_bytes(data)
    elif how == "tail zeroed":
        data[-4096:] = bytes(4096)
        path.write_bytes(data)
    elif how == "named outside":
        with raw(tier) as conn:
            conn.execute("UPDATE entries SET file = '../../../../outside' WHERE file = ?", (name,))


@pytest.mark.parametrize(
    "how", ["missing", "truncated", "longer", "head flipped", "tail zeroed", "named outside"]
)
@pytest.mark.parametrize("read", ["get", "get_buffer", "get_many", "incr"])
@pytest.mark.parametrize("size", [300_000, 5 << 20])
def test_a_damaged_value_file_is_a_miss_removed_and_counted(
    build: Build, how: str, read: str, size: int
) -> None:
    tier = build(file_min_bytes=SMALL_FILES)
    put(tier, "big", b"7" * size, None, "t")
    _corrupt_file(tier, how)
    if read == "get":
        assert tier.tierkit_get("big") is None
    elif read == "get_buffer":
        assert tier.tierkit_get_buffer("big") is None
    elif read == "get_many":
        assert tier.tierkit_get_many(["big"]) == {}
    else:
        assert tier.tierkit_incr("big", 1) is None
    stats = tier.tierkit_stats()
    assert (stats["corrupt_removed"], stats["entries"], stats["bytes"]) == (1, 0, 0)
    if how != "named outside":
        assert_files_match_rows(tier)


def test_a_file_dropped_under_a_reader_is_read_again_not_counted_corrupt(build: Build) -> None:
    reader, writer = build(file_min_bytes=SMALL_FILES), build(file_min_bytes=SMALL_FILES)
    put(writer, "big", make_value(1, 5000))
    with reader._reader as conn:
        row = conn.execute(file_module._GET, ("big",)).fetchone()
    put(writer, "big", make_value(2, 5000))  # a new file; the one the reader saw is unlinked
    got = reader._entry(row)  # the row is read again
    assert got is not None and parse_value(got.value) == 2
    writer.tierkit_delete("big")
    assert reader._entry(row) is None
    assert reader.tierkit_stats()["corrupt_removed"] == 0


def test_crash_leftovers_are_swept_at_open_and_a_young_file_is_not(build: Build) -> None:
    tier = build(file_min_bytes=SMALL_FILES)
    put(tier, "kept", make_value(1, 5000))
    put(tier, "dropped", make_value(2, 5000))
    (kept,) = files_named(tier) - {n for n in files_named(tier) if _key_of(tier, n) == "dropped"}
    # What crashes leave: a file written but never committed, a temporary file, and a file
    # whose row was deleted but which was never unlinked (still listed in `dropped`).
    uncommitted = tier._write_file((make_value(3, 5000),))
    tmp = tier._file_path(os.urandom(16).hex(), ".tmp")
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_bytes(b"partial")
    (unlinked,) = files_named(tier) - {kept}
    with raw(tier) as conn:
        conn.execute("DELETE FROM entries WHERE key = 'dropped'")  # the process died before unlinking
    tier.tierkit_close()
    young = build(file_min_bytes=SMALL_FILES)
    assert unlinked not in files_on_disk(young)  # listed as dropped: removed at once
    assert uncommitted in files_on_disk(young)  # young: it may be a write about to commit
    age_value_files(young)
    swept = build(file_min_bytes=SMALL_FILES)
    assert files_on_disk(swept) == {kept}
    got = swept.tierkit_get("kept")
    assert got is not None and parse_value(got.value) == 1
    assert swept.tierkit_stats()["corrupt_removed"] == 0


def test_a_young_file_written_by_another_tier_survives_its_sweep_and_commits(build: Build) -> None:
    writer = build(file_min_bytes=SMALL_FILES)
    value = make_value(1, 5000)
    name = writer._write_file((value,))  # the file is written, the row not yet
    build(file_min_bytes=SMALL_FILES)  # another process opens the store: sweeps
    with writer._writer as conn:
        conn.execute(file_module._SET, writer._row("k", value, None, (), name)).fetchone()
    assert writer.tierkit_get("k") == Entry(value, None, ())


def test_max_bytes_eviction_removes_value_files(build: Build) -> None:
    tier = build(file_min_bytes=SMALL_FILES, max_bytes=50_000)
    for n in range(40):
        put(tier, f"k{n}", make_value(n, 4000))
        assert tier.tierkit_stats()["bytes"] <= 50_000
    assert len(files_on_disk(tier)) <= 50_000 // 4000
    assert tier.tierkit_stats()["evictions"] > 0
    assert_files_match_rows(tier)


def test_a_corrupt_database_takes_its_value_files_with_it(build: Build) -> None:
    tier = build(file_min_bytes=SMALL_FILES)
    put(tier, "big", make_value(1, 5000))
    tier.tierkit_close()
    with raw(tier) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    tier.path.write_bytes(os.urandom(8192))
    fresh = build(file_min_bytes=SMALL_FILES)
    assert len(fresh.tierkit_stats()["corrupt_files_moved"]) == 1
    assert files_on_disk(fresh) == set()
    assert not list(fresh.path.parent.glob("values.corrupt-*"))
    put(fresh, "big", make_value(2, 5000))
    assert_files_match_rows(fresh)


def test_a_version_1_store_is_migrated_in_place(tmp_path: Path, build: Build) -> None:
    path = tmp_path / "cache" / "ns" / DB_NAME
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(file_module._SCHEMA_1)
    value = make_value(1, 100)
    conn.execute(
        "INSERT INTO entries (key, value, crc, size, seq) VALUES ('old', ?, ?, ?, 1)",
        (value, zlib.crc32(value), len(value)),
    )
    conn.close()
    tier = build(file_min_bytes=SMALL_FILES)
    assert tier.tierkit_get("old") == Entry(value, None, ())
    put(tier, "big", make_value(2, 5000))
    with raw(tier) as check:
        assert check.execute("PRAGMA user_version").fetchone() == (file_module.SCHEMA_VERSION,)
    assert tier.tierkit_stats()["value_files"] == 1
    assert_files_match_rows(tier)


def test_two_processes_share_value_files(tmp_path: Path, build: Build) -> None:
    count = 200
    workers = [
        run_helper(tmp_path / "cache", "ns", "share", side, other, str(count), file_min_bytes=1100)
        for side, other in (("left", "right"), ("right", "left"))
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    tier = build(file_min_bytes=1100)
    for side in ("left", "right"):
        found = tier.tierkit_get_many([f"{side}:{n}" for n in range(count)])
        assert all(parse_value(found[f"{side}:{n}"].value) == n for n in range(count))
    large = sum(len(make_value(n, 1000 + n)) >= 1100 for n in range(count))  # as _file_helpers writes
    assert 0 < large < count
    assert tier.tierkit_stats()["value_files"] == 2 * large
    assert_files_match_rows(tier)


def test_opening_the_store_beside_a_busy_writer_never_sweeps_its_files(tmp_path: Path, build: Build) -> None:
    writer = run_helper(tmp_path / "cache", "ns", "rewrite", "k", file_min_bytes=SMALL_FILES)
    try:
        assert writer.stdout is not None
        writer.stdout.readline()
        openers = [
            run_helper(tmp_path / "cache", "ns", "reopen", "k", "30", file_min_bytes=SMALL_FILES)
            for _ in range(2)
        ]
        for opener in openers:
            out, err = opener.communicate(timeout=120)
            assert opener.returncode == 0, err
            assert int(out) == 30
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_writes_value_files_the_parent_reads_and_drops(build: Build) -> None:
    tier = build(file_min_bytes=SMALL_FILES)
    put(tier, "parent", make_value(1, 5000))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            got = tier.tierkit_get("parent")
            put(tier, "child", make_value(2, 6000))
            put(tier, "parent", make_value(3, 7000))  # drops the parent's file
            code = 0 if got is not None and parse_value(got.value) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    got = tier.tierkit_get("parent")
    assert got is not None and parse_value(got.value) == 3
    tier.tierkit_delete("child")
    assert_files_match_rows(tier)


@pytest.mark.slow
def test_a_killed_writer_of_value_files_leaves_a_readable_store_and_only_swept_leftovers(
    tmp_path: Path, build: Build
) -> None:
    rng = random.Random(20261128)
    last_committed = 0
    for _ in range(6):
        writer = run_helper(tmp_path / "cache", "ns", "rewrite", "k", file_min_bytes=SMALL_FILES)
        assert writer.stdout is not None
        for _ in range(rng.randint(1, 12)):
            line = writer.stdout.readline()
            assert line, writer.stderr.read() if writer.stderr else ""
            last_committed = int(line)
        writer.send_signal(signal.SIGKILL)
        writer.communicate()
        tier = build(file_min_bytes=SMALL_FILES)
        got = tier.tierkit_get("k")
        assert got is not None
        assert parse_value(got.value) >= last_committed
        assert tier.tierkit_stats()["corrupt_removed"] == 0
        tier.tierkit_close()
    age_value_files(tier)
    assert_files_match_rows(build(file_min_bytes=SMALL_FILES))
