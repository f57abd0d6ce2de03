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

from tierkit_redis._options import Options, endpoint

_AUTH_REPLIES = ("WRONGPASS", "NOAUTH", "INVALID PASSWORD", "INVALID USERNAME-PASSWORD")
_SSL_TEXT = re.compile(r"\[SSL[^\]]*\][^()]*|SSL[: ].*", re.I)


def connect(options: Options) -> redis.Redis:
    """A pooled client for ``options.url``; it connects lazily, on the first command."""
    if options.url is None:
        raise ValueError("url is not set")
    url = options.url.get_secret_value()
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": options.connect_timeout,
        "socket_timeout": options.socket_timeout,
        "retry": Retry(NoBackoff(), options.retries, supported_errors=(RedisConnectionError,)),
        "max_connections": options.max_connections,
    }
    if url.startswith("rediss:"):
        kwargs["ssl_check_hostname"] = options.ssl_check_hostname
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            path = getattr(options, name)
            if path is not None:
                kwargs[name] = str(path)
    return redis.Redis.from_url(url, **kwargs)


def server_version(client: redis.Redis) -> str:
    """The server's version, from ``INFO server`` (an ACL user may not be allowed INFO)."""
    try:
        return str(client.info("server")["redis_version"])
    except NoPermissionError:
        return "unknown (INFO not permitted)"


def describe(exc: BaseException, options: Options) -> str:
    """A short, password-free reason for a failed call, for health and logs."""
    url = options.url.get_secret_value() if options.url is not None else ""
    where = endpoint(url) if url else "redis"
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
    elif isinstance(exc, BusyLoadingError):
        reason = f"{where} is loading its dataset"
    elif isinstance(exc, RedisConnectionError):
        reason = f"cannot connect to {where}: {text}"
    else:
        reason = f"{type(exc).__name__} from {where}: {text}"
    return reason


def scrub(text: str, options: Options) -> str:
    """``text`` with any occurrence of the URL's password masked."""
    if options.url is None:
        return text
    parts = urlsplit(options.url.get_secret_value())
    secrets = [value for name, value in parse_qsl(parts.query) if "password" in name.lower()]
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
