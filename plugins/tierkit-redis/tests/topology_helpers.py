"""Private Redis Clusters and Sentinel groups on loopback, for the scale-out tests."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis_helpers import RedisServer

REDIS_CLI = shutil.which("redis-cli")
NODE_TIMEOUT_MS = 1000
"""``cluster-node-timeout`` and Sentinel's ``down-after-milliseconds``: failover within seconds."""


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too (both below 65536)."""
    for _ in range(200):
        port = random.randrange(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of loopback ports for a cluster node")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; ``RuntimeError`` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class Cluster:
    """A Redis Cluster of ``masters`` masters, each with ``replicas`` replicas."""

    workdir: Path
    masters: int = 3
    replicas: int = 1
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> Cluster:
        for i in range(self.masters * (1 + self.replicas)):
            node = RedisServer(
                self.workdir / f"node{i}",
                port=cluster_port(),
                extra=[
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {NODE_TIMEOUT_MS}",
                    "cluster-require-full-coverage no",
                    "cluster-allow-reads-when-down yes",
                    "cluster-replica-validity-factor 0",
                    "repl-diskless-sync-delay 0",
                ],
            )
            node.workdir.mkdir(parents=True)
            self.nodes.append(node.start())
        assert REDIS_CLI is not None
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_for(self.healthy, 30, "the cluster to be ok on every node")
        wait_for(self.replicas_synced, 30, "every replica to sync with its master")
        client = self.client()
        names = [f"warm-up:{i}" for i in range(60)]  # replicas with nothing replicated are left
        client.mset_nonatomic(dict.fromkeys(names, b"x"))  # out of CLUSTER SLOTS (Redis 7)
        for name in names:
            client.delete(name)
        client.close()
        wait_for(self.replicas_listed, 30, "CLUSTER SLOTS to list every replica")
        return self

    def replicas_listed(self) -> bool:
        ranges = self.nodes[0].admin().execute_command("CLUSTER", "SLOTS")
        return all(len(entry) - 3 == self.replicas for entry in ranges)

    def replicas_synced(self) -> bool:
        roles = [node.admin().info("replication") for node in self.live()]
        replicas = [role for role in roles if role["role"] == "slave"]
        return len(replicas) == self.masters * self.replicas and all(
            role["master_link_status"] == "up" for role in replicas
        )

    def healthy(self) -> bool:
        """Every live node says ``cluster_state:ok``, and ``masters`` live masters own the slots."""
        live = self.live()
        if any(node.admin().cluster("info")["cluster_state"] != "ok" for node in live):
            return False
        return len(self.masters_seen_by(live[0])) == self.masters

    def masters_seen_by(self, node: RedisServer) -> list[int]:
        """Ports of the masters owning slots and not failed, as ``node`` sees them."""
        ports = []
        for line in node.admin().execute_command("CLUSTER", "NODES").decode().splitlines():
            fields = line.split()
            flags = fields[2].split(",")
            if "master" in flags and "fail" not in flags and len(fields) > 8:
                ports.append(int(fields[1].split(":")[1].split("@")[0]))
        return ports

    def live(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None]

    def client(self) -> redis.RedisCluster:
        """A plain redis-py cluster client, for the test's own checks."""
        return redis.RedisCluster.from_url(self.live()[0].url, socket_timeout=5)

    def node_at(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class SentinelGroup:
    """A master, one replica and ``sentinels`` Sentinels watching them as ``service``."""

    workdir: Path
    service: str = "tkmaster"
    sentinels: int = 3
    master: RedisServer | None = None
    replica: RedisServer | None = None
    watchers: list[RedisServer] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.watchers]

    def start(self) -> SentinelGroup:
        self.master = self._server("master", ["repl-diskless-sync-delay 0"])
        self.replica = self._server(
            "replica", ["repl-diskless-sync-delay 0", f"replicaof 127.0.0.1 {self.master.port}"]
        )
        wait_for(
            lambda: (
                self.replica is not None
                and self.replica.admin().info("replication")["master_link_status"] == "up"
            ),
            15,
            "the replica to sync",
        )
        for i in range(self.sentinels):
            watcher = RedisServer(
                self.workdir / f"sentinel{i}",
                sentinel=True,
                extra=[
                    f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2",
                    f"sentinel down-after-milliseconds {self.service} {NODE_TIMEOUT_MS}",
                    f"sentinel failover-timeout {self.service} 5000",
                    f"sentinel parallel-syncs {self.service} 1",
                ],
            )
            watcher.workdir.mkdir(parents=True)
            self.watchers.append(watcher.start())
        wait_for(self._sentinels_agree, 15, "the sentinels to see the replica and each other")
        return self

    def _server(self, name: str, extra: list[str]) -> RedisServer:
        server = RedisServer(self.workdir / name, extra=extra)
        server.workdir.mkdir(parents=True)
        return server.start()

    def _sentinels_agree(self) -> bool:
        for watcher in self.watchers:
            state = watcher.admin().sentinel_master(self.service)
            if state["num-slaves"] < 1 or state["num-other-sentinels"] < self.sentinels - 1:
                return False
        return True

    def current_master(self) -> tuple[str, int]:
        """Where the first live sentinel says the master is."""
        watcher = next(w for w in self.watchers if w.process is not None)
        host, port = watcher.admin().sentinel_get_master_addr_by_name(self.service)
        return host.decode(), int(port)

    def stop(self) -> None:
        for server in (*self.watchers, self.replica, self.master):
            if server is not None:
                server.stop()
