"""Reliability findings in the core (issue 9): each test failed before its fix."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tierkit import MISSING, Cache, ConfigError, load_settings
from tierkit.testing import FakeClock


def test_prefix_invalidation_while_other_threads_read_removes_everything(clock: FakeClock) -> None:
    """Item 7: readers move entries to the LRU end while invalidation walks the keys."""
    cache = Cache(order=["memory"], clock=clock, tiers={"memory": {"options": {"max_entries": 50_000}}})
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for n in range(0, 4000, 7):
                cache.get(f"user:{n}")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        for _ in range(10):
            cache.set_many({f"user:{n}": n for n in range(4000)})
            assert cache.invalidate(prefix="user:") == 4000
            assert cache.get("user:3", MISSING) is MISSING
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    memory = cache.stats()["tiers"]["memory"]
    assert (memory["errors"], memory["breaker"]) == (0, "closed")


def test_a_factory_asking_for_its_own_key_raises_instead_of_deadlocking(clock: FakeClock) -> None:
    """Item 13."""
    cache = Cache(order=["memory"], clock=clock)
    outcome: list[BaseException] = []

    def factory() -> int:
        return cache.get_or_set("k", factory)

    def call() -> None:
        try:
            cache.get_or_set("k", factory)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "get_or_set deadlocked"
    assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError)
    assert "asked for 'k' while computing it" in str(outcome[0])
    assert cache.get_or_set("k", lambda: 1) == 1  # nothing left locked


def test_a_cycle_of_two_keys_across_threads_is_detected(clock: FakeClock) -> None:
    """Item 13, the two-key shape: A's factory waits for B while B's waits for A."""
    cache = Cache(order=["memory"], clock=clock)
    both_started = threading.Barrier(2)
    errors: list[BaseException] = []

    def make(mine: str, other: str) -> None:
        def factory() -> str:
            both_started.wait(timeout=5)
            return str(cache.get_or_set(other, lambda: other)) + mine

        try:
            cache.get_or_set(mine, factory)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=make, args=pair, daemon=True) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "get_or_set deadlocked on a cycle"
    assert errors and "cycle" in str(errors[0])


@pytest.mark.parametrize("namespace", ["app\n", "app\r\n", " app", "app/x", ""])
def test_namespaces_are_validated_once_for_every_tier(namespace: str) -> None:
    """Item 15."""
    with pytest.raises(ConfigError, match="namespace"):
        Cache(namespace=namespace, order=["memory"])


@pytest.mark.parametrize("key", ["lone \udc80 surrogate", "\ud800"])
def test_an_unencodable_key_is_the_callers_error_before_any_tier(key: str, clock: FakeClock) -> None:
    """Item 11: a lone surrogate from user JSON must not count against a tier."""
    cache = Cache(order=["memory", "file"], clock=clock)
    for call in (
        lambda: cache.get(key),
        lambda: cache.set(key, 1, persistent=True),
        lambda: cache.delete(key),
        lambda: cache.get_many([key]),
        lambda: cache.set("ok", 1, tags=[key]),
        lambda: cache.invalidate(prefix=key),
    ):
        with pytest.raises(ValueError, match="not valid Unicode text"):
            call()
    tiers = cache.stats()["tiers"]
    assert all(figures["errors"] == 0 for figures in tiers.values())
    assert cache.set("fine", 1, persistent=True) is True


def test_an_unreadable_home_does_not_break_a_cache(tmp_path: Path) -> None:
    """Item 12: a service user whose HOME it cannot read (a 0700 home of root's, seen by nobody)."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root, to become another user that cannot read a home")
    tmp_path = Path(tempfile.mkdtemp(prefix="tierkit-home-"))  # pytest's own tmp is 0700: nobody stops there
    home, work = tmp_path / "home", tmp_path / "work-nobody"
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "secrets.toml").write_text('REDIS_URL = "redis://x"\n')
    home.chmod(0o700)
    work.mkdir()
    work.chmod(0o777)
    tmp_path.chmod(0o755)
    load_settings(order=["memory", "redis", "session"])  # import lazily loaded modules while still root
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child becomes "nobody": it cannot look inside home
        outcome = b"ok"
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            os.chdir(work)
            os.environ["HOME"] = str(home)
            load_settings(order=["memory", "redis", "session"])
            Cache(order=["memory"]).close()
        except BaseException as exc:
            outcome = repr(exc).encode()
        os.write(write, outcome)
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        assert pipe.read() == b"ok"
    assert status == 0
    shutil.rmtree(tmp_path)
