"""Instructions per operation of both sides of a pair, counted by callgrind.

    python -m benchmarks.instructions redis_set [--calls 2000]

Wall-clock ratios move with the machine's load; instruction counts do not.  Each side of
the pair (the workloads of ``benchmarks/pairs.py``) runs under ``valgrind --tool=callgrind``
twice, after the same set-up and warm-up: ``--calls`` operations, then none; the difference
per operation is printed, and the ratio.  The hash seed is fixed (dict layouts otherwise move
a count by tens of thousands) and the garbage collector is off, as in a timed batch.  Every
thread of the process counts (the backplane's subscriber thread included).  Needs valgrind;
the Redis workloads get a private redis-server, as in ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/instructions.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tierkit_session

from benchmarks._env import isolated_config, json_value, private_redis, temp_root
from benchmarks._timing import QUICK
from benchmarks.async_pairs import ASYNC_WORKLOADS
from benchmarks.pairs import WORKLOADS, Context

WARM_UP = 40
"""Operations each side runs before the counted ones (caches, lazy imports, connections)."""


def _side(key: str, side: str, calls: int, redis_url: str | None, work: Path) -> None:
    """In the process callgrind runs: set the pair up, warm it, run ``calls`` operations of ``side``."""
    workload = {w.key: w for w in (*WORKLOADS, *ASYNC_WORKLOADS)}[key]
    with isolated_config(work), tierkit_session.bind({}) as session:
        ctx = Context(QUICK, work / "data", redis_url, json_value(), session=session)
        ctx.work.mkdir()
        try:
            tierkit_side, peer_side, _ = workload.setup(ctx)
            batch = tierkit_side if side == "tierkit" else peer_side
            batch(WARM_UP)
            gc.collect()
            gc.disable()
            batch(calls)
            gc.enable()
        finally:
            ctx.close()


def _count(key: str, side: str, calls: int, redis_url: str | None, work: Path) -> int:
    """Instructions of a whole run of ``_side`` under callgrind."""
    out = work / f"callgrind.{side}.{calls}"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--dump-instr=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        key,
        "--side",
        side,
        "--calls",
        str(calls),
        "--redis-url",
        redis_url or "",
        "--work",
        str(work / f"{side}-{calls}"),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    root = Path(__file__).resolve().parent.parent
    subprocess.run(command, check=True, env=env, capture_output=True, cwd=root)
    totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    assert totals is not None, f"no totals in {out}"
    return int(totals.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", help="a pair's id, e.g. redis_set, redis_get_many_cold, mem_hit_lru")
    parser.add_argument("--calls", type=int, default=2000, help="operations counted per side")
    parser.add_argument("--side", choices=["tierkit", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side is not None:  # the process callgrind runs
        args.work.mkdir(parents=True)
        _side(args.workload, args.side, args.calls, args.redis_url or None, args.work)
        return
    work = temp_root("tierkit-instructions-")
    with private_redis(work / "redis") as server:
        url = server.url if server else None
        per_op = {}
        for side in ("tierkit", "peer"):
            counted = _count(args.workload, side, args.calls, url, work)
            per_op[side] = (counted - _count(args.workload, side, 0, url, work)) / args.calls
    print(
        f"{args.workload}: tierkit {per_op['tierkit']:,.0f}  peer {per_op['peer']:,.0f} instructions per "
        f"operation  ratio {per_op['tierkit'] / per_op['peer']:.2f}x  ({args.calls} operations, callgrind)"
    )


if __name__ == "__main__":
    main()
