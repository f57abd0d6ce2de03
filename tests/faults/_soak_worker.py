"""One process of the soak: 8 threads of mixed operations on keys only it writes.

``python -m tests.faults._soak_worker URL DIRECTORY NAMESPACE WORKER OPS THREADS OUT``

Each thread owns its keys (so "the last acknowledged write" of a key is well defined)
and keeps a model of what each key must hold.  Even-numbered keys are always written
with ``persistent=True``, odd ones never, so each key's set of tiers is fixed.  A write
the cache reports as not done everywhere (``set`` → False) leaves the key *uncertain*:
it must then hold the new value or nothing, never an older value.  The process writes
its model and its figures as JSON to OUT.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from typing import Any

from tierkit import MISSING, Cache

KEYS_PER_THREAD = 40


def run_thread(cache: Cache, worker: int, thread: int, ops: int, out: dict[str, Any]) -> None:
    rng = random.Random(worker * 1000 + thread)
    tag = f"w{worker}t{thread}"
    keys = [f"{tag}:k{n}" for n in range(KEYS_PER_THREAD)]
    model: dict[str, list[Any]] = {}  # key -> ["value", v] | ["absent"] | ["uncertain", v]
    mismatches = slowest = 0.0
    for op in range(ops):
        n = rng.randrange(KEYS_PER_THREAD)
        key = keys[n]
        roll = rng.random()
        start = time.perf_counter()
        if roll < 0.45:
            value = {"op": op, "key": key, "pad": "x" * rng.randrange(64)}
            stored = cache.set(key, value, ttl=600, tags=[tag], persistent=n % 2 == 0)
            model[key] = ["value", value] if stored else ["uncertain", value]
        elif roll < 0.55:
            cache.delete(key)
            model[key] = ["absent"]
        elif roll < 0.57:
            cache.invalidate(tags=[tag])
            model = {k: ["absent"] for k in keys}
        else:
            got = cache.get(key, MISSING)
            state = model.get(key, ["absent"])
            expected = MISSING if state[0] == "absent" else state[1]
            if state[0] != "uncertain" and got != expected:
                mismatches += 1
        slowest = max(slowest, time.perf_counter() - start)
    out[tag] = {"model": model, "mismatches": mismatches, "slowest_s": slowest}


def main(url: str, directory: str, namespace: str, worker: int, ops: int, threads: int, path: str) -> None:
    tiers = {
        "redis": {"options": {"url": url, "socket_timeout": 0.2}, "breaker": {"cooldown": 0.1}},
        "file": {"options": {"directory": directory}},
    }
    cache = Cache(namespace=namespace, order=["memory", "redis", "file"], tiers=tiers)
    out: dict[str, Any] = {}
    workers = [threading.Thread(target=run_thread, args=(cache, worker, t, ops, out)) for t in range(threads)]
    for thread in workers:
        thread.start()
    with open(path + ".ready", "w"):
        pass  # the parent freezes Redis once every worker is under way
    for thread in workers:
        thread.join()
    stats = cache.stats()["tiers"]
    cache.close()
    with open(path, "w") as f:
        json.dump({"threads": out, "errors": {name: fig["errors"] for name, fig in stats.items()}}, f)


if __name__ == "__main__":
    url, directory, namespace, worker, ops, threads, path = sys.argv[1:]
    main(url, directory, namespace, int(worker), int(ops), int(threads), path)
