"""``tierkit demo``, run as a real subprocess in each test's isolated directory."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._run import run_module

pytestmark = pytest.mark.slow

IN_CI = os.environ.get("CI", "").lower() == "true"
DURATION = r"\d[\d.,]* (?:s|ms|µs)"


def run_demo(*command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_module(*(command or ("tierkit", "demo")), timeout=120, **env)


def section(output: str, title: str) -> str:
    """The text of the demo section whose heading starts with ``title``."""
    lines = output.splitlines()
    headings = [i for i in range(len(lines) - 1) if lines[i] and set(lines[i + 1]) == {"-"}]
    start = next((i for i in headings if lines[i].startswith(title)), None)
    assert start is not None, f"no section {title!r} in:\n{output}"
    end = next((i for i in headings if i > start), len(lines))
    return "\n".join(lines[start + 2 : end])


def served(text: str) -> list[tuple[str, str]]:
    """(call, tier) for each timed ``monthly_report`` row of a section."""
    pattern = rf'^\s+(monthly_report\("[\d-]+"\))(?:\s+(?:cold|warm))?\s+{DURATION}\s+(\w+)'
    return re.findall(pattern, text, re.M)


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run)", pytrace=False)
    pytest.skip(reason)


def test_demo_on_the_default_chain(tmp_path: Path, isolated_config: Path) -> None:
    started = time.perf_counter()
    result = run_demo()
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert elapsed < 20  # about 2 s on a laptop; the issue asks for under 10 s

    chain = section(out, "1. The chain")
    assert re.search(r"^\s+redis\s+skipped\s+not configured", chain, re.M)
    assert re.search(r"^\s+session\s+skipped", chain, re.M)
    assert "Serving here: memory → file" in chain

    first = section(out, "2. A slow function")
    cold = re.search(r'2024-01"\)\s+cold\s+(\d+\.\d) ms\s+computed', first)
    assert cold is not None and float(cold.group(1)) >= 400
    assert re.search(rf'2024-01"\)\s+warm\s+{DURATION}\s+memory', first)
    assert re.search(r"The warm call is [\d,]+ times faster", first)

    second = section(out, "3. A second process")
    assert served(second) == [
        ('monthly_report("2024-01")', "file"),
        ('monthly_report("2024-02")', "file"),
        ('monthly_report("2024-01")', "memory"),
    ]
    assert re.search(r"^\s+file\s+2\s+0$", second, re.M)
    assert re.search(r"^\s+memory\s+1\s+2$", second, re.M)

    invalidation = section(out, "4. Invalidation")
    assert 'cache.get("user:42:profile")                     a miss' in invalidation
    assert "{'name': 'Ada'}" in invalidation
    assert served(invalidation) == []
    assert re.search(r"computed again", invalidation)

    shared = section(out, "5. Shared tiers")
    assert "The redis tier was skipped here (not configured: no REDIS_URL" in shared
    assert "Configure it and run the demo again" in shared

    # Nothing written outside the user cache directory.
    assert list(isolated_config.iterdir()) == []
    database = tmp_path / "xdg-cache" / "tierkit" / "tierkit-demo" / "cache.sqlite3"
    assert database.is_file()


def test_demo_is_reproducible_and_leaves_entries_to_explore() -> None:
    assert run_demo().returncode == 0
    again = run_demo("tierkit", "demo")
    assert again.returncode == 0
    assert re.search(r'2024-01"\)\s+cold\s+\S+ ms\s+computed', section(again.stdout, "2. A slow function"))
    looked_up = subprocess.run(
        [sys.executable, "-m", "tierkit", "--namespace", "tierkit-demo", "get", "user:7:profile"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert looked_up.returncode == 0
    assert looked_up.stdout.split() == ["{", '"name":', '"Ada"', "}"]


def test_demo_module_runs_the_same_tour() -> None:
    result = run_demo("tierkit._demo")
    assert result.returncode == 0, result.stderr
    assert "3. A second process" in result.stdout


def test_demo_keeps_working_when_redis_is_down() -> None:
    if importlib.util.find_spec("tierkit_redis") is None:
        unavailable("tierkit-redis is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_demo(REDIS_URL=f"redis://user:s3cret@127.0.0.1:{port}/0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert re.search(r"^\s+redis\s+down", section(result.stdout, "1. The chain"), re.M)
    # Redis down: the backplane is disconnected, so the memory tier keeps nothing (docs/coherence.md)
    assert [tier for _, tier in served(section(result.stdout, "3. A second process"))] == [
        "file",
        "file",
        "file",
    ]
    assert "The redis tier is configured but down" in section(result.stdout, "5. Shared tiers")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None or importlib.util.find_spec("tierkit_redis") is None:
        unavailable("needs redis-server on PATH and tierkit-redis installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [str(binary), *args, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


def test_demo_with_redis_serves_the_second_process_from_redis(redis_server: str) -> None:
    result = run_demo(REDIS_URL=redis_server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Serving here: memory → redis → file" in result.stdout
    assert [tier for _, tier in served(section(result.stdout, "3. A second process"))] == [
        "redis",
        "redis",
        "memory",
    ]
    assert "The redis tier is up" in section(result.stdout, "5. Shared tiers")
