"""Reliability findings in the core and the decorator (issue 9): each scenario failed before its fix."""

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

from ._suite import Scenario


def test_prefix_invalidation_while_other_threads_read_removes_everything(
    record: Scenario, clock: FakeClock
) -> None:
    """Prefix invalidation while 4 threads read the same keys removes every entry (item 7)."""
    record.did("4 threads read while 10 rounds of 4 000 entries were set and invalidated by prefix")
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
    record.saw(memory_errors=memory["errors"], breaker=memory["breaker"])
    assert (memory["errors"], memory["breaker"]) == (0, "closed")


def test_a_factory_asking_for_its_own_key_raises_instead_of_deadlocking(
    record: Scenario, clock: FakeClock
) -> None:
    """A get_or_set factory asking for its own key raises instead of deadlocking (item 13)."""
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
    record.did("a factory called get_or_set for the key it was computing")
    record.saw(raised=type(outcome[0]).__name__ if outcome else "nothing")
    assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError)
    assert "asked for 'k' while computing it" in str(outcome[0])
    assert cache.get_or_set("k", lambda: 1) == 1  # nothing left locked


def test_a_cycle_of_two_keys_across_threads_is_detected(record: Scenario, clock: FakeClock) -> None:
    """Two factories waiting for each other's keys raise instead of deadlocking (item 13)."""
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
    record.did("thread A's factory asked for key b while thread B's asked for key a")
    record.saw(cycles_detected=len(errors))
    assert not any(t.is_alive() for t in threads), "get_or_set deadlocked on a cycle"
    assert errors and "cycle" in str(errors[0])


def test_namespaces_are_validated_once_for_every_tier(record: Scenario) -> None:
    """Namespaces are validated once, for every tier: a trailing newline is refused (item 15)."""
    bad = ["app\n", "app\r\n", " app", "app/x", ""]
    record.did(f"Cache(namespace=...) with {bad!r}")
    for namespace in bad:
        with pytest.raises(ConfigError, match="namespace"):
            Cache(namespace=namespace, order=["memory"])
    record.saw(refused=len(bad))


def test_an_unencodable_key_is_the_callers_error_before_any_tier(record: Scenario, clock: FakeClock) -> None:
    """A key with a lone surrogate is the caller's error before any tier, never a tier failure (item 11)."""
    record.did("get, set, delete, get_many, tags and prefix with a lone surrogate, over memory + file")
    cache = Cache(order=["memory", "file"], clock=clock)
    for key in ("lone \udc80 surrogate", "\ud800"):
        for call in (
            lambda key=key: cache.get(key),
            lambda key=key: cache.set(key, 1, persistent=True),
            lambda key=key: cache.delete(key),
            lambda key=key: cache.get_many([key]),
            lambda key=key: cache.set("ok", 1, tags=[key]),
            lambda key=key: cache.invalidate(prefix=key),
        ):
            with pytest.raises(ValueError, match="not valid Unicode text"):
                call()
    tiers = cache.stats()["tiers"]
    record.saw(tier_errors=sum(figures["errors"] for figures in tiers.values()))
    assert all(figures["errors"] == 0 for figures in tiers.values())
    assert cache.set("fine", 1, persistent=True) is True


def test_an_unreadable_home_does_not_break_a_cache(record: Scenario, tmp_path: Path) -> None:
    """A service user whose HOME cannot be read still builds a cache (item 12)."""
    record.did("a process running as nobody, HOME a 0700 directory of root's holding .streamlit/secrets.toml")
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
        outcome = pipe.read()
    record.saw(outcome=outcome.decode()[:80])
    assert outcome == b"ok"
    assert status == 0
    shutil.rmtree(tmp_path)
