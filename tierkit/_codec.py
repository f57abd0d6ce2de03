"""Value codecs: how the chain turns a value into bytes for byte tiers and back.

A payload says how to decode it by its first byte:

- plain JSON (orjson, no prefix; JSON never starts with the letters below): the
  value needed no envelope, and decoding is one ``orjson.loads`` — other
  programs reading the same Redis can read it too.
- ``e`` JSON with an envelope: values orjson would change (tuple, set, bytes,
  datetime, Decimal, UUID, enums, pydantic models, dataclasses …) are tagged
  ``{"\\u0000t": tag, "v": ...}`` so the round trip is exact.
- ``p`` pickle signed with HMAC-SHA256 (opt-in; a tampered payload is rejected).
- ``a`` JSON written through a pydantic ``TypeAdapter`` (``@cached`` functions
  with a return annotation); a reader without the adapter decodes plain JSON.
- ``b`` JSON with an envelope and binary buffers beside it (numpy arrays, pandas
  frames: :mod:`tierkit._data`): ``b``, the JSON's length (4 bytes, little
  endian), ``[tree, [buffer lengths]]``, then the buffers.

Stored bytes are untrusted (anyone who can write to a shared Redis can write
them): decoding never imports a module and rebuilds only classes on an
allow-list — those this process encoded itself and those the application
registered with :func:`register_types`.  Instances are rebuilt the way pickle
does it (``cls.__new__`` and the saved attributes), so ``__init__``,
``__post_init__`` and validators do not run twice.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import enum
import gc
import hashlib
import hmac
import math
import pickle
import re
import struct
import typing
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, SecretStr, TypeAdapter

from tierkit._types import Parts
from tierkit.errors import CodecError, ConfigError

if TYPE_CHECKING:
    from tierkit._config import Settings

TAG = "\x00t"
_ENVELOPE = ord("e")
_PICKLE = ord("p")
_ADAPTER = ord("a")
_BUFFERS = ord("b")
_MARKERS = frozenset((_ENVELOPE, _PICKLE, _ADAPTER, _BUFFERS))
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_MAX_DEPTH = 254  # orjson refuses deeper JSON


class Codec:
    """How the chain turns values into bytes for byte tiers and back: the codec contract.

    A codec is a plugin like a tier: a class registered under the
    ``tierkit.codecs`` entry-point group by its :attr:`name`, chosen per cache
    (``codec = "name"``) or per function (``@cached(codec="name")``).  It must
    be thread-safe: one instance serves every thread of a cache.

    - :meth:`encode` returns the payload, or raises ``TypeError`` naming the
      key and the type for a value it does not accept — the value is then
      refused by every chain, whatever tiers it has (:meth:`check`).
    - :meth:`decode` gets bytes from a shared store, which are untrusted: it
      must never import a module or run code chosen by the data, and raises
      :class:`~tierkit.errors.CodecError` for bytes it cannot read
      (``corrupt=False`` when the bytes are fine but this process cannot
      rebuild the value: the entry is then a miss, not removed).
    """

    name: ClassVar[str] = ""
    """The name the codec is registered and configured under."""

    stores_bytes: ClassVar[bool] = True
    """False only for the ``objects`` codec: values stay Python objects, byte tiers cannot run."""

    keeps_buffers: bool = False
    """True if :meth:`decode` may be handed a ``bytearray`` payload to keep: the value it
    returns may then use that memory instead of a copy (a tier's ``tierkit_get_buffer``
    answer is read only for such a codec).  It must still accept ``bytes``."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Codec:
        """The codec for a cache built from ``settings`` (default: ``cls()``); raise ``ConfigError``."""
        return cls()

    def encode(self, key: str, value: Any) -> bytes:
        """Return the payload for ``value``; raise ``TypeError`` naming ``key`` if it is not accepted."""
        raise NotImplementedError

    def encode_parts(self, key: str, value: Any) -> bytes | Parts:
        """The payload of :meth:`encode`, or the same bytes in pieces (:class:`~tierkit.Parts`).

        The chain calls it instead of :meth:`encode` when a tier it writes to takes
        pieces (``tierkit_set_parts``), so that a large buffer reaches that tier
        without being copied into one ``bytes``.  The default returns :meth:`encode`'s.
        """
        return self.encode(key, value)

    def decode(self, payload: bytes) -> Any:
        """Return the value; raise :class:`~tierkit.errors.CodecError` on bytes it cannot read."""
        raise NotImplementedError

    def decode_many(self, payloads: Sequence[bytes]) -> list[Any]:
        """The values of ``payloads``, in order; raise :class:`~tierkit.errors.CodecError` if any is bad.

        ``Cache.get_many`` decodes a tier's batch with it; after a
        ``CodecError`` it decodes that batch one payload at a time with
        :meth:`decode`, to drop only the bad ones.  The default calls
        :meth:`decode` for each; override it only to do the same for less.
        """
        decode = self.decode
        return [decode(payload) for payload in payloads]

    def check(self, key: str, value: Any) -> None:
        """Raise the ``TypeError`` :meth:`encode` would raise, else nothing.

        A chain without byte tiers calls it on every write, so that the same
        values are accepted with and without Redis.  The default encodes and
        throws the payload away; override it with something cheaper.
        """
        self.encode(key, value)


# -- the allow-list -----------------------------------------------------------------------------

_ALLOWED: dict[str, tuple[type, str]] = {}
"""Classes decoding may rebuild: class path (``module:qualname``) → (class, tag)."""


def register_types(*classes: type) -> None:
    """Allow the JSON codec to rebuild instances of ``classes`` read from a byte tier.

    A process may rebuild the Enum, dataclass, pydantic model and namedtuple
    classes it encoded itself; classes only *other* processes write into a
    shared Redis or cache directory must be registered here, at start-up.
    The Enum, dataclass, model and namedtuple classes named in the type hints
    of a registered dataclass or model are registered with it.  Stored data
    never makes the codec import a module: a class not allowed is a miss.

    Raises ``TypeError`` for anything that is not such a class.
    """
    for cls in classes:
        if _class_tag(cls) is None:
            raise TypeError(
                f"register_types: {_dotted(cls) if isinstance(cls, type) else repr(cls)} is not an "
                "Enum, dataclass, pydantic model or namedtuple class"
            )
        for found, tag in _with_hinted_classes(cls):
            _allow(found, tag)


def _class_tag(cls: Any) -> str | None:
    """The envelope tag for instances of ``cls``, or None if the codec does not rebuild it."""
    if not isinstance(cls, type):
        return None
    if issubclass(cls, enum.Flag):
        return "flag"
    if issubclass(cls, enum.Enum):
        return "enum"
    if issubclass(cls, BaseModel):
        return "model"
    if dataclasses.is_dataclass(cls) and not issubclass(cls, _BUILTIN_CONTAINERS):
        return "dataclass"
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return "namedtuple"
    return None


def _with_hinted_classes(cls: type) -> Iterator[tuple[type, str]]:
    """``cls`` and, recursively, the rebuildable classes its field annotations name, with their tags."""
    seen: set[type] = set()
    todo = [cls]
    while todo:
        current = todo.pop()
        tag = _class_tag(current)
        if current in seen or tag is None:
            continue
        seen.add(current)
        yield current, tag
        if tag in ("dataclass", "model", "namedtuple"):
            try:
                hints = typing.get_type_hints(current)
            except Exception:  # unresolvable forward references: register the class alone
                continue
            todo.extend(_classes_in(hints.values()))


def _classes_in(hints: Any) -> Iterator[type]:
    for hint in hints:
        if isinstance(hint, type):
            yield hint
        yield from _classes_in(typing.get_args(hint))


def _allow(cls: type, tag: str) -> str:
    """Put ``cls`` on the allow-list (the newest class of a path wins: Streamlit reruns redefine them)."""
    path = f"{cls.__module__}:{cls.__qualname__}"
    known = _ALLOWED.get(path)
    if known is None or known[0] is not cls:
        _ALLOWED[path] = (cls, tag)
    return path


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# -- encoding -----------------------------------------------------------------------------------

_BUILTIN_CONTAINERS = (dict, list, tuple, set, frozenset, str, bytes, int, float)
_SUPPORTED = (
    "supported: JSON types, tuple, set, frozenset, bytes, bytearray, datetime/date/time (naive, "
    "datetime.timezone or zoneinfo.ZoneInfo), timedelta, Decimal, UUID, complex, Enum, dataclasses, "
    "pydantic models, namedtuples, numpy arrays and scalars, pandas DataFrames and Series"
)


class _Refusal(Exception):
    """Raised inside the encoder; each container on the way up adds where it was."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.trail: list[tuple[Any, str]] = []  # (container, step to the child), innermost first


_TOO_DEEP = f"is nested too deeply: its JSON would exceed {_MAX_DEPTH} levels, the most orjson writes"


class JsonCodec(Codec):
    """orjson with an exact-round-trip envelope (the default codec).

    numpy arrays and scalars and pandas DataFrames and Series are accepted too
    (:mod:`tierkit._data`), their bytes beside the JSON: :meth:`encode_parts` gives
    them as views of the values' memory, and :meth:`decode` of a ``bytearray``
    returns arrays over its memory (the payload is handed over), not copies.
    """

    name = "json"
    keeps_buffers = True

    def check(self, key: str, value: Any) -> None:
        # What orjson writes on its own the envelope accepts; the rest takes the
        # envelope's walk, without building buffers (a big array is not copied).
        try:
            orjson.dumps(value, default=_refuse, option=_STRICT)
        except TypeError:
            try:
                _Encoder(checking=True).tree(value, 1)
            except _Refusal as refusal:
                raise TypeError(_refusal_message(key, value, refusal)) from None

    def encode(self, key: str, value: Any) -> bytes:
        payload = self.encode_parts(key, value)
        return payload.join() if isinstance(payload, Parts) else payload

    def encode_parts(self, key: str, value: Any) -> bytes | Parts:
        # Fast path: orjson alone, refusing every type it would not bring back
        # (datetime, dataclass, str/int/dict/list subclasses go to _refuse), if the
        # value holds exact JSON types only — what orjson still writes for other
        # types (tuple, UUID, Enum members, fragments) reads back as something else —
        # and no NaN or infinity, which orjson writes as null.
        try:
            body = orjson.dumps(value, default=_refuse, option=_STRICT)
        except TypeError:
            pass
        else:
            if _json_types_only(value) and (b"null" not in body or orjson.loads(body) == value):
                return body
        encoder = _Encoder()
        try:
            tree = encoder.tree(value, 1)
        except _Refusal as refusal:
            raise TypeError(_refusal_message(key, value, refusal)) from None
        buffers = encoder.buffers
        if buffers:
            head = orjson.dumps([tree, [b.nbytes for b in buffers]])
            # JSON may end in spaces: they put the first buffer at a multiple of _ALIGN, so that an
            # array decoded in place from a bytearray (aligned by malloc) is aligned too.
            head += b" " * (-(1 + _LENGTH.size + len(head)) % _ALIGN)
            return Parts([b"b" + _LENGTH.pack(len(head)) + head, *buffers])
        body = orjson.dumps(tree)
        return b"e" + body if encoder.tagged else body

    def decode_many(self, payloads: Sequence[bytes]) -> list[Any]:
        # Plain JSON all through (the common case): orjson.loads mapped over the batch, no call per
        # payload here.  A marker is a letter no JSON text starts with ('a', 'b', 'e', 'p'), so a
        # payload carrying one fails orjson.loads: that, or any other failure, sends the batch payload
        # by payload through decode (which reads the markers).
        try:
            return list(map(orjson.loads, payloads))
        except Exception:  # a marked, empty or corrupt payload: decode says which, and how
            pass
        return super().decode_many(payloads)

    def decode(self, payload: bytes) -> Any:
        try:
            fmt = payload[0]
            if fmt not in _MARKERS:
                return orjson.loads(payload)
            if fmt == _ADAPTER:
                return orjson.loads(payload[1:])
            if fmt == _ENVELOPE:
                return decode_tree(orjson.loads(payload[1:]), _NO_BUFFERS)
            if fmt == _BUFFERS:
                return _from_buffers(payload)
            if fmt == _PICKLE:
                raise CodecError("payload is signed pickle but this cache uses the JSON codec", corrupt=False)
        except CodecError:
            raise
        except Exception as exc:  # stored bytes are untrusted: whatever they make fail, they are corrupt
            raise CodecError(f"corrupt payload: {type(exc).__name__}: {exc}") from exc


_LENGTH = struct.Struct("<I")
_ALIGN = 64
_NO_BUFFERS: list[memoryview] = []


def _from_buffers(payload: bytes | bytearray) -> Any:
    """Decode a ``b`` payload: the buffers are views of ``payload``, not copies (writable ones of a
    ``bytearray``, which the decoded arrays may keep)."""
    view = memoryview(payload)
    (size,) = _LENGTH.unpack_from(view, 1)
    start = 1 + _LENGTH.size
    tree, lengths = orjson.loads(view[start : start + size])
    buffers = []
    offset = start + size
    for length in lengths:
        buffers.append(view[offset : offset + length])
        offset += length
    if offset != len(payload):
        raise CodecError("corrupt payload: buffer lengths do not add up")
    return decode_tree(tree, buffers)


_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _refuse(value: Any) -> Any:
    raise TypeError


_JSON_TYPES = frozenset((str, int, float, bool, type(None), list, dict))
_CONTAINERS = frozenset((list, dict))


def _json_types_only(value: Any) -> bool:
    """Whether ``value`` and everything in it is exactly of a JSON type (no subclass, no tuple).

    Level by level: one ``gc.get_referents`` call lists what a level's lists and
    dicts hold (their items; a str-keyed dict's values), one set of their types
    checks them, all in C — cheaper than decoding the JSON again and comparing,
    and, unlike that comparison, it sees that an ``IntEnum`` member is not an int.
    Dict keys need no look: orjson has already refused every key that is not
    exactly a ``str``.
    """
    level = [value]
    while True:
        kinds = {*map(type, level)}
        if not kinds <= _JSON_TYPES:
            return False
        if kinds.isdisjoint(_CONTAINERS):
            return True
        level = gc.get_referents(*level)


class _Encoder:
    """Builds the tree orjson serializes exactly; ``tagged`` says whether an envelope was needed."""

    __slots__ = ("buffers", "checking", "tagged")

    def __init__(self, *, checking: bool = False) -> None:
        self.tagged = False
        self.checking = checking
        """Only check that the value is accepted: no buffers are built."""
        self.buffers: list[memoryview] = []

    def add_buffer(self, data: Any) -> int:
        self.buffers.append(memoryview(data))
        return len(self.buffers) - 1

    def tag(self, tag: str, data: Any, cls: str | None = None) -> dict[str, Any]:
        self.tagged = True
        if cls is None:
            return {TAG: tag, "v": data}
        return {TAG: tag, "v": data, "c": cls}

    def tree(self, value: Any, depth: int) -> Any:
        """``value`` as JSON-ready data; ``depth`` is the JSON nesting level it lands at."""
        kind = type(value)
        if kind is str and _utf8(value):
            return value
        if kind is bool or value is None:
            return value
        if kind is int and _INT_MIN <= value <= _INT_MAX:
            return value
        if kind is float and math.isfinite(value):
            return value
        if depth >= _MAX_DEPTH:  # what follows is a container or an envelope: one level more at least
            raise _Refusal(_TOO_DEEP)
        if kind is list:
            return self.items(value, depth)
        if kind is dict:
            return self.mapping(value, depth, attributes=False)
        if kind is tuple:
            return self.tag("tuple", self.items(value, depth + 1))
        if kind is set or kind is frozenset:
            return self.tag(kind.__name__, self.members(value, depth + 1))
        leaf = _LEAVES.get(kind)
        if leaf is not None:
            tag, data = leaf(value)
            return self.tag(tag, data)
        try:
            return self.instance(value, depth)
        except _Refusal as refusal:
            if refusal.trail and refusal.trail[-1][0] is not value:  # built a dict of its attributes:
                refusal.trail[-1] = (value, refusal.trail[-1][1])  # a cycle goes through the instance
            raise

    def instance(self, value: Any, depth: int) -> Any:
        """An instance of an Enum, pydantic model, dataclass or namedtuple class (remembered as allowed)."""
        kind = type(value)
        tag = _class_tag(kind)
        if tag is None and _data_type(kind):
            return self.data(value, depth)
        if tag is None:
            raise _Refusal(f"of type {_dotted(kind)} is not supported by the JSON codec ({_SUPPORTED})")
        path = _allow(kind, tag)
        if tag == "enum":
            return self.tag(tag, value._name_, path)
        if tag == "flag":
            return self.tag(tag, int(value._value_), path)
        if tag == "namedtuple":
            if getattr(value, "__dict__", None):
                raise _Refusal(f"of type {_dotted(kind)} has attributes besides its fields")
            return self.tag(tag, self.items(value, depth + 1, kind._fields), path)
        if tag == "model":
            state = value.__getstate__()
            extra, private = state["__pydantic_extra__"], state["__pydantic_private__"]
            data = {
                "d": self.mapping(state["__dict__"], depth + 2),
                "x": None if extra is None else self.mapping(extra, depth + 2),
                "s": sorted(state["__pydantic_fields_set__"]),
                "p": None if private is None else self.mapping(private, depth + 2),
            }
            return self.tag(tag, data, path)
        attributes = {f.name: getattr(value, f.name, _UNSET) for f in dataclasses.fields(value)}
        attributes.update(getattr(value, "__dict__", {}))
        present = {name: item for name, item in attributes.items() if item is not _UNSET}
        return self.tag(tag, self.mapping(present, depth + 1), path)

    def data(self, value: Any, depth: int) -> Any:
        """A numpy or pandas value (:mod:`tierkit._data`, imported now)."""
        from tierkit import _data

        try:
            tag, data = _data.encode(
                value, None if self.checking else self.add_buffer, lambda v: self.tree(v, depth + 2)
            )
        except _data.Refused as refused:
            raise _Refusal(str(refused)) from None
        return self.tag(tag, data)

    def items(self, value: Any, depth: int, names: Sequence[str] = ()) -> list[Any]:
        out: list[Any] = []
        try:
            for item in value:
                out.append(self.tree(item, depth + 1))
        except _Refusal as refusal:
            i = len(out)
            refusal.trail.append((value, f".{names[i]}" if names else f"[{i}]"))
            raise
        return out

    def mapping(self, value: dict[Any, Any], depth: int, *, attributes: bool = True) -> Any:
        """A dict landing at ``depth``: attributes (``.name`` on errors) or a plain dict (``['name']``)."""
        if TAG not in value and all(type(k) is str and _utf8(k) for k in value):
            return self.fields(value, depth, attributes=attributes)
        return self.tag("dict", self.pairs(value, depth + 2))

    def fields(self, value: dict[str, Any], depth: int, *, attributes: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            for k, v in value.items():
                out[k] = self.tree(v, depth + 1)
        except _Refusal as refusal:
            refusal.trail.append((value, f".{k}" if attributes else f"[{_short(k)}]"))
            raise
        return out

    def pairs(self, value: dict[Any, Any], depth: int) -> list[list[Any]]:
        out: list[list[Any]] = []
        for k, v in value.items():
            try:
                key = self.tree(k, depth + 1)
            except _Refusal as refusal:
                refusal.trail.append((value, f"<key {len(out)}>"))
                raise
            try:
                out.append([key, self.tree(v, depth + 1)])
            except _Refusal as refusal:
                refusal.trail.append((value, f"[{_short(k)}]"))
                raise
        return out

    def members(self, value: Any, depth: int) -> list[Any]:
        out: list[Any] = []
        try:
            for item in value:
                out.append(self.tree(item, depth + 1))
        except _Refusal as refusal:
            refusal.trail.append((value, f"<member {len(out)}>"))
            raise
        return out


_UNSET: Any = object()


def _data_type(kind: type) -> bool:
    """A numpy or pandas type (a module name test: nothing is imported)."""
    return kind.__module__.partition(".")[0] in ("numpy", "pandas")


def _utf8(text: str) -> bool:
    """True if orjson can write ``text`` (no lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _short(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _tz(tzinfo: dt.tzinfo | None) -> Any:
    """``None``, a zone key, or ``[days, seconds, microseconds, name]`` of a fixed offset."""
    if tzinfo is None:
        return None
    if type(tzinfo) is ZoneInfo and tzinfo.key is not None:
        return tzinfo.key
    if type(tzinfo) is dt.timezone:
        offset, *name = tzinfo.__getinitargs__()  # type: ignore[attr-defined]
        return [offset.days, offset.seconds, offset.microseconds, *name]
    raise _Refusal(
        f"has a tzinfo of type {_dotted(type(tzinfo))}, which the JSON codec cannot restore "
        "(use zoneinfo.ZoneInfo or datetime.timezone)"
    )


def _clock(value: dt.datetime | dt.time) -> list[Any]:
    return [value.replace(tzinfo=None).isoformat(), _tz(value.tzinfo), value.fold]


_LEAVES: dict[type, Callable[[Any], tuple[str, Any]]] = {
    # str, int and float get here only when JSON cannot hold them: lone surrogates, > 64 bits, NaN/inf
    str: lambda v: ("str", _b64(v.encode("utf-8", "surrogatepass"))),
    int: lambda v: ("int", hex(v)),
    float: lambda v: ("float", repr(v)),
    bytes: lambda v: ("bytes", _b64(v)),
    bytearray: lambda v: ("bytearray", _b64(v)),
    dt.datetime: lambda v: ("datetime", _clock(v)),
    dt.date: lambda v: ("date", v.isoformat()),
    dt.time: lambda v: ("time", _clock(v)),
    dt.timedelta: lambda v: ("timedelta", [v.days, v.seconds, v.microseconds]),
    Decimal: lambda v: ("decimal", str(v)),
    uuid.UUID: lambda v: ("uuid", str(v)),
    complex: lambda v: ("complex", [repr(v.real), repr(v.imag)]),
}


def _refusal_message(key: str, value: Any, refusal: _Refusal) -> str:
    outward = refusal.trail[::-1]  # level i holds nodes[i]; steps[i] leads to level i + 1
    nodes = [container for container, _ in outward]
    steps = [step for _, step in outward]
    if refusal.reason is _TOO_DEEP:
        first_level: dict[int, int] = {}
        for level, node in enumerate(nodes):
            first = first_level.setdefault(id(node), level)
            if first != level:
                return (
                    f"cannot cache key {key!r}: {_path(steps[:level])} refers back to "
                    f"{_path(steps[:first])}: a circular reference, which JSON cannot store"
                )
    where = _path(steps)
    return (
        f"cannot cache key {key!r}: {where} {refusal.reason}; convert it, or configure "
        "codec='pickle' with a signing_key (or codec='objects' for a cache of memory tiers only)"
    )


def _path(steps: Sequence[str]) -> str:
    if len(steps) > 12:
        return "value" + "".join(steps[:6]) + "…" + "".join(steps[-4:])
    return "value" + "".join(steps)


# -- decoding -----------------------------------------------------------------------------------


def _decode_tz(data: Any) -> dt.tzinfo:
    if type(data) is str:
        return ZoneInfo(data)
    days, seconds, microseconds, *name = data
    return dt.timezone(dt.timedelta(days, seconds, microseconds), *name)


def _decode_datetime(data: list[Any]) -> dt.datetime:
    text, zone, fold = data
    value = dt.datetime.fromisoformat(text)
    if zone is not None:
        value = value.replace(tzinfo=_decode_tz(zone))
    return value.replace(fold=fold)


def _decode_time(data: list[Any]) -> dt.time:
    text, zone, fold = data
    return dt.time.fromisoformat(text).replace(tzinfo=None if zone is None else _decode_tz(zone), fold=fold)


def _decode_dataclass(cls: Any, data: dict[str, Any]) -> Any:
    obj = cls.__new__(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for name, value in data.items():
        if name in fields:
            object.__setattr__(obj, name, value)
        else:
            obj.__dict__[name] = value
    return obj


def _decode_model(cls: Any, data: dict[str, Any]) -> Any:
    obj = cls.__new__(cls)
    obj.__setstate__(
        {
            "__dict__": dict(data["d"]),
            "__pydantic_extra__": data["x"],
            "__pydantic_fields_set__": {str(name) for name in data["s"]},
            "__pydantic_private__": data["p"],
        }
    )
    return obj


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "str": lambda v: base64.b64decode(v).decode("utf-8", "surrogatepass"),
    "int": lambda v: int(v, 0),
    "float": float,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "dict": dict,
    "bytes": base64.b64decode,
    "bytearray": lambda v: bytearray(base64.b64decode(v)),
    "datetime": _decode_datetime,
    "date": dt.date.fromisoformat,
    "time": _decode_time,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "complex": lambda v: complex(float(v[0]), float(v[1])),
}
_CLASS_DECODERS: dict[str, Callable[[type, Any], Any]] = {
    "enum": lambda cls, name: cls._member_map_[name],  # type: ignore[attr-defined]
    "flag": lambda cls, value: cls(value),
    "model": _decode_model,
    "dataclass": _decode_dataclass,
    "namedtuple": tuple.__new__,
}
_DATA_TAGS = frozenset({"ndarray", "npscalar", "pandas"})
"""Tags of numpy and pandas values (:mod:`tierkit._data`)."""
_NESTED = frozenset({"tuple", "set", "frozenset", "dict", "model", "dataclass", "namedtuple"})


def decode_tree(node: Any, buffers: list[memoryview] = _NO_BUFFERS) -> Any:
    """Undo :meth:`_Encoder.tree` on a tree produced by ``orjson.loads``; ``buffers`` of a ``b`` payload."""
    kind = type(node)
    if kind is list:
        return [decode_tree(item, buffers) for item in node]
    if kind is not dict:
        return node
    tag = node.get(TAG)
    if tag is None:
        return {k: decode_tree(v, buffers) for k, v in node.items()}
    data = decode_tree(node["v"], buffers) if tag in _NESTED else node["v"]
    rebuild = _CLASS_DECODERS.get(tag)
    if rebuild is None:
        if tag in _DATA_TAGS:
            from tierkit import _data

            return _data.decode(tag, data, buffers)
        return _DECODERS[tag](data)
    path = node["c"]
    allowed = _ALLOWED.get(path)
    if allowed is None:
        module, _, qualname = str(path).partition(":")
        raise CodecError(
            f"the value is a {module}.{qualname}, a class this process has not been allowed to "
            f"rebuild: call tierkit.register_types({qualname}) at start-up (classes a process "
            "caches itself are allowed; stored data never makes tierkit import a module)",
            corrupt=False,
        )
    cls, expected = allowed
    if tag != expected:
        raise CodecError(f"corrupt payload: {path} is not stored as {tag!r}")
    return rebuild(cls, data)


# -- the pydantic TypeAdapter codec -------------------------------------------------------------


class AdapterCodec(Codec):
    """Encodes with a pydantic ``TypeAdapter`` built from a return annotation.

    Used only where it is exact: a value the annotation would not bring back
    equal and of the same types all the way down (one that does not fit it, a
    ``-> dict`` holding datetimes, tuples or IntEnums, an int in a
    ``dict[str, float]``) is written by the JSON codec instead, so nothing is lost.
    Only a value that codec cannot write either (an ``OrderedDict`` for
    ``-> dict``) comes back as the annotation's type, if it reads back equal.
    Fields are written and read by name, so models with aliases round-trip.
    """

    name = "json"

    def __init__(self, adapter: TypeAdapter[Any], fallback: Codec) -> None:
        self._adapter = adapter
        self._fallback = fallback

    def encode(self, key: str, value: Any) -> bytes:
        body, back = b"", _UNSET
        try:
            body = self._adapter.dump_json(value, warnings="error", by_alias=False)
            back = self._adapter.validate_json(body, by_alias=False, by_name=True)
        except Exception:
            pass
        if back is not _UNSET and _identical(back, value):
            return b"a" + body
        try:  # e.g. `-> dict` would bring datetimes back as str, tuples as lists
            return self._fallback.encode(key, value)
        except TypeError:
            if back is _UNSET or back != value:
                raise
            return b"a" + body

    def decode(self, payload: bytes) -> Any:
        if payload[:1] != b"a":
            return self._fallback.decode(payload)
        try:
            return self._adapter.validate_json(payload[1:], by_alias=False, by_name=True)
        except ValueError as exc:
            raise CodecError(f"payload does not match the annotation: {exc}") from exc


def _identical(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (``1 == 1.0 == True`` but they are not identical)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            _identical(ka, kb) and _identical(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, set | frozenset):
        types_in_b = {member: type(member) for member in b}
        return a == b and all(types_in_b.get(member) is type(member) for member in a)
    if isinstance(a, BaseModel):
        return a == b and _identical(a.__dict__, b.__dict__)
    if dataclasses.is_dataclass(a):
        return a == b and all(
            _identical(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    return bool(a == b)


# -- signed pickle ------------------------------------------------------------------------------

MIN_KEY_BYTES = 32
"""Bytes of secret material a pickle signing key must hold."""

KEY_HOWTO = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'

_EXAMPLE_KEYS = frozenset({b"change-me"})
"""Keys shown in tierkit's documentation: public, so never accepted."""

_HEX = re.compile(rb"(?:[0-9a-fA-F]{2})+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/_-]+={0,2}")
_MIN_DISTINCT = 16  # distinct byte values: 32 random bytes have ~30; 'aaaa…' or a repeated word has few


def key_material(key: bytes) -> bytes:
    """The secret bytes ``key`` stands for: decoded if written as hex or (URL-safe) base64, else itself."""
    if _HEX.fullmatch(key):
        return bytes.fromhex(key.decode())
    if _BASE64.fullmatch(key) and len(key.rstrip(b"=")) % 4 != 1:
        standard = key.rstrip(b"=").replace(b"-", b"+").replace(b"_", b"/")
        try:
            return base64.b64decode(standard + b"=" * (-len(standard) % 4), validate=True)
        except binascii.Error:  # pragma: no cover - the pattern admits only valid base64
            pass
    return key


def check_signing_key(key: bytes, which: str = "signing_key") -> bytes:
    """Return ``key`` if it is strong enough to sign pickles; raise ``ConfigError`` saying why not.

    Strong enough: at least :data:`MIN_KEY_BYTES` bytes of material (see
    :func:`key_material`) with at least 16 distinct byte values, and not a
    key printed in tierkit's documentation.  The message never shows the key.
    """
    material = key_material(key)
    problem = None
    if key.strip() in _EXAMPLE_KEYS:
        problem = "is an example from the documentation, which anyone can read"
    elif len(material) < MIN_KEY_BYTES:
        problem = (
            f"holds {len(material)} bytes of secret material, fewer than {MIN_KEY_BYTES} (a key written "
            "in hex or base64 counts the bytes it decodes to, other text counts its bytes)"
        )
    elif len(set(material)) < _MIN_DISTINCT:
        problem = "is too repetitive to be a random key"
    if problem is not None:
        raise ConfigError(
            f"{which} {problem}: anyone who guesses it can make this process run code; {KEY_HOWTO}"
        )
    return key


def signing_keys(setting: SecretStr | Sequence[SecretStr] | None) -> list[bytes]:
    """The keys of a ``signing_key`` setting (one key, or a list: the signing key first)."""
    secrets = [setting] if isinstance(setting, SecretStr) else list(setting or ())
    keys = [s.get_secret_value().encode() for s in secrets if s.get_secret_value()]
    if not keys:
        raise ConfigError(
            "codec 'pickle' needs signing_key (TIERKIT_SIGNING_KEY): pickled values are signed "
            f"so a tampered shared tier cannot run code in this process; {KEY_HOWTO}"
        )
    return keys


class UnpicklableValue(TypeError, pickle.PicklingError):
    """A value the pickle codec cannot pickle: a ``TypeError`` like every codec refusal, and a
    ``pickle.PicklingError`` as callers of pickling caches (Django's) expect."""


class PickleCodec(Codec):
    """pickle, signed with HMAC-SHA256 so a tampered payload is rejected (opt-in).

    Signs with the first of ``keys`` and accepts a signature by any of them,
    so a key can be rotated: put the new key first, drop the old one once
    every process has the new list and the old entries have expired.
    """

    name = "pickle"
    _DIGEST = 32

    @classmethod
    def from_settings(cls, settings: Settings) -> PickleCodec:
        return cls(signing_keys(settings.signing_key))

    def __init__(self, keys: Sequence[bytes]) -> None:
        if isinstance(keys, bytes | str) or not keys:
            raise ConfigError("PickleCodec needs a list of signing keys, the signing key first")
        count = len(keys)
        self._keys = [
            check_signing_key(key, f"signing_key #{i} of {count}" if count > 1 else "signing_key")
            for i, key in enumerate(keys, 1)
        ]

    def encode(self, key: str, value: Any) -> bytes:
        if type(value) is int and _INT_MIN <= value <= _INT_MAX:
            return b"%d" % value  # plain JSON, as the JSON codec writes it: a counter incr can count
        try:
            body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise UnpicklableValue(
                f"cannot cache key {key!r}: value of type {_dotted(type(value))} cannot be pickled: {exc}"
            ) from None
        return b"p" + hmac.new(self._keys[0], body, hashlib.sha256).digest() + body

    def decode(self, payload: bytes) -> Any:
        if payload[:1] != b"p":
            return _JSON.decode(payload)
        signature, body = payload[1 : 1 + self._DIGEST], payload[1 + self._DIGEST :]
        if not any(
            hmac.compare_digest(signature, hmac.new(key, body, hashlib.sha256).digest()) for key in self._keys
        ):
            raise CodecError("pickle payload signature mismatch (tampered or another signing_key)")
        try:
            return pickle.loads(body)
        except (ImportError, AttributeError) as exc:  # signed, so intact: a class missing here
            raise CodecError(f"cannot unpickle here: {exc}", corrupt=False) from exc
        except Exception as exc:
            raise CodecError(f"corrupt pickle payload: {exc}") from exc


_JSON = JsonCodec()
