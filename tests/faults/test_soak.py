"""The soak: processes x threads over memory + Redis + file, with Redis frozen midway."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tierkit import MISSING, Cache

from ._redis import RedisServer
from ._suite import ROOT, Scenario, scale

PROCESSES, THREADS = 4, 8


def test_processes_and_threads_agree_with_the_last_acknowledged_write(
    record: Scenario, redis_server: RedisServer, tmp_path: Path
) -> None:
    """4 processes x 8 threads over memory + Redis + file: every tier ends on the last acknowledged write."""
    ops = scale(3000, 600)
    namespace = f"soak{uuid.uuid4().hex[:6]}"
    directory = tmp_path / "store"
    outs = [tmp_path / f"worker{w}.json" for w in range(PROCESSES)]
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.faults._soak_worker", redis_server.url, str(directory)),
                *(namespace, str(w), str(ops), str(THREADS), str(outs[w])),
            ],
            cwd=ROOT,
        )
        for w in range(PROCESSES)
    ]
    while not all(Path(f"{out}.ready").exists() for out in outs):
        assert all(worker.poll() is None for worker in workers), "a soak worker died at start"
        time.sleep(0.05)
    time.sleep(0.3)
    redis_server.admin().execute_command("CLIENT", "PAUSE", 400, "WRITE")  # longer than the 200 ms timeout
    for worker in workers:
        assert worker.wait(timeout=300) == 0
    elapsed = time.perf_counter() - started
    results = [json.loads(out.read_text()) for out in outs]
    threads = {tag: data for result in results for tag, data in result["threads"].items()}

    tiers = {
        "redis": {"options": {"url": redis_server.url}},
        "file": {"options": {"directory": str(directory)}},
    }
    disagreements: list[str] = []
    checked = uncertain = 0
    with (
        Cache(namespace=namespace, order=["redis"], tiers=tiers) as shared,
        Cache(namespace=namespace, order=["file"], tiers=tiers) as disk,
    ):
        for data in threads.values():
            for key, state in data["model"].items():
                persistent = int(key.rsplit("k", 1)[1]) % 2 == 0
                for name, tier, holds in (("redis", shared, True), ("file", disk, persistent)):
                    got = tier.get(key, MISSING)
                    if state[0] == "uncertain":
                        uncertain += 1
                        allowed: list[Any] = [MISSING, state[1]] if holds else [MISSING]
                    else:
                        allowed = [state[1] if state[0] == "value" and holds else MISSING]
                    checked += 1
                    if got not in allowed:
                        disagreements.append(f"{name} {key}: {got!r}, expected one of {allowed!r}")
    mismatches = sum(data["mismatches"] for data in threads.values())
    record.did(
        f"{PROCESSES} processes x {THREADS} threads each ran {ops} mixed operations (45 % set, "
        "10 % delete, 2 % invalidate by tag, the rest get) on keys only they write, over memory + "
        "Redis + file; Redis was paused for 400 ms (socket timeout 200 ms) once all were under way; then "
        "a fresh process read every key from Redis and from the file tier"
    )
    record.saw(
        operations=PROCESSES * THREADS * ops,
        seconds=round(elapsed, 1),
        ops_per_second=round(PROCESSES * THREADS * ops / elapsed),
        slowest_call_ms=round(max(d["slowest_s"] for d in threads.values()) * 1000, 1),
        own_reads_wrong=int(mismatches),
        tier_copies_checked=checked,
        uncertain_writes=uncertain,
        disagreements=len(disagreements),
        redis_errors=sum(r["errors"].get("redis", 0) for r in results),
    )
    assert mismatches == 0
    assert disagreements == [], disagreements[:5]
