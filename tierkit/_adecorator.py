"""``@tierkit.cached`` on an ``async def``: the awaited result is cached, never the coroutine."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, Self, TypeVar, cast, overload

from tierkit._achain import AsyncGet
from tierkit._cache import Cache, get_cache
from tierkit._chain import Invalidated
from tierkit._codec import Codec
from tierkit._policy import PLAIN, Compute, Miss
from tierkit._types import MISSING

if TYPE_CHECKING:
    from tierkit._decorator import _Memo

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
S = TypeVar("S")


class AsyncCachedFunction(Protocol[P, R]):
    """What ``@cached`` returns for an ``async def``: awaitable calls, ``.key()``, ``.ainvalidate()``."""

    __wrapped__: Callable[P, Awaitable[R]]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of a call (the same as the sync decorator's)."""
        ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of this call, from sync code."""
        ...

    async def ainvalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of this call, awaited."""
        ...

    def invalidate_all(self) -> Invalidated:
        """Forget every cached result of this function, from sync code."""
        ...

    async def ainvalidate_all(self) -> Invalidated:
        """Forget every cached result of this function, awaited."""
        ...

    # A method, read from an instance, is bound: `await repo.load(1)`, `repo.load.key(1)`.
    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None, /) -> Self: ...

    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[S, Q], R], obj: S, owner: type[Any] | None = None, /
    ) -> AsyncCachedFunction[Q, R]: ...


def cached_coroutine(
    func: Callable[P, Awaitable[R]],
    memo: _Memo[P, Awaitable[R]],
    ttl: float | None,
    tags: tuple[str, ...],
    persistent: bool,
    cache: Cache | None,
    compute: Compute,
) -> AsyncCachedFunction[P, R]:
    """The async wrapper: a hit is the cache's async read; a miss is one shared computation."""
    bound_to: Cache | None = None
    get: AsyncGet | None = None
    codec: Codec | None = None
    policy = PLAIN
    early = compute.early_refresh is not None

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        nonlocal bound_to, get, codec, policy
        key = memo.key(*args, **kwargs)
        target = cache or get_cache()
        if target is not bound_to or get is None:
            codec = memo.codec_for(target)
            get = target.achain.reader(codec)
            policy = compute.policy_for(target)
            bound_to = target
        achain, call = target.achain, functools.partial(func, *args, **kwargs)
        if early:
            value = await achain.guard.hit(
                Miss(key, call, ttl, tags, persistent, codec or target.codec, policy)
            )
        else:
            value = await get(key, MISSING)
        if value is not MISSING:
            return cast(R, value)
        result = await achain.compute(key, call, ttl, tags, persistent, codec or target.codec, policy)
        return cast(R, result)

    def invalidate(*args: P.args, **kwargs: P.kwargs) -> bool:
        return (cache or get_cache()).delete(memo.key(*args, **kwargs))

    async def ainvalidate(*args: P.args, **kwargs: P.kwargs) -> bool:
        return await (cache or get_cache()).adelete(memo.key(*args, **kwargs))

    async def ainvalidate_all() -> Invalidated:
        return await (cache or get_cache()).ainvalidate(prefix=memo.keys.base)

    wrapper.__dict__.update(
        key=memo.key,
        invalidate=invalidate,
        ainvalidate=ainvalidate,
        invalidate_all=lambda: memo.invalidate_all(cache),
        ainvalidate_all=ainvalidate_all,
    )
    return cast(AsyncCachedFunction[P, R], wrapper)
