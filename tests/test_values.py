"""Values: one rule whatever the tiers, codecs as plugins, numpy/pandas exactly, compression."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tierkit
from tierkit import Codec, CodecError, ConfigError, PluginError
from tierkit._codec import JsonCodec, PickleCodec
from tierkit._codecs import Compressing, ObjectsCodec, check_codec_class
from tierkit.testing import CodecConformance

KEY = "Zq3v9Lw1Xc7Rb2Nm8Tf4Hj6Kd0Ps5Ye_Ua1Gi"  # a random-looking test key (not a secret)


class Opaque:
    """Neither JSON nor a dataclass: what the JSON codec refuses."""


def memory_only(**settings: Any) -> tierkit.Cache:
    return tierkit.Cache(order=["memory"], **settings)


def with_file(tmp_path: Path, **settings: Any) -> tierkit.Cache:
    return tierkit.Cache(
        order=["memory", "file"], tiers={"file": {"options": {"directory": tmp_path}}}, **settings
    )


# -- one rule for values --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [Opaque(), {"nested": [Opaque()]}, np.array([1, "x"], dtype=object)])
def test_a_memory_only_chain_refuses_what_a_byte_tier_would_with_the_same_message(
    tmp_path: Path, value: Any
) -> None:
    messages = []
    for cache in (memory_only(), with_file(tmp_path)):
        with pytest.raises(TypeError) as refused:
            cache.set("key", value, persistent=True)
        messages.append(str(refused.value))
        assert cache.get("key") is None  # nothing was written
    assert messages[0] == messages[1]
    assert "cannot cache key 'key'" in messages[0]


def test_set_many_and_async_set_refuse_alike() -> None:
    cache = memory_only()
    with pytest.raises(TypeError, match="cannot cache key 'b'"):
        cache.set_many({"a": 1, "b": Opaque()})
    import asyncio

    with pytest.raises(TypeError, match="cannot cache key 'c'"):
        asyncio.run(cache.aset("c", Opaque()))


def test_the_objects_codec_takes_any_object_in_a_memory_only_chain() -> None:
    cache = memory_only(codec="objects")
    thing = Opaque()
    assert cache.set("thing", thing)
    assert cache.get("thing") is thing


def test_the_objects_codec_refuses_byte_tiers_in_an_explicit_order(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tier 'file' .* codec 'objects' keeps values as Python objects"):
        with_file(tmp_path, codec="objects")


def test_the_objects_codec_skips_byte_tiers_of_the_default_order() -> None:
    cache = tierkit.Cache(codec="objects")
    assert "file" not in cache.tiers
    assert "codec 'objects'" in cache.health().tiers["file"].reason


def test_a_memory_only_pickle_chain_refuses_what_pickle_cannot_write() -> None:
    cache = memory_only(codec="pickle", signing_key=KEY)
    with pytest.raises(TypeError, match="cannot be pickled"):
        cache.set("lambda", lambda: None)
    cache.set("opaque", Opaque())


# -- codecs are plugins ---------------------------------------------------------------------------


class Rot13Json(Codec):
    """A third-party codec given in code: JSON of str values, rot13'd (the docs' example shape)."""

    name = "rot13"

    def encode(self, key: str, value: Any) -> bytes:
        if type(value) is not str:
            raise TypeError(f"cannot cache key {key!r}: rot13 stores str, not {type(value).__name__}")
        return value.translate(_ROT13).encode()

    def decode(self, payload: bytes) -> Any:
        try:
            return payload.decode().translate(_ROT13)
        except UnicodeDecodeError as exc:
            raise CodecError(f"corrupt payload: {exc}") from exc


_ROT13 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)


def test_the_built_in_codecs_are_entry_points() -> None:
    from tierkit.codecs import installed_codecs

    assert {"json", "pickle", "objects"} <= set(installed_codecs())


def test_an_unknown_codec_names_the_installed_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown codec 'jsno' \(did you mean 'json'\?\); installed codecs: "
    ):
        memory_only(codec="jsno")


def test_a_codec_given_in_code_is_checked_and_used(tmp_path: Path) -> None:
    cache = with_file(tmp_path, codec="rot13", codecs={"rot13": Rot13Json})
    cache.set("greeting", "hello", persistent=True)
    cache.clear(tiers=["memory"])
    assert cache.get("greeting") == "hello"
    assert cache.chain.slots[1].tier.tierkit_get("greeting").value == b"uryyb"
    with pytest.raises(TypeError, match="rot13 stores str"):
        memory_only(codec="rot13", codecs={"rot13": Rot13Json}).set("n", 1)
    with pytest.raises(PluginError, match="name attribute is 'rot13', not 'other'"):
        memory_only(codecs={"other": Rot13Json})


def test_check_codec_class_says_what_is_missing() -> None:
    class Half(Codec):
        name = "half"

        def encode(self, key: str, value: Any) -> bytes:
            return b""

    assert check_codec_class(Half, "half") == ["it does not implement decode()"]
    assert check_codec_class(object, "x") == ["<class 'object'> is not a subclass of tierkit.Codec"]


def test_cached_chooses_its_codec_by_name(tmp_path: Path) -> None:
    cache = with_file(tmp_path, signing_key=KEY)

    @tierkit.cached(cache=cache, codec="pickle", persistent=True)
    def load(n: int) -> Opaque:
        thing = Opaque()
        thing.n = n  # type: ignore[attr-defined]
        return thing

    assert load(3).n == 3  # type: ignore[attr-defined]
    cache.clear(tiers=["memory"])
    assert load(3).n == 3  # type: ignore[attr-defined]
    assert cache.chain.slots[1].tier.tierkit_get(load.key(3)).value[:1] == b"p"


def test_cached_with_the_objects_codec_on_byte_tiers_is_an_error(tmp_path: Path) -> None:
    cache = with_file(tmp_path)

    @tierkit.cached(cache=cache, codec="objects")
    def load() -> int:
        return 1

    with pytest.raises(ConfigError, match=r"@cached\(codec='objects'\)"):
        load()


class TestJsonConformance(CodecConformance):
    refused = (Opaque(), {"deep": [Opaque()]}, np.array([object()]))

    @pytest.fixture
    def codec(self) -> Codec:
        return JsonCodec()


class TestPickleConformance(CodecConformance):
    round_trips = (*CodecConformance.round_trips, Opaque.__name__, dt.date(2026, 1, 1))
    refused = (lambda: None,)

    @pytest.fixture
    def codec(self) -> Codec:
        return PickleCodec([KEY.encode()])


class TestCompressingConformance(CodecConformance):
    round_trips = (*CodecConformance.round_trips, ["long"] * 1000, list(range(10_000)))
    refused = (Opaque(),)

    @pytest.fixture(params=["zstd", "zlib"])
    def codec(self, request: pytest.FixtureRequest) -> Codec:
        return Compressing(JsonCodec(), 64, request.param)


class TestRot13Conformance(CodecConformance):
    round_trips = ("text", "ünïcödé")
    refused = (1,)

    @pytest.fixture
    def codec(self) -> Codec:
        return Rot13Json()


def test_the_objects_codec_writes_no_bytes() -> None:
    codec = ObjectsCodec()
    codec.check("k", Opaque())
    with pytest.raises(TypeError):
        codec.encode("k", 1)
    with pytest.raises(CodecError):
        codec.decode(b"{}")


# -- compression ----------------------------------------------------------------------------------


@pytest.mark.parametrize("library", ["zstd", "zlib"])
def test_large_payloads_are_compressed_small_ones_not(tmp_path: Path, library: str) -> None:
    cache = with_file(tmp_path, compress_min_bytes=1024, compression=library)
    file_tier = cache.chain.slots[1].tier
    big = [{"id": i, "status": "pending", "tags": ["a", "b"]} for i in range(500)]
    cache.set("big", big, persistent=True)
    cache.set("small", {"id": 1}, persistent=True)
    stored = file_tier.tierkit_get("big").value
    assert stored[:1] == (b"z" if library == "zstd" else b"d")
    assert len(stored) < len(JsonCodec().encode("big", big)) / 4
    assert file_tier.tierkit_get("small").value == b'{"id":1}'
    cache.clear(tiers=["memory"])
    assert cache.get("big") == big


def test_a_cache_without_compression_reads_compressed_payloads(tmp_path: Path) -> None:
    writer = with_file(tmp_path, compress_min_bytes=16)
    reader = with_file(tmp_path)
    writer.set("k", "x" * 1000, persistent=True)
    assert reader.get("k") == "x" * 1000


def test_incompressible_payloads_are_stored_as_they_are() -> None:
    codec = Compressing(JsonCodec(), 16, "zlib")
    noise = np.random.default_rng(1).random(1000)
    assert codec.encode("k", noise)[:1] == b"b"


def test_a_corrupt_compressed_payload_is_a_codec_error() -> None:
    codec = Compressing(JsonCodec(), 16, "zstd")
    with pytest.raises(CodecError, match="corrupt compressed payload"):
        codec.decode(b"z" + b"\x00" * 20)
    with pytest.raises(CodecError, match="corrupt compressed payload"):
        codec.decode(b"d" + zlib.compress(b"[1]")[:-2])


# -- numpy and pandas -----------------------------------------------------------------------------

_JSON = JsonCodec()


def same_array(got: Any, expected: np.ndarray[Any, Any]) -> None:
    assert type(got) is np.ndarray
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes(order="A") == expected.tobytes(order="A")  # bit for bit: NaN payloads, -0.0
    if expected.flags.f_contiguous and not expected.flags.c_contiguous:
        assert got.flags.f_contiguous
    assert got.flags.writeable


_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="="),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.datetime64_dtypes(),
    hnp.timedelta64_dtypes(),
    hnp.byte_string_dtypes(),
    hnp.unicode_string_dtypes(),
)


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        st.one_of(_DTYPES, hnp.array_dtypes(subtype_strategy=_DTYPES, max_size=3)),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    st.sampled_from(["C", "F", "strided"]),
)
def test_arrays_round_trip_exactly(array: np.ndarray[Any, Any], layout: str) -> None:
    if layout == "F":
        array = np.asfortranarray(array)
    elif layout == "strided" and array.ndim:
        array = array[::2]
    same_array(_JSON.decode(_JSON.encode("k", array)), array)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(_DTYPES, st.just(())).map(lambda a: a[()]))
def test_numpy_scalars_round_trip_exactly(scalar: Any) -> None:
    got = _JSON.decode(_JSON.encode("k", {"x": scalar}))["x"]
    assert type(got) is type(scalar)
    assert got.tobytes() == scalar.tobytes()


def test_arrays_nested_in_values_round_trip() -> None:
    value = {"weights": np.arange(6.0).reshape(2, 3), "meta": (np.float64(0.5), "x"), "n": 3}
    got = _JSON.decode(_JSON.encode("k", value))
    same_array(got["weights"], value["weights"])
    assert got["meta"] == value["meta"] and type(got["meta"][0]) is np.float64


def test_object_arrays_and_array_subclasses_are_refused() -> None:
    with pytest.raises(TypeError, match="dtype object, which holds Python objects"):
        _JSON.encode("k", np.array([{"a": 1}], dtype=object))
    with pytest.raises(TypeError, match=r"numpy\.ma\.MaskedArray"):
        _JSON.encode("k", np.ma.masked_array([1, 2], mask=[0, 1]))


def test_a_stored_object_dtype_is_rejected_as_corrupt() -> None:
    payload = _JSON.encode("k", np.arange(3))
    forged = payload.replace(b'"<i8"', b'"|O" ')
    with pytest.raises(CodecError):
        _JSON.decode(forged)


def test_a_process_that_has_not_imported_numpy_does_not_import_it_to_decode(tmp_path: Path) -> None:
    cache = with_file(tmp_path)
    cache.set("arr", np.arange(3), persistent=True)
    script = f"""
import sys, tierkit
cache = tierkit.Cache(order=["file"], tiers={{"file": {{"options": {{"directory": {str(tmp_path)!r}}}}}}})
assert cache.get("arr", "miss") == "miss"
assert "numpy" not in sys.modules
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert run.stdout.strip() == "ok", run.stderr


# -- large arrays through the file tier: in pieces out, handed-over memory back -----------------

_BIG = np.random.default_rng(0).random(5 << 17)  # 5 MiB: read back into memory that may use huge pages
_FILED = {
    "float64 3-D": np.arange(24.0).reshape(2, 3, 4),
    "int16 Fortran": np.asfortranarray(np.arange(-6, 6, dtype=np.int16).reshape(3, 4)),
    "big-endian float": np.arange(5, dtype=">f8"),
    "complex": np.array([1 + 2j, -0.0 - 1j, np.nan]),
    "structured": np.array(
        [(1, 2.5, b"ab"), (3, -1.0, b"c")], dtype=[("i", "<i4"), ("f", "<f8"), ("s", "S2")]
    ),
    "datetime64": np.array(["2026-03-29T01:00", "NaT"], dtype="datetime64[ns]"),
    "unicode": np.array(["é", "日本", ""]),
    "bool": np.array([True, False, True]),
    "strided": np.arange(20.0)[::3],
    "big, Fortran": np.asfortranarray(_BIG.reshape(1024, -1)),
}


@pytest.fixture
def file_cache(tmp_path: Path) -> tierkit.Cache:
    """A file-only cache writing every payload to a value file of its own."""
    options = {"directory": str(tmp_path), "file_min_bytes": 1, "max_bytes": 64 << 20}
    return tierkit.Cache(namespace="arrays", order=["file"], tiers={"file": {"options": options}})


@pytest.mark.parametrize("name", _FILED)
def test_an_array_read_from_a_value_file_is_the_read_memory_writable_and_independent(
    file_cache: tierkit.Cache, name: str
) -> None:
    array = _FILED[name]
    file_cache.set("a", array, persistent=True)
    got = file_cache.get("a")
    same_array(got, array)
    assert not got.flags.owndata  # decoded over the memory the tier read the file into: no copy
    again = file_cache.get("a")
    assert not np.shares_memory(got, array) and not np.shares_memory(got, again)
    flat = got.T if got.flags.f_contiguous else got  # a C-contiguous view of the same memory
    flat.reshape(-1).view(np.uint8)[...] = 0  # writing into it changes no one else's copy
    same_array(again, array)
    same_array(file_cache.get("a"), array)


def test_arrays_in_pieces_and_handed_back_round_trip_nested(file_cache: tierkit.Cache) -> None:
    value: dict[str, Any] = {
        "a": _FILED["structured"],
        "b": [_FILED["big, Fortran"], np.float32(0.5)],
        "n": None,
    }
    file_cache.set("v", value, persistent=True)
    got = file_cache.get("v")
    same_array(got["a"], value["a"])
    assert not got["a"].flags.owndata  # the first buffer is aligned in the payload: kept, not copied
    same_array(got["b"][0], value["b"][0])
    assert type(got["b"][1]) is np.float32 and got["n"] is None


def test_large_values_without_arrays_decode_from_handed_over_memory(file_cache: tierkit.Cache) -> None:
    """Plain JSON and the envelope decode from the memory a value file was read into too."""
    plain = list(range(1_000_000))  # ~7 MB of JSON
    tagged = [(i, dt.date(2026, 1, 1)) for i in range(200_000)]
    file_cache.set("plain", plain, persistent=True)
    file_cache.set("tagged", tagged, persistent=True)
    assert file_cache.get("plain") == plain and file_cache.get("tagged") == tagged


@pytest.mark.parametrize("kind", ["compressible", "random"])
def test_arrays_through_value_files_with_compression_on(tmp_path: Path, kind: str) -> None:
    """A payload to compress is joined; one read back, compressed or not, still decodes exactly."""
    array = np.zeros(1 << 18) if kind == "compressible" else _BIG[: 1 << 18]
    options = {"directory": str(tmp_path), "file_min_bytes": 1}
    cache = tierkit.Cache(
        order=["file"], tiers={"file": {"options": options}}, compress_min_bytes=1024, compression="zlib"
    )
    cache.set("a", array, persistent=True)
    stored = cache.inspect("a")["file"].size
    assert stored is not None
    assert (stored < array.nbytes / 10) if kind == "compressible" else (stored > array.nbytes)
    got = cache.get("a")
    same_array(got, array)
    got[...] = 1
    same_array(cache.get("a"), array)


def test_byte_tiers_without_the_piece_hooks_get_bytes_joined_once(clock: Any, tmp_path: Path) -> None:
    from ._tiers import KINDS, DictTier

    DictTier.stores.clear()
    tiers: dict[str, Any] = {"bytes1": {"kind": "bytes"}, "bytes2": {"kind": "bytes"}}
    tiers["file"] = {"options": {"directory": str(tmp_path), "file_min_bytes": 1}}
    cache = tierkit.Cache(order=["bytes1", "bytes2", "file"], tiers=tiers, clock=clock, kinds=KINDS)
    array = _FILED["float64 3-D"]
    cache.set("a", array, persistent=True)
    first, second = DictTier.stores["bytes1"]["a"].value, DictTier.stores["bytes2"]["a"].value
    assert type(first) is bytes and first is second  # one join for both
    assert first == cache.codec.encode("a", array)
    same_array(cache.get("a"), array)  # read from bytes1, as before

    cache.clear(tiers=["bytes1", "bytes2"])
    got = cache.get("a")  # from the file, backfilled above
    same_array(got, array)
    got[...] = -1
    first, second = DictTier.stores["bytes1"]["a"].value, DictTier.stores["bytes2"]["a"].value
    assert type(first) is bytes and first == cache.codec.encode("a", array)  # not the array's memory
    assert first is second  # copied once for both


def same_frame(got: Any, expected: Any) -> None:
    assert type(got) is type(expected)
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected, check_exact=True, check_freq=True, check_flags=True)
        assert list(got.dtypes) == list(expected.dtypes)
        assert type(got.columns) is type(expected.columns)
    else:
        pd.testing.assert_series_equal(got, expected, check_exact=True, check_freq=True)
    assert type(got.index) is type(expected.index)
    assert got.attrs == expected.attrs


FRAMES = {
    "numbers": pd.DataFrame({"f": [1.5, np.nan, -0.0], "i": [1, 2, 3], "u": np.array([1, 2, 3], "uint16")}),
    "strings": pd.DataFrame({"s": ["a", "b", None]}),
    "object strings": pd.DataFrame({"s": pd.Series(["a", "b"], dtype=object)}),
    "categorical": pd.DataFrame({"c": pd.Categorical(["x", "y", "x"], categories=["y", "x"], ordered=True)}),
    "tz-aware": pd.DataFrame({"t": pd.date_range("2026-03-29", periods=3, freq="h", tz="Europe/Paris")}),
    "naive seconds": pd.DataFrame({"t": pd.date_range("2026-01-01", periods=2, unit="s")}),
    "timedelta": pd.DataFrame({"d": pd.to_timedelta([1, 2], unit="ms")}),
    "datetime index with freq": pd.DataFrame({"a": [1, 2]}, index=pd.date_range("2026", periods=2, freq="D")),
    "range index": pd.DataFrame({"a": [1, 2, 3]}, index=pd.RangeIndex(5, 11, 2, name="r")),
    "multi index": pd.DataFrame(
        {"a": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    ),
    "integer column labels": pd.DataFrame({0: [1.0], 1: [2.0]}),
    "nullable": pd.DataFrame({"i": pd.array([1, None], "Int64"), "b": pd.array([True, None], "boolean")}),
    "empty": pd.DataFrame(),
    "attrs": pd.DataFrame({"a": [1]}).set_flags(allows_duplicate_labels=True),
}
FRAMES["attrs"].attrs = {"source": "sensor", "when": dt.date(2026, 1, 1)}


@pytest.mark.parametrize("name", FRAMES)
def test_frames_round_trip_exactly(name: str) -> None:
    frame = FRAMES[name]
    same_frame(_JSON.decode(_JSON.encode("k", frame)), frame)


@pytest.mark.parametrize(
    "series",
    [pd.Series([1, 2], name=("a", 1)), pd.Series(["x"], name=None), pd.Series([1.5], index=["i"], name="v")],
)
def test_series_round_trip_exactly(series: Any) -> None:
    same_frame(_JSON.decode(_JSON.encode("k", series)), series)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(allow_nan=True),
            st.integers(-(2**63), 2**63 - 1),
            st.text(max_size=5),
            st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2200, 1, 1)),
            st.booleans(),
        ),
        max_size=20,
    )
)
def test_generated_frames_round_trip_exactly(rows: list[tuple[Any, ...]]) -> None:
    frame = pd.DataFrame(rows, columns=["f", "i", "s", "t", "b"]).astype(
        {"f": "float64", "i": "int64", "t": "datetime64[us]", "b": "bool"}
    )
    frame["c"] = frame["s"].astype("category")
    frame["z"] = frame["t"].dt.tz_localize("UTC").dt.tz_convert("America/New_York")
    same_frame(_JSON.decode(_JSON.encode("k", frame)), frame)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"a": pd.Series([1, "x"], dtype=object)}), "column 'a' of dtype object holding mixed"),
        (pd.DataFrame({"a": pd.Series(["x", None], dtype=object)}), "column 'a' of dtype object"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "duplicate column labels"),
        (pd.DataFrame({"c": [1j]}), "cannot be stored exactly with Arrow"),
    ],
)
def test_frames_arrow_cannot_hold_exactly_are_refused(frame: Any, message: str) -> None:
    for method in (_JSON.encode, _JSON.check):
        with pytest.raises(TypeError, match=message):
            method("k", frame)
