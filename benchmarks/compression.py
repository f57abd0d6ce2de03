"""Compression of cached payloads: ratio and speed of zstd and zlib on realistic values.

    python -m benchmarks.compression

Each payload is what the JSON codec writes for the value; each library compresses and
decompresses it at the levels tierkit could use.  The figures chose the default (see
docs/values.md, "Compression").
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import zstandard

from tierkit._codec import JsonCodec


def api_records(count: int = 2000) -> list[dict[str, Any]]:
    """A typical API/DB result: records with ids, names, timestamps, amounts, flags and tags."""
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "north", "south", "paid", "open", "closed", "pending"]
    return [
        {
            "id": 100_000 + i,
            "name": f"{rng.choice(words).title()} {rng.choice(words)} #{rng.randrange(10_000)}",
            "created": f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}h",
            "amount": round(rng.uniform(0, 5000), 2),
            "active": rng.random() < 0.7,
            "status": rng.choice(words[6:]),
            "tags": rng.sample(words, 3),
        }
        for i in range(count)
    ]


def payloads() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    codec = JsonCodec()
    values: dict[str, Any] = {
        "JSON records (2000 rows)": api_records(),
        "float64 time series (1M, random walk)": np.cumsum(rng.normal(size=1_000_000)).round(3),
        "int32 counts (1M)": rng.poisson(20, size=1_000_000).astype(np.int32),
        "float64 noise (1M, incompressible)": rng.random(1_000_000),
    }
    return {name: codec.encode("k", value) for name, value in values.items()}


def _best(func: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def measure() -> list[dict[str, Any]]:
    rows = []
    for name, payload in payloads().items():
        size = len(payload)
        for library, level in (("zstd", 1), ("zstd", 3), ("zlib", 1), ("zlib", 6)):
            if library == "zstd":
                comp = zstandard.ZstdCompressor(level=level)
                decomp = zstandard.ZstdDecompressor()
                packed = comp.compress(payload)
                enc = _best(lambda c=comp, p=payload: c.compress(p))
                dec = _best(lambda d=decomp, p=packed: d.decompress(p))
            else:
                packed = zlib.compress(payload, level)
                enc = _best(lambda lv=level, p=payload: zlib.compress(p, lv))
                dec = _best(lambda p=packed: zlib.decompress(p))
            rows.append(
                {
                    "payload": name,
                    "bytes": size,
                    "library": f"{library} {level}",
                    "ratio": size / len(packed),
                    "compress_mb_s": size / enc / 1e6,
                    "decompress_mb_s": size / dec / 1e6,
                }
            )
    return rows


def main() -> None:
    print("| payload | size | library | ratio | compress MB/s | decompress MB/s |")
    print("|---|---:|---|---:|---:|---:|")
    for row in measure():
        print(
            f"| {row['payload']} | {row['bytes'] / 1e6:.2f} MB | {row['library']} | {row['ratio']:.2f} "
            f"| {row['compress_mb_s']:.0f} | {row['decompress_mb_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
