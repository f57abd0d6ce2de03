"""Coherent local tiers across processes: propagation delay and the workload with the backplane.

    python plugins/tierkit-redis/benchmarks/bench_coherence.py [--changes 1000] [--seconds 5]

Starts a private redis-server on loopback (the test suite's helper).  Processes are
forked; every time is ``time.perf_counter`` (system-wide monotonic on Linux).

1. **Propagation**: process A changes a key, process B (memory + Redis, serving
   the old value from its memory tier) reads in a loop until it sees the change.
   The delay runs from the start of A's call to B's first read showing it (it
   includes A's own write).  Kinds: ``set``, ``invalidate(tags=…)``,
   ``invalidate(prefix=…)``, ``clear()``.  A read older than one B has already
   seen is *stale after the delay* (must be 0).
2. **Workload**: 4 processes, 100 000 keys, Zipf(1.1), 95 % reads / 5 % writes,
   1 KB values; each key is written by one process only, which stamps a version
   into the value and records it (with the time) in shared memory.  A read is
   *stale* if it returns a version older than one whose write completed more than
   ``WINDOW`` before the read started.  Compared: tierkit memory + Redis with the
   backplane, the same with ``backplane = "off"``, and redis-py alone (GET/SET of
   the same orjson values: every read a round trip).
3. **Fan-out floor**: redis-server's CPU per write of redis-py alone (4 writer processes, 1 KB
   values) for ``SET``; ``SET`` + ``PUBLISH`` of a 40-byte message to 4 subscribers; and
   ``MULTI``/``SET``/``PUBLISH``/``EXEC`` with the value carried, as the backplane writes.  What any
   pub/sub backplane costs the server, whatever the clients do.
"""

from __future__ import annotations

import argparse
import bisect
import ctypes
import itertools
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from redis_helpers import RedisServer

from tierkit import Cache

KEYS = 100_000
WORKERS = 4
ZIPF_S = 1.1
WRITE_SHARE = 0.05
WINDOW = 0.05
"""Seconds after a write completes from which an older version counts as a stale read."""
PAD = "x" * 1000
FORK = multiprocessing.get_context("fork")


def settings(url: str, namespace: str, backplane: str = "auto") -> dict[str, Any]:
    return {
        "namespace": namespace,
        "order": ["memory", "redis"],
        "backplane": backplane,
        "tiers": {"memory": {"options": {"max_entries": KEYS}}, "redis": {"options": {"url": url}}},
    }


def subscribed(cache: Cache) -> Cache:
    while cache.stats().get("backplane", {}).get("state", "subscribed") != "subscribed":
        time.sleep(0.01)
    return cache


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- 1. propagation ----------------------------------------------------------------------------------


def _watch(url: str, namespace: str, kind: str, changes: int, shared: Any, pause: bool) -> None:
    """Process B: read "k" until it shows change ``i``; record when; count stale reads after that.

    ``pause``: yield the GIL between reads (``time.sleep(0)``, as a request doing any I/O
    does); without it the reader spins in pure Python.  Either way it reads continuously, so
    it catches up with the backplane on its own thread every millisecond (docs/coherence.md).
    """
    cache = subscribed(Cache(**settings(url, namespace)))
    shared["ready"].value = 1
    stale = 0
    for i in range(changes):
        expected = i if kind == "set" else None
        while shared["armed"].value != i + 1:  # A has made the old value readable: hold it in memory
            pass
        while cache.get("k") != (i - 1 if kind == "set" else i):
            pass
        shared["holding"].value = i + 1
        while True:
            value = cache.get("k")
            if value == expected:
                seen_at = time.perf_counter()
                break
            if kind == "set" and value is not None and value < i - 1:
                stale += 1
            if pause:
                time.sleep(0)
        for _ in range(20):  # after the delay: nothing older may come back
            if cache.get("k") != expected:
                stale += 1
        shared["seen_at"][i] = seen_at
        shared["seen"].value = i + 1
    shared["stale"].value = stale
    cache.close()


def propagation(url: str, kind: str, changes: int, pause: bool) -> dict[str, float]:
    namespace = f"prop-{kind}-{pause}-{os.getpid()}"
    shared = {
        "ready": FORK.Value(ctypes.c_int, 0, lock=False),
        "armed": FORK.Value(ctypes.c_int, 0, lock=False),
        "holding": FORK.Value(ctypes.c_int, 0, lock=False),
        "seen": FORK.Value(ctypes.c_int, 0, lock=False),
        "stale": FORK.Value(ctypes.c_int, 0, lock=False),
        "seen_at": FORK.Array(ctypes.c_double, changes, lock=False),
    }
    writer = Cache(**settings(url, namespace))
    quiet = Cache(**settings(url, namespace, backplane="off"))  # writes B is not told about
    writer.set("k", -1)
    reader = FORK.Process(target=_watch, args=(url, namespace, kind, changes, shared, pause))
    reader.start()
    subscribed(writer)
    while not shared["ready"].value:
        time.sleep(0.001)
    started = []
    for i in range(changes):
        if kind != "set":
            quiet.set("k", i, tags=["t"])  # B reads it into memory; then A invalidates it
        shared["armed"].value = i + 1
        while shared["holding"].value != i + 1:
            time.sleep(0)
        started.append(time.perf_counter())
        if kind == "set":
            writer.set("k", i)
        elif kind == "tags":
            writer.invalidate(tags=["t"])
        elif kind == "prefix":
            writer.invalidate(prefix="k")
        else:
            writer.clear()
        while shared["seen"].value != i + 1:
            time.sleep(0)
    reader.join()
    delays = [(shared["seen_at"][i] - started[i]) * 1000 for i in range(changes)]
    writer.clear()
    writer.close()
    quiet.close()
    return {
        "p50": percentile(delays, 0.5),
        "p99": percentile(delays, 0.99),
        "max": max(delays),
        "stale": shared["stale"].value,
    }


# -- 2. the workload ---------------------------------------------------------------------------------


def zipf_cdf(n: int, s: float) -> list[float]:
    weights = [1 / (rank**s) for rank in range(1, n + 1)]
    total = sum(weights)
    return list(itertools.accumulate(w / total for w in weights))


def plain_redis(url: str) -> tuple[Callable[[str], Any], Callable[[str, Any], Any]]:
    """``get`` and ``set`` of redis-py alone: every read a round trip."""
    client = redis.Redis.from_url(url)

    def get(key: str) -> Any:
        raw = client.get(f"bench:{key}")
        return None if raw is None else orjson.loads(raw)

    def put(key: str, value: Any) -> None:
        client.set(f"bench:{key}", orjson.dumps(value))

    return get, put


def warm_up(cache: Cache, warmup: int, draw: Callable[[], int]) -> None:
    """Fill the memory tier: every key once (``warmup`` < 0, as a long-running worker) or ``warmup`` reads."""
    if warmup < 0:
        for start in range(0, KEYS, 1000):
            cache.get_many([f"k{i}" for i in range(start, min(start + 1000, KEYS))])
    for _ in range(max(warmup, 0)):
        cache.get(f"k{draw()}")


def _work(
    url: str, namespace: str, variant: str, worker: int, seconds: float, warmup: int, shared: Any, out: Any
) -> None:
    rng = random.Random(worker)
    cdf = zipf_cdf(KEYS, ZIPF_S)
    order = list(range(KEYS))
    random.Random(42).shuffle(order)  # hot keys spread over the writers
    names = [f"k{i}" for i in range(KEYS)]
    version, version_at = shared["version"], shared["version_at"]
    cache = None
    if variant == "redis-py":
        get, put = plain_redis(url)
    else:
        cache = subscribed(Cache(**settings(url, namespace, "auto" if variant == "backplane" else "off")))
        get, put = cache.get, cache.set
        warm_up(cache, warmup, lambda: order[bisect.bisect_left(cdf, rng.random())])
    shared["ready"][worker] = 1
    while not shared["go"].value:
        pass
    ops = stale = reads = 0
    latencies: list[int] = []
    counter = itertools.count(1)
    # CPU: every thread of the worker, its subscriber's too
    cpu, deadline = time.process_time(), time.perf_counter() + seconds
    clock = time.perf_counter_ns
    while True:
        index = order[bisect.bisect_left(cdf, rng.random())]
        if rng.random() < WRITE_SHARE:
            index -= index % WORKERS - worker  # the key of this worker nearest in the order
            index = index if index < KEYS else worker
            key = names[index]
            ver = next(counter)
            start = clock()
            put(key, {"v": ver, "pad": PAD})
            done = clock()
            # assigned left to right, the time first: a reader reads the version, then its time, so it
            # never pairs a new version with the previous write's time (an old value would look stale)
            version_at[index], version[index] = time.perf_counter(), ver
        else:
            key = names[index]
            committed, committed_at = version[index], version_at[index]
            began = time.perf_counter()
            start = clock()
            value = get(key)
            done = clock()
            reads += 1
            if committed and began - committed_at > WINDOW and (value is None or value["v"] < committed):
                stale += value is not None
        latencies.append(done - start)
        ops += 1
        if ops % 256 == 0 and time.perf_counter() > deadline:
            break
    elapsed = seconds + (time.perf_counter() - deadline)
    out.put((ops / elapsed, percentile(latencies, 0.99) / 1000, stale, reads, ops, time.process_time() - cpu))
    if cache is not None:
        cache.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workload(url: str, variant: str, seconds: float, warmup: int, server_pid: int) -> dict[str, float]:
    namespace = f"zipf-{variant}"
    shared = {
        "go": FORK.Value(ctypes.c_int, 0, lock=False),
        "ready": FORK.Array(ctypes.c_int, WORKERS, lock=False),
        "version": FORK.Array(ctypes.c_long, KEYS, lock=False),
        "version_at": FORK.Array(ctypes.c_double, KEYS, lock=False),
    }
    out = FORK.Queue()
    procs = [
        FORK.Process(target=_work, args=(url, namespace, variant, w, seconds, warmup, shared, out))
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    while not all(shared["ready"]):
        time.sleep(0.01)
    server_cpu = cpu_seconds(server_pid)
    shared["go"].value = 1
    results = [out.get() for _ in procs]
    server_cpu = cpu_seconds(server_pid) - server_cpu
    for proc in procs:
        proc.join()
    ops = sum(r[4] for r in results)
    return {
        "ops_per_s": sum(r[0] for r in results),
        "p99_us": statistics.median(r[1] for r in results),
        "stale": sum(r[2] for r in results),
        "reads": sum(r[3] for r in results),
        "workers_cpu_us": 1e6 * sum(r[5] for r in results) / ops,
        "server_cpu_us": 1e6 * server_cpu / ops,
    }


def print_server_bound(off: dict[str, float], on: dict[str, float]) -> None:
    """What redis-server's own work for the messages alone leaves of "backplane vs off".

    When every core is busy (workers and server share them), throughput is cores over CPU
    per operation; the server's extra CPU per operation then caps the ratio even if the
    workers applied messages for free."""
    cpu_off = off["workers_cpu_us"] + off["server_cpu_us"]
    extra = on["server_cpu_us"] - off["server_cpu_us"]
    busy = cpu_off * off["ops_per_s"] / 1e6
    print(
        f"  redis-server's extra CPU for the messages: {extra:.2f} µs per operation; with {busy:.1f} of "
        f"{os.cpu_count()} CPUs busy (off), it alone caps backplane vs off at "
        f"{cpu_off / (cpu_off + extra):.2f}x"
    )


# -- 3. the server's fan-out floor ------------------------------------------------------------------


def _write(url: str, mode: str, writes: int, worker: int) -> None:
    client, value = redis.Redis.from_url(url), PAD.encode()
    for i in range(writes):
        key = f"floor:{worker}:{i % 1000}"
        if mode == "SET":
            client.set(key, value, px=600_000)
            continue
        pipe = client.pipeline(transaction=mode != "SET + PUBLISH")
        pipe.set(key, value, px=600_000)
        pipe.publish("floor", b"m" * 40 if mode == "SET + PUBLISH" else b"m" * 40 + value)
        pipe.execute()


def fanout(url: str, server_pid: int, writes: int) -> dict[str, float]:
    """redis-server's CPU per write, best of two rounds per mode, with 4 subscribers reading."""
    stop = threading.Event()
    subscriptions = [redis.Redis.from_url(url).pubsub() for _ in range(WORKERS)]
    for subscription in subscriptions:
        subscription.subscribe("floor")

    def drain(subscription: Any) -> None:
        while not stop.is_set():
            subscription.get_message(timeout=0.05)

    readers = [threading.Thread(target=drain, args=(sub,), daemon=True) for sub in subscriptions]
    for reader in readers:
        reader.start()
    figures: dict[str, float] = {}
    try:
        for mode in ("SET", "SET + PUBLISH", "MULTI/SET/PUBLISH/EXEC") * 2:
            before = cpu_seconds(server_pid)
            procs = [FORK.Process(target=_write, args=(url, mode, writes, w)) for w in range(WORKERS)]
            for proc in procs:
                proc.start()
            for proc in procs:
                proc.join()
            per_write = 1e6 * (cpu_seconds(server_pid) - before) / (WORKERS * writes)
            figures[mode] = min(per_write, figures.get(mode, per_write))
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        for subscription in subscriptions:
            subscription.close()
    return figures


def prefill(url: str) -> None:
    """Every key in Redis for each variant (tierkit's layout, and the plain one redis-py reads)."""
    loader = {v: Cache(**settings(url, f"zipf-{v}", "off")) for v in ("backplane", "off")}
    client = redis.Redis.from_url(url)
    for start in range(0, KEYS, 1000):
        batch = {f"k{i}": {"v": 0, "pad": PAD} for i in range(start, start + 1000)}
        for cache in loader.values():
            cache.set_many(batch)
        client.mset({f"bench:{k}": orjson.dumps(v) for k, v in batch.items()})
    for cache in loader.values():
        cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", choices=["propagation", "workload", "fanout"])
    parser.add_argument(
        "--warmup",
        type=int,
        default=-1,
        help="Zipf reads per worker before the run; -1 (default): every key once, as a long-running worker",
    )
    parser.add_argument(
        "--keyspace",
        action="store_true",
        help="the server publishes keyspace events (notify-keyspace-events KA): foreign writes are watched",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["notify-keyspace-events KA"] if args.keyspace else []
        server = RedisServer(Path(tmp), extra=extra).start()
        try:
            if args.only in (None, "propagation"):
                print(f"propagation, {args.changes} changes each (ms from a change to the reader seeing it)")
                for pause, reader in ((True, "reader yielding between reads"), (False, "reader spinning")):
                    for kind in ("set", "tags", "prefix", "clear"):
                        r = propagation(server.url, kind, args.changes, pause)
                        print(
                            f"  {reader:<30} {kind:<7} p50 {r['p50']:6.3f}  p99 {r['p99']:7.3f}  "
                            f"max {r['max']:7.3f}  stale after the delay: {r['stale']}"
                        )
            if args.only in (None, "workload"):
                prefill(server.url)
                print(
                    f"workload: {WORKERS} processes, {KEYS} keys Zipf({ZIPF_S}), {WRITE_SHARE:.0%} writes, "
                    f"1 KB values, {args.seconds:g} s each, warm-up "
                    f"{'every key once' if args.warmup < 0 else f'{args.warmup} reads'}"
                )
                figures = {}
                for variant in ("redis-py", "off", "backplane", "redis-py", "off", "backplane"):
                    r = workload(server.url, variant, args.seconds, args.warmup, server.process.pid)
                    best = figures.get(variant)
                    if best is None or r["ops_per_s"] > best["ops_per_s"]:
                        figures[variant] = r
                for variant, r in figures.items():
                    print(
                        f"  {variant:<10} {r['ops_per_s']:10.0f} ops/s  p99 {r['p99_us']:8.1f} µs  "
                        f"stale reads {r['stale']} of {r['reads']}  CPU per operation: workers "
                        f"{r['workers_cpu_us']:.2f} µs + redis-server {r['server_cpu_us']:.2f} µs"
                    )
                base, off, on = (figures[v]["ops_per_s"] for v in ("redis-py", "off", "backplane"))
                print(f"  backplane vs redis-py: {on / base:.2f}x   backplane vs off: {on / off:.2f}x")
                print_server_bound(figures["off"], figures["backplane"])
            if args.only in (None, "fanout"):
                print(f"fan-out floor: redis-server CPU per write, {WORKERS} writers, {WORKERS} subscribers")
                for mode, micros in fanout(server.url, server.process.pid, 5000).items():
                    print(f"  {mode:<24} {micros:6.1f} µs")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
