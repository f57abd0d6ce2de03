"""Private redis-server processes and TLS test certificates for the Redis tier tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")
OPENSSL = shutil.which("openssl")
TEST_URL = os.environ.get("TIERKIT_TEST_REDIS_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"
START_TIMEOUT = 10.0


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI where Redis tests must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the Redis tests must run)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path


@dataclass
class RedisServer:
    """A private redis-server on 127.0.0.1, configured through a file in ``workdir``."""

    workdir: Path
    port: int = field(default_factory=free_port)
    tls: TlsFiles | None = None
    users: dict[str, str] = field(default_factory=dict)
    """ACL users (name → password); unless one is ``default``, the default user is disabled."""
    extra: list[str] = field(default_factory=list)
    """More configuration lines (cluster mode, replication, sentinel monitoring)."""
    sentinel: bool = False
    """Run as a Sentinel (``redis-server sentinel.conf --sentinel``)."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_for(*next(iter(self.users.items()), (None, None)))

    def url_for(self, user: str | None, password: str | None) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f"{user}:{password}@" if user else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def client_kwargs(self) -> dict[str, Any]:
        return {"ssl_ca_certs": str(self.tls.ca)} if self.tls else {}

    def admin(self) -> redis.Redis:
        """A plain redis-py client with full rights, for the test's own checks."""
        return redis.Redis.from_url(self.url, socket_timeout=5, **self.client_kwargs())

    def start(self) -> RedisServer:
        lines = [
            "bind 127.0.0.1",
            'save ""',
            "appendonly no",
            f"dir {self.workdir}",
            f"logfile {self.workdir / 'redis.log'}",
        ]
        if self.tls:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {self.tls.cert}",
                f"tls-key-file {self.tls.key}",
                f"tls-ca-cert-file {self.tls.ca}",
                "tls-auth-clients no",
            ]
        else:
            lines.append(f"port {self.port}")
        for user, password in self.users.items():
            lines.append(f"user {user} on >{password} ~* &* +@all")
        if self.users and "default" not in self.users:
            lines.append("user default off")
        lines += self.extra
        conf = self.workdir / ("sentinel.conf" if self.sentinel else "redis.conf")
        if self.sentinel:
            lines = [line for line in lines if not line.startswith(("save", "appendonly"))]
        conf.write_text("\n".join(lines) + "\n")
        log = self.workdir / "redis.log"
        log.unlink(missing_ok=True)
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, str(conf), *(["--sentinel"] if self.sentinel else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"redis-server exited on port {self.port}:\n{text[-2000:]}")
            with contextlib.suppress(redis.RedisError):
                if self.admin().ping():
                    return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}")

    def stop(self) -> None:
        """Kill the server (SIGKILL: an abrupt outage, not a shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)
        self.process = None


def openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def make_ca(name: str, cwd: Path) -> None:
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=cwd,
    )  # fmt: skip


def make_tls_files(cwd: Path) -> TlsFiles:
    """A CA, a server certificate it signed (127.0.0.1, localhost) and an unrelated CA."""
    make_ca("ca", cwd)
    make_ca("other-ca", cwd)
    (cwd / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=cwd,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf",
        cwd=cwd,
    )  # fmt: skip
    return TlsFiles(cwd / "ca.crt", cwd / "server.crt", cwd / "server.key", cwd / "other-ca.crt")
