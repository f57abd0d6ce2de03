"""How ``@cached`` turns a call into a cache key, the same in every process.

A key is ``<name>:[v<version>:][c<code hash>:]<arguments>``: ``<name>`` is the
function's module and qualified name (or ``namespace=``), so every entry of a
function starts with ``<name>:`` and can be dropped by prefix.  ``<arguments>``
is the ``repr`` of the argument tuple when it holds only ``str``, ``int``,
``float``, ``bool`` and ``None`` (short enough to read), else ``#`` and a
BLAKE2b digest of a canonical JSON form in which lists, tuples, sets, numpy
arrays, pandas objects and objects with ``__cache_key__()`` are told apart.

numpy and pandas are never imported here: an argument can only be an array or
a frame if the application imported them, so ``sys.modules`` is asked.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any, Generic, Literal, ParamSpec

import orjson

from tierkit._codec import TAG, JsonCodec

P = ParamSpec("P")

SIMPLE = frozenset({str, int, float, bool, type(None)})
"""Argument types a key shows as they are (``repr``), not digested."""
MAX_PLAIN_KEY = 200
"""Longest key written out in plain text; longer argument tuples are digested."""

Receiver = Literal["self", "cls"]
_json = JsonCodec()
_KEYABLE = (
    "JSON types, tuple, set, frozenset, bytes, datetime/date/time, timedelta, Decimal, UUID, Enum, "
    "dataclasses, pydantic models, namedtuples, numpy arrays, pandas DataFrame/Series/Index, objects "
    "with a __cache_key__() method"
)


def method_receiver(func: Callable[..., Any]) -> Receiver | None:
    """``"self"``/``"cls"`` for a function defined in a class body whose first parameter has that name."""
    owner, _, _ = getattr(func, "__qualname__", "").rpartition(".")
    if not owner or owner.endswith("<locals>"):
        return None
    first = next(iter(inspect.signature(func).parameters.values()), None)
    if first is None or first.kind not in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD):
        return None
    return first.name if first.name in ("self", "cls") else None  # type: ignore[return-value]


class CallKeys(Generic[P]):
    """The key derivation of one ``@cached`` function, fixed at decoration time.

    ``receiver`` says how the first argument of a method is keyed: ``"self"``
    by its ``__cache_key__()`` if its class has one, else left out; ``"cls"``
    by the class's module and qualified name.
    """

    def __init__(
        self,
        func: Callable[P, Any],
        *,
        namespace: str | None = None,
        key: Callable[P, Any] | None = None,
        ignore: Iterable[str] = (),
        version: str | int | None = None,
        code_hash: bool = False,
        receiver: Receiver | None = None,
    ) -> None:
        if hasattr(func, "__qualname__"):
            self.name = _dotted(func)
        elif namespace:
            self.name = namespace
        else:  # functools.partial, a callable object: its class would name every instance alike
            raise TypeError(f"@cached needs namespace= to key {func!r}, which has no __qualname__")
        self.signature = inspect.signature(func)
        names = tuple(self.signature.parameters)
        ignored = _checked_ignore(self.name, names, ignore)
        if key is not None and not callable(key):
            raise TypeError(f"@cached {self.name}: key= must be a callable, got {type(key).__name__}")
        if key is not None and ignored:
            raise TypeError(f"@cached {self.name}: pass key= or ignore=, not both (key= decides alone)")
        if version is not None and (type(version) not in (str, int) or version == ""):
            raise TypeError(
                f"@cached {self.name}: version= must be a non-empty str or an int, got {version!r}"
            )
        self.custom = key
        self.receiver = None if receiver in ignored else receiver
        self.kept = tuple(i for i, n in enumerate(names) if n not in ignored) if ignored else None
        self.kept_names = tuple(n for n in names if n not in ignored)
        params = self.signature.parameters.values()
        positional = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        self.positional = len(names) if positional else -1
        """Calls with exactly this many positional arguments need no signature binding."""
        plain = key is None and not ignored and self.receiver is None
        self.arity = self.positional if plain else -1
        """Like ``positional``, for calls whose key is the prefix plus ``repr(args)``; -1 if none is."""
        prefix = f"{namespace or self.name}:"
        if version is not None:
            prefix += f"v{version}:"
        if code_hash:
            prefix += f"c{code_digest(func, self.name)}:"
        self.prefix = prefix
        self.base = f"{namespace or self.name}:"
        """What every key of this function starts with, whatever its version or code."""
        self.keyed_by_method: dict[type, bool] = {}
        """Whether a receiver class has ``__cache_key__`` (a miss of ``getattr`` costs an exception);
        filled by :meth:`key`, read by ``@cached``'s hit path."""
        plain_method = key is None and not ignored and self.receiver == "self"
        self.method_arity = self.positional if plain_method else -2
        """Positional calls of a method with this many arguments, its receiver not keyed, key like
        a function of the other arguments (the fast path of :meth:`key`)."""

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of a call: the same for ``f(1)``, ``f(x=1)`` and defaults spelled out."""
        if len(args) == self.method_arity and not kwargs and not self.keyed_by_method.get(type(args[0]), 1):
            rest = args[1:]  # the commonest method call: self left out, plain arguments
            if SIMPLE.issuperset(map(type, rest)):
                text = repr(rest)
                if len(text) <= MAX_PLAIN_KEY:
                    return self.prefix + text
        values: tuple[Any, ...]
        if self.custom is not None:
            values = (self.custom(*args, **kwargs),)
        else:
            values = args
            if kwargs or len(args) != self.positional:
                bound = self.signature.bind(*args, **kwargs)
                bound.apply_defaults()
                values = tuple(bound.arguments.values())
            if self.kept is not None:
                values = tuple(values[i] for i in self.kept)
            if self.receiver is not None:
                values = self._identity(values[0]) + values[1:]
        if SIMPLE.issuperset(map(type, values)):
            text = repr(values)
            if len(text) <= MAX_PLAIN_KEY:
                return self.prefix + text
        try:
            body = canonical(values)
        except TypeError as exc:
            raise TypeError(self._unkeyable(values, exc)) from None
        return f"{self.prefix}#{hashlib.blake2b(body, digest_size=16).hexdigest()}"

    def _identity(self, obj: Any) -> tuple[Any, ...]:
        """What the first argument of a method adds to its key."""
        if self.receiver == "cls":
            return (_dotted(obj if isinstance(obj, type) else type(obj)),)
        kind = type(obj)
        keyed = self.keyed_by_method.get(kind)
        if keyed is None:
            keyed = self.keyed_by_method[kind] = getattr(kind, "__cache_key__", None) is not None
        return (obj.__cache_key__(),) if keyed else ()

    def _unkeyable(self, values: tuple[Any, ...], exc: TypeError) -> str:
        """Which argument could not be keyed, and what to do about it."""
        if self.custom is not None:
            names: tuple[str, ...] = ("(the value key= returned)",)
        elif self.receiver is not None and len(values) < len(self.kept_names):
            names = self.kept_names[1:]
        else:
            names = self.kept_names
        name = next((n for n, v in zip(names, values, strict=False) if not _keyable(v)), "?")
        cause = exc.__cause__
        what = f"holds a {_dotted(type(cause.value))}, which" if isinstance(cause, _Unkeyable) else f"({exc})"
        return (
            f"@cached {self.name}: argument {name!r} {what} cannot be part of a cache key (keys are built "
            f"from {_KEYABLE}): leave it out with ignore=[{name!r}], derive the key with key=, or give its "
            "class a __cache_key__() method"
        )


def _checked_ignore(func_name: str, names: tuple[str, ...], ignore: Iterable[str]) -> frozenset[str]:
    if isinstance(ignore, str):
        raise TypeError(f"@cached {func_name}: ignore= takes a list of argument names, got {ignore!r}")
    ignored = frozenset(ignore)
    unknown = sorted(ignored.difference(names))
    if unknown:
        raise TypeError(
            f"@cached {func_name}: ignore= names {', '.join(map(repr, unknown))}, which "
            f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of it "
            f"(parameters: {', '.join(names) or 'none'})"
        )
    return ignored


# -- canonical argument bytes ---------------------------------------------------------------------


class _Unkeyable(TypeError):
    """Raised for the first value that cannot be keyed; orjson keeps it as ``__cause__``."""

    def __init__(self, value: Any) -> None:
        super().__init__(type(value).__name__)
        self.value = value


def canonical(values: Any) -> bytes:
    """Deterministic bytes for hashing arguments: containers tagged with their type, sets sorted."""
    return orjson.dumps(_typed(values), default=_envelope, option=orjson.OPT_SORT_KEYS)


def _keyable(value: Any) -> bool:
    try:
        canonical(value)
    except TypeError:
        return False
    return True


def _typed(value: Any) -> Any:
    """``value`` with every list, tuple, set and frozenset tagged, so ``[1]``, ``(1,)`` and ``{1}`` differ."""
    if isinstance(value, set | frozenset):
        return {TAG: type(value).__name__, "v": sorted((_typed(v) for v in value), key=canonical)}
    if isinstance(value, list | tuple):
        return {TAG: type(value).__name__, "v": [_typed(v) for v in value]}
    if isinstance(value, dict):
        return {f"{type(k).__name__}:{k!r}": _typed(v) for k, v in value.items()}
    if type(value) in SIMPLE:
        return value
    return _by_content(value)


def _by_content(value: Any) -> Any:
    """An object with ``__cache_key__()``, a numpy array or a pandas object, as JSON; others unchanged."""
    kind = type(value)
    if getattr(kind, "__cache_key__", None) is not None:
        return {TAG: "key", "c": _dotted(kind), "v": _typed(value.__cache_key__())}
    numpy = sys.modules.get("numpy")
    if numpy is not None and (kind is numpy.ndarray or isinstance(value, numpy.generic)):
        return _array(numpy.asarray(value), _dotted(kind))
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame | pandas.Series | pandas.Index):
        return _pandas(pandas, value)
    return value


def _array(array: Any, kind: str) -> dict[str, Any]:
    """dtype, shape and a digest of the bytes (the elements themselves for object arrays)."""
    described = {TAG: kind, "dtype": str(array.dtype.descr), "shape": list(array.shape)}
    if array.dtype.hasobject:  # the bytes are pointers: key the objects
        return described | {"v": _typed(array.tolist())}
    data = array.tobytes(order="C")
    return described | {"v": hashlib.blake2b(data, digest_size=16).hexdigest()}


def _pandas(pandas: Any, value: Any) -> dict[str, Any]:
    """Labels, dtypes and pandas' own stable row hashes (values and index) of a frame, series or index."""
    labels: dict[str, Any]
    if isinstance(value, pandas.DataFrame):
        labels = {"columns": [repr(c) for c in value.columns], "dtypes": [str(t) for t in value.dtypes]}
    else:
        labels = {"name": repr(value.name), "dtype": str(value.dtype)}
    rows = pandas.util.hash_pandas_object(value, index=True).to_numpy()
    index = value if isinstance(value, pandas.Index) else value.index
    return {
        TAG: _dotted(type(value)),
        "shape": list(value.shape),
        "index": [str(index.dtype), [repr(n) for n in index.names]],
        **labels,
        "v": hashlib.blake2b(rows.tobytes(), digest_size=16).hexdigest(),
    }


def _envelope(value: Any) -> Any:
    try:
        return orjson.loads(_json.encode("argument", value)[1:])
    except TypeError:
        raise _Unkeyable(value) from None


def _dotted(obj: Any) -> str:
    """A class's (or function's) module and qualified name."""
    return f"{obj.__module__}.{obj.__qualname__}"


# -- code hashing ---------------------------------------------------------------------------------


def code_digest(func: Callable[..., Any], name: str) -> str:
    """A digest of what ``func`` does: bytecode, names and constants, nested functions included.

    Comments, blank lines, moving the function and the hash seed leave it unchanged; editing the
    body or the docstring, or another Python version, changes it.
    """
    code = getattr(inspect.unwrap(func), "__code__", None)
    if not isinstance(code, types.CodeType):
        raise TypeError(f"@cached {name}: code_hash=True needs a Python function, it has no __code__")
    return hashlib.blake2b(repr(_code_parts(code)).encode(), digest_size=6).hexdigest()


def _code_parts(code: types.CodeType) -> tuple[Any, ...]:
    return (code.co_code.hex(), code.co_names, tuple(_const(c) for c in code.co_consts))


def _const(const: Any) -> Any:
    if isinstance(const, types.CodeType):
        return _code_parts(const)
    if isinstance(const, tuple):
        return tuple(_const(c) for c in const)
    if isinstance(const, frozenset):  # `x in {"a", "b"}`: iteration order follows the hash seed
        return ("frozenset", sorted(repr(_const(c)) for c in const))
    return repr(const)
