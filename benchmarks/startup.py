"""Start-up: ``tierkit tiers`` wall time, ``import tierkit`` + first get, and what gets imported.

Each figure is the median wall time of fresh interpreter processes (started the same way
as the reference ``python -c pass``, interleaved with it).  A probe process also reports
which modules the first get imported, to check that only the configured tiers' modules
(and their client libraries) are loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import tierkit
t1 = time.perf_counter()
cache = tierkit.Cache()
cache.get("startup-probe")
t2 = time.perf_counter()
watch = ["tierkit.tiers.memory", "tierkit.tiers.file", "tierkit_redis", "tierkit_redis._client",
         "tierkit_session", "redis", "sqlite3", "streamlit", "pluggy", "pydantic", "pydantic_settings",
         "orjson", "platformdirs", "dotenv"]
print(json.dumps({"import_s": t1 - t0, "first_get_s": t2 - t1, "tiers": list(cache.tiers),
                  "loaded": {m: m in sys.modules for m in watch}, "modules": len(sys.modules)}))
"""

# What each configuration must (True) and must not (False) import.
EXPECTED: dict[str, dict[str, bool]] = {
    "order=memory": {
        "tierkit.tiers.memory": True,
        "tierkit.tiers.file": False,
        "tierkit_redis": False,
        "tierkit_session": False,
        "redis": False,
        "sqlite3": False,
        "streamlit": False,
    },
    "default chain, no REDIS_URL": {
        "tierkit.tiers.memory": True,
        "tierkit.tiers.file": True,
        "redis": False,
        "streamlit": False,
    },
    "default chain, REDIS_URL set": {
        "tierkit.tiers.memory": True,
        "tierkit.tiers.file": True,
        "tierkit_redis": True,
        "redis": True,
        "streamlit": False,
    },
}


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    return time.perf_counter() - start, done


def _env(base: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("TIERKIT_") and k != "REDIS_URL"}
    env.update(extra)
    return env


def startup(work: Path, redis_url: str | None, repeats: int) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    base = _env(dict(os.environ), XDG_CACHE_HOME=str(work / "xdg-cache"), HOME=str(work))
    configs: dict[str, dict[str, str]] = {
        "order=memory": _env(base, TIERKIT_ORDER="memory"),
        "default chain, no REDIS_URL": base,
    }
    if redis_url is not None:
        configs["default chain, REDIS_URL set"] = _env(base, REDIS_URL=redis_url)
    py = sys.executable
    cli = shutil.which("tierkit", path=str(Path(py).parent))
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass (reference)": ([py, "-c", "pass"], base),
    }
    for name, env in configs.items():
        commands[f"import tierkit + Cache() + first get ({name})"] = ([py, "-c", PROBE], env)
    if cli is not None:
        commands["tierkit tiers"] = ([cli, "tiers"], base)

    walls: dict[str, list[float]] = {name: [] for name in commands}
    probes: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for _ in range(repeats):  # interleaved: one process of each per round
        for name, (argv, env) in commands.items():
            if name in errors:
                continue
            wall, done = _run(argv, env, work)
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                errors[name] = f"exit {done.returncode}: {tail}"
                continue
            walls[name].append(wall)
            if argv[-1] == PROBE:
                probes.setdefault(name, json.loads(done.stdout))
                probes[name].setdefault("import_samples", []).append(json.loads(done.stdout)["import_s"])
                probes[name].setdefault("first_get_samples", []).append(
                    json.loads(done.stdout)["first_get_s"]
                )
    if cli is None:
        errors["tierkit tiers"] = "no `tierkit` console script next to this Python"

    checks = []
    for config, expected in EXPECTED.items():
        probe = probes.get(f"import tierkit + Cache() + first get ({config})")
        if probe is None:
            continue
        for module, must in expected.items():
            got = probe["loaded"].get(module)
            checks.append(
                {"config": config, "module": module, "expected": must, "imported": got, "ok": got == must}
            )
    rows = []
    for name, samples in walls.items():
        probe = probes.get(name, {})
        rows.append(
            {
                "what": name,
                "wall_s": statistics.median(samples) if samples else None,
                "in_process_import_s": statistics.median(probe["import_samples"]) if probe else None,
                "in_process_first_get_s": statistics.median(probe["first_get_samples"]) if probe else None,
                "tiers": probe.get("tiers"),
                "modules": probe.get("modules"),
                "error": errors.get(name),
            }
        )
    return {
        "repeats": repeats,
        "rows": rows,
        "import_checks": checks,
        "import_time_top": _importtime(base, work),
    }


def _importtime(env: dict[str, str], cwd: Path, top: int = 8) -> list[dict[str, Any]]:
    """The slowest imports (cumulative) of ``import tierkit`` + first get, from ``-X importtime``."""
    _, done = _run([sys.executable, "-X", "importtime", "-c", PROBE], env, cwd)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|", 2)
        level = (len(name) - len(name.lstrip(" ")) - 1) // 2
        if level <= 1:
            rows.append(
                {
                    "module": name.strip(),
                    "level": level,
                    "self_us": int(self_us),
                    "cumulative_us": int(cumulative_us),
                }
            )
    rows.sort(key=lambda row: row["cumulative_us"], reverse=True)
    return rows[:top]
