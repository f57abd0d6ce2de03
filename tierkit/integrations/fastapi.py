"""FastAPI and Starlette: a lifespan that opens and closes the cache, a dependency that gives it,
per-request session binding, and async routes' responses cached with Cache-Control and ETags.

Install with ``pip install "tierkit[fastapi]"``.  Importing :mod:`tierkit` never imports fastapi.
Everything here uses the cache's async API (``aget``/``aset``/``aclose``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tierkit._cache import Cache
from tierkit.integrations._http import (
    ResponsePolicy,
    StoredResponse,
    bypasses_cache,
    etag_matches,
    etag_of,
)
from tierkit.integrations._sessions import Binder, SessionStores, bound, session_binders

__all__ = ["CacheDep", "TierkitSessionMiddleware", "cache_lifespan", "cache_response", "get_cache"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
_REQUEST_PARAM = "tierkit_request"


def cache_lifespan(
    cache: Cache | None = None, **settings: Any
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)``: builds the cache at start-up, ``aclose``-s it at shutdown.

    ``settings`` are :class:`~tierkit.Cache` keyword arguments (or pass a ready
    ``cache``).  The cache is ``app.state.tierkit``; :func:`get_cache` gives it
    to routes.  To combine with a lifespan of your own, enter this one inside
    it: ``async with cache_lifespan()(app): yield``.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.tierkit = the_cache = cache if cache is not None else Cache(**settings)
        try:
            yield
        finally:
            await the_cache.aclose()

    return lifespan


def get_cache(request: Request) -> Cache:
    """Dependency: the app's cache, made by :func:`cache_lifespan`."""
    cache = getattr(request.app.state, "tierkit", None)
    if not isinstance(cache, Cache):
        raise RuntimeError("no tierkit cache on this app: create it with FastAPI(lifespan=cache_lifespan())")
    return cache


CacheDep = Annotated[Cache, Depends(get_cache)]
"""``cache: CacheDep`` in a route's parameters gives the app's cache."""


class TierkitSessionMiddleware:
    """Binds each request to its user's session store, for the session tier.

    Needs Starlette's ``SessionMiddleware`` to run first (add it *after* this
    one): the session id lives in ``request.session``, the store (Python
    objects) in this process, at most ``max_sessions`` of them.  Does nothing
    when the cache's chain has no tier with per-user sessions.
    """

    def __init__(self, app: ASGIApp, max_sessions: int = 10_000) -> None:
        self.app = app
        self.stores = SessionStores(max_sessions)
        self._binders: tuple[Cache, tuple[Binder, ...]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "session" not in scope:
            raise RuntimeError(
                "TierkitSessionMiddleware needs starlette's SessionMiddleware to run first: "
                "add it after TierkitSessionMiddleware (middleware added last runs first)"
            )
        cache = get_cache(Request(scope))
        if self._binders is None or self._binders[0] is not cache:
            self._binders = (cache, session_binders(cache))  # once per cache, not per request
        with bound(self._binders[1], self.stores.for_session(scope["session"])):
            await self.app(scope, receive, send)


def cache_response(
    ttl: float | None = None,
    *,
    vary: Iterable[str] = (),
    tags: Iterable[str] = (),
    persistent: bool = False,
    key_prefix: str = "fastapi:view:",
    statuses: Iterable[int] = (200,),
) -> Callable[[F], F]:
    """Cache an async route's response (status, headers, body) for GET and HEAD requests.

    Put it under the route decorator.  The key is ``key_prefix``, the path, the
    query string with its parameters sorted and the ``vary`` request headers'
    values.  A route that returns data (not a ``Response``) is rendered as
    ``JSONResponse(jsonable_encoder(data))``.  Responses carry an ``ETag`` (a
    digest of the body, unless the route set one) and, with a ``ttl``,
    ``Cache-Control: max-age`` = the seconds left; a request whose
    ``If-None-Match`` names the ETag gets ``304 Not Modified``.  A request
    with ``Cache-Control: no-cache`` gets a fresh response; ``no-store``
    leaves the cache untouched.  Only statuses in ``statuses`` are stored,
    never ``Cache-Control: private``/``no-store`` responses, never
    ``Set-Cookie``.
    """
    policy = ResponsePolicy(ttl, tuple(vary), tuple(tags), persistent, key_prefix, frozenset(statuses))

    def decorate(endpoint: F) -> F:
        if not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"cache_response caches async routes; {endpoint.__qualname__} is not one")
        signature = inspect.signature(endpoint)
        own = _request_parameter(signature)  # FastAPI passes the request to one parameter only
        name = own or _REQUEST_PARAM

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Response:
            request: Request = kwargs[name] if own else kwargs.pop(name)
            if request.method not in ("GET", "HEAD"):
                return _as_response(await endpoint(*args, **kwargs))
            cache = get_cache(request)
            key = policy.key(request.url.path, request.query_params.multi_items(), request.headers.get)
            skip_lookup, skip_store = bypasses_cache(request.headers.get("cache-control"))
            stored = None if skip_lookup else StoredResponse.from_value(await cache.aget(key))
            if stored is not None:
                return _replay(stored, request)
            response = _as_response(await endpoint(*args, **kwargs))
            if not hasattr(response, "body"):  # streaming: passed through, never stored
                return response
            headers = _decoded(response)
            fresh = policy.capture(response.status_code, headers, bytes(response.body))
            if fresh is None:
                return response
            fresh = _with_validators(fresh)
            if not skip_store:
                await cache.aset(key, fresh.to_value(), ttl, tags=policy.tags, persistent=persistent)
            cookies = [(name, value) for name, value in headers if name.lower() == "set-cookie"]
            return _replay(fresh, request, cookies)

        if not own:
            parameter = inspect.Parameter(_REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
            wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
                parameters=[*signature.parameters.values(), parameter]
            )
        return cast(F, wrapper)

    return decorate


def _request_parameter(signature: inspect.Signature) -> str | None:
    """The endpoint's own ``Request`` parameter, if it has one (annotated as ``Request``, or with
    ``from __future__ import annotations``, the string ``"Request"``)."""
    for parameter in signature.parameters.values():
        annotation = parameter.annotation
        if annotation == "Request" or (isinstance(annotation, type) and issubclass(annotation, Request)):
            return parameter.name
    return None


def _as_response(result: Any) -> Response:
    return result if isinstance(result, Response) else JSONResponse(jsonable_encoder(result))


def _decoded(response: Response) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers]


def _with_validators(stored: StoredResponse) -> StoredResponse:
    """``stored`` with an ETag (unless it has one), as every replay of it carries the same one."""
    if stored.header("etag") is not None:
        return stored
    return StoredResponse(
        stored.status, (*stored.headers, ("etag", etag_of(stored.body))), stored.body, stored.expires_at
    )


def _replay(stored: StoredResponse, request: Request, private: Iterable[tuple[str, str]] = ()) -> Response:
    """The response for ``stored``: ``304`` when the client holds it, with ``max-age`` = the time left.

    ``private``: headers of this exchange only (the cookies a fresh response sets).
    """
    headers = [(name, value) for name, value in stored.headers if name.lower() != "content-length"]
    headers += private
    max_age = stored.max_age()
    if max_age is not None and stored.header("cache-control") is None:
        headers.append(("cache-control", f"max-age={max_age}"))
    etag = stored.header("etag")
    if etag is not None and etag_matches(request.headers.get("if-none-match"), etag):
        kept = {"etag", "cache-control", "vary", "expires", "last-modified", "set-cookie"}
        return Response(status_code=304, headers={k: v for k, v in headers if k.lower() in kept})
    response = Response(stored.body, stored.status)
    response.raw_headers = [
        *(h for h in response.raw_headers if h[0] == b"content-length"),
        *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers),
    ]
    return response
