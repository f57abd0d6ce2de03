"""The Redis tier's own cost: its get / get_many against raw redis-py on the same server.

    python plugins/tierkit-redis/benchmarks/bench_tier.py [REDIS_URL]

Without a URL it starts a private redis-server on a free loopback port.  Both sides
decode the payload with orjson, use one client each with the same settings, and run
in interleaved rounds (A B, B A …); the figure is median(tier) / median(raw).
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import orjson
import redis
from tierkit_redis import Options, RedisTier

from tierkit import Entry, TierContext

ROUNDS = 21
VALUE = {"id": 1, "name": "record", "items": [{"i": i, "label": f"item-{i}"} for i in range(30)]}


def per_op(batch: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    batch(n)
    return (time.perf_counter() - start) / n


def compare(label: str, ours: Callable[[int], object], raw: Callable[[int], object], n: int) -> None:
    ours(n // 4)  # warm-up
    raw(n // 4)
    a, b = [], []
    for r in range(ROUNDS):
        first, second = (ours, raw) if r % 2 == 0 else (raw, ours)
        t1, t2 = per_op(first, n), per_op(second, n)
        a.append(t1 if first is ours else t2)
        b.append(t2 if first is ours else t1)
    tier, peer = statistics.median(a), statistics.median(b)
    print(f"{label:<28} tier {tier * 1e6:8.1f} µs   raw {peer * 1e6:8.1f} µs   ratio {tier / peer:5.3f}")


def run(url: str) -> None:
    tier = RedisTier(Options(url=url), TierContext("redis", "bench"))
    client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
    payload = orjson.dumps(VALUE)
    keys = [f"k{i}" for i in range(100)]
    tier.tierkit_set_many({key: Entry(payload, time.time() + 600, ()) for key in keys})
    for key in keys:
        client.set("raw:" + key, payload, px=600_000)
    raw_keys = ["raw:" + key for key in keys]
    loads, tier_get, raw_get = orjson.loads, tier.tierkit_get, client.get

    def ours_get(n: int) -> None:
        for i in range(n):
            entry = tier_get(keys[i % 100])
            assert entry is not None
            loads(entry.value)

    def raw_get_loop(n: int) -> None:
        for i in range(n):
            loads(raw_get(raw_keys[i % 100]))

    def ours_many(n: int) -> None:
        for _ in range(n):
            {k: loads(e.value) for k, e in tier.tierkit_get_many(keys).items()}

    def raw_many(n: int) -> None:
        for _ in range(n):
            {k: loads(v) for k, v in zip(raw_keys, client.mget(raw_keys), strict=True) if v is not None}

    compare("get + decode", ours_get, raw_get_loop, 2000)
    compare("get_many(100) + decode", ours_many, raw_many, 200)
    tier.tierkit_clear()
    client.delete(*raw_keys)
    tier.tierkit_close()
    client.close()


def main() -> None:
    if len(sys.argv) > 1:
        run(sys.argv[1])
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("give a REDIS_URL or put redis-server on PATH")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as work:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        server = subprocess.Popen([binary, *args, "--dir", work], stdout=subprocess.DEVNULL)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(200):
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
            run(url)
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
