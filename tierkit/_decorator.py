"""``@tierkit.cached``: memoize a function in a cache, with keys stable across processes."""

from __future__ import annotations

import functools
import hashlib
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar

import orjson
from pydantic import TypeAdapter

from tierkit._cache import Cache, get_cache
from tierkit._codec import AdapterCodec, Codec, JsonCodec
from tierkit._types import MISSING

P = ParamSpec("P")
R = TypeVar("R")

_SIMPLE = frozenset({str, int, float, bool, type(None)})
_MAX_PLAIN_KEY = 200
_json = JsonCodec()


class CachedFunction(Generic[P, R]):
    """The wrapper ``@cached`` returns: call it like the function; ``.key()`` and ``.invalidate()`` help."""

    def __init__(
        self,
        func: Callable[P, R],
        *,
        ttl: float | None,
        tags: tuple[str, ...],
        persistent: bool,
        cache: Cache | None,
        namespace: str | None,
    ) -> None:
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self._func = func
        self._ttl = ttl
        self._tags = tags
        self._persistent = persistent
        self._cache = cache
        self._prefix = f"{namespace or func.__module__ + '.' + func.__qualname__}:"
        self._signature = inspect.signature(func)
        self._positional = [
            p.name
            for p in self._signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        self._codec: Codec | None = None

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of a call: the same for ``f(1)``, ``f(x=1)`` and defaults spelled out."""
        if not kwargs and len(args) == len(self._positional) and len(args) == len(self._signature.parameters):
            values: tuple[Any, ...] = args
        else:
            bound = self._signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = tuple(bound.arguments.values())
        if all(type(v) in _SIMPLE for v in values):
            text = repr(values)
            if len(text) <= _MAX_PLAIN_KEY:
                return self._prefix + text
        digest = hashlib.blake2b(_canonical(values), digest_size=16).hexdigest()
        return f"{self._prefix}#{digest}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.key(*args, **kwargs)
        cache = self._cache or get_cache()
        codec = self._codec or self._make_codec(cache)
        value = (
            cache._read_through(key, MISSING, 0, codec)
            if codec is not cache._codec
            else cache.get(key, MISSING)
        )
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        return cache._compute(
            key, lambda: self._func(*args, **kwargs), self._ttl, self._tags, self._persistent, codec
        )

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of this call."""
        return (self._cache or get_cache()).delete(self.key(*args, **kwargs))

    def _make_codec(self, cache: Cache) -> Codec:
        """A TypeAdapter codec from the return annotation, when there is one and the cache uses JSON."""
        codec: Codec = cache._codec
        try:
            annotation = typing.get_type_hints(self._func).get("return")
        except Exception:  # unresolvable forward reference: fall back to the generic codec
            annotation = None
        if annotation is not None and annotation is not type(None) and isinstance(codec, JsonCodec):
            codec = AdapterCodec(TypeAdapter(annotation), codec)
        self._codec = codec
        return codec


def _canonical(values: Any) -> bytes:
    """Deterministic bytes for hashing arguments: sets sorted, the JSON envelope for exact types."""
    return orjson.dumps(_sorted_sets(values), default=_envelope, option=orjson.OPT_SORT_KEYS)


def _sorted_sets(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted((_sorted_sets(v) for v in value), key=_canonical)
    if isinstance(value, list | tuple):
        return [_sorted_sets(v) for v in value]
    if isinstance(value, dict):
        return {f"{type(k).__name__}:{k!r}": _sorted_sets(v) for k, v in value.items()}
    return value


def _envelope(value: Any) -> Any:
    return orjson.loads(_json.encode("argument", value)[1:])


def cached(
    ttl: float | None = None,
    *,
    tags: Iterable[str] = (),
    persistent: bool = False,
    cache: Cache | None = None,
    namespace: str | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a function's results.

    The key is the function's module and qualified name plus its arguments
    (bound to the signature, so ``f(1)`` and ``f(x=1)`` share an entry) —
    stable across processes.  Results are stored in ``cache`` (default:
    :func:`tierkit.get_cache`).  With a return annotation, byte tiers store the
    value through a pydantic ``TypeAdapter`` and hand back that type.
    Concurrent calls with the same arguments run the function once.
    """
    tag_tuple = tuple(tags)

    def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
        return CachedFunction(
            func, ttl=ttl, tags=tag_tuple, persistent=persistent, cache=cache, namespace=namespace
        )

    return decorate
