"""Fixtures running the Redis tier against real redis-server processes.

* ``redis_url`` (session): ``$TIERKIT_TEST_REDIS_URL`` if set, else a private
  redis-server on a free loopback port, started once for the session.
* ``redis_factory``: short-lived private servers (fault, TLS and ACL tests).
* ``tls_files`` (session): a self-signed CA, a server certificate it signed, and an
  unrelated CA, made with ``openssl``.
* ``redis_cluster`` (session) and ``make_cluster``: Redis Clusters of 3 masters with a
  replica each; ``redis_sentinels`` (session) and ``make_sentinels``: a master, a replica
  and 3 Sentinels.

Without a redis-server binary (and, for ``redis_url``, without the variable) the
tests skip with the reason; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_helpers import OPENSSL, REDIS_SERVER, TEST_URL, RedisServer, TlsFiles, make_tls_files, unavailable
from tierkit_redis import Options, RedisTier
from topology_helpers import REDIS_CLI, Cluster, SentinelGroup

from tierkit import TierContext


@pytest.fixture(autouse=True)
def workdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test runs in an empty directory with no ambient REDIS_URL / TIERKIT_ variables."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REDIS_URL", raising=False)
    for name in [name for name in os.environ if name.startswith("TIERKIT_")]:
        monkeypatch.delenv(name)
    return tmp_path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the Redis shared by the session's tests (each test uses its own key prefix)."""
    if TEST_URL:
        yield TEST_URL
        return
    if REDIS_SERVER is None:
        unavailable(
            "no Redis for the tests: redis-server is not on PATH and TIERKIT_TEST_REDIS_URL is not set"
        )
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start short-lived private servers: ``redis_factory(tls=..., users=...)``."""
    if REDIS_SERVER is None:
        unavailable("redis-server is not on PATH; the fault, TLS and ACL tests need it")
    servers: list[RedisServer] = []

    def start(**kwargs: Any) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(servers)}", **kwargs)
        server.workdir.mkdir()
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def _need_topology_tools() -> None:
    if REDIS_SERVER is None or REDIS_CLI is None:
        unavailable("redis-server and redis-cli must be on PATH for the Cluster and Sentinel tests")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster shared by the session's tests that do not break it (each uses its own prefix)."""
    _need_topology_tools()
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A Sentinel group shared by the session's tests that do not break it (each uses its own prefix)."""
    _need_topology_tools()
    group = SentinelGroup(tmp_path_factory.mktemp("sentinels"))
    try:
        yield group.start()
    finally:
        group.stop()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[[], Cluster]]:
    """Start a cluster of the test's own, to break (killed masters, failovers)."""
    _need_topology_tools()
    clusters: list[Cluster] = []

    def start() -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(clusters)}")
        clusters.append(cluster)
        return cluster.start()

    yield start
    for cluster in clusters:
        cluster.stop()


@pytest.fixture
def make_sentinels(tmp_path: Path) -> Iterator[Callable[[], SentinelGroup]]:
    """Start a master, a replica and three Sentinels watching them."""
    _need_topology_tools()
    groups: list[SentinelGroup] = []

    def start() -> SentinelGroup:
        group = SentinelGroup(tmp_path / f"sentinel{len(groups)}")
        groups.append(group)
        return group.start()

    yield start
    for group in groups:
        group.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    if OPENSSL is None:
        unavailable("openssl is not on PATH; it makes the TLS test certificates")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def make_tier() -> Iterator[Callable[..., RedisTier]]:
    """Build Redis tiers (``make_tier(url, namespace=..., clock=..., **options)``).

    Each gets a fresh namespace unless one is given; all are cleared and closed after
    the test (best effort: fault tests leave some servers dead).
    """
    tiers: list[RedisTier] = []

    def make(
        url: str,
        namespace: str | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "redis",
        **options: Any,
    ) -> RedisTier:
        context = TierContext(name=name, namespace=namespace or f"t{uuid.uuid4().hex[:12]}", clock=clock)
        tier = RedisTier(Options(url=url, **options), context)
        tiers.append(tier)
        return tier

    yield make
    for tier in tiers:
        with contextlib.suppress(redis.RedisError):
            tier.tierkit_clear()
        tier.tierkit_close()


@pytest.fixture
def tier(redis_url: str, make_tier: Callable[..., RedisTier]) -> RedisTier:
    """A Redis tier on the session's server, in a namespace of its own."""
    return make_tier(redis_url)
