"""The codecs: exact round trips, clear errors, signed pickle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from tierkit import CodecError
from tierkit._codec import AdapterCodec, JsonCodec, PickleCodec

codec = JsonCodec()


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    tags: tuple[str, ...]
    created: dt.date
    computed: int = dataclasses.field(init=False, default=0)


class Row(BaseModel):
    id: uuid.UUID
    price: Decimal
    when: dt.datetime
    labels: set[str]


def roundtrip(value: Any) -> Any:
    return codec.decode(codec.encode("key", value))


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types, all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text()
    | st.binary()
    | st.decimals(allow_nan=False)
    | st.uuids()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.sampled_from(list(Colour))
)
hashables = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary() | st.uuids() | st.dates(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=5,
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(), inner, max_size=4)
        | st.dictionaries(hashables, inner, max_size=3)
        | st.sets(hashables, max_size=3)
        | st.frozensets(hashables, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_json_codec_round_trip_is_exact(value: Any) -> None:
    assert same(roundtrip(value), value)


@settings(max_examples=100, deadline=None)
@given(values)
def test_pickle_codec_round_trip(value: Any) -> None:
    pickle_codec = PickleCodec(b"secret")
    assert same(pickle_codec.decode(pickle_codec.encode("k", value)), value)


def test_plain_json_needs_no_envelope_and_is_stored_as_is() -> None:
    payload = codec.encode("k", {"a": [1, 2.5, "x", None, True]})
    assert payload == b'{"a":[1,2.5,"x",null,true]}'


def test_classes_come_back_as_themselves() -> None:
    recipe = Recipe("soup", ("hot", "veg"), dt.date(2026, 1, 2))
    row = Row(
        id=uuid.uuid4(), price=Decimal("9.99"), when=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), labels={"a"}
    )
    for value in (recipe, row, Point(1, 2), Colour.RED, [Colour.BLUE, Point(3, 4)]):
        assert same(roundtrip(value), value)


def test_zoneinfo_datetimes_keep_their_zone() -> None:
    when = dt.datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York"))
    back = roundtrip(when)
    assert back.tzinfo == ZoneInfo("America/New_York") and back.fold == 1 and back == when


def test_a_dict_that_looks_like_an_envelope_stays_a_dict() -> None:
    sneaky = {"\x00t": "bytes", "v": "aGk="}
    assert same(roundtrip(sneaky), sneaky)


@pytest.mark.parametrize("value", [object(), lambda: 1, iter([1]), {"nested": {1: object()}}])
def test_unsupported_values_raise_type_error_naming_key_and_type(value: Any) -> None:
    with pytest.raises(TypeError, match=r"cannot cache key 'key': value of type builtins\.\w+"):
        codec.encode("key", value)


@pytest.mark.parametrize("payload", [b"", b"j{", b"e[", b"zzz", b'e{"\\u0000t":"nope","v":1}'])
def test_corrupt_payloads_raise_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode(payload)


def test_class_payloads_only_rebuild_what_they_claim_to_be() -> None:
    forged = b'e{"\\u0000t":"dataclass","v":{"args":"x"},"c":"subprocess:Popen"}'
    with pytest.raises(CodecError, match="subprocess:Popen is not a dataclass"):
        codec.decode(forged)


def test_signed_pickle_rejects_tampering_and_other_keys() -> None:
    signer = PickleCodec(b"k1")
    payload = signer.encode("k", {"a": 1})
    tampered = payload[:-1] + bytes([payload[-1] ^ 1])
    with pytest.raises(CodecError, match="signature mismatch"):
        signer.decode(tampered)
    with pytest.raises(CodecError, match="signature mismatch"):
        PickleCodec(b"k2").decode(payload)
    assert signer.decode(codec.encode("k", [1])) == [1]  # reads JSON written before the switch


def test_adapter_codec_uses_the_annotation_and_falls_back() -> None:
    adapter = AdapterCodec(TypeAdapter(list[Row]), codec)
    rows = [Row(id=uuid.uuid4(), price=Decimal("1.5"), when=dt.datetime(2026, 1, 1), labels={"x"})]
    payload = adapter.encode("k", rows)
    assert payload.startswith(b"a")
    assert adapter.decode(payload) == rows
    assert codec.decode(payload)[0]["price"] == "1.5"  # a reader without the annotation gets JSON
    odd = adapter.encode("k", {"not": "rows"})
    assert odd == b'{"not":"rows"}' and adapter.decode(odd) == {"not": "rows"}
