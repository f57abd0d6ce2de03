"""``@tierkit.cached``: memoize a function in a cache, with keys stable across processes."""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, Self, TypeVar, cast, overload

from pydantic import TypeAdapter

from tierkit._adecorator import AsyncCachedFunction, cached_coroutine
from tierkit._cache import Cache, get_cache
from tierkit._chain import Invalidated
from tierkit._codec import AdapterCodec, Codec, JsonCodec
from tierkit._keys import MAX_PLAIN_KEY, SIMPLE, CallKeys, Receiver, method_receiver
from tierkit._methods import CachedMethod
from tierkit._policy import PLAIN, Compute, Miss
from tierkit._types import MISSING
from tierkit.errors import ConfigError

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
S = TypeVar("S")

_KEY_MEMO_SIZE = 4096
"""Remembered key strings per @cached function (single str/int argument calls)."""
_NO_ARGUMENT = object()
"""A call not keyed by one argument alone (its type is in no memo)."""
log = logging.getLogger("tierkit")


class CachedFunction(Protocol[P, R]):
    """What ``@cached`` returns: the function, plus ``.key()``, ``.invalidate()``, ``.invalidate_all()``."""

    __wrapped__: Callable[P, R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of a call: the same for ``f(1)``, ``f(x=1)`` and defaults spelled out."""
        ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of this call."""
        ...

    def invalidate_all(self) -> Invalidated:
        """Forget every cached result of this function, of every ``version=`` and code hash."""
        ...

    # A method, read from an instance, is bound: `repo.load(1)`, `repo.load.key(1)`.
    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None, /) -> Self: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, Q], R], obj: S, owner: type[Any] | None = None, /
    ) -> CachedFunction[Q, R]: ...


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

    def __init__(self, func: Callable[P, R], keys: CallKeys[P], codec: str | None = None) -> None:
        self.func = func
        self.keys = keys
        self.prefix = keys.prefix
        self.arity = keys.arity
        """Calls with exactly this many positional arguments are keyed ``prefix + repr(args)``."""
        self.key: Callable[P, str] = keys.key
        self.codec = codec
        """The codec named by ``@cached(codec=...)``; None: the cache's own."""

    @functools.cached_property
    def adapter(self) -> TypeAdapter[Any] | None:
        """The return annotation's TypeAdapter; None without an annotation pydantic can handle."""
        return _return_adapter(self.func, self.keys.name)

    def codec_for(self, cache: Cache) -> Codec:
        """The codec for ``cache``'s byte tiers: a TypeAdapter from the return annotation, if any."""
        codec = cache.codecs.bare(self.codec or cache.settings.codec)
        if not codec.stores_bytes and any(slot.holds_bytes for slot in cache.chain.slots):
            raise ConfigError(
                f"@cached(codec={codec.name!r}) on {self.func.__qualname__}: that codec keeps values as "
                f"objects, and the cache has byte tiers ({', '.join(cache.tiers)})"
            )
        if self.adapter is not None and isinstance(codec, JsonCodec):
            codec = AdapterCodec(self.adapter, codec)
        return cache.codecs.framed(codec)

    def invalidate_all(self, cache: Cache | None) -> Invalidated:
        return (cache or get_cache()).invalidate(prefix=self.keys.base)


def _return_adapter(func: Callable[..., Any], name: str) -> TypeAdapter[Any] | None:
    """A TypeAdapter for ``func``'s return annotation; None if it has none pydantic can handle.

    An annotation is a hint: one pydantic builds no schema for (a Django model,
    ``pd.DataFrame``) leaves values to the configured codec instead of failing.
    """
    try:
        annotation = typing.get_type_hints(func).get("return")
    except Exception:  # unresolvable forward reference: fall back to the generic codec
        return None
    if annotation is None or annotation is type(None):
        return None
    try:
        return TypeAdapter(annotation)
    except Exception as exc:  # PydanticSchemaGenerationError and kin: never a reason to fail a call
        log.debug("@cached %s: no pydantic schema for its return annotation (%s): using the codec", name, exc)
        return None


def _unbound(key: str, default: Any) -> Any:  # pragma: no cover - replaced on first call
    raise RuntimeError("not bound to a cache")


def cached(
    ttl: float | None = None,
    *,
    tags: Iterable[str] = (),
    persistent: bool = False,
    cache: Cache | None = None,
    namespace: str | None = None,
    key: Callable[..., Any] | None = None,
    ignore: Iterable[str] = (),
    version: str | int | None = None,
    code_hash: bool = False,
    codec: str | None = None,
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
    annotation pydantic can handle, byte tiers store the value through a
    ``TypeAdapter`` and hand back that type (other annotations are ignored).
    Concurrent calls with the same arguments run the function once.

    Keys (docs/keys.md): ``key`` is called with the call's arguments, as the
    function's own signature takes them, and its result replaces them in the
    key; ``ignore`` names arguments left out.  Methods leave ``self`` out
    unless its class has a ``__cache_key__()`` method; classmethods key
    ``cls`` by its qualified name.  ``version`` joins every key (change it to
    stop serving older results); ``code_hash=True`` joins a digest of the
    function's bytecode, so editing the body does the same.  ``f.invalidate_all()``
    drops every entry of the function.  An argument that cannot be keyed is a
    ``TypeError`` naming the function and the argument.

    On an ``async def`` the awaited result is cached and the wrapper is a
    coroutine function (see docs/async.md); generators cannot be cached.

    ``codec`` names the codec this function's results go through (default:
    the cache's ``codec`` setting), e.g. ``"pickle"`` for one function whose
    results JSON cannot hold (see docs/values.md).

    ``lock``, ``lock_timeout``, ``stale_ttl``, ``soft_timeout`` and
    ``early_refresh`` are :meth:`Cache.get_or_set`'s (docs/stampede.md).
    """
    tag_tuple = tuple(tags)
    compute = Compute(lock, lock_timeout, stale_ttl, soft_timeout, early_refresh)

    def decorate(func: Any) -> Any:
        return _decorate(func, wrap, namespace, key, ignore, version, code_hash, codec)

    def wrap(func: Callable[P, R], memo: _Memo[P, R]) -> Any:
        if inspect.iscoroutinefunction(func):
            return cached_coroutine(func, memo, ttl, tag_tuple, persistent, cache, compute)  # type: ignore[arg-type]
        return _cached_function(func, memo, ttl, tag_tuple, persistent, cache, compute)

    return cast(_Decorator, decorate)


def _cached_function(
    func: Callable[P, R],
    memo: _Memo[P, R],
    ttl: float | None,
    tag_tuple: tuple[str, ...],
    persistent: bool,
    cache: Cache | None,
    compute: Compute,
) -> CachedFunction[P, R]:
    """The wrapper of a plain (not ``async``) function; its hit path is the whole cost of a hit."""
    prefix, arity, simple = memo.prefix, memo.arity, SIMPLE
    method_arity, keyed_by_method = memo.keys.method_arity, memo.keys.keyed_by_method
    single: dict[type, dict[Any, str]] = {str: {}, int: {}}  # exact types: 1, 1.0, True differ
    # Per-cache state lives in closure cells: cheaper to read than attributes.
    bound_to: Cache | None = None
    get: Callable[[str, Any], Any] = _unbound
    bound_codec: Codec | None = None
    policy = PLAIN
    early = compute.early_refresh is not None

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        # The hit path is written out here, not delegated: it is the whole cost of a hit.
        nonlocal bound_to, get, bound_codec, policy
        count = len(args)
        if count == arity == 1 and not kwargs:
            sole = args[0]
        elif count == method_arity == 2 and not kwargs and not keyed_by_method.get(type(args[0]), True):
            sole = args[1]  # obj.method(x), obj not keyed: keyed like f(x)
        else:
            sole = _NO_ARGUMENT
        if type(sole) in single:
            # one str or int argument, the commonest shape: its key string is remembered
            memo_of_type = single[type(sole)]
            known = memo_of_type.get(sole)
            if known is None:
                key = memo.key(*args, **kwargs)
                if len(memo_of_type) < _KEY_MEMO_SIZE:
                    memo_of_type[sole] = key
            else:
                key = known
        elif count == arity and not kwargs and simple.issuperset(map(type, args)):
            key = prefix + repr(args)
            if len(key) > MAX_PLAIN_KEY:
                key = memo.key(*args, **kwargs)
        else:
            key = memo.key(*args, **kwargs)
        target = cache or get_cache()
        if target is not bound_to:
            bound_codec = memo.codec_for(target)
            get = target.chain.reader(bound_codec)
            policy = compute.policy_for(target)
            bound_to = target
        if not early:
            value = get(key, MISSING)
            if value is not MISSING:
                return cast(R, value)
        chain, call = target.chain, functools.partial(func, *args, **kwargs)
        if early:
            miss = Miss(key, call, ttl, tag_tuple, persistent, bound_codec or target.codec, policy)
            value = chain.guard.hit(miss)
            if value is not MISSING:
                return cast(R, value)
        return chain.compute(key, call, ttl, tag_tuple, persistent, bound_codec or target.codec, policy)

    def invalidate(*args: P.args, **kwargs: P.kwargs) -> bool:
        return (cache or get_cache()).delete(memo.key(*args, **kwargs))

    wrapper.__dict__.update(
        key=memo.key, invalidate=invalidate, invalidate_all=lambda: memo.invalidate_all(cache)
    )
    return cast(CachedFunction[P, R], wrapper)


def _decorate(
    func: Any,
    wrap: Callable[[Any, _Memo[Any, Any]], Any],
    namespace: str | None,
    key: Callable[..., Any] | None,
    ignore: Iterable[str],
    version: str | int | None,
    code_hash: bool,
    codec: str | None,
) -> Any:
    """``func`` (a function, or one in a ``classmethod``/``staticmethod``) wrapped by ``wrap``
    with its key derivation, and rebound the way it was."""
    target, receiver, binds = _method_parts(func)
    _refuse_uncacheable(target)
    if binds is None:
        receiver = binds = method_receiver(target)
    keys = CallKeys(
        target,
        namespace=namespace,
        key=key,
        ignore=ignore,
        version=version,
        code_hash=code_hash,
        receiver=receiver,
    )
    wrapper = wrap(target, _Memo(target, keys, codec))
    if binds == "static":
        return staticmethod(wrapper)
    return wrapper if binds is None else CachedMethod(wrapper, binds)


def _method_parts(func: Any) -> tuple[Any, Receiver | None, Receiver | Literal["static"] | None]:
    """The function in a ``classmethod``/``staticmethod``, how its first argument is keyed, what it binds."""
    if isinstance(func, classmethod):
        return func.__func__, "cls", "cls"
    if isinstance(func, staticmethod):
        return func.__func__, None, "static"
    return func, None, None
