"""Stampedes through Redis (docs/stampede.md): factory calls, waits, and what the options cost.

    python plugins/tierkit-redis/benchmarks/bench_stampede.py

Starts a private redis-server on loopback (the test suite's helper).  Figures:

* 4 processes x 50 threads on one cold key (factory: 0.3 s), ``lock=False`` vs ``lock=True``:
  factory calls over all processes and the longest call; then with the first computing
  process killed (SIGKILL), ``lock_timeout=4``.
* Costs, as ratios of interleaved medians on a memory -> redis chain: a miss with
  ``lock=True`` vs without (one ``SET NX PX``, one more ``GET``, one unlock); a hit with
  ``early_refresh`` vs without (it reads the entry's deadline instead of the memory tier's
  front door); a ``set`` with ``stale_ttl`` vs without (two entries, one pipeline).
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from redis_helpers import RedisServer

from tierkit import Cache
from tierkit.testing import stampede

ROUNDS = 15
_counter = itertools.count()


def redis_cache(url: str, namespace: str) -> Callable[[], Cache]:
    def make() -> Cache:
        return Cache(
            namespace=namespace, order=["memory", "redis"], tiers={"redis": {"options": {"url": url}}}
        )

    return make


def stampedes(url: str) -> None:
    for lock in (False, True):
        result = stampede(redis_cache(url, f"bench-{next(_counter)}"), processes=4, threads=50, lock=lock)
        print(
            f"4 processes x 50 threads, lock={lock!s:<5}  factory calls {result.calls}  "
            f"longest call {result.longest_wait:.2f} s"
        )
    result = stampede(
        redis_cache(url, f"bench-{next(_counter)}"), processes=4, threads=50, kill_first=True, lock_timeout=4
    )
    print(
        f"holder killed, lock_timeout=4 s          factory calls {result.calls}  "
        f"longest call {result.longest_wait:.2f} s"
    )


def ratio(name: str, ours: Callable[[int], float], peer: Callable[[int], float], n: int) -> None:
    """Print median(ours) / median(peer) per operation over interleaved rounds."""
    times: dict[str, list[float]] = {"ours": [], "peer": []}
    for r in range(ROUNDS):
        order = [("ours", ours), ("peer", peer)]
        for side, batch in order if r % 2 == 0 else order[::-1]:
            times[side].append(batch(n) / n)
    a, b = statistics.median(times["ours"]), statistics.median(times["peer"])
    print(f"{name:<44} {a * 1e6:8.1f} us vs {b * 1e6:8.1f} us   ratio {a / b:.2f}")


def costs(url: str) -> None:
    cache = redis_cache(url, f"bench-{next(_counter)}")()

    def misses(**options: object) -> Callable[[int], float]:
        def batch(n: int) -> float:
            keys = [f"miss:{next(_counter)}" for _ in range(n)]
            start = time.perf_counter()
            for key in keys:
                cache.get_or_set(key, lambda: 1, 60, **options)  # type: ignore[arg-type]
            return time.perf_counter() - start

        return batch

    def hits(**options: object) -> Callable[[int], float]:
        cache.get_or_set("hot", lambda: 1, 3600, **options)  # type: ignore[arg-type]

        def batch(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                cache.get_or_set("hot", lambda: 1, 3600, **options)  # type: ignore[arg-type]
            return time.perf_counter() - start

        return batch

    def sets(**options: object) -> Callable[[int], float]:
        def batch(n: int) -> float:
            start = time.perf_counter()
            for i in range(n):
                cache.set(f"set:{i}", i, 60, **options)  # type: ignore[arg-type]
            return time.perf_counter() - start

        return batch

    ratio("miss: lock=True / lock=False", misses(lock=True), misses(), 200)
    ratio("memory hit: early_refresh=0.1 / plain", hits(early_refresh=0.1), hits(), 20000)
    ratio("set: stale_ttl=300 / plain", sets(stale_ttl=300), sets(), 500)
    cache.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        server = RedisServer(Path(work)).start()
        try:
            stampedes(server.url)
            costs(server.url)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
