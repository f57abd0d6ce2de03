"""The codecs: exact round trips (or a refusal naming key, type and path), signed pickle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import secrets
import uuid
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, field_validator

from tierkit import Cache, CodecError
from tierkit._codec import AdapterCodec, JsonCodec, PickleCodec

codec = JsonCodec()
KEY = secrets.token_urlsafe(32).encode()


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mood(enum.StrEnum):
    CALM = "calm"


class Perm(enum.IntFlag):
    R = 4
    W = 2
    X = 1


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


@dataclasses.dataclass
class Shifted:
    """``__post_init__`` changes the value: running it again on read would shift it twice."""

    x: int

    def __post_init__(self) -> None:
        self.x += 1


@dataclasses.dataclass(frozen=True, slots=True)
class Slotted:
    when: dt.datetime
    tags: frozenset[str]


class Aliased(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_name: str = Field(alias="userName")
    level: Level = Level.LOW
    raw: Any = None
    _token: str = PrivateAttr(default="t")

    @field_validator("user_name")
    @classmethod
    def _suffix(cls, value: str) -> str:
        return value + "!"  # not idempotent: validating again on read would add another


def roundtrip(value: Any) -> Any:
    return codec.decode(codec.encode("key", value))


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types, all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float | complex):
        return repr(a) == repr(b)  # NaN, and the sign of zero
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dt.datetime | dt.time):
        return a == b and a.fold == b.fold and a.tzinfo == b.tzinfo and a.tzname() == b.tzname()
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, BaseModel):
        return (
            same(a.__dict__, b.__dict__)
            and a.model_fields_set == b.model_fields_set
            and a.__pydantic_private__ == b.__pydantic_private__
            and same(a.__pydantic_extra__, b.__pydantic_extra__)
        )
    return bool(a == b)


offsets = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)),
) | st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(hours=5)),
    st.text(min_size=1),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text()
    | st.binary()
    | st.decimals(allow_nan=False)
    | st.uuids()
    | st.integers(min_value=2**64).map(lambda n: n**3)
    | st.text(st.characters(codec=None, categories=["Cs", "L", "Nd"]))
    | st.datetimes(timezones=st.none() | st.timezones() | offsets, allow_imaginary=False)
    | st.dates()
    | st.times(timezones=st.none() | st.timezones() | offsets)
    | st.timedeltas()
    | st.sampled_from([*Colour, *Level, *Mood, *Perm, Perm.R | Perm.W, Perm(0)])
    | st.complex_numbers()
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
        | st.builds(Point, inner, inner)
        | st.builds(Shifted, st.integers())
        | st.builds(Slotted, st.datetimes(timezones=st.timezones()), st.frozensets(st.text(), max_size=3))
        | st.builds(Aliased, userName=st.text(), level=st.sampled_from(Level), raw=inner)
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
    pickle_codec = PickleCodec([KEY])
    assert same(pickle_codec.decode(pickle_codec.encode("k", value)), value)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"))
)
plain_json = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=15,
)
# What orjson writes without complaint but reads back as something else: each must take the envelope.
spoilers = (
    st.sampled_from(
        [(), (1, "a"), float("nan"), float("inf"), float("-inf"), Level.HIGH, Mood.CALM, Perm.R, Colour.RED]
    )
    | st.uuids()
)
with_one_spoiler = st.recursive(
    spoilers,
    lambda inner: (
        st.builds(
            lambda items, at, x: [*items[:at], x, *items[at:]],
            st.lists(plain_json, max_size=3),
            st.integers(0, 3),
            inner,
        )
        | st.builds(
            lambda d, k, x: {**d, k: x}, st.dictionaries(st.text(), plain_json, max_size=3), st.text(), inner
        )
        | st.builds(lambda a, x: (a, x), plain_json, inner)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(plain_json)
def test_plain_json_is_stored_as_orjson_writes_it(value: Any) -> None:
    payload = codec.encode("k", value)
    assert payload == orjson.dumps(value)
    assert same(codec.decode(payload), value)


@settings(max_examples=300, deadline=None)
@given(with_one_spoiler)
def test_a_tuple_nan_enum_or_uuid_anywhere_takes_the_envelope(value: Any) -> None:
    payload = codec.encode("k", value)
    assert payload[:1] == b"e"
    assert same(codec.decode(payload), value)


def test_decode_many_reads_marked_payloads_among_plain_ones() -> None:
    """A batch mixing plain JSON with marked payloads (envelope, adapter) decodes as each alone."""
    values = [{"a": 1}, (1, 2), [1.5], uuid.UUID(int=7), "text", Point(1, 2), None]
    payloads = [codec.encode("k", value) for value in values]
    row = Row(id=uuid.UUID(int=1), price=Decimal("2.5"), when=dt.datetime(2026, 1, 1), labels={"y"})
    payloads.insert(2, AdapterCodec(TypeAdapter(Row), codec).encode("k", row))
    assert {payload[:1] for payload in payloads} >= {b"e", b"a"}
    decoded = codec.decode_many(payloads)
    assert [type(value) for value in decoded] == [type(codec.decode(payload)) for payload in payloads]
    assert decoded == [codec.decode(payload) for payload in payloads]


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


@pytest.mark.parametrize("value", [object(), lambda: 1, iter([1])])
def test_unsupported_values_raise_type_error_naming_key_and_type(value: Any) -> None:
    with pytest.raises(
        TypeError, match=r"cannot cache key 'key': value of type builtins\.\w+ is not supported"
    ):
        codec.encode("key", value)


@pytest.mark.parametrize("payload", [b"", b"j{", b"e[", b"zzz", b'e{"\\u0000t":"nope","v":1}'])
def test_corrupt_payloads_raise_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode(payload)


def test_class_payloads_only_rebuild_allowed_classes() -> None:
    forged = b'e{"\\u0000t":"dataclass","v":{"args":"x"},"c":"subprocess:Popen"}'
    with pytest.raises(CodecError, match=r"subprocess\.Popen, a class this process has not been allowed"):
        codec.decode(forged)


def test_signed_pickle_rejects_tampering_and_other_keys() -> None:
    signer = PickleCodec([KEY])
    payload = signer.encode("k", {"a": 1})
    tampered = payload[:-1] + bytes([payload[-1] ^ 1])
    with pytest.raises(CodecError, match="signature mismatch"):
        signer.decode(tampered)
    with pytest.raises(CodecError, match="signature mismatch"):
        PickleCodec([secrets.token_urlsafe(32).encode()]).decode(payload)
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


def test_adapter_codec_reads_back_models_with_aliases() -> None:
    class Account(BaseModel):
        user_name: str = Field(alias="userName")

    adapter = AdapterCodec(TypeAdapter(list[Account]), codec)
    models = [Account(userName="ann")]
    assert adapter.decode(adapter.encode("k", models)) == models


# -- issue 9: values that used to come back changed ---------------------------------------------


@pytest.mark.parametrize("member", [Level.HIGH, Mood.CALM, Perm.R | Perm.W, Perm(0)], ids=repr)
def test_int_and_str_enums_and_flags_come_back_as_members(member: Any) -> None:
    for value in (member, [member], {"m": member}):
        assert same(roundtrip(value), value)


def test_dataclasses_are_rebuilt_without_running_init_again() -> None:
    value = Shifted(1)
    assert value.x == 2
    assert roundtrip(value).x == 2  # __post_init__ ran once, when the value was made
    slotted = Slotted(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), frozenset({"a"}))
    assert same(roundtrip(slotted), slotted)


def test_models_with_aliases_validators_and_private_state_round_trip() -> None:
    model = Aliased(userName="ann", raw=("a", 1))
    back = roundtrip(model)
    assert same(back, model) and back.user_name == "ann!" and back.raw == ("a", 1)


def test_times_and_datetimes_keep_zones_and_fixed_offsets() -> None:
    cet = dt.timezone(dt.timedelta(hours=1), "CET")
    values = [
        dt.time(9, 30, tzinfo=ZoneInfo("Europe/Paris")),
        dt.time(9, 30, fold=1),
        dt.time(9, 30, tzinfo=cet),
        dt.datetime(2026, 1, 1, 12, tzinfo=cet),
        dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
    ]
    for value in values:
        assert same(roundtrip(value), value)


def test_lone_surrogates_and_huge_ints_round_trip() -> None:
    for value in ("\ud800", {"\udfff": 1}, 10**5000, -(10**5000), [2**64, -(2**63) - 1]):
        assert same(roundtrip(value), value)


def test_a_file_tier_brings_enums_and_dataclasses_back_exactly(tmp_path: Any) -> None:
    cache = Cache(order=["file"], tiers={"file": {"options": {"directory": str(tmp_path)}}})
    value = {"level": Level.HIGH, "mood": Mood.CALM, "shifted": Shifted(1), "model": Aliased(userName="x")}
    cache.set("k", value, persistent=True)
    assert same(cache.get("k"), value)


@pytest.mark.parametrize(
    "value",
    [dt.datetime(2026, 1, 1, tzinfo=dt.tzinfo()), Level],
    ids=["foreign tzinfo", "a class"],
)
def test_what_cannot_come_back_exactly_is_refused(value: Any) -> None:
    with pytest.raises(TypeError, match="cannot cache key 'key'"):
        codec.encode("key", value)


# -- issue 19: every refusal is a TypeError naming key, type and path ---------------------------


@dataclasses.dataclass
class Line:
    when: Any


def test_a_refusal_names_the_key_the_type_and_the_path() -> None:
    value = {"rows": [Line(1), Line(2), Line(3), Line(object())]}
    with pytest.raises(TypeError) as raised:
        codec.encode("report", value)
    assert str(raised.value).startswith(
        "cannot cache key 'report': value['rows'][3].when of type builtins.object is not supported"
    )


class LocalZone(ZoneInfo):
    """A tzinfo the codec does not know how to bring back (only ZoneInfo itself and timezone)."""


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({1: {2: [object()]}}, r"value\[1\]\[2\]\[0\] of type builtins\.object"),
        ((1, {"a": {object()}}), r"value\[1\]\['a'\]<member 0> of type builtins\.object"),
        ({(1, object()): 2}, r"value<key 0>\[1\] of type builtins\.object"),
        (Point(1, [object()]), r"value\.y\[0\] of type builtins\.object"),
        (Aliased(userName="x", raw=object()), r"value\.raw of type builtins\.object"),
        (
            [dt.time(1, tzinfo=LocalZone("UTC"))],
            r"value\[0\] has a tzinfo",
        ),
    ],
)
def test_refusal_paths(value: Any, path: str) -> None:
    with pytest.raises(TypeError, match=rf"cannot cache key 'k': {path}"):
        codec.encode("k", value)


def test_circular_references_are_a_type_error_saying_so() -> None:
    loop: list[Any] = []
    loop.append({"again": loop})
    with pytest.raises(TypeError, match=r"value\[0\]\['again'\] refers back to value: a circular reference"):
        codec.encode("k", loop)
    row = Line(None)
    row.when = [row]
    with pytest.raises(TypeError, match=r"value\['r'\]\.when\[0\] refers back to value\['r'\]"):
        codec.encode("k", {"r": row})


def test_values_nested_too_deep_for_json_are_a_type_error() -> None:
    deep: Any = 1
    for _ in range(300):
        deep = (deep,)
    with pytest.raises(TypeError, match=r"cannot cache key 'k': value\[0\]\[0\].*is nested too deeply"):
        codec.encode("k", deep)
    shallow: Any = 1
    for _ in range(120):
        shallow = (shallow,)
    assert roundtrip(shallow) == shallow  # an envelope per level still fits


def test_nan_keys_and_values_are_handled() -> None:
    back = roundtrip({float("nan"): float("nan"), "inf": float("-inf")})
    (nan_key, nan_value), (inf_key, inf) = back.items()
    assert nan_key != nan_key and nan_value != nan_value and inf_key == "inf" and inf == float("-inf")


def test_a_hostile_payload_nested_too_deep_is_corrupt_not_a_crash() -> None:
    payload = b"e" + b'{"\\u0000t":"tuple","v":[' * 500 + b"1" + b"]}" * 500
    with pytest.raises(CodecError):
        codec.decode(payload)


def test_model_extras_and_dataclass_attributes_that_look_like_envelopes_stay_data() -> None:
    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")

    model = Open.model_validate({"\x00t": "bytes", "v": "aGk=", "n": (1,)})
    shifted = Shifted(1)
    shifted.__dict__["\x00t"] = "uuid"  # an attribute that is not a field
    assert same(roundtrip([model, shifted]), [model, shifted])
    assert roundtrip(shifted).__dict__ == shifted.__dict__
