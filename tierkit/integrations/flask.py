"""Flask: the ``Tierkit`` extension — a cache built from ``app.config``, the session tier bound to
each request, and views cached by path, query string and chosen headers.

Install with ``pip install "tierkit[flask]"``.  Importing :mod:`tierkit` never imports flask.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar, cast

import flask

from tierkit._cache import Cache
from tierkit._config import Settings
from tierkit._contract import suggest
from tierkit.errors import ConfigError
from tierkit.integrations._http import ResponsePolicy, StoredResponse, bypasses_cache
from tierkit.integrations._sessions import Binder, SessionStores, bound, session_binders

__all__ = ["CONFIG_PREFIX", "Tierkit", "settings_from_config"]

CONFIG_PREFIX = "TIERKIT_"
"""``app.config`` keys with this prefix configure the extension: ``TIERKIT_NAMESPACE`` → ``namespace``."""

EXTENSION_KEYS = {"TIERKIT_BIND_SESSIONS": True, "TIERKIT_MAX_SESSIONS": 10_000}
"""Keys of the extension itself (with their defaults), not of :class:`~tierkit.Settings`."""

F = TypeVar("F", bound=Callable[..., Any])


def settings_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~tierkit.Settings` arguments ``TIERKIT_…`` keys of a Flask config give.

    ``TIERKIT_ORDER = ["memory", "file"]`` gives ``order=["memory", "file"]``.
    They rank as arguments: above the environment and files.  An unknown
    ``TIERKIT_`` key is a :class:`~tierkit.ConfigError` naming it.
    """
    known = {CONFIG_PREFIX + name.upper(): name for name in Settings.model_fields}
    overrides: dict[str, Any] = {}
    for key, value in config.items():
        if not key.startswith(CONFIG_PREFIX) or key in EXTENSION_KEYS:
            continue
        if key not in known:
            raise ConfigError(
                f"app.config[{key!r}]: unknown tierkit setting{suggest(key, [*known, *EXTENSION_KEYS])}"
            )
        overrides[known[key]] = value
    return overrides


class Tierkit:
    """The Flask extension: ``Tierkit(app)``, or ``ext = Tierkit()`` then ``ext.init_app(app)``.

    ``init_app`` builds the app's :class:`~tierkit.Cache` from its ``TIERKIT_…``
    config keys (or takes ``cache=``) and, when the chain has a session tier,
    binds each request to that user's session store (``TIERKIT_BIND_SESSIONS``,
    default on; ``TIERKIT_MAX_SESSIONS`` stores are kept, least recently used go
    first).  The session id lives in ``flask.session``, so the app needs a
    ``secret_key``.  :meth:`cached` caches views.
    """

    def __init__(self, app: flask.Flask | None = None, *, cache: Cache | None = None) -> None:
        self._cache = cache
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        cache = self._cache if self._cache is not None else Cache(**settings_from_config(app.config))
        app.extensions["tierkit"] = cache
        binders = session_binders(cache)
        if binders and app.config.get("TIERKIT_BIND_SESSIONS", EXTENSION_KEYS["TIERKIT_BIND_SESSIONS"]):
            max_sessions = app.config.get("TIERKIT_MAX_SESSIONS", EXTENSION_KEYS["TIERKIT_MAX_SESSIONS"])
            self._bind_sessions(app, binders, SessionStores(max_sessions))

    @staticmethod
    def _bind_sessions(app: flask.Flask, binders: tuple[Binder, ...], stores: SessionStores) -> None:
        def bind_session_store() -> None:
            flask.g._tierkit_binding = binding = bound(binders, stores.for_session(flask.session))
            binding.__enter__()

        def unbind_session_store(error: BaseException | None) -> None:
            binding: AbstractContextManager[Any] | None = flask.g.pop("_tierkit_binding", None)
            if binding is not None:
                binding.__exit__(None, None, None)

        app.before_request(bind_session_store)
        app.teardown_request(unbind_session_store)
        app.extensions["tierkit.sessions"] = stores

    @property
    def cache(self) -> Cache:
        """The current app's cache (inside an app context)."""
        return cast(Cache, flask.current_app.extensions["tierkit"])

    def cached(
        self,
        ttl: float | None = None,
        *,
        vary: Iterable[str] = (),
        tags: Iterable[str] = (),
        persistent: bool = False,
        key_prefix: str = "flask:view:",
        statuses: Iterable[int] = (200,),
    ) -> Callable[[F], F]:
        """Cache a view's response (status, headers, body) for GET and HEAD requests.

        The key is ``key_prefix``, the path, the query string with its
        parameters sorted, and the values of the ``vary`` request headers.  Only
        responses with a status in ``statuses`` and without ``Cache-Control:
        private`` / ``no-store`` are stored; ``Set-Cookie`` is never stored.  A
        request with ``Cache-Control: no-cache`` gets a fresh response, one with
        ``no-store`` leaves the cache untouched.  ``ttl``, ``tags`` and
        ``persistent`` are those of :meth:`tierkit.Cache.set`.
        """
        policy = ResponsePolicy(ttl, tuple(vary), tuple(tags), persistent, key_prefix, frozenset(statuses))

        def decorate(view: F) -> F:
            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> flask.Response:
                request = flask.request
                if request.method not in ("GET", "HEAD"):
                    return flask.make_response(view(*args, **kwargs))
                cache = self.cache
                key = policy.key(request.path, request.args.items(multi=True), request.headers.get)
                skip_lookup, skip_store = bypasses_cache(request.headers.get("Cache-Control"))
                if not skip_lookup:
                    stored = StoredResponse.from_value(cache.get(key))
                    if stored is not None:
                        return flask.Response(stored.body, stored.status, list(stored.headers))
                response = flask.make_response(view(*args, **kwargs))
                if not skip_store and not response.direct_passthrough:
                    parts = policy.capture(
                        response.status_code, response.headers.items(), response.get_data()
                    )
                    if parts is not None:
                        cache.set(key, parts.to_value(), ttl, tags=policy.tags, persistent=persistent)
                return response

            return cast(F, wrapper)

        return decorate
