"""The benchmark's surroundings: a private redis-server, an isolated config, the machine record."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REDIS_SERVER = shutil.which("redis-server")
IN_CI = os.environ.get("CI", "").lower() == "true"

VALUE_TARGET_BYTES = 1024


def json_value(target: int = VALUE_TARGET_BYTES) -> dict[str, Any]:
    """A JSON-able dict whose orjson encoding is about ``target`` bytes (a typical API record)."""
    import orjson

    value: dict[str, Any] = {
        "id": 1234567,
        "name": "benchmark record",
        "active": True,
        "score": 0.875,
        "tags": ["alpha", "beta", "gamma"],
        "items": [],
    }
    i = 0
    while len(orjson.dumps(value)) < target - 60:
        value["items"].append(
            {"i": i, "label": f"item-{i:03d}", "price": round(i * 1.25, 2), "ok": i % 2 == 0}
        )
        i += 1
    value["note"] = "x" * max(0, target - len(orjson.dumps(value)) - 10)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A private ``redis-server`` on a free loopback port: no persistence, its own directory."""

    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    version: str = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, check=False)
        self.version = out.stdout.strip()
        for _attempt in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.workdir),
                    "--logfile", str(self.workdir / "redis.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if self._wait_ready(10.0):
                return self
            self.stop()
        raise RuntimeError(f"redis-server did not start; see {self.workdir / 'redis.log'}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def private_redis(workdir: Path) -> Iterator[RedisServer | None]:
    """A private server, or ``None`` when redis-server is missing outside CI (under CI it raises)."""
    if REDIS_SERVER is None:
        if IN_CI:
            raise RuntimeError("redis-server is not installed, and CI=true requires the Redis benchmarks")
        yield None
        return
    server = RedisServer(workdir).start()
    try:
        yield server
    finally:
        server.stop()


def redis_client(url: str) -> Any:
    """A redis-py client with the settings the tierkit Redis tier uses by default."""
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=0.25,
        socket_timeout=0.25,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        max_connections=64,
    )


@contextlib.contextmanager
def isolated_config(workdir: Path) -> Iterator[None]:
    """No ``TIERKIT_*`` / ``REDIS_URL`` from the environment, no stray ``.env`` or TOML: cwd is empty."""
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    for name in list(os.environ):
        if name.startswith("TIERKIT_") or name == "REDIS_URL":
            del os.environ[name]
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(home)
    os.environ["XDG_CACHE_HOME"] = str(workdir / "xdg-cache")
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_record(redis_version: str | None) -> dict[str, Any]:
    """What the figures were measured on, recorded by every run."""
    import redis.utils

    dists = [
        "tierkit",
        "tierkit-redis",
        "tierkit-session",
        "cachetools",
        "diskcache",
        "dogpile.cache",
        "redis",
        "hiredis",
        "orjson",
        "pluggy",
        "pydantic",
        "matplotlib",
    ]
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "loadavg_at_start": [round(x, 2) for x in load] if load else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "sqlite": __import__("sqlite3").sqlite_version,
        "redis_server": redis_version,
        "hiredis_parser": bool(getattr(redis.utils, "HIREDIS_AVAILABLE", False)),
        "versions": {dist: _version(dist) for dist in dists},
    }


def temp_root(prefix: str = "tierkit-bench-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
