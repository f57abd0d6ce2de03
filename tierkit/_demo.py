"""``tierkit demo``: a short guided tour of the cache on the default chain.

``tierkit demo`` (or ``python -m tierkit demo``) runs it.  It uses its own namespace,
cleared first, so every run shows the same thing; it writes only where the tiers keep
their data (the user cache directory, or the configured file-tier directory, and Redis
when ``REDIS_URL`` is set).  ``python -m tierkit._demo --child`` is the second process
the tour starts: it prints what it measured as JSON for the first to show.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from tierkit._cache import Cache, HealthReport, TierReport
from tierkit._config import redact
from tierkit._decorator import CachedFunction, cached
from tierkit._types import MISSING
from tierkit.cli import table

NAMESPACE = "tierkit-demo"
SLOW_SECONDS = 0.4
MONTHS = ("2024-01", "2024-02")
FUNCTION_KEYS = "demo.monthly_report"
WARM_CALLS = 10_000
CHILD_TIMEOUT = 60.0

CODE = f"""\
    @tierkit.cached(ttl=600, persistent=True, tags=["reports"], namespace="{FUNCTION_KEYS}")
    def monthly_report(month: str) -> dict[str, float]:
        time.sleep({SLOW_SECONDS})          # stands in for a slow query
        return {{"revenue": ..., "orders": ...}}"""


def open_cache() -> Cache:
    """The demo's cache: the default order, its own namespace and its own Redis key prefix."""
    return Cache(
        namespace=NAMESPACE,
        order=None,
        tiers={"redis": {"options": {"key_prefix": f"tierkit:{NAMESPACE}:"}}},
    )


def _monthly_report(month: str) -> dict[str, float]:
    time.sleep(SLOW_SECONDS)
    seed = sum(map(ord, month))
    return {"revenue": seed * 12.5, "orders": float(seed % 97)}


def report_function(cache: Cache) -> CachedFunction[[str], dict[str, float]]:
    """``monthly_report`` under ``@cached``; the explicit key namespace is the same in every process."""
    decorate = cached(ttl=600, persistent=True, tags=["reports"], cache=cache, namespace=FUNCTION_KEYS)
    return decorate(_monthly_report)


# -- measuring --------------------------------------------------------------------------------


def _hits(cache: Cache) -> dict[str, int]:
    return {name: fig["hits"] for name, fig in cache.stats()["tiers"].items() if "hits" in fig}


def timed_call(cache: Cache, call: Callable[[], object]) -> tuple[float, str]:
    """Seconds ``call`` took and the tier that served it (``computed`` when none did)."""
    before = _hits(cache)
    start = time.perf_counter()
    call()
    elapsed = time.perf_counter() - start
    served = [name for name, hits in _hits(cache).items() if hits > before.get(name, 0)]
    return elapsed, served[0] if served else "computed"


def duration(seconds: float) -> str:
    """``412.3 ms``, ``2.1 µs``: the unit that keeps the number readable."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


def _call_label(month: str) -> str:
    return f'monthly_report("{month}")'


# -- the second process -----------------------------------------------------------------------


def child() -> dict[str, Any]:
    """Run in the second process: read the same months, report timings and per-tier hits."""
    with open_cache() as cache:
        report = report_function(cache)
        calls = []
        for month in (*MONTHS, MONTHS[0]):
            seconds, served = timed_call(cache, partial(report, month))
            calls.append({"call": _call_label(month), "seconds": seconds, "served_by": served})
        tiers = {
            name: {"hits": fig["hits"], "misses": fig["misses"]}
            for name, fig in cache.stats()["tiers"].items()
            if "hits" in fig
        }
    return {"calls": calls, "tiers": tiers}


def _run_child() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tierkit._demo", "--child"],
        capture_output=True,
        env=os.environ.copy(),
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"the second process failed (exit {result.returncode}):\n{result.stderr.decode(errors='replace')}"
        )
    data: dict[str, Any] = orjson.loads(result.stdout)
    return data


# -- the tour ---------------------------------------------------------------------------------


def heading(title: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}")


def _where(tier: TierReport) -> str:
    """Why a tier is skipped or down, else where it keeps its data."""
    return str(redact(tier.reason or tier.details.get("path") or tier.details.get("url") or ""))


def show_chain(health: HealthReport) -> list[str]:
    """Print each tier's status; return the tiers actually serving."""
    heading("1. The chain")
    print("Reads ask the tiers in this order; the first hit wins and is copied into the")
    print("faster tiers above it. Tiers that cannot run here are skipped, with the reason.\n")
    rows = [(name, t.status, _where(t)) for name, t in health.tiers.items()]
    print(table(rows, ("TIER", "STATUS", "WHY / WHERE"), "  "))
    active = [name for name, t in health.tiers.items() if t.status in ("ok", "degraded")]
    print(f"\nServing here: {' → '.join(active)}")
    return active


def show_decorator(cache: Cache, report: CachedFunction[[str], dict[str, float]]) -> None:
    heading("2. A slow function under @cached")
    print(CODE + "\n")
    cold, _ = timed_call(cache, lambda: report(MONTHS[0]))
    start = time.perf_counter()
    for _ in range(WARM_CALLS):
        report(MONTHS[0])
    warm = (time.perf_counter() - start) / WARM_CALLS
    other, _ = timed_call(cache, lambda: report(MONTHS[1]))
    rows = [
        (_call_label(MONTHS[0]), "cold", duration(cold), "computed (the function ran)"),
        (_call_label(MONTHS[0]), "warm", duration(warm), f"memory (mean of {WARM_CALLS:,} calls)"),
        (_call_label(MONTHS[1]), "cold", duration(other), "computed (the function ran)"),
    ]
    print(table(rows, ("CALL", "", "TIME", "SERVED BY"), "  "))
    print(f"\nThe warm call is {cold / warm:,.0f} times faster than the cold one.")
    print("persistent=True also wrote both results to the file tier, on disk.")


def show_second_process() -> dict[str, Any]:
    heading("3. A second process")
    print("A new Python process starts with an empty memory tier. It calls monthly_report")
    print("for the same months (python -m tierkit._demo --child):\n")
    data = _run_child()
    rows = [(c["call"], duration(c["seconds"]), c["served_by"]) for c in data["calls"]]
    print(table(rows, ("CALL", "TIME", "SERVED BY"), "  "))
    print("\nThe third call was served by memory: the first read copied the entry up.")
    print("\nHits per tier in the second process (cache.stats()):\n")
    tier_rows = [(name, t["hits"], t["misses"]) for name, t in data["tiers"].items()]
    print(table(tier_rows, ("TIER", "HITS", "MISSES"), "  "))
    return data


def _lookup(cache: Cache, key: str) -> str:
    value = cache.get(key, MISSING)
    return "a miss" if value is MISSING else f"{value!r}"


def show_invalidation(cache: Cache, report: CachedFunction[[str], dict[str, float]]) -> None:
    heading("4. Invalidation by tag and by key prefix")
    cache.set("user:42:profile", {"name": "Grace"}, tags=["user:42"], persistent=True)
    cache.set("user:42:cart", ["book", "pen"], tags=["user:42"], persistent=True)
    cache.set("user:7:profile", {"name": "Ada"}, tags=["user:7"], persistent=True)
    print('  cache.set("user:42:profile", {...}, tags=["user:42"], persistent=True)')
    print('  cache.set("user:42:cart",    [...], tags=["user:42"], persistent=True)')
    print('  cache.set("user:7:profile",  {...}, tags=["user:7"],  persistent=True)\n')
    removed = cache.invalidate(tags=["user:42"])
    rows: list[tuple[str, str]] = [
        ('cache.invalidate(tags=["user:42"])', f"{removed} stored copies removed (2 keys, in every tier)"),
        ('cache.get("user:42:profile")', _lookup(cache, "user:42:profile")),
        ('cache.get("user:7:profile")', f"{_lookup(cache, 'user:7:profile')} (another tag: kept)"),
    ]
    removed = cache.invalidate(prefix=f"{FUNCTION_KEYS}:")
    rows.append((f'cache.invalidate(prefix="{FUNCTION_KEYS}:")', f"{removed} stored copies removed"))
    seconds, served = timed_call(cache, lambda: report(MONTHS[0]))
    rows.append((_call_label(MONTHS[0]), f"{duration(seconds)}: {served} again"))
    print(table(rows, ("CALL", "RESULT"), "  "))


REDIS_ABSENT = """\
REDIS_URL is not set, so the redis tier was skipped. Set it and run the demo again
(e.g. REDIS_URL=redis://localhost:6379/0 tierkit demo):

  - the chain becomes memory → redis → file;
  - every set() also goes to Redis (persistent=True only adds the file tier), so all
    processes and containers sharing that Redis see a result as soon as one computed it;
  - the second process above is served by redis, before it reaches the file tier;
  - when Redis goes down, reads and writes carry on with memory and file (no exception),
    and `tierkit health` reports redis as down (exit status 1) until it is back."""


def show_redis(health: HealthReport, second: dict[str, Any]) -> None:
    heading("5. With Redis")
    redis = health.tiers.get("redis")
    if redis is None or redis.status == "skipped":
        if redis is not None and redis.reason == "not installed":
            print("The redis tier is not installed: pip install tierkit-redis. Then:\n")
        print(REDIS_ABSENT)
    elif redis.status == "down":
        print(f"REDIS_URL is set but Redis is down ({redis.reason}).")
        print("The cache kept working: every step above skipped redis and used memory and")
        print("file, without an exception. `tierkit health` exits 1 until Redis is back;")
        print("a circuit breaker probes it again after a short cool-down.")
    else:
        served = sum(1 for c in second["calls"] if c["served_by"] == "redis")
        print(f"REDIS_URL is set and Redis is up: the second process got {served} hit(s) from")
        print("redis, before the file tier. Every process and container sharing this Redis")
        print("sees a result as soon as one of them computed it, even without persistent=True.")


def run() -> int:
    """The whole tour; returns the exit status."""
    started = time.perf_counter()
    print("tierkit demo: a multi-tier cache in five short steps")
    print(f'Namespace "{NAMESPACE}", cleared first so every run shows the same thing.')
    with open_cache() as cache:
        cache.clear()
        health = cache.health()
        show_chain(health)
        report = report_function(cache)
        show_decorator(cache, report)
        try:
            second = show_second_process()
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"\ntierkit demo: {exc}", file=sys.stderr)
            return 1
        show_invalidation(cache, report)
        show_redis(health, second)
    heading("Try it yourself")
    print(f"  tierkit --namespace {NAMESPACE} get user:7:profile")
    print(f"  tierkit --namespace {NAMESPACE} stats")
    print("  tierkit health")
    print("  tierkit tiers")
    print(f"\n(The tour took {duration(time.perf_counter() - started)}.)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tierkit._demo [--child]``."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--child"]:
        sys.stdout.buffer.write(orjson.dumps(child()))
        return 0
    from tierkit.cli import main as cli_main

    return cli_main(["demo", *args])


if __name__ == "__main__":
    sys.exit(main())
