"""What the web-framework integrations share: response cache keys, stored responses, HTTP headers.

A cached response is stored as its parts (:class:`StoredResponse` as a plain
dict), never as a framework object, so it goes through every codec — the
default JSON one included — and any tier.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

# Headers that belong to one client's exchange, never to a response replayed to others.
PRIVATE_HEADERS = frozenset({"set-cookie", "date", "age"})


def response_key(
    prefix: str,
    path: str,
    query: Iterable[tuple[str, str]],
    vary: Sequence[str] = (),
    header: Callable[[str], str | None] = lambda name: None,
) -> str:
    """The cache key of a response: path, the query string sorted, and the ``vary`` headers' values.

    ``?b=2&a=1`` and ``?a=1&b=2`` share a key; ``?q=a`` and ``?q=b`` do not.
    """
    key = f"{prefix}{path}?{urlencode(sorted(query))}"
    if vary:
        key += "|" + urlencode([(name.lower(), header(name) or "") for name in vary])
    return key


def cache_control(value: str | None) -> dict[str, str | None]:
    """The directives of a ``Cache-Control`` header, lower-cased: ``{"max-age": "60", "no-store": None}``."""
    directives: dict[str, str | None] = {}
    for part in (value or "").split(","):
        name, sep, arg = part.strip().partition("=")
        if name:
            directives[name.lower()] = arg.strip().strip('"') if sep else None
    return directives


def bypasses_cache(request_cache_control: str | None) -> tuple[bool, bool]:
    """(skip the lookup, skip the store) for a request's ``Cache-Control``.

    ``no-cache`` asks for a fresh response (computed, then stored for the next
    client); ``no-store`` asks that nothing of this exchange be stored.
    """
    directives = cache_control(request_cache_control)
    no_store = "no-store" in directives
    return no_store or "no-cache" in directives, no_store


def storable(status: int, headers: Iterable[tuple[str, str]], statuses: Iterable[int]) -> bool:
    """Whether a response may be stored for other clients: an allowed status, not private or no-store."""
    if status not in statuses:
        return False
    for name, value in headers:
        if name.lower() == "cache-control":
            directives = cache_control(value)
            if "no-store" in directives or "private" in directives:
                return False
    return True


def etag_of(body: bytes) -> str:
    """A strong validator for ``body``: a quoted digest."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, as RFC 9110 asks for it)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in if_none_match.split(","))


@dataclass(frozen=True)
class StoredResponse:
    """A response as the cache holds it: status, headers (private ones dropped), body, expiry."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expires_at: float | None

    @classmethod
    def capture(
        cls, status: int, headers: Iterable[tuple[str, str]], body: bytes, ttl: float | None
    ) -> StoredResponse:
        kept = tuple((name, value) for name, value in headers if name.lower() not in PRIVATE_HEADERS)
        return cls(status, kept, body, None if ttl is None else time.time() + ttl)

    def to_value(self) -> dict[str, Any]:
        """The plain dict stored in the cache (JSON codec friendly)."""
        return {
            "status": self.status,
            "headers": [list(pair) for pair in self.headers],
            "body": self.body,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_value(cls, value: Any) -> StoredResponse | None:
        """The response stored as ``value``, or ``None`` if ``value`` is not one (treated as a miss)."""
        try:
            return cls(
                int(value["status"]),
                tuple((str(name), str(val)) for name, val in value["headers"]),
                bytes(value["body"]),
                None if value["expires_at"] is None else float(value["expires_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((value for key, value in self.headers if key.lower() == lower), None)

    def max_age(self) -> int | None:
        """Seconds this response stays fresh from now (``None``: no expiry)."""
        return None if self.expires_at is None else max(0, math.ceil(self.expires_at - time.time()))


@dataclass(frozen=True)
class ResponsePolicy:
    """How one view's responses are cached: the arguments of the integrations' view decorators."""

    ttl: float | None
    vary: tuple[str, ...]
    tags: tuple[str, ...]
    persistent: bool
    key_prefix: str
    statuses: frozenset[int]

    def key(self, path: str, query: Iterable[tuple[str, str]], header: Callable[[str], str | None]) -> str:
        return response_key(self.key_prefix, path, query, self.vary, header)

    def capture(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> StoredResponse | None:
        """The response to store, or ``None`` when it must not be stored for other clients."""
        headers = list(headers)
        if not storable(status, headers, self.statuses):
            return None
        return StoredResponse.capture(status, headers, body, self.ttl)
