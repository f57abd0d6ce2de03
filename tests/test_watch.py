"""``tierkit stats --watch``: run as a real process against a real application process."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests._run import run_module

APP = """\
import sys, time
import tierkit
from prometheus_client import CollectorRegistry, start_http_server
from tierkit.integrations.prometheus import TierkitCollector

cache = tierkit.Cache(namespace="shop", order=["memory", "file"])
registry = CollectorRegistry()
registry.register(TierkitCollector(cache))
server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
cache.set("a", 1, persistent=True)
for key in ("a", "a", "a", "b"):  # 3 hits, 1 miss
    cache.get(key)
print(server.server_port, flush=True)
busy = sys.argv[1] == "busy"
while True:
    if busy:
        cache.get("a")
        time.sleep(0.0005)
    else:
        time.sleep(1)
"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``app(mode)``: an application process serving its cache's metrics; returns the endpoint URL."""
    processes: list[subprocess.Popen[str]] = []
    script = tmp_path / "app.py"
    script.write_text(APP)

    def start(mode: str) -> str:
        process = subprocess.Popen(
            [sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
        )
        processes.append(process)
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the application did not start (exit {process.poll()})"
        return f"http://127.0.0.1:{port}/metrics"

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def tables(output: str) -> list[dict[str, dict[str, str]]]:
    """The plain-text frames of ``--watch``: per frame, per tier, its cells by column header."""
    frames = []
    for block in output.strip().split("\n\n"):
        lines = block.splitlines()
        header_at = next(i for i, line in enumerate(lines) if line.startswith("TIER "))
        headers = re.split(r"\s{2,}", lines[header_at].strip())
        rows = {}
        for line in lines[header_at + 1 :]:
            cells = re.split(r"\s{2,}", line.strip())
            if len(cells) == len(headers):
                rows[cells[0]] = dict(zip(headers, cells, strict=True))
        frames.append(rows)
    return frames


def test_watch_reads_the_applications_endpoint(app: Callable[[str], str]) -> None:
    url = app("idle")
    result = run_module(
        "tierkit", "stats", "--watch", "--from", url, "--iterations", "2", "--interval", "0.2"
    )
    assert result.returncode == 0, result.stderr
    first, second = tables(result.stdout)
    memory, file = second["memory"], second["file"]
    assert memory["HIT %"] == "(75.0)"  # no read in the last interval: since the start, in parentheses
    assert memory["READS/S"] == "0.0" and first["memory"]["READS/S"] == "-"  # rates need two readings
    assert memory["BREAKER"] == "closed" and memory["STATUS"] == "ok"
    assert (memory["ENTRIES"], file["ENTRIES"]) == ("1", "1")
    assert file["HIT %"] == "(0.0)"  # asked once, for the key no tier had
    assert file["BYTES"].endswith(" B")
    assert f"{url}: the counters of the process serving it" in result.stdout


def test_watch_shows_rates_of_a_busy_application(app: Callable[[str], str]) -> None:
    url = app("busy")
    result = run_module(
        "tierkit", "stats", "--watch", "--from", url, "--iterations", "3", "--interval", "0.3"
    )
    assert result.returncode == 0, result.stderr
    last = tables(result.stdout)[-1]["memory"]
    assert float(last["READS/S"]) > 10
    assert last["HIT %"] == "100.0"  # every read of the last interval hit
    assert last["ERRORS/S"] == "0.0"


def test_without_an_endpoint_watch_shows_what_the_shared_tiers_hold() -> None:
    stored = run_module(
        "tierkit", "--namespace", "shop", "--order", "memory,file", "set", "k", "1", "--persistent"
    )
    assert stored.returncode == 0, stored.stderr
    result = run_module(
        "tierkit", "--namespace", "shop", "--order", "memory,file", "stats", "--watch", "--iterations", "1"
    )
    assert result.returncode == 0, result.stderr
    (frame,) = tables(result.stdout)
    assert frame["file"]["ENTRIES"] == "1"  # written by another process, kept by the file tier
    assert frame["file"]["HIT %"] == "-"  # hit counters live in the application, not in the store
    assert frame["memory"]["ENTRIES"] == "-"
    assert "memory: in-process: the application's own, not visible from here" in result.stdout
    assert "the application's own counters need its metrics endpoint (--from URL)" in result.stdout


def test_an_endpoint_that_cannot_be_read_is_an_error_without_secrets() -> None:
    result = run_module(
        "tierkit", "stats", "--watch", "--from", "http://ops:hunter2@127.0.0.1:1/metrics", "--iterations", "1"
    )
    assert result.returncode == 1
    assert "cannot read http://ops:***@127.0.0.1:1/metrics" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_an_endpoint_without_tierkit_metrics_is_named(app: Callable[[str], str]) -> None:
    url = app("idle")
    result = run_module(
        "tierkit", "--namespace", "blog", "stats", "--watch", "--from", url, "--iterations", "1"
    )
    assert result.returncode == 1
    assert "no tierkit metrics for namespace 'blog'" in result.stderr
    assert "TierkitCollector" in result.stderr


@pytest.fixture
def endpoint() -> Iterator[Callable[[str, str | None], str]]:
    """``endpoint(page, credentials)``: a real HTTP server of ``page``; 401 without ``user:password``."""
    servers: list[ThreadingHTTPServer] = []

    def start(page: str, credentials: str | None) -> str:
        expected = f"Basic {base64.b64encode(credentials.encode()).decode()}" if credentials else None

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if expected is not None and self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


PAGE = """\
# TYPE tierkit_tier_hits_total counter
tierkit_tier_hits_total{cache_namespace="shop",tier="memory",kind="memory"} 3.0
tierkit_tier_misses_total{cache_namespace="shop",tier="memory",kind="memory"} 1.0
"""


def test_credentials_in_the_url_are_sent_as_basic_authentication(
    endpoint: Callable[[str, str | None], str],
) -> None:
    where = endpoint(PAGE, "ops:s3cret")
    result = run_module(
        "tierkit", "stats", "--watch", "--from", f"http://ops:s3cret@{where}/", "--iterations", "1"
    )
    assert result.returncode == 0, result.stderr
    assert tables(result.stdout)[0]["memory"]["HIT %"] == "(75.0)"
    assert "s3cret" not in result.stdout
    assert f"http://ops:***@{where}/" in result.stdout

    wrong = run_module(
        "tierkit", "stats", "--watch", "--from", f"http://ops:guess@{where}/", "--iterations", "1"
    )
    assert wrong.returncode == 1
    assert f"http://ops:***@{where}/ answered HTTP 401" in wrong.stderr


def test_what_an_endpoint_sends_cannot_drive_the_terminal(endpoint: Callable[[str, str | None], str]) -> None:
    where = endpoint(PAGE.replace('tier="memory"', 'tier="mem\x1b[2Jory"'), None)
    result = run_module("tierkit", "stats", "--watch", "--from", f"http://{where}/", "--iterations", "1")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "mem?[2Jory" in result.stdout


def test_a_page_that_is_not_prometheus_text_is_an_error(endpoint: Callable[[str, str | None], str]) -> None:
    where = endpoint("<html>not metrics</html>", None)
    result = run_module("tierkit", "stats", "--watch", "--from", f"http://{where}/", "--iterations", "1")
    assert result.returncode == 1
    assert f"http://{where}/ is not in the Prometheus text format" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "http://127.0.0.1:1/metrics"], "--from needs --watch"),
        (["--iterations", "3"], "--iterations needs --watch: without it, stats prints one reading"),
        (["--watch", "--json"], "--json is for one reading"),
        (["--watch", "--from", "ftp://127.0.0.1/metrics"], "needs an http:// or https:// URL"),
        (["--watch", "--iterations", "0"], "must be a whole number of at least 1, got '0'"),
        (["--watch", "--interval", "-1"], "must be a positive number of seconds"),
    ],
)
def test_wrong_options_are_usage_errors(args: list[str], message: str) -> None:
    result = run_module("tierkit", "stats", *args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``tmux(*command)``: run a command in a real 130x20 terminal (a private tmux server); capture it."""
    binary = shutil.which("tmux")
    if binary is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    socket = str(tmp_path / "tmux.sock")

    def run(*args: str) -> str:
        return subprocess.run(
            [binary, "-S", socket, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    yield run
    subprocess.run([binary, "-S", socket, "kill-server"], capture_output=True, check=False)


def test_watch_in_a_real_terminal_is_a_live_table_until_ctrl_c(
    app: Callable[[str], str], tmux: Callable[..., str], tmp_path: Path
) -> None:
    url = app("busy")
    done = tmp_path / "exit-status"
    command = f"{sys.executable} -m tierkit stats --watch --from {url}; echo $? > {done}; sleep 30"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "TERM": "xterm-256color"}
    tmux("new-session", "-d", "-x", "130", "-y", "20", *(f"-e{k}={v}" for k, v in env.items()), command)
    tmux("resize-window", "-x", "130", "-y", "20")  # a detached session may start at 80 columns
    screens = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(screens) < 2:
        time.sleep(1.2)
        screen = tmux("capture-pane", "-p")
        if "READS/S" in screen and (not screens or screen != screens[-1]):
            screens.append(screen)
    assert len(screens) == 2, f"the view did not refresh:\n{tmux('capture-pane', '-p')}"
    screen = screens[-1]
    assert "┃ TIER" in screen  # drawn by rich, in place: one table on the screen
    assert screen.count("READS/S") == 1
    memory = next(line for line in screen.splitlines() if line.startswith("│ memory"))
    assert float(memory.split("│")[4]) > 10  # READS/S of a busy application
    tmux("send-keys", "C-c")
    deadline = time.monotonic() + 10
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert done.read_text().strip() == "0"  # Ctrl-C is how a watch ends, not a failure
