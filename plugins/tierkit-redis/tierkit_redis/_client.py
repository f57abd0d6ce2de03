"""Everything that imports redis-py: building the client and explaining its errors.

Imported only when a Redis tier is built (or :func:`tierkit_redis.is_available` runs),
so an unconfigured Redis tier costs no import of redis-py.
"""

from __future__ import annotations

import re
import ssl
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import LoadBalancingStrategy, RedisCluster
from redis.connection import parse_url
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SlaveNotFoundError

from tierkit_redis._options import Options, endpoint, sentinel_address

_AUTH_REPLIES = ("WRONGPASS", "NOAUTH", "INVALID PASSWORD", "INVALID USERNAME-PASSWORD")
_SSL_TEXT = re.compile(r"\[SSL[^\]]*\][^()]*|SSL[: ].*", re.I)


class Clients:
    """The clients of one tier: ``write`` for writes, ``read`` for reads (a replica client
    when reads go to replicas, else the same object), and the Sentinel manager if any."""

    __slots__ = ("read", "sentinel", "write")

    def __init__(self, write: redis.Redis, read: redis.Redis, sentinel: Sentinel | None = None) -> None:
        self.write = write
        self.read = read
        self.sentinel = sentinel


def connect(options: Options) -> Clients:
    """Pooled clients for a single server or a Sentinel-managed master; they connect lazily."""
    if options.sentinels:
        return _connect_sentinel(options)
    if options.url is None:
        raise ValueError("url is not set")
    client = redis.Redis.from_url(options.url.get_secret_value(), **_client_kwargs(options))
    return Clients(client, client)


def connect_cluster(options: Options) -> RedisCluster:
    """redis-py's cluster client, started from the node ``options.url`` names.

    It reads the slot map from that node (failing fast if it is unreachable) and
    afterwards follows MOVED replies and failovers by itself.
    """
    if options.url is None:
        raise ValueError("url is not set")
    kwargs = _client_kwargs(options)
    kwargs["retry"] = Retry(NoBackoff(), options.retries)
    if options.read_from_replicas:
        kwargs["load_balancing_strategy"] = LoadBalancingStrategy.ROUND_ROBIN
    return RedisCluster.from_url(options.url.get_secret_value(), require_full_coverage=False, **kwargs)


def _connect_sentinel(options: Options) -> Clients:
    addresses, sentinel_kwargs, kwargs = sentinel_settings(options)
    sentinel: Any = Sentinel(addresses, sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call]
    master: redis.Redis = sentinel.master_for(options.service_name)
    reader: redis.Redis = sentinel.slave_for(options.service_name) if options.read_from_replicas else master
    return Clients(master, reader, sentinel)


def sentinel_settings(options: Options) -> tuple[list[tuple[str, int]], dict[str, Any], dict[str, Any]]:
    """The Sentinels' addresses, their connection settings, and the master's and replicas' settings.

    Shared by the sync and async Sentinel clients: the url gives the servers' user,
    password, database and TLS; ``sentinel_password`` the Sentinels' own.
    """
    kwargs = _client_kwargs(options)
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": options.connect_timeout,
        "socket_timeout": options.socket_timeout,
    }
    if options.url is not None:
        credentials = parse_url(options.url.get_secret_value())  # type: ignore[no-untyped-call]
        for name in ("username", "password", "db"):
            if credentials.get(name) is not None:
                kwargs[name] = credentials[name]
        if "ssl_check_hostname" in kwargs:
            kwargs["ssl"] = True
            sentinel_kwargs.update({k: v for k, v in kwargs.items() if k.startswith("ssl")})
    if options.sentinel_password is not None:
        sentinel_kwargs["password"] = options.sentinel_password.get_secret_value()
    addresses = [sentinel_address(address) for address in options.sentinels or ()]
    return addresses, sentinel_kwargs, kwargs


def _client_kwargs(options: Options) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": options.connect_timeout,
        "socket_timeout": options.socket_timeout,
        "retry": Retry(NoBackoff(), options.retries, supported_errors=(RedisConnectionError,)),
        "max_connections": options.max_connections,
    }
    if options.url is not None and options.url.get_secret_value().startswith("rediss:"):
        kwargs["ssl_check_hostname"] = options.ssl_check_hostname
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            path = getattr(options, name)
            if path is not None:
                kwargs[name] = str(path)
    return kwargs


def server_version(client: redis.Redis) -> str:
    """The server's version, from ``INFO server`` (an ACL user may not be allowed INFO)."""
    try:
        return str(client.info("server")["redis_version"])
    except NoPermissionError:
        return "unknown (INFO not permitted)"


def describe(exc: BaseException, options: Options, where: str | None = None) -> str:
    """A short, password-free reason for a failed call, for health and logs.

    ``where`` names the server at fault (a cluster node); by default, what the options name.
    """
    where = where or location(options)
    causes = _chain(exc)
    ssl_error = next((e for e in causes if isinstance(e, ssl.SSLError)), None)
    text = scrub(str(exc), options)
    if ssl_error is not None or "SSL" in text:
        detail = _ssl_detail(ssl_error) if ssl_error is not None else _ssl_text(text)
        reason = f"TLS error with {where}: {detail}"
    elif isinstance(exc, AuthenticationError | AuthenticationWrongNumberOfArgsError) or (
        isinstance(exc, ResponseError) and text.upper().startswith(_AUTH_REPLIES)
    ):
        reason = f"authentication failed at {where}: the server rejected the user name or password"
    elif isinstance(exc, AuthorizationError | NoPermissionError):
        reason = f"not permitted at {where}: {text}"
    elif isinstance(exc, RedisTimeoutError) or any(isinstance(e, TimeoutError) for e in causes):
        limits = f"connect {_ms(options.connect_timeout)}, socket {_ms(options.socket_timeout)}"
        reason = f"timed out talking to {where} ({limits})"
    elif any(isinstance(e, ConnectionRefusedError) for e in causes):
        reason = f"connection refused by {where} (is redis-server running?)"
    elif isinstance(exc, MasterNotFoundError | SlaveNotFoundError):
        wanted = "master" if isinstance(exc, MasterNotFoundError) else "replica"
        reason = f"no {wanted} found for {where}: {text}"
    elif isinstance(exc, BusyLoadingError):
        reason = f"{where} is loading its dataset"
    elif isinstance(exc, RedisConnectionError):
        reason = f"cannot connect to {where}: {text}"
    else:
        reason = f"{type(exc).__name__} from {where}: {text}"
    return reason


def location(options: Options) -> str:
    """Where the options say Redis is: ``host:port``, a socket, or a service and its Sentinels."""
    if options.sentinels:
        return f"service {options.service_name!r} (sentinels {', '.join(options.sentinels)})"
    return endpoint(options.url.get_secret_value()) if options.url is not None else "redis"


def scrub(text: str, options: Options) -> str:
    """``text`` with any occurrence of a configured password masked."""
    secrets = []
    if options.sentinel_password is not None:
        secrets.append(options.sentinel_password.get_secret_value())
    if options.url is not None:
        parts = urlsplit(options.url.get_secret_value())
        secrets += [value for name, value in parse_qsl(parts.query) if "password" in name.lower()]
        if parts.password:
            secrets += [parts.password, unquote(parts.password)]
    for secret in filter(None, secrets):
        text = text.replace(secret, "***")
    return text


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _ssl_detail(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    return error.reason or str(error)


def _ssl_text(text: str) -> str:
    found = _SSL_TEXT.search(text)
    return found.group(0).strip(" .") if found else text


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g} ms"
