"""Value codecs: how the chain turns a value into bytes for byte tiers and back.

A payload says how to decode it by its first byte:

- plain JSON (orjson, no prefix; JSON never starts with the letters below): the
  value needed no envelope, and decoding is one ``orjson.loads`` — other
  programs reading the same Redis can read it too.
- ``e`` JSON with an envelope: values orjson would change (tuple, set, bytes,
  datetime, Decimal, UUID, pydantic models, dataclasses …) are tagged
  ``{"\\u0000t": tag, "v": ...}`` so the round trip is exact.
- ``p`` pickle signed with HMAC-SHA256 (opt-in; a tampered payload is rejected).
- ``a`` JSON written through a pydantic ``TypeAdapter`` (``@cached`` functions
  with a return annotation); a reader without the adapter decodes plain JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import importlib
import math
import pickle
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, TypeAdapter

from tierkit.errors import CodecError

TAG = "\x00t"
_ENVELOPE = ord("e")
_PICKLE = ord("p")
_ADAPTER = ord("a")
_MARKERS = frozenset((_ENVELOPE, _PICKLE, _ADAPTER))
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class Codec(Protocol):
    """Encodes values for byte tiers and decodes them back."""

    def encode(self, key: str, value: Any) -> bytes:
        """Return the payload for ``value``; raise ``TypeError`` naming ``key`` if impossible."""
        ...

    def decode(self, payload: bytes) -> Any:
        """Return the value; raise :class:`~tierkit.errors.CodecError` on bad bytes."""
        ...


def _unsupported(key: str, value: Any) -> TypeError:
    kind = type(value)
    return TypeError(
        f"cannot cache key {key!r}: value of type {kind.__module__}.{kind.__qualname__} "
        "is not supported by the JSON codec (supported: JSON types, tuple, set, frozenset, "
        "bytes, datetime/date/time/timedelta, Decimal, UUID, Enum, dataclasses, pydantic "
        "models); convert it, or configure codec='pickle' with a signing_key"
    )


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


@lru_cache(maxsize=512)
def _import_class(path: str) -> type:
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise CodecError(f"{path} is not a class")
    return obj


class JsonCodec:
    """orjson with an exact-round-trip envelope (the default codec)."""

    def encode(self, key: str, value: Any) -> bytes:
        # Fast path: orjson alone, refusing every type it would not bring back
        # (datetime, dataclass, str/int/dict/list subclasses go to _refuse), then
        # a check that the JSON reads back equal — that catches the rest (tuple,
        # UUID, Enum, NaN).  Plain JSON data costs one dumps, one loads, one ==.
        try:
            body = orjson.dumps(value, default=_refuse, option=_STRICT)
        except TypeError:
            pass
        else:
            if orjson.loads(body) == value:
                return body
        tagged: list[bool] = []
        tree = self._to_json(key, value, tagged)
        try:
            body = orjson.dumps(tree)
        except TypeError as exc:  # pragma: no cover - _to_json rejects these first
            raise _unsupported(key, value) from exc
        return b"e" + body if tagged else body

    def decode(self, payload: bytes) -> Any:
        try:
            fmt = payload[0]
            if fmt not in _MARKERS:
                return orjson.loads(payload)
            if fmt == _ADAPTER:
                return orjson.loads(payload[1:])
            if fmt == _ENVELOPE:
                return _from_json(orjson.loads(payload[1:]))
            if fmt == _PICKLE:
                raise CodecError("payload is signed pickle but this cache uses the JSON codec", corrupt=False)
        except (orjson.JSONDecodeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise CodecError(f"corrupt payload: {exc}") from exc

    def _to_json(self, key: str, value: Any, tagged: list[bool]) -> Any:
        """Return a tree orjson serializes exactly; note in ``tagged`` if an envelope was used."""
        kind = type(value)
        if kind is str or kind is bool or value is None:
            return value
        if kind is int:
            if _INT_MIN <= value <= _INT_MAX:
                return value
            return _tag(tagged, "int", str(value))
        if kind is float:
            if math.isfinite(value):
                return value
            return _tag(tagged, "float", repr(value))
        if kind is list:
            return [self._to_json(key, item, tagged) for item in value]
        if kind is dict:
            if all(type(k) is str for k in value) and TAG not in value:
                return {k: self._to_json(key, v, tagged) for k, v in value.items()}
            items = [[self._to_json(key, k, tagged), self._to_json(key, v, tagged)] for k, v in value.items()]
            return _tag(tagged, "dict", items)
        if kind is tuple:
            return _tag(tagged, "tuple", [self._to_json(key, item, tagged) for item in value])
        encoder = _ENCODERS.get(kind)
        if encoder is not None:
            tag, data = encoder(value)
            return _tag(tagged, tag, self._to_json(key, data, tagged) if tag in _NESTED else data)
        if isinstance(value, BaseModel):
            return _tag(tagged, "model", value.model_dump(mode="json"), _class_path(kind))
        if dataclasses.is_dataclass(value):
            fields = {
                f.name: self._to_json(key, getattr(value, f.name), tagged) for f in dataclasses.fields(value)
            }
            return _tag(tagged, "dataclass", fields, _class_path(kind))
        if isinstance(value, enum.Enum):
            return _tag(tagged, "enum", self._to_json(key, value.value, tagged), _class_path(kind))
        if isinstance(value, tuple) and hasattr(kind, "_fields"):
            items = [self._to_json(key, item, tagged) for item in value]
            return _tag(tagged, "namedtuple", items, _class_path(kind))
        raise _unsupported(key, value)


_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _refuse(value: Any) -> Any:
    raise TypeError


def _tag(tagged: list[bool], tag: str, data: Any, cls: str | None = None) -> dict[str, Any]:
    if not tagged:
        tagged.append(True)
    if cls is None:
        return {TAG: tag, "v": data}
    return {TAG: tag, "v": data, "c": cls}


def _encode_datetime(value: dt.datetime) -> tuple[str, Any]:
    zone = value.tzinfo.key if isinstance(value.tzinfo, ZoneInfo) else None
    return "datetime", [value.isoformat(), zone, value.fold]


_ENCODERS: dict[type, Callable[[Any], tuple[str, Any]]] = {
    set: lambda v: ("set", list(v)),
    frozenset: lambda v: ("frozenset", list(v)),
    bytes: lambda v: ("bytes", base64.b64encode(v).decode()),
    bytearray: lambda v: ("bytearray", base64.b64encode(v).decode()),
    dt.datetime: _encode_datetime,
    dt.date: lambda v: ("date", v.isoformat()),
    dt.time: lambda v: ("time", v.isoformat()),
    dt.timedelta: lambda v: ("timedelta", [v.days, v.seconds, v.microseconds]),
    Decimal: lambda v: ("decimal", str(v)),
    uuid.UUID: lambda v: ("uuid", str(v)),
    complex: lambda v: ("complex", [repr(v.real), repr(v.imag)]),
}
_NESTED = frozenset({"set", "frozenset"})


def _decode_datetime(data: list[Any]) -> dt.datetime:
    text, zone, fold = data
    value = dt.datetime.fromisoformat(text)
    if zone is not None:
        value = value.replace(tzinfo=ZoneInfo(zone)).replace(fold=fold)
    return value.replace(fold=fold)


def _decode_dataclass(cls: type, data: dict[str, Any]) -> Any:
    if not dataclasses.is_dataclass(cls):
        raise CodecError(f"{_class_path(cls)} is not a dataclass")
    fields = dataclasses.fields(cls)
    obj = cls(**{f.name: data[f.name] for f in fields if f.init})
    for f in fields:
        if not f.init:
            object.__setattr__(obj, f.name, data[f.name])
    return obj


def _decode_model(cls: type, data: Any) -> Any:
    if not issubclass(cls, BaseModel):
        raise CodecError(f"{_class_path(cls)} is not a pydantic model")
    return cls.model_validate(data)


def _decode_enum(cls: type, data: Any) -> Any:
    if not issubclass(cls, enum.Enum):
        raise CodecError(f"{_class_path(cls)} is not an Enum")
    return cls(data)


def _decode_namedtuple(cls: type, data: list[Any]) -> Any:
    if not (issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise CodecError(f"{_class_path(cls)} is not a namedtuple")
    return cls(*data)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "float": float,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "dict": dict,
    "bytes": base64.b64decode,
    "bytearray": lambda v: bytearray(base64.b64decode(v)),
    "datetime": _decode_datetime,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "complex": lambda v: complex(float(v[0]), float(v[1])),
}
_CLASS_DECODERS: dict[str, Callable[[type, Any], Any]] = {
    "model": _decode_model,
    "dataclass": _decode_dataclass,
    "enum": _decode_enum,
    "namedtuple": _decode_namedtuple,
}


def _from_json(node: Any) -> Any:
    """Undo :meth:`JsonCodec._to_json` on a tree produced by ``orjson.loads``."""
    kind = type(node)
    if kind is list:
        return [_from_json(item) for item in node]
    if kind is not dict:
        return node
    tag = node.get(TAG)
    if tag is None:
        return {k: _from_json(v) for k, v in node.items()}
    if tag in ("model", "bytes", "bytearray", "date", "time", "decimal", "uuid", "int", "float"):
        data = node["v"]  # leaves: their payload holds no envelope
    else:
        data = _from_json(node["v"])
    if tag in _CLASS_DECODERS:
        try:
            cls = _import_class(node["c"])
        except (ImportError, AttributeError) as exc:
            raise CodecError(f"cannot import {node['c']} here: {exc}", corrupt=False) from exc
        return _CLASS_DECODERS[tag](cls, data)
    return _DECODERS[tag](data)


class AdapterCodec:
    """Encodes with a pydantic ``TypeAdapter`` built from a return annotation.

    Used only where it is exact: a value the annotation would not bring back
    equal (one that does not fit it, or a ``-> dict`` holding datetimes or
    tuples) is written by the JSON codec instead, so nothing is lost.
    """

    def __init__(self, adapter: TypeAdapter[Any], fallback: Codec) -> None:
        self._adapter = adapter
        self._fallback = fallback

    def encode(self, key: str, value: Any) -> bytes:
        try:
            body = self._adapter.dump_json(value, warnings="error")
            exact = self._adapter.validate_json(body) == value
        except Exception:
            exact = False
        if exact:  # e.g. `-> dict` would bring datetimes back as str, tuples as lists
            return b"a" + body
        return self._fallback.encode(key, value)

    def decode(self, payload: bytes) -> Any:
        if payload[:1] != b"a":
            return self._fallback.decode(payload)
        try:
            return self._adapter.validate_json(payload[1:])
        except ValueError as exc:
            raise CodecError(f"payload does not match the annotation: {exc}") from exc


class PickleCodec:
    """pickle, signed with HMAC-SHA256 so a tampered payload is rejected (opt-in)."""

    _DIGEST = 32

    def __init__(self, signing_key: bytes) -> None:
        if not signing_key:
            raise ValueError("the pickle codec needs a non-empty signing_key")
        self._key = signing_key

    def encode(self, key: str, value: Any) -> bytes:
        try:
            body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TypeError(
                f"cannot cache key {key!r}: {type(value).__qualname__} cannot be pickled: {exc}"
            ) from exc
        return b"p" + hmac.new(self._key, body, hashlib.sha256).digest() + body

    def decode(self, payload: bytes) -> Any:
        if payload[:1] != b"p":
            return JsonCodec().decode(payload)
        signature, body = payload[1 : 1 + self._DIGEST], payload[1 + self._DIGEST :]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected):
            raise CodecError("pickle payload signature mismatch (tampered or another signing_key)")
        try:
            return pickle.loads(body)
        except (ImportError, AttributeError) as exc:  # signed, so intact: a class missing here
            raise CodecError(f"cannot unpickle here: {exc}", corrupt=False) from exc
        except Exception as exc:
            raise CodecError(f"corrupt pickle payload: {exc}") from exc
