"""tierkit's Django backend against Django's own RedisCache, on one private redis-server.

    python -m benchmarks.django_backend [--quick]

Three Django caches over the same server: Django's ``RedisCache``, ``TierkitCache`` over
Redis alone (the same round trips: a fair per-operation comparison) and ``TierkitCache``
over memory + Redis (what a deployment would run: hits served from memory).  Each
operation is timed in interleaved rounds (``benchmarks._timing``); the figure is
median(tierkit) / median(Django) per operation.  Values are pickled on every side.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
from pathlib import Path

from benchmarks._env import isolated_config, private_redis, temp_root
from benchmarks._timing import FULL, QUICK, Batch, call_loop, interleave, per_op_ns

VALUE = {"id": 1, "name": "record", "items": [{"i": i, "label": f"item-{i}"} for i in range(30)]}


def configure(url: str) -> None:
    import django
    from django.conf import settings

    os.environ["REDIS_URL"] = url  # the tierkit caches read it as any deployment would

    def tierkit(location: str, *order: str) -> dict[str, object]:
        backend = "tierkit.integrations.django.TierkitCache"
        return {"BACKEND": backend, "LOCATION": location, "OPTIONS": {"order": list(order)}}

    settings.configure(
        SECRET_KEY="benchmark-only-secret-" + "k3Vq" * 10,
        CACHES={
            "django": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url},
            "tierkit_redis": tierkit("bench-r", "redis"),
            "tierkit": tierkit("bench-mr", "memory", "redis"),
        },
    )
    django.setup()


def workloads(cache: object) -> dict[str, Batch]:
    """The batches of one cache: each operation in a tight loop."""
    get, set_, add, incr = (getattr(cache, name) for name in ("get", "set", "add", "incr"))
    set_("hot", VALUE, None)
    set_("counter", 0, None)
    fresh = (f"add:{n}" for n in itertools.count())

    def adds(n: int) -> None:
        for key in itertools.islice(fresh, n):
            add(key, VALUE, 60)

    return {
        "get (hit)": call_loop(get, "hot"),
        "get (miss)": call_loop(get, "absent"),
        "set": call_loop(set_, "hot", VALUE, 300),
        "add (new key)": adds,
        "incr": call_loop(incr, "counter"),
        "has_key": call_loop(cache.has_key, "hot"),  # type: ignore[attr-defined]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few short rounds")
    mode = QUICK if parser.parse_args().quick else FULL
    work = temp_root("tierkit-bench-django-")
    with isolated_config(work), private_redis(Path(work)) as server:
        if server is None:
            sys.exit("redis-server is not installed")
        configure(server.url)
        from django.core.cache import caches

        names = ("django", "tierkit_redis", "tierkit")
        assert caches["tierkit"].tierkit.tiers == ("memory", "redis"), caches["tierkit"].tierkit.health()
        sides = {name: workloads(caches[name]) for name in names}
        header = f"{'Django RedisCache':>19}{'tierkit: redis':>26}{'tierkit: memory+redis':>31}"
        print(f"{'operation':<16}{header}")
        for operation in sides["django"]:
            _, times = interleave([side[operation] for side in sides.values()], mode)
            django, redis_only, memory_redis = (statistics.median(t) for t in times)
            print(
                f"{operation:<16}{per_op_ns(django):>19}"
                f"{per_op_ns(redis_only):>15} ({redis_only / django:5.2f}x)"
                f"{per_op_ns(memory_redis):>20} ({memory_redis / django:5.2f}x)"
            )


if __name__ == "__main__":
    main()
