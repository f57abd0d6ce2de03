"""Entry point: ``python -m benchmarks`` (full) or ``python -m benchmarks --quick`` (smoke).

Full mode writes ``benchmarks/results.json``, the generated section of
``docs/benchmarks.md`` and ``docs/img/bench_ratios.png``.  Quick mode runs every
workload with tiny repetition counts (under a minute) and writes ``results.json``,
``table.md`` and ``bench_ratios.png`` into a temporary directory, or into ``--out``.
Neither mode ever fails because of a time: only a broken workload fails the run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tierkit_session

from benchmarks import memsize, report, scaling, startup, throughput
from benchmarks._env import isolated_config, json_value, machine_record, private_redis, temp_root
from benchmarks._timing import FULL, QUICK, per_op_ns
from benchmarks.async_pairs import ASYNC_WORKLOADS
from benchmarks.pairs import WORKLOADS, Context, run_workload

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("pairs", "scaling", "memory", "startup", "throughput")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny repetition counts, < 60 s")
    parser.add_argument(
        "--out",
        type=Path,
        help="write results.json, table.md and bench_ratios.png here instead of the repository "
        "(quick mode default: a new temporary directory)",
    )
    parser.add_argument("--only", help="comma-separated workload ids to run (default: all)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = QUICK if args.quick else FULL
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        print(f"unknown sections: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    workloads = WORKLOADS + ASYNC_WORKLOADS
    if args.only:
        wanted = {k.strip() for k in args.only.split(",")}
        workloads = tuple(w for w in WORKLOADS + ASYNC_WORKLOADS if w.key in wanted)
        if missing := wanted - {w.key for w in workloads}:
            print(f"unknown workload ids: {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
    out = args.out.resolve() if args.out else (temp_root("tierkit-bench-out-") if args.quick else None)
    work = temp_root()
    started = time.perf_counter()
    try:
        results = _run(mode, sections, workloads, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["elapsed_s"] = time.perf_counter() - started
    _write(results, out)
    print(f"done in {results['elapsed_s']:.0f} s")
    return 1 if results["failures"] else 0


def _run(mode: Any, sections: set[str], workloads: Any, work: Path) -> dict[str, Any]:
    value = json_value()
    results: dict[str, Any] = {"mode": mode.name, "rounds": mode.rounds, "failures": []}
    with isolated_config(work), private_redis(work / "redis") as server:
        redis_url = server.url if server else None
        results["machine"] = machine_record(server.version if server else None)
        print(f"{mode.name} run; redis-server: {redis_url or 'none (Redis workloads skipped)'}")
        with tierkit_session.bind({}) as session:
            ctx = Context(mode=mode, work=work / "data", redis_url=redis_url, value=value, session=session)
            ctx.work.mkdir()
            try:
                results["pairs"] = _pairs(ctx, workloads, results) if "pairs" in sections else []
                if "scaling" in sections:
                    results["scaling"] = _section(results, "scaling", lambda: _scaling(ctx))
                if "memory" in sections:
                    count = 10_000 if mode is QUICK else 200_000
                    results["memory"] = _section(
                        results, "memory", lambda: memsize.bytes_per_entry(ctx, count)
                    )
            finally:
                ctx.close()
        if "startup" in sections:
            repeats = 2 if mode is QUICK else 9
            results["startup"] = _section(
                results, "startup", lambda: startup.startup(work / "startup", redis_url, repeats)
            )
        if "throughput" in sections:
            seconds = 1.0 if mode is QUICK else 8.0
            results["throughput"] = _section(
                results,
                "throughput",
                lambda: throughput.throughput(redis_url, work / "throughput", seconds, value),
            )
    return results


def _pairs(ctx: Context, workloads: Any, results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for workload in workloads:
        print(f"  {workload.key:<18} ", end="", flush=True)
        try:
            row = run_workload(ctx, workload)
        except Exception:
            results["failures"].append(f"{workload.key}: {traceback.format_exc()}")
            print("FAILED\n" + traceback.format_exc())
            continue
        finally:  # its caches closed: no later row runs beside their backplane threads and connections
            ctx.close()
        if row.skipped:
            print(f"skipped: {row.skipped}")
        else:
            target = (
                ""
                if row.target is None
                else f"  target ≤ {row.target:.1f}\u00d7  {'met' if row.met else 'MISSED'}"
            )
            print(
                f"tierkit {per_op_ns(row.tierkit):>9}  peer {per_op_ns(row.peer):>9}  "
                f"ratio {row.ratio:5.2f}\u00d7 ({row.spread[0]:.2f}\u2013{row.spread[1]:.2f}){target}"
            )
        rows.append(row.to_json())
    return rows


def _scaling(ctx: Context) -> list[dict[str, Any]]:
    quick = ctx.mode is QUICK
    file_sizes = [100, 1000] if quick else [1_000, 10_000, 100_000]
    memory_sizes = [1000, 10_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    series = []
    for group, run in (
        ("file", lambda: scaling.file_scaling(ctx, file_sizes)),
        ("memory", lambda: scaling.memory_scaling(ctx, memory_sizes)),
    ):
        for s in run():
            s["group"] = group
            print(
                f"  scaling: {s['series']}: "
                + ", ".join(per_op_ns(t) for t in s["per_op_s"])
                + f"  ({s['largest_over_smallest']:.2f}\u00d7)"
            )
            series.append(s)
    return series


def _section(results: dict[str, Any], name: str, run: Any) -> Any:
    print(f"  {name} …", flush=True)
    try:
        value = run()
    except Exception:
        results["failures"].append(f"{name}: {traceback.format_exc()}")
        print(f"{name} FAILED\n" + traceback.format_exc())
        return None
    print(f"  {name}: " + json.dumps(value, default=str)[:600])
    return value


def _write(results: dict[str, Any], out: Path | None) -> None:
    if out is None:
        json_path = ROOT / "benchmarks" / "results.json"
        png = ROOT / "docs" / "img" / "bench_ratios.png"
        page = ROOT / "docs" / "benchmarks.md"
        link = "img/bench_ratios.png"
    else:
        out.mkdir(parents=True, exist_ok=True)
        json_path, png, page, link = (
            out / "results.json",
            out / "bench_ratios.png",
            out / "table.md",
            "bench_ratios.png",
        )
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if results.get("pairs"):
        report.plot(results, png)
    generated = report.generated_markdown(results, link)
    if out is None:
        report.update_docs(page, generated)
    else:
        page.write_text(generated)
    print(f"wrote {json_path}, {page}" + (f", {png}" if results.get("pairs") else ""))
    if results["failures"]:
        print(f"{len(results['failures'])} workload(s) failed:", file=sys.stderr)
        for failure in results["failures"]:
            print(failure, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
