"""The ``record`` fixture, and the session hook that saves what the scenarios recorded."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from ._redis import REDIS_SERVER, RedisServer, unavailable
from ._suite import IN_CI, RESULTS, Scenario, write_results

_SCENARIO = pytest.StashKey[Scenario]()
_SESSION = pytest.StashKey[list[Scenario]]()


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator[Scenario]:
    """This test's scenario record: ``record.did("…")``, ``record.saw(count=…)``.

    Its title is the first line of the test's docstring; its result comes from the outcome.
    """
    node = request.node
    assert isinstance(node, pytest.Function)
    doc = (node.function.__doc__ or node.name).strip().splitlines()[0]
    scenario = Scenario(id=f"{node.path.name}::{node.name}", title=doc)
    node.stash[_SCENARIO] = scenario
    request.session.stash.setdefault(_SESSION, []).append(scenario)
    started = time.monotonic()
    yield scenario
    scenario.seconds = round(time.monotonic() - started, 2)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    scenario = item.stash.get(_SCENARIO, None)
    if scenario is not None:
        if report.failed:
            scenario.result = "failed"
        elif report.when == "call":
            scenario.result = report.outcome
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    scenarios = session.stash.get(_SESSION, [])
    if not scenarios:
        return
    run = {
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "ci": IN_CI,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
    }
    write_results(scenarios, run)
    print(f"\nfault scenarios: results in {RESULTS}", file=sys.stderr)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, stopped after the test (fails under CI=true
    when redis-server is missing, skips otherwise)."""
    if REDIS_SERVER is None:
        unavailable("redis-server is not on PATH; the Redis fault scenarios need it")
    server = RedisServer(tmp_path / "redis")
    server.workdir.mkdir()
    server.start()
    yield server
    server.stop()
