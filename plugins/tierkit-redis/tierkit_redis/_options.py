"""Options of the Redis tier and URL handling that never shows the password."""

from __future__ import annotations

import re
from typing import Literal, Self
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    field_validator,
    model_validator,
)

SCHEMES = ("redis", "rediss", "unix")
_MASK = "***"
_QUERY_PASSWORD = re.compile(r"([?&][^=&#]*password[^=&#]*=)[^&#]*", re.IGNORECASE)


BACKPLANE_VALUES = 16384
"""Default of ``backplane_values``.  Applying a carried value in a receiver, against dropping the
copy and reading the key again from Redis on loopback (a JSON string value, one process):
1 KB 20 vs 55 µs, 16 KB 46 vs 77 µs, 64 KB 162 vs 146 µs.  Every holder pays the former, only
the readers the latter, and pub/sub copies the message to every subscriber: 16 KB is below the
crossover."""


class Options(BaseModel):
    """Options of a ``redis`` tier (``tiers.<name>.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: SecretStr | None = Field(
        None,
        description=(
            "redis://[user:password@]host[:port][/db], rediss://… for TLS, or "
            "unix:///path/to/redis.sock[?db=N]. Usually supplied by REDIS_URL. "
            "With cluster = true: any node of the cluster. With sentinels: only its user, "
            "password, database and scheme are used. Without it (and without sentinels) "
            "the tier is skipped."
        ),
    )
    cluster: bool = Field(
        False,
        description=(
            "The url names a node of a Redis Cluster: use redis-py's cluster client, which "
            "finds the other nodes and follows slot moves and failovers."
        ),
    )
    sentinels: tuple[str, ...] | None = Field(
        None,
        min_length=1,
        description=(
            "Sentinel addresses, ['host:port', …]: the tier asks them where the master of "
            "service_name is, and follows it after a failover."
        ),
    )
    service_name: str | None = Field(
        None, min_length=1, description="The master's name in the Sentinel configuration."
    )
    sentinel_password: SecretStr | None = Field(
        None, description="Password of the Sentinels themselves, when they require one."
    )
    read_from_replicas: bool = Field(
        False,
        description=(
            "With cluster or sentinels: send reads (get, get_many) to replicas, writes to "
            "masters. A read may miss a write made a moment earlier (replication lag)."
        ),
    )
    connect_timeout: float = Field(
        0.25, gt=0, le=30, description="Seconds allowed to open a connection (TCP, TLS, AUTH)."
    )
    socket_timeout: float = Field(
        0.25, gt=0, le=30, description="Seconds allowed for a reply before a call fails."
    )
    retries: int = Field(
        1,
        ge=0,
        le=5,
        description=(
            "Immediate extra attempts after a connection error (e.g. a pooled connection the "
            "server closed). Timeouts are never retried, so a stalled server costs one timeout."
        ),
    )
    max_connections: int = Field(
        64, ge=1, le=10_000, description="Connections in the pool; a call beyond it fails."
    )
    key_prefix: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Prefix of every key this tier writes. Default: 'tierkit:<namespace>:'.",
    )
    keyspace_events: Literal["auto", "off"] = Field(
        "auto",
        description=(
            "auto: when the server publishes keyspace notifications (notify-keyspace-events "
            "with K and g$, or KA), the backplane also watches the tier's keys, so that writes "
            "by other programs drop local copies too (one server or Sentinel; not a cluster). "
            "off: only tierkit's own messages."
        ),
    )
    backplane_values: int = Field(
        BACKPLANE_VALUES,
        ge=0,
        description=(
            "Largest stored value, in bytes, that a set's backplane message carries: other "
            "processes holding the key replace their local copy with it instead of dropping it "
            "(docs/coherence.md). Larger values are dropped by the others (read again from Redis "
            "when next used). 0: messages never carry values."
        ),
    )
    slow_threshold: float = Field(
        0.05, gt=0, description="PING latency, in seconds, above which health says 'degraded'."
    )
    ssl_ca_certs: FilePath | None = Field(
        None, description="PEM file of the CA(s) that signed the server certificate (rediss://)."
    )
    ssl_certfile: FilePath | None = Field(
        None, description="Client certificate (PEM) for servers that require one (rediss://)."
    )
    ssl_keyfile: FilePath | None = Field(
        None, description="Private key of the client certificate (rediss://)."
    )
    ssl_check_hostname: bool = Field(
        True, description="Check that the server certificate names the host of the URL."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_url(value.get_secret_value())
        return value

    @field_validator("sentinels")
    @classmethod
    def _check_sentinels(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for address in value or ():
            sentinel_address(address)
        return value

    @model_validator(mode="after")
    def _check_topology(self) -> Self:
        scheme = urlsplit(self.url.get_secret_value()).scheme if self.url is not None else None
        if self.cluster and self.sentinels:
            raise ValueError("cluster and sentinels exclude each other: choose one")
        if self.cluster and scheme == "unix":
            raise ValueError("cluster = true needs a redis:// or rediss:// url naming a node")
        if self.cluster and self.url is not None and url_db(self.url.get_secret_value()) != "0":
            raise ValueError("a Redis Cluster has only database 0; drop the database from the url")
        if self.cluster and self.key_prefix is not None and not set(self.key_prefix).isdisjoint("{}"):
            raise ValueError(
                "key_prefix must not contain '{' or '}' with cluster = true: a hash tag would put "
                "every key of the tier in one slot"
            )
        if bool(self.sentinels) != (self.service_name is not None):
            raise ValueError("sentinels and service_name go together")
        if self.sentinel_password is not None and not self.sentinels:
            raise ValueError("sentinel_password needs sentinels")
        if self.sentinels and scheme == "unix":
            raise ValueError("with sentinels the url may only be redis:// or rediss:// (credentials)")
        if self.read_from_replicas and not (self.cluster or self.sentinels):
            raise ValueError("read_from_replicas needs cluster = true or sentinels")
        return self

    @property
    def configured(self) -> bool:
        """Whether the options say where Redis is (a url, or sentinels)."""
        return self.url is not None or bool(self.sentinels)

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        tls = [
            name
            for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
            if getattr(self, name) is not None
        ]
        scheme = urlsplit(self.url.get_secret_value()).scheme if self.url is not None else None
        if tls and (scheme not in (None, "rediss") or (scheme is None and self.sentinels)):
            raise ValueError(f"{', '.join(tls)} need a rediss:// url (TLS)")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self


def check_url(url: str) -> None:
    """Raise ``ValueError`` if ``url`` is not a usable Redis URL; messages never quote it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL (check the port)") from None
    if parts.scheme not in SCHEMES:
        shown = f"{parts.scheme!r} is not supported" if parts.scheme else "is missing"
        raise ValueError(f"the scheme {shown}; use redis://, rediss:// or unix://")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs the socket path, e.g. unix:///run/redis.sock")
    elif port == 0:
        raise ValueError("port must be between 1 and 65535")
    if not url_db(url).isdigit():
        raise ValueError("the database must be a number, e.g. redis://host:6379/0")


def url_db(url: str) -> str:
    """The database named by ``url`` (``db=`` query, else the path), as text; ``0`` if none."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "unix":
        return query.get("db", "0")
    return query.get("db") or parts.path.strip("/") or "0"


def sentinel_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of a ``host:port`` (or ``[v6]:port``) Sentinel address, or ``ValueError``."""
    host, colon, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel address {address!r} is not host:port (e.g. 'sentinel-1:26379')")
    return host, int(port)


def redacted_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` query) replaced by ``***``.

    Works on the text, not on a parse, so that even a malformed URL (an unescaped ``/``
    or ``@`` in the password) is masked: everything up to the last ``@`` is user info.
    """
    scheme, sep, rest = url.partition("://") if "://" in url else ("", "", url)
    if "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:{_MASK}@{host}" if colon else f"{user}@{host}"
    return scheme + sep + _QUERY_PASSWORD.sub(rf"\g<1>{_MASK}", rest)


def endpoint(url: str) -> str:
    """``host:port`` or the socket path of ``url``, for messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
