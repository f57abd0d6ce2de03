"""``@tierkit.cached``: memoize a function in a cache, with keys stable across processes."""

from __future__ import annotations

import functools
import hashlib
import inspect
import typing
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

import orjson
from pydantic import TypeAdapter

from tierkit._adecorator import AsyncCachedFunction, cached_coroutine
from tierkit._cache import Cache, get_cache
from tierkit._codec import TAG, AdapterCodec, Codec, JsonCodec
from tierkit._policy import PLAIN, Compute, Miss
from tierkit._types import MISSING

P = ParamSpec("P")
R = TypeVar("R")

_SIMPLE = frozenset({str, int, float, bool, type(None)})
_MAX_PLAIN_KEY = 200
_KEY_MEMO_SIZE = 4096
"""Remembered key strings per @cached function (single str/int argument calls)."""
_json = JsonCodec()


class CachedFunction(Protocol[P, R]):
    """What ``@cached`` returns: the function, plus ``.key()`` and ``.invalidate()``."""

    __wrapped__: Callable[P, R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of a call: the same for ``f(1)``, ``f(x=1)`` and defaults spelled out."""
        ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of this call."""
        ...


class _Decorator(Protocol):
    """What ``cached(...)`` returns: typed apart for ``async def`` (awaitable results) and plain functions."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, func: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncCachedFunction[P, R]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...


def _refuse_uncacheable(func: object) -> None:
    """A ``TypeError`` at decoration time for what ``@cached`` cannot cache."""
    if not callable(func):
        raise TypeError(f"@cached decorates a function, got {type(func).__name__} {func!r}")
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        kind = "an async generator" if inspect.isasyncgenfunction(func) else "a generator"
        raise TypeError(
            f"@cached cannot cache {kind} function ({getattr(func, '__qualname__', func)!r}): it would "
            "cache the generator object, which can be consumed once; cache a function returning a list"
        )


class _Memo(Generic[P, R]):
    """What one ``@cached`` function knows about itself: its key derivation and its codec."""

    def __init__(self, func: Callable[P, R], prefix: str) -> None:
        self.func = func
        self.prefix = prefix
        self.signature = inspect.signature(func)
        params = self.signature.parameters.values()
        positional = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        self.arity = len(self.signature.parameters) if positional else -1
        """Calls with exactly this many positional arguments need no signature binding."""

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        values: tuple[Any, ...] = args
        if kwargs or len(args) != self.arity:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = tuple(bound.arguments.values())
        if _SIMPLE.issuperset(map(type, values)):
            text = repr(values)
            if len(text) <= _MAX_PLAIN_KEY:
                return self.prefix + text
        digest = hashlib.blake2b(_canonical(values), digest_size=16).hexdigest()
        return f"{self.prefix}#{digest}"

    def codec_for(self, cache: Cache) -> Codec:
        """The codec for ``cache``'s byte tiers: a TypeAdapter from the return annotation, if any."""
        codec: Codec = cache.codec
        try:
            annotation = typing.get_type_hints(self.func).get("return")
        except Exception:  # unresolvable forward reference: fall back to the generic codec
            annotation = None
        if annotation is not None and annotation is not type(None) and isinstance(codec, JsonCodec):
            codec = AdapterCodec(TypeAdapter(annotation), codec)
        return codec


def _unbound(key: str, default: Any) -> Any:  # pragma: no cover - replaced on first call
    raise RuntimeError("not bound to a cache")


def _canonical(values: Any) -> bytes:
    """Deterministic bytes for hashing arguments: containers tagged with their type, sets sorted."""
    return orjson.dumps(_typed(values), default=_envelope, option=orjson.OPT_SORT_KEYS)


def _typed(value: Any) -> Any:
    """``value`` with every list, tuple, set and frozenset tagged, so ``[1]``, ``(1,)`` and ``{1}`` differ."""
    if isinstance(value, set | frozenset):
        return {TAG: type(value).__name__, "v": sorted((_typed(v) for v in value), key=_canonical)}
    if isinstance(value, list | tuple):
        return {TAG: type(value).__name__, "v": [_typed(v) for v in value]}
    if isinstance(value, dict):
        return {f"{type(k).__name__}:{k!r}": _typed(v) for k, v in value.items()}
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
    lock: bool = False,
    lock_timeout: float | None = None,
    stale_ttl: float | None = None,
    soft_timeout: float | None = None,
    early_refresh: float | None = None,
) -> _Decorator:
    """Cache a function's results.

    The key is the function's module and qualified name (or ``namespace``)
    plus its arguments, bound to the signature so ``f(1)`` and ``f(x=1)``
    share an entry — stable across processes.  Results are stored in
    ``cache`` (default: :func:`tierkit.get_cache`).  With a return
    annotation, byte tiers store the value through a pydantic
    ``TypeAdapter`` and hand back that type.  Concurrent calls with the same
    arguments run the function once.

    On an ``async def`` the awaited result is cached and the wrapper is a
    coroutine function (see docs/async.md); generators cannot be cached.

    ``lock``, ``lock_timeout``, ``stale_ttl``, ``soft_timeout`` and
    ``early_refresh`` are :meth:`Cache.get_or_set`'s (docs/stampede.md).
    """
    tag_tuple = tuple(tags)
    compute = Compute(lock, lock_timeout, stale_ttl, soft_timeout, early_refresh)

    def decorate(func: Callable[P, R]) -> Any:
        _refuse_uncacheable(func)
        memo = _Memo(func, f"{namespace or func.__module__ + '.' + func.__qualname__}:")
        if inspect.iscoroutinefunction(func):
            return cached_coroutine(func, memo, ttl, tag_tuple, persistent, cache, compute)  # type: ignore[arg-type]
        prefix, arity, simple = memo.prefix, memo.arity, _SIMPLE
        single: dict[type, dict[Any, str]] = {str: {}, int: {}}  # exact types: 1, 1.0, True differ
        # Per-cache state lives in closure cells: cheaper to read than attributes.
        bound_to: Cache | None = None
        get: Callable[[str, Any], Any] = _unbound
        codec: Codec | None = None
        policy = PLAIN
        early = compute.early_refresh is not None

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            # The hit path is written out here, not delegated: it is the whole cost of a hit.
            nonlocal bound_to, get, codec, policy
            if kwargs or len(args) != arity:
                key = memo.key(*args, **kwargs)
            elif arity == 1 and type(args[0]) in single:
                # one str or int argument, the commonest shape: its key string is remembered
                memo_of_type = single[type(args[0])]
                known = memo_of_type.get(args[0])
                if known is None:
                    key = memo.key(*args, **kwargs)
                    if len(memo_of_type) < _KEY_MEMO_SIZE:
                        memo_of_type[args[0]] = key
                else:
                    key = known
            elif simple.issuperset(map(type, args)):
                key = prefix + repr(args)
                if len(key) > _MAX_PLAIN_KEY:
                    key = memo.key(*args, **kwargs)
            else:
                key = memo.key(*args, **kwargs)
            target = cache or get_cache()
            if target is not bound_to:
                codec = memo.codec_for(target)
                get = target.chain.reader(codec)
                policy = compute.policy_for(target)
                bound_to = target
            if not early:
                value = get(key, MISSING)
                if value is not MISSING:
                    return cast(R, value)
            chain, call = target.chain, functools.partial(func, *args, **kwargs)
            if early:
                miss = Miss(key, call, ttl, tag_tuple, persistent, codec or target.codec, policy)
                value = chain.guard.hit(miss)
                if value is not MISSING:
                    return cast(R, value)
            return chain.compute(key, call, ttl, tag_tuple, persistent, codec or target.codec, policy)

        def invalidate(*args: P.args, **kwargs: P.kwargs) -> bool:
            return (cache or get_cache()).delete(memo.key(*args, **kwargs))

        wrapper.__dict__.update(key=memo.key, invalidate=invalidate)
        return cast(CachedFunction[P, R], wrapper)

    return cast(_Decorator, decorate)
