"""Building the ``redis.asyncio`` clients of one event loop from the tier's options.

Imported when a Redis tier is first used from a coroutine.  The same URL, TLS,
ACL user, timeouts, retries and pool size as the sync client; one server, a
Sentinel-managed master (and replicas), or a Redis Cluster.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.cluster import LoadBalancingStrategy
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError

from tierkit_redis._apool import WaitingConnectionPool, WaitingSentinelConnectionPool
from tierkit_redis._client import _client_kwargs, sentinel_settings
from tierkit_redis._options import Options


class AsyncClients:
    """One loop's clients: ``write``, ``read`` (a replica client or the same object), and what to close."""

    __slots__ = ("closers", "read", "write")

    def __init__(self, write: Any, read: Any, others: tuple[Any, ...] = ()) -> None:
        self.write = write
        self.read = read
        self.closers = tuple({id(c): c for c in (write, read, *others)}.values())

    async def aclose(self) -> None:
        for client in self.closers:
            await client.aclose()


def connect_async(options: Options) -> AsyncClients:
    """The clients for ``options`` (they connect lazily, in the running loop).

    Coroutines are not bounded the way threads are: past ``max_connections`` a
    call to one server or Sentinel-managed master waits for a free connection (up
    to ``socket_timeout``) instead of failing (:mod:`tierkit_redis._apool`).  The
    driver's version is given, not looked up: redis-py would otherwise read its
    package metadata from disk for every new connection, on the loop.
    """
    if options.sentinels:
        return _sentinel(options)
    if options.url is None:
        raise ValueError("url is not set")
    url, kwargs = options.url.get_secret_value(), _async_kwargs(_client_kwargs(options), options)
    if options.cluster:
        if options.read_from_replicas:
            kwargs["load_balancing_strategy"] = LoadBalancingStrategy.ROUND_ROBIN
        cluster = RedisCluster.from_url(url, require_full_coverage=False, **kwargs)
        return AsyncClients(cluster, cluster)
    pool = WaitingConnectionPool.from_url(url, wait_timeout=options.socket_timeout, **kwargs)
    client = redis.asyncio.Redis(connection_pool=pool)
    return AsyncClients(client, client)


def _sentinel(options: Options) -> AsyncClients:
    addresses, sentinel_kwargs, kwargs = sentinel_settings(options)
    kwargs = _async_kwargs(kwargs, options)
    sentinel_kwargs["driver_info"] = kwargs["driver_info"]
    sentinel: Any = Sentinel(addresses, sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call]
    pools: dict[str, Any] = {
        "connection_pool_class": WaitingSentinelConnectionPool,
        "wait_timeout": options.socket_timeout,
    }
    master = sentinel.master_for(options.service_name, **pools)
    reader = sentinel.slave_for(options.service_name, **pools) if options.read_from_replicas else master
    return AsyncClients(master, reader, tuple(sentinel.sentinels))


def _async_kwargs(kwargs: dict[str, Any], options: Options) -> dict[str, Any]:
    kwargs["retry"] = Retry(NoBackoff(), options.retries, supported_errors=(RedisConnectionError,))
    kwargs["driver_info"] = DriverInfo(name="redis-py", lib_version=redis.__version__)
    return kwargs
