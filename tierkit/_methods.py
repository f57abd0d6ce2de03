"""``@cached`` on methods: ``obj.method.key(1)`` gets the receiver the way ``obj.method(1)`` does.

A function's attributes (``key``, ``invalidate`` …) are not bound like the
function itself, so a cached method is wrapped in a descriptor whose bound
form is a :class:`functools.partial` passing the receiver to the call and to
those helpers alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

_TAKE_ARGUMENTS = frozenset({"key", "invalidate", "ainvalidate"})


class BoundCached(functools.partial[Any]):
    """A cached method bound to its instance (or class): ``key``/``invalidate`` receive it too."""

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.func, name)
        if name in _TAKE_ARGUMENTS:
            return functools.partial(attribute, *self.args)
        return attribute


class CachedMethod:
    """Binds the wrapper of a method like a function (``"self"``) or a classmethod (``"cls"``) does.

    Through the class, an instance method is the plain wrapper: ``Repo.load(repo, 1)``,
    ``Repo.load.key(repo, 1)``.
    """

    def __init__(self, wrapper: Callable[..., Any], binds: Literal["self", "cls"]) -> None:
        self._wrapper = wrapper
        self._binds = binds
        functools.update_wrapper(self, wrapper, updated=())

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if self._binds == "cls":
            return BoundCached(self._wrapper, owner if owner is not None else type(obj))
        if obj is None:
            return self._wrapper
        return BoundCached(self._wrapper, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A call on the undecorated descriptor (``classmethod`` over ``@cached`` since Python 3.13)."""
        return self._wrapper(*args, **kwargs)
