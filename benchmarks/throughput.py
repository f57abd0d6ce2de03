"""Throughput: several processes x threads sharing one Redis and one file-tier directory.

Chain: memory (1,000 entries) → redis → file, over 5,000 keys of 1 KB JSON preloaded into
Redis and the file tier.  Each thread draws keys at random and does 90 % ``get`` and
10 % ``set(persistent=True)`` (memory + Redis + file).  Every process starts at the same
instant and runs for the same time; the figure is total operations per second.  The same
workload with 1 process x 1 thread runs right after, as the scale reference.

Run as ``python -m benchmarks.throughput`` it is the worker process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

KEYS = 5000
MEMORY_ENTRIES = 1000
READ_SHARE = 0.9
TTL = 600.0


def settings(redis_url: str | None, directory: str) -> dict[str, Any]:
    order = ["memory", "redis", "file"] if redis_url else ["memory", "file"]
    tiers: dict[str, Any] = {
        "memory": {"options": {"max_entries": MEMORY_ENTRIES}},
        "file": {"options": {"directory": directory}},
    }
    if redis_url:
        tiers["redis"] = {"options": {"url": redis_url}}
    return {"namespace": "bench-throughput", "order": order, "tiers": tiers}


def keys() -> list[str]:
    return [f"bench:tp:{i:05d}" for i in range(KEYS)]


def preload(redis_url: str | None, directory: str, value: Any) -> None:
    import tierkit

    with tierkit.Cache(**settings(redis_url, directory)) as cache:
        all_keys = keys()
        for start in range(0, KEYS, 500):
            cache.set_many(dict.fromkeys(all_keys[start : start + 500], value), ttl=TTL, persistent=True)


def _worker(args: argparse.Namespace) -> None:
    import tierkit
    from benchmarks._env import json_value

    value = json_value()
    cache = tierkit.Cache(**settings(args.redis_url, args.directory))
    all_keys = keys()
    counts = [0] * args.threads
    errors: list[str] = []

    def run(index: int) -> None:
        rng = random.Random(args.seed * 100 + index)
        plan = [(rng.random() < READ_SHARE, all_keys[rng.randrange(KEYS)]) for _ in range(8192)]
        chunks = [plan[i : i + 256] for i in range(0, len(plan), 256)]
        get, set_ = cache.get, cache.set
        done = 0
        while time.time() < args.start_at:
            time.sleep(0.0005)
        stop = max(time.time(), args.start_at) + args.seconds  # a late start (busy machine) still runs
        try:
            for chunk in itertools.cycle(chunks):
                if time.time() >= stop:
                    break
                for read, key in chunk:
                    if read:
                        get(key)
                    else:
                        set_(key, value, ttl=TTL, persistent=True)
                done += len(chunk)
        except Exception as exc:  # reported, not swallowed
            errors.append(f"{type(exc).__name__}: {exc}")
        counts[index] = done

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats()
    cache.close()
    tiers = {name: {"hits": t.get("hits"), "errors": t.get("errors")} for name, t in stats["tiers"].items()}
    reasons = {name: t.reason for name, t in cache.health().tiers.items() if t.reason}
    print(
        json.dumps(
            {"ops": sum(counts), "seconds": args.seconds, "errors": errors, "tiers": tiers, "health": reasons}
        )
    )


def measure(
    redis_url: str | None, directory: Path, processes: int, threads: int, seconds: float
) -> dict[str, Any]:
    start_at = time.time() + 1.5  # every process imported and connected before the start
    argv = [sys.executable, "-m", "benchmarks.throughput", "--worker", "--directory", str(directory)]
    argv += ["--threads", str(threads), "--seconds", str(seconds), "--start-at", repr(start_at)]
    if redis_url:
        argv += ["--redis-url", redis_url]
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    workers = [
        subprocess.Popen(
            [*argv, "--seed", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=directory,
            env=env,
            text=True,
        )
        for i in range(processes)
    ]
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=seconds + 120)
        if worker.returncode != 0:
            raise RuntimeError(f"throughput worker failed ({worker.returncode}): {err.strip()[-2000:]}")
        reports.append(json.loads(out))
    ops = sum(r["ops"] for r in reports)
    hits: dict[str, int] = {}
    errors = [e for r in reports for e in r["errors"]]
    tier_errors: dict[str, int] = {}
    for r in reports:
        for name, t in r["tiers"].items():
            hits[name] = hits.get(name, 0) + (t["hits"] or 0)
            tier_errors[name] = tier_errors.get(name, 0) + (t["errors"] or 0)
    return {
        "processes": processes,
        "threads": threads,
        "seconds": seconds,
        "ops": ops,
        "ops_per_s": ops / seconds,
        "tier_hits": hits,
        "tier_errors": tier_errors,
        "errors": errors,
        "health": [r.get("health") for r in reports],
    }


def throughput(redis_url: str | None, directory: Path, seconds: float, value: Any) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    preload(redis_url, str(directory), value)
    wide = measure(redis_url, directory, 2, 4, seconds)
    single = measure(redis_url, directory, 1, 1, seconds)
    return {
        "chain": settings(redis_url, "<tmp>")["order"],
        "keys": KEYS,
        "memory_entries": MEMORY_ENTRIES,
        "read_share": READ_SHARE,
        "runs": [wide, single],
        "speedup_2x4_over_1x1": wide["ops_per_s"] / single["ops_per_s"] if single["ops_per_s"] else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--redis-url")
    parser.add_argument("--directory", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    _worker(parser.parse_args())


if __name__ == "__main__":
    main()
