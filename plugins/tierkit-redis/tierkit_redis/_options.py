"""Options of the Redis tier and URL handling that never shows the password."""

from __future__ import annotations

import re
from typing import Self
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


class Options(BaseModel):
    """Options of a ``redis`` tier (``tiers.<name>.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: SecretStr | None = Field(
        None,
        description=(
            "redis://[user:password@]host[:port][/db], rediss://… for TLS, or "
            "unix:///path/to/redis.sock[?db=N]. Usually supplied by REDIS_URL. "
            "Without it the tier is skipped."
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

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        tls = [
            name
            for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
            if getattr(self, name) is not None
        ]
        if tls and self.url is not None and urlsplit(self.url.get_secret_value()).scheme != "rediss":
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
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs the socket path, e.g. unix:///run/redis.sock")
        db = query.get("db", "0")
    else:
        if port == 0:
            raise ValueError("port must be between 1 and 65535")
        db = query.get("db") or parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError("the database must be a number, e.g. redis://host:6379/0")


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
