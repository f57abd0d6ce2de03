"""``tierkit demo``: a short guided tour of the cache on the default chain.

``tierkit demo`` (or ``python -m tierkit demo``) runs it.  It uses its own namespace,
cleared first, so every run shows the same thing; it writes only where the tiers keep
their data (the user cache directory, or the configured file-tier directory, and any
shared tier the configuration enables, such as Redis when ``REDIS_URL`` is set).
``python -m tierkit._demo --child`` is the second process
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

from tierkit._cache import Cache
from tierkit._config import redact
from tierkit._decorator import CachedFunction, cached
from tierkit._discovery import load_tier_class
from tierkit._text import table
from tierkit._types import MISSING, HealthReport, TierReport
from tierkit.errors import TierkitError

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
    """The demo's cache: the default order in its own namespace."""
    return Cache(namespace=NAMESPACE, order=None)


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
    if data["calls"][-1]["served_by"] == "memory":
        print("\nThe third call was served by memory: the first read copied the entry up.")
    else:
        print("\nNo call was served by memory: the shared tier is down, and a process that cannot")
        print("hear other processes' changes keeps no local copies (docs/coherence.md).")
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


SHARED_ABSENT = """\
Configure it and run the demo again: every set() then also goes to {name}, so all
processes sharing it see a result as soon as one of them computed it; the second
process above is served by {name} before it reaches the file tier; and if {name}
goes down, reads and writes carry on with the other tiers (no exception) while
`tierkit health` reports it down (exit status 1) until it is back."""


def _is_shared(cache: Cache, tier: TierReport) -> bool:
    """Whether a tier of the order is a shared (remote) one, running or not."""
    for slot in cache.chain.slots:
        if slot.name == tier.name:
            return slot.remote
    try:
        return bool(getattr(load_tier_class(tier.kind), "remote", False))
    except TierkitError:
        return False


def show_shared(cache: Cache, health: HealthReport, second: dict[str, Any]) -> None:
    heading("5. Shared tiers")
    shared = [tier for tier in health.tiers.values() if _is_shared(cache, tier)]
    if not shared:
        print("No shared tier (one that processes on other machines reach too) is installed.")
        print("Install one and the chain gains a tier every process and container sees.")
    for tier in shared:
        if tier.status == "skipped":
            print(f"The {tier.name} tier was skipped here ({tier.reason}).")
            print(SHARED_ABSENT.format(name=tier.name))
        elif tier.status == "down":
            print(f"The {tier.name} tier is configured but down ({redact(tier.reason)}).")
            print(f"The cache kept working: every step above skipped {tier.name} and used the other")
            print(f"tiers, without an exception. `tierkit health` exits 1 until {tier.name} is back;")
            print("a circuit breaker probes it again after a short cool-down.")
        else:
            served = sum(1 for c in second["calls"] if c["served_by"] == tier.name)
            print(f"The {tier.name} tier is up: the second process got {served} hit(s) from it,")
            print("before the file tier. Every process and container sharing it sees a result")
            print("as soon as one of them computed it, even without persistent=True.")


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
        show_shared(cache, health, second)
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
    return run()


if __name__ == "__main__":
    sys.exit(main())
