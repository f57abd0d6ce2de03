"""The Redis tier scaled out: get_many(100) on a 3-master cluster vs one server, and failover times.

    python plugins/tierkit-redis/benchmarks/bench_scaleout.py [--no-failover]

Starts private redis-servers on loopback with the test suite's helpers
(``plugins/tierkit-redis/tests/topology_helpers.py``): one plain server, a cluster of
3 masters with a replica each, and (for the failover figures) a fresh cluster and a
master + replica + 3 Sentinels (node timeout / down-after 1 s).  Throughput is the
median of interleaved rounds; the failover figure is the time from SIGKILL of a
master to the first ``set_many`` (cluster) or ``set`` + ``get`` (Sentinel) that
succeeds on the promoted replica.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from redis_helpers import RedisServer
from tierkit_redis import Options, RedisTier
from topology_helpers import Cluster, SentinelGroup

from tierkit import Entry, TierContext

ROUNDS = 15
BATCHES = 200
VALUE = orjson.dumps({"id": 1, "name": "record", "items": [{"i": i} for i in range(30)]})


def tier_for(**options: object) -> RedisTier:
    return RedisTier(Options(**options), TierContext("redis", "bench"))  # type: ignore[arg-type]


def throughput(tiers: dict[str, RedisTier]) -> None:
    keys = [f"user:{i}" for i in range(100)]
    for tier in tiers.values():
        tier.tierkit_set_many({key: Entry(VALUE, None, ()) for key in keys})
        assert len(tier.tierkit_get_many(keys)) == 100

    def batches(tier: RedisTier) -> float:
        start = time.perf_counter()
        for _ in range(BATCHES):
            tier.tierkit_get_many(keys)
        return BATCHES / (time.perf_counter() - start)

    rates: dict[str, list[float]] = {name: [] for name in tiers}
    for r in range(ROUNDS):
        for name in list(tiers)[:: 1 if r % 2 == 0 else -1]:
            rates[name].append(batches(tiers[name]))
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"get_many(100) {name:<22} {median:8.0f} batches/s  ({median * 100:9.0f} keys/s)")


def heal_time(write: Callable[[], object], kill: Callable[[], object]) -> float:
    kill()
    killed = time.monotonic()
    while True:
        try:
            write()
        except Exception:
            if time.monotonic() - killed > 30:
                raise
            time.sleep(0.02)
        else:
            return time.monotonic() - killed


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        (root / "single").mkdir()
        single = RedisServer(root / "single").start()
        cluster = Cluster(root / "cluster").start()
        try:
            throughput(
                {
                    "single server": tier_for(url=single.url),
                    "cluster (3 masters)": tier_for(url=cluster.url, cluster=True),
                }
            )
        finally:
            single.stop()
            cluster.stop()
        if "--no-failover" in sys.argv:
            return
        fresh = Cluster(root / "failover").start()
        try:
            tier = tier_for(url=fresh.url, cluster=True)
            batch = {f"k{i}": Entry(VALUE, None, ()) for i in range(300)}
            tier.tierkit_set_many(batch)
            seconds = heal_time(lambda: tier.tierkit_set_many(batch), fresh.nodes[0].stop)
            print(f"cluster: master killed -> set_many(300) over every shard succeeds after {seconds:.2f} s")
        finally:
            fresh.stop()
        group = SentinelGroup(root / "sentinel").start()
        try:
            tier = tier_for(sentinels=group.addresses, service_name=group.service)
            tier.tierkit_set("k", Entry(VALUE, None, ()))
            master = group.master
            assert master is not None

            def write_and_read() -> None:
                tier.tierkit_set("k", Entry(b"after", None, ()))
                assert tier.tierkit_get("k") == Entry(b"after", None, ())

            seconds = heal_time(write_and_read, master.stop)
            print(f"sentinel: master killed -> set + get on the new master succeed after {seconds:.2f} s")
        finally:
            group.stop()


if __name__ == "__main__":
    main()
