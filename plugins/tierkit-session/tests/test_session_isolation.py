"""Many threads at once: sessions never leak, one shared session stays consistent."""

from __future__ import annotations

import sys
import threading
import time
from collections import UserDict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tierkit_session import SessionTier, bind
from tierkit_session._bucket import Bucket

from tierkit import Entry

THREADS = 24
ROUNDS = 6_000


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    """Make the interpreter switch threads every few bytecodes, so races show up."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def run_threads(target: Callable[[int], None], count: int = THREADS) -> None:
    """Run ``target(n)`` in ``count`` threads released together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        barrier.wait()
        try:
            target(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def assert_consistent(bucket: Bucket, max_entries: int) -> None:
    """The tag index names exactly the entries carrying each tag, and the bound holds."""
    assert len(bucket.entries) <= max_entries
    expected: dict[str, set[str]] = {}
    for key, entry in bucket.entries.items():
        for tag in entry.tags:
            expected.setdefault(tag, set()).add(key)
    assert bucket.tag_index == expected


def test_threads_with_their_own_sessions_never_see_each_other(
    make_tier: Callable[..., SessionTier],
) -> None:
    tier = make_tier(max_entries=50)
    sessions: list[dict[str, Any]] = [{} for _ in range(THREADS)]

    def user(n: int) -> None:
        with bind(sessions[n]):
            for i in range(ROUNDS):
                key = f"k{i % 80}"
                tier.tierkit_set(key, Entry((n, i), None, (f"t{i % 7}",)))
                hit = tier.tierkit_get(f"k{(i * 7) % 80}")
                assert hit is None or hit.value[0] == n
                if i % 100 == 0:
                    tier.tierkit_invalidate_tags([f"t{i % 7}"])

    run_threads(user)
    for n, session in enumerate(sessions):
        bucket = session["tierkit"]["app"]
        assert {entry.value[0] for entry in bucket.entries.values()} == {n}
        assert_consistent(bucket, 50)


def test_threads_sharing_one_session_keep_it_consistent(
    make_tier: Callable[..., SessionTier],
) -> None:
    """Streamlit serves one session from several threads."""
    tier = make_tier(max_entries=40)
    session: dict[str, Any] = {}

    def worker(n: int) -> None:
        with bind(session):
            for i in range(ROUNDS):
                key = f"k{(n + i) % 60}"
                match i % 6:
                    case 0 | 1 | 2:
                        tier.tierkit_set(key, Entry(i, None, (f"t{i % 5}", f"u{n % 3}")))
                    case 3:
                        tier.tierkit_get(key)
                    case 4:
                        tier.tierkit_delete(key)
                    case _:
                        tier.tierkit_invalidate_tags([f"t{i % 5}"])

    run_threads(worker)
    assert_consistent(session["tierkit"]["app"], 40)


class SlowSession(UserDict[str, Any]):
    """A host mapping whose writes take a while, like one behind its own lock or store."""

    def __setitem__(self, key: str, value: Any) -> None:
        time.sleep(0.001)
        super().__setitem__(key, value)


def test_concurrent_first_writes_create_one_bucket(
    make_tier: Callable[..., SessionTier],
) -> None:
    tier = make_tier()
    session = SlowSession()

    def first_write(n: int) -> None:
        with bind(session):
            tier.tierkit_set(f"k{n}", Entry(n, None))

    run_threads(first_write)
    with bind(session):
        assert len(tier.tierkit_get_many([f"k{n}" for n in range(THREADS)])) == THREADS
