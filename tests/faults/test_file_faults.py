"""File-tier faults: issue 9's data-loss bugs (regressions) and the faults that must keep holding.

Each test is one scenario of ``docs/reliability.md``; the other processes run
``tests/faults/_file_worker.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import sqlite3
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._file_helpers import make_value, parse_value
from tierkit import ConfigError, Entry, TierContext
from tierkit.tiers.file import _CHECK_EVERY, DB_NAME, FileOptions, FileTier

from ._suite import Scenario, scale

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and permissions")

NS = "ns"
PR_CAPBSET_DROP = 24


def open_tier(directory: Path, namespace: str = NS, **options: Any) -> FileTier:
    return FileTier(FileOptions(directory=directory, **options), TierContext("file", namespace))


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def put(tier: FileTier, key: str, n: int, size: int = 500, *tags: str) -> None:
    tier.tierkit_set(key, Entry(make_value(n, size), None, tags))


def worker(*args: object, unprivileged: bool = False) -> subprocess.Popen[str]:
    """Start ``_file_worker.py`` in a new Python process (``unprivileged``: bound by file
    permissions even when this process is root)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults._file_worker", *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # the scenarios that drop privileges start no threads
        preexec_fn=_drop_capabilities if unprivileged and os.geteuid() == 0 else None,  # noqa: PLW1509
    )


def _drop_capabilities() -> None:
    """In a child of root, before ``exec``: empty the capability bounding set, so that the
    program runs as root without CAP_DAC_OVERRIDE (and the rest): permissions then apply."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


def run_worker(*args: object, stdin: str = "", **kwargs: Any) -> dict[str, Any]:
    """Run a worker to its end; its JSON report."""
    proc = worker(*args, **kwargs)
    out, err = proc.communicate(stdin, timeout=300)
    assert proc.returncode == 0, f"worker {args[0]} exited {proc.returncode}: {err[-3000:]}"
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# -- issue 9: regressions -----------------------------------------------------------------


def test_two_handles_on_one_store_in_one_process(record: Scenario, directory: Path) -> None:
    """Two handles on one store in one process: writes of both stay visible to other processes"""
    n = 300
    first = open_tier(directory)
    put(first, "k0", 0)
    second = open_tier(directory)  # a second Cache, or @cached next to the app's Cache()
    run_worker("touch", directory, NS)  # another process comes and goes
    for i in range(1, n):
        put((first, second)[i % 2], f"k{i}", i)
    seen = run_worker("count", directory, NS, "k", n)
    first.tierkit_close()
    second.tierkit_close()
    after_exit = run_worker("count", directory, NS, "k", n)
    record.did(
        f"Opened two file tiers on one namespace in one process, let another process open and "
        f"close the store, then wrote {n} keys through both handles; counted them from a fresh "
        "process while both were open, and again after both closed."
    )
    record.saw(
        acknowledged=n,
        visible_while_open=seen["visible"],
        visible_after_close=after_exit["visible"],
        integrity=after_exit["integrity"],
    )
    assert seen["visible"] == seen["intact"] == n
    assert after_exit["visible"] == n and after_exit["integrity"] == "ok"


def test_workers_forked_after_the_tier_exists(record: Scenario, directory: Path) -> None:
    """Workers forked after the tier exists: every acknowledged write is visible, the store stays sound"""
    workers, per = 4, 200
    tier = open_tier(directory)
    put(tier, "warm", 0)
    assert tier.tierkit_get("warm") is not None  # the parent has used both connections
    halfway_r, halfway_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for w in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                keys = range(w * per, (w + 1) * per)
                for i in keys[: per // 2]:
                    put(tier, f"k{i}", i)
                os.write(halfway_w, b"h")
                os.read(go_r, 1)
                for i in keys[per // 2 :]:
                    put(tier, f"k{i}", i)
                tier.tierkit_close()  # a clean exit
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for _ in range(workers):
        os.read(halfway_r, 1)
    tier.tierkit_close()  # the parent lets go of the store (a master that only forks) …
    run_worker("touch", directory, NS)  # … and another process comes and goes
    os.write(go_w, b"g" * workers)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    for fd in (halfway_r, halfway_w, go_r, go_w):
        os.close(fd)
    for i in range(workers * per, (workers + 1) * per):  # the parent writes again
        put(tier, f"k{i}", i)
    total = (workers + 1) * per
    seen = run_worker("count", directory, NS, "k", total)
    tier.tierkit_close()
    record.did(
        f"Opened a file tier and used it, forked {workers} workers that each wrote {per // 2} "
        "keys; the parent closed its tier and another process opened and closed the store; the "
        f"workers wrote {per // 2} more each and closed cleanly, the parent wrote {per}; counted "
        "all from a fresh process."
    )
    record.saw(
        worker_errors=sum(code != 0 for code in codes),
        acknowledged=total,
        visible=seen["visible"],
        moved_aside=seen["moved_aside"],
        integrity=seen["integrity"],
    )
    assert codes == [0] * workers
    assert seen["visible"] == seen["intact"] == total
    assert seen["integrity"] == "ok" and seen["moved_aside"] == 0


def test_a_store_directory_deleted_while_open(record: Scenario, directory: Path) -> None:
    """Store directory deleted while open: the tier notices within a few operations and recreates it"""
    n = 500
    tier = open_tier(directory)
    put(tier, "before", 0)
    shutil.rmtree(directory / NS)
    for i in range(n):
        put(tier, f"k{i}", i)
    seen = run_worker("count", directory, NS, "k", n)
    health = tier.tierkit_health()
    put(tier, "after0", 0)
    after = run_worker("count", directory, NS, "after", 1)
    tier.tierkit_close()
    record.did(
        f"Deleted the namespace's directory (rm -r) under an open tier, wrote {n} keys through "
        "it, counted them from a fresh process, then asked health()."
    )
    record.saw(
        acknowledged=n,
        visible=seen["visible"],
        lost=n - seen["visible"],
        check_every_ops=_CHECK_EVERY,
        reopened=health.details.get("reopened", 0),
        health=health.status,
    )
    assert seen["visible"] == seen["intact"] >= n - _CHECK_EVERY
    assert health.status == "ok" and "deleted or replaced" in health.reason
    assert health.details["reopened"] == 1
    assert after["visible"] == 1


def test_a_database_overwritten_in_place(record: Scenario, directory: Path) -> None:
    """Database overwritten in place: the process survives (no SIGBUS), moves it aside, works on"""
    n = 300
    proc = worker("fill-then-read", directory, NS, n)
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == "ready\n", proc.communicate()[1]
    (directory / NS / DB_NAME).write_bytes(b"this is not a database" * 100)  # as docs/tiers/file.md
    out, err = proc.communicate("go\n", timeout=60)
    record.did(
        f"A process with default options wrote and read {n} values (~1 MB store); another "
        "overwrote the database file in place with 2 200 bytes of text; the first read all keys "
        "again, then wrote and read a new one."
    )
    record.saw(exit_status=proc.returncode)
    assert proc.returncode == 0, f"exit status {proc.returncode} (SIGBUS is {-signal.SIGBUS}): {err}"
    result = json.loads(out)
    record.saw(
        hits_intact=result["hits"],
        errors=result["errors"],
        misses=result["misses"],
        moved_aside=result["moved_aside"],
        health=result["health"],
    )
    assert result["works_after"] and result["health"] == "ok"
    assert result["moved_aside"] == 1


def test_reads_do_not_wait_behind_a_blocked_writer(record: Scenario, directory: Path) -> None:
    """Reads do not queue behind a write waiting for another process's lock"""
    tier = open_tier(directory)
    put(tier, "k", 1)
    holder = worker("hold-lock", directory, NS, 1.5)
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n", holder.communicate()[1]
    write_started = time.perf_counter()
    wrote: list[float] = []

    def write() -> None:
        put(tier, "w", 2)
        wrote.append(time.perf_counter())

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.2)  # the writer thread is now inside SQLite's busy wait
    writer_was_waiting = writer.is_alive()
    latencies = []
    for _ in range(50):
        started = time.perf_counter()
        assert tier.tierkit_get("k") is not None
        latencies.append(time.perf_counter() - started)
    writer.join(30)
    holder.communicate(timeout=30)
    tier.tierkit_close()
    record.did(
        "Another process held SQLite's write lock for 1.5 s; a thread of this process started a "
        "write (and waited for the lock); meanwhile the main thread read 50 times."
    )
    record.saw(
        read_max_ms=ms(max(latencies)),
        read_median_ms=ms(statistics.median(latencies)),
        write_waited_ms=ms(wrote[0] - write_started),
    )
    assert writer_was_waiting, "the writer was not blocked: the scenario did not happen"
    assert max(latencies) < 0.25
    assert wrote, "the write failed"


def test_nul_in_keys_and_tags(record: Scenario, directory: Path) -> None:
    """Keys and tags containing NUL: batch reads find them, tag invalidation removes them"""
    tier = open_tier(directory)
    keys = ["a\0b", "a\0c", "\0", "plain"]
    for n, key in enumerate(keys):
        put(tier, key, n, 100, f"tag\0{n % 2}")
    found = tier.tierkit_get_many(keys)
    removed = tier.tierkit_invalidate_tags(["tag\x000"])
    left = sorted(tier.tierkit_get_many(keys))
    single = [key for key in keys if tier.tierkit_get(key) is not None]
    tier.tierkit_close()
    record.did(
        "Stored 4 keys (3 with NUL) tagged 'tag\\0 0' or 'tag\\0 1', read them with get_many, "
        "invalidated the first tag."
    )
    record.saw(get_many_found=len(found), invalidated=removed, left_after=len(left))
    assert sorted(found) == sorted(keys)
    assert all(parse_value(found[key].value) == n for n, key in enumerate(keys))
    assert removed == 2
    assert left == single == ["a\0c", "plain"]


def test_a_namespace_with_a_trailing_newline_is_refused(record: Scenario, directory: Path) -> None:
    """A namespace with a trailing newline is refused by the file tier itself"""
    refused = []
    for namespace in ("ns\n", "..\n", ".\n", "ns\n\n", "\n"):
        with pytest.raises(ConfigError, match="namespace") as info:
            open_tier(directory, namespace)
        assert repr(namespace) in str(info.value)
        refused.append(namespace)
    created = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
    record.did("Opened the file tier with the namespaces 'ns\\n', '..\\n', '.\\n', 'ns\\n\\n' and '\\n'.")
    record.saw(refused=len(refused), directories_created=len(created))
    assert created == []


# -- what held, and must keep holding -----------------------------------------------------


def test_prefork_workers_under_load(record: Scenario, directory: Path) -> None:
    """Prefork: workers forked after the tier exists run mixed operations while the parent works"""
    workers, ops, keep = scale(8, 4), scale(8000, 1000), 200
    tier = open_tier(directory)
    put(tier, "warm", 0)
    started = time.perf_counter()
    pids = []
    for w in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                rng = random.Random(w)
                base = w * keep
                for i in range(ops):
                    key = f"k{base + rng.randrange(keep)}"
                    roll = rng.random()
                    if roll < 0.5:
                        put(tier, key, int(key[1:]), 200 + i % 800, f"w{w}")
                    elif roll < 0.9:
                        got = tier.tierkit_get(key)
                        assert got is None or parse_value(got.value) == int(key[1:])
                    elif roll < 0.97:
                        tier.tierkit_delete(key)
                    else:
                        tier.tierkit_get_many([f"k{base + j}" for j in range(16)])
                for j in range(base, base + keep):  # the keys a fresh process must see
                    put(tier, f"k{j}", j)
                tier.tierkit_close()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for i in range(ops // 2):  # the parent stays alive and busy meanwhile
        put(tier, f"p{i % 100}", i % 100)
        tier.tierkit_get(f"p{i % 50}")
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    elapsed = time.perf_counter() - started
    seen = run_worker("count", directory, NS, "k", workers * keep, "p", 100)
    tier.tierkit_close()
    record.did(
        f"Opened a tier, forked {workers} workers that each ran {ops:,} mixed operations "
        f"(50% set, 40% get, 7% delete, 3% get_many) and then wrote their {keep} keys, while "
        f"the parent ran {ops:,} operations; verified every final key from a fresh process."
    )
    record.saw(
        operations=(workers + 1) * ops,
        worker_errors=sum(code != 0 for code in codes),
        seconds=round(elapsed, 2),
        keys_verified=seen["intact"],
        keys_expected=workers * keep + 100,
        integrity=seen["integrity"],
    )
    assert codes == [0] * workers
    assert seen["visible"] == seen["intact"] == workers * keep + 100
    assert seen["integrity"] == "ok"


def test_writers_killed_mid_write(record: Scenario, directory: Path) -> None:
    """SIGKILL of writers during writes: every acknowledged write survives, the file stays sound"""
    writers, kills = scale(6, 3), scale(26, 8)
    rng = random.Random(9)
    open_tier(directory).tierkit_close()
    acked: dict[str, int] = {}
    running: dict[int, tuple[str, subprocess.Popen[str]]] = {}
    generation = 0

    def start(slot: int) -> None:
        nonlocal generation
        generation += 1
        prefix = f"w{slot}g{generation}:"
        running[slot] = (prefix, worker("write", directory, NS, prefix))
        acked[prefix] = 0

    def read_acks(slot: int, lines: int) -> None:
        prefix, proc = running[slot]
        assert proc.stdout is not None
        for _ in range(lines):
            line = proc.stdout.readline()
            assert line, proc.communicate()[1]
            acked[prefix] = int(line) + 1

    for slot in range(writers):
        start(slot)
    for _ in range(kills):
        slot = rng.randrange(writers)
        read_acks(slot, rng.randint(1, 40))
        running[slot][1].send_signal(signal.SIGKILL)
        running[slot][1].communicate()
        start(slot)
    for slot in range(writers):
        read_acks(slot, 1)
        running[slot][1].send_signal(signal.SIGKILL)
        running[slot][1].communicate()
    spans = [str(x) for prefix, n in acked.items() for x in (prefix, n)]
    seen = run_worker("count", directory, NS, *spans)
    total = sum(acked.values())
    record.did(
        f"Ran {writers} writer processes that printed each key once its write returned; killed "
        f"one with SIGKILL at a random point {kills} times (restarting it), then all; checked "
        "every acknowledged key from a fresh process."
    )
    record.saw(
        sigkills=kills + writers,
        acknowledged=total,
        present_and_intact=seen["intact"],
        integrity=seen["integrity"],
    )
    assert seen["visible"] == seen["intact"] == total
    assert seen["integrity"] == "ok"


def test_thirty_two_threads_of_mixed_operations(record: Scenario, directory: Path) -> None:
    """32 threads of mixed operations on two handles of one store"""
    threads_n, ops = 32, scale(600, 150)
    tiers = [open_tier(directory), open_tier(directory)]
    errors: list[BaseException] = []

    def work(t: int) -> None:
        rng = random.Random(t)
        tier = tiers[t % 2]
        try:
            for _ in range(ops):
                n = rng.randrange(200)
                roll = rng.random()
                if roll < 0.45:
                    put(tier, f"k{n}", n, 100 + n, f"t{n % 7}")
                elif roll < 0.9:
                    got = tier.tierkit_get(f"k{n}")
                    assert got is None or parse_value(got.value) == n
                elif roll < 0.95:
                    tier.tierkit_invalidate_tags([f"t{n % 7}"])
                elif roll < 0.98:
                    tier.tierkit_invalidate_prefix(f"k{n % 10}")
                else:
                    tier.tierkit_get_many([f"k{j}" for j in range(n, n + 20)])
        except BaseException as exc:
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    stats = tiers[0].tierkit_stats()
    conn = sqlite3.connect(tiers[0].path)
    counted = conn.execute("SELECT COUNT(*), IFNULL(SUM(size), 0) FROM entries").fetchone()
    conn.close()
    for tier in tiers:
        tier.tierkit_close()
    record.did(
        f"{threads_n} threads over two tiers on one store ran {ops} operations each: set, get, "
        "tag and prefix invalidation, get_many."
    )
    record.saw(
        operations=threads_n * ops,
        errors=len(errors),
        seconds=round(elapsed, 2),
        stats_match_rows=tuple(counted) == (stats["entries"], stats["bytes"]),
    )
    assert not errors, errors[0]
    assert tuple(counted) == (stats["entries"], stats["bytes"])


def test_unwritable_and_read_only_directories(record: Scenario, tmp_path: Path) -> None:
    """Unwritable or read-only directories: the file tier is reported down, the cache works on"""
    unwritable = tmp_path / "unwritable"
    unwritable.mkdir()
    unwritable.chmod(0o555)
    fresh = run_worker("cache", unwritable, unprivileged=True)
    readonly = tmp_path / "readonly"
    first = run_worker("cache", readonly)  # creates the store
    for sub in [readonly, *readonly.rglob("*")]:
        if sub.is_dir():
            sub.chmod(0o555)
    again = run_worker("cache", readonly, unprivileged=True)
    for sub in [unwritable, readonly, *readonly.rglob("*")]:
        if sub.is_dir():
            sub.chmod(0o755)  # so that pytest can delete them
    record.did(
        "Started a Cache (memory + file) on a directory it may not write, and on a store whose "
        "directories were made read-only after it was created; set and got a key."
    )
    record.saw(
        unwritable_file_tier=fresh["file_status"],
        read_only_file_tier=again["file_status"],
        cache_served=sum(r["got"] == "v" for r in (fresh, again)),
    )
    assert first["file_status"] == "ok"
    for result in (fresh, again):
        assert result["got"] == "v"
        assert result["file_status"] in {"down", "degraded"}, result
        assert "ermission" in result["file_reason"] or "readonly" in result["file_reason"], result


def test_bytes_corrupted_in_place(record: Scenario, directory: Path) -> None:
    """Bytes corrupted in place under an open store: no crash; bad rows or the file are set aside"""
    n = 300
    proc = worker("fill-then-read", directory, NS, n, "cold")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n", proc.communicate()[1]
    path = directory / NS / DB_NAME
    size = path.stat().st_size
    rng = random.Random(4)
    with open(path, "r+b") as f:  # in place: same inode, same length
        for _ in range(6):
            f.seek(rng.randrange(4096, size - 512))
            f.write(rng.randbytes(512))
    out, err = proc.communicate("go\n", timeout=60)
    assert proc.returncode == 0, f"exit status {proc.returncode}: {err}"
    result = json.loads(out)
    record.did(
        f"A process wrote {n} values (~1 MB store); another overwrote 6 runs of 512 random bytes "
        "inside the database file; the first reopened its tier, read every key again from disk, "
        "then wrote a new one."
    )
    record.saw(
        exit_status=proc.returncode,
        hits=result["hits"],
        misses=result["misses"],
        errors=result["errors"],
        corrupt_rows_removed=result["corrupt_rows_removed"],
        moved_aside=result["moved_aside"],
    )
    assert result["works_after"] and result["health"] == "ok"
    assert result["hits"] + result["misses"] + result["errors"] == n


def test_three_namespaces_share_a_directory(record: Scenario, directory: Path) -> None:
    """Three namespaces in one directory, written and cleared at once, stay apart"""
    n = scale(2000, 500)
    procs = {ns: worker("namespace", directory, ns, n) for ns in ("alpha", "beta", "gamma")}
    results = {}
    for ns, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results[ns] = json.loads(out)
    record.did(
        f"Three processes, each on its own namespace in one directory, wrote {n} keys, cleared "
        "its namespace and wrote them again, at the same time."
    )
    record.saw(**{f"{ns}_own_entries": r["mine"] for ns, r in results.items()})
    assert all(r == {"mine": n, "entries": n} for r in results.values()), results
    assert sorted(p.name for p in directory.iterdir()) == ["alpha", "beta", "gamma"]


@pytest.fixture
def foreign_dir() -> Iterator[Path]:
    """A directory outside the private pytest tree, which any user can reach."""
    path = Path(tempfile.mkdtemp(prefix="tierkit-faults-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_directories_0700_and_files_0600(record: Scenario, foreign_dir: Path) -> None:
    """Permissions: directories 0700 and files 0600 whatever the umask; other users are kept out"""
    root = foreign_dir / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0); sys.argv[1:] = ['touch', *sys.argv[1:]];"
         "from tests.faults import _file_worker; _file_worker.main(sys.argv[1:])", str(root), NS],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tier = open_tier(root)  # open: the WAL and shared-memory files exist too
    put(tier, "k", 1)
    modes = {
        str(p.relative_to(foreign_dir)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]
    }
    dirs = {p: m for p, m in modes.items() if (foreign_dir / p).is_dir()}
    files = {p: m for p, m in modes.items() if p not in dirs}
    outsider = None
    if os.geteuid() == 0:  # only root can act as another user: `cat` run as nobody
        denied = subprocess.run(
            ["cat", str(tier.path)], user=65534, capture_output=True, timeout=60, check=False
        )
        outsider = "denied" if denied.returncode != 0 else "allowed"
    tier.tierkit_close()
    record.did(
        "Created a store from a process with umask 0, listed the modes of everything under the "
        "directory with the store open" + (", and tried to read it as user nobody." if outsider else ".")
    )
    record.saw(directories=len(dirs), files=len(files), **({"other_user": outsider} if outsider else {}))
    assert set(dirs.values()) == {0o700}, modes
    assert set(files.values()) == {0o600}, modes
    assert len(files) >= 4  # the database, its WAL, its shared memory, the lock file
    assert outsider in (None, "denied")


def test_keys_and_values_at_the_edges(record: Scenario, directory: Path) -> None:
    """Keys with NUL, newline, glob and LIKE characters or 1 MB long, and a 100 MB value"""
    big = scale(100, 16) << 20
    keys = ["nul\0key", "new\nline", "glob*?[a-z]", "like%_\\", "ünï©ødé", "k" * (1 << 20), "big"]
    tier = open_tier(directory, max_bytes=1 << 31)
    values = {key: os.urandom(64 + n) for n, key in enumerate(keys[:-1])}
    values["big"] = os.urandom(16) * (big // 16)
    started = time.perf_counter()
    for key, value in values.items():
        tier.tierkit_set(key, Entry(value, None, (key[:10],)))
    wrote = time.perf_counter() - started
    seen = run_worker("digest", directory, NS, stdin=json.dumps(keys))["digests"]
    expected = [[len(values[k]), zlib.crc32(values[k])] for k in keys]
    removed = tier.tierkit_invalidate_prefix("glob*")
    gone = tier.tierkit_get("glob*?[a-z]") is None and tier.tierkit_get("glob") is None
    tier.tierkit_close()
    record.did(
        f"Stored {len(keys) - 1} odd keys (NUL, newline, glob, LIKE, non-ASCII, 1 MiB long) and a "
        f"{big >> 20} MiB value; read them back from a fresh process; invalidated the prefix 'glob*'."
    )
    record.saw(
        keys_read_back=sum(a == b for a, b in zip(seen, expected, strict=True)),
        keys=len(keys),
        big_value_mib=big >> 20,
        write_seconds=round(wrote, 2),
        prefix_removed=removed,
    )
    assert seen == expected
    assert removed == 1 and gone


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` on ``path`` if this process may (yields whether it did)."""
    path.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
        if shutil.which("mount")
        else False
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_full_disk(record: Scenario, tmp_path: Path) -> None:
    """A full disk: writes fail with an error, none acknowledged is lost, writing resumes after"""
    disk = tmp_path / "disk"
    with small_disk(disk, "6m") as mounted:
        directory = disk / "cache"
        filler = disk / "filler"
        if mounted:  # a real ENOSPC: a 6 MiB tmpfs, 4 MiB of it taken by another file
            filler.write_bytes(bytes(4 << 20))
        open_tier(directory).tierkit_close()
        proc = worker("full-disk", directory, NS, 0 if mounted else 2 << 20)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.communicate()[1]
        full = json.loads(line)
        if mounted:
            filler.unlink()  # free space
        out, err = proc.communicate("go\n", timeout=120)
        assert proc.returncode == 0, err
        result = json.loads(out)
    how = "a 6 MiB tmpfs, 4 MiB of it taken by another file" if mounted else "RLIMIT_FSIZE of 2 MiB"
    record.did(
        f"A process wrote 20 kB values to a full disk ({how}) until a write failed, asked "
        "health(), then space was freed (the other file deleted, or the limit lifted) and it "
        "wrote 50 more; it read everything back."
    )
    record.saw(
        acknowledged_before_full=full["acked_before_full"],
        error=full["error"],
        health_when_full=full["health_when_full"],
        written_after_freeing=result["written_after_freeing"],
        present=result["present"],
        expected=result["expected"],
        integrity=result["integrity"],
    )
    # ENOSPC is SQLITE_FULL; EFBIG (past RLIMIT_FSIZE) is an I/O error to SQLite
    assert full["error"] == ("database or disk is full" if mounted else "disk I/O error")
    assert 20 < full["acked_before_full"] < 200
    assert result["present"] == result["expected"]
    assert result["integrity"] == "ok"
