"""The codec conformance suite: what every codec owes the chain, as pytest tests."""

from __future__ import annotations

import random
from typing import Any, ClassVar

import pytest

from tierkit._codec import Codec
from tierkit._codecs import check_codec_class
from tierkit.errors import CodecError
from tierkit.testing._expect import expect, expect_equal, fail, show


class CodecConformance:
    """The behaviour every codec owes the chain, as pytest tests.

    Subclass it and provide a ``codec`` fixture returning an instance.  List in
    :attr:`round_trips` values your codec brings back exactly (same type, equal)
    and in :attr:`refused` values it refuses; every check says what was expected
    and what came back.
    """

    round_trips: ClassVar[tuple[Any, ...]] = (
        None,
        True,
        0,
        -(2**40),
        1.5,
        "",
        "text ünïcödé",
        [1, "two", None],
        {"a": [1, {"b": None}], "c": ""},
    )
    """Values the codec must bring back equal and of the same type (JSON's, by default)."""
    refused: ClassVar[tuple[Any, ...]] = ()
    """Values ``encode`` must refuse with a ``TypeError`` (and ``check`` with the same one)."""

    @pytest.fixture
    def codec(self) -> Codec:
        """The codec under test: override this fixture."""
        pytest.fail("provide a `codec` fixture returning an instance of your codec")

    def test_class_is_a_valid_codec(self, codec: Codec) -> None:
        expect(isinstance(codec, Codec), "the codec", "an instance of a tierkit.Codec subclass", codec)
        problems = check_codec_class(type(codec), type(codec).name)
        expect(not problems, f"codec class {type(codec).__qualname__}", "no problems", problems)
        expect(bool(codec.name), "codec.name", "the name it is registered under", codec.name)

    def test_round_trips_exactly(self, codec: Codec) -> None:
        for value in self.round_trips:
            payload = codec.encode("conformance:key", value)
            expect(type(payload) is bytes, f"encode({show(value)})", "bytes", payload)
            expect(bool(payload), f"encode({show(value)})", "a non-empty payload", payload)
            expect_equal(codec.decode(payload), value, f"decode(encode({show(value)}))")

    def test_check_accepts_what_encode_accepts(self, codec: Codec) -> None:
        for value in self.round_trips:
            try:
                codec.check("conformance:key", value)
            except TypeError as exc:
                fail(f"check({show(value)})", "no error: encode accepts it", exc)

    def test_refuses_with_a_type_error_naming_the_key(self, codec: Codec) -> None:
        if not self.refused:
            pytest.skip("no `refused` values listed")
        for value in self.refused:
            messages = []
            for method in (codec.encode, codec.check):
                try:
                    method("conformance:refused", value)
                except TypeError as exc:
                    messages.append(str(exc))
                else:
                    fail(f"{method.__name__}({show(value)})", "a TypeError", "no error")
            expect(
                "conformance:refused" in messages[0], "the refusal", "a message naming the key", messages[0]
            )
            expect_equal(
                messages[1],
                messages[0],
                "check()'s message (the same values refused with and without byte tiers)",
            )

    def test_decode_many_answers_as_decode(self, codec: Codec) -> None:
        """``get_many`` decodes a batch with ``decode_many``: the same values, in order."""
        payloads = [codec.encode("conformance:key", value) for value in self.round_trips]
        values = codec.decode_many(payloads)
        expect(type(values) is list, "decode_many(payloads)", "a list", values)
        expect_equal(len(values), len(payloads), "len(decode_many(payloads))")
        for value, expected in zip(values, self.round_trips, strict=True):
            expect_equal(value, expected, f"decode_many(...) for {show(expected)}")

    def test_decode_many_raises_codec_error_for_a_bad_payload(self, codec: Codec) -> None:
        """One bad payload in a batch: a CodecError (the chain then decodes the batch one by one)."""
        good = [codec.encode("conformance:key", value) for value in self.round_trips]
        for bad in (b"", b"\x00", b"\xff" * 7, good[-1][: len(good[-1]) // 2]):
            try:
                codec.decode(bad)
            except CodecError:
                pass
            else:
                continue  # this codec reads it: not a bad payload here
            try:
                codec.decode_many([*good, bad, *good])
            except CodecError:
                continue
            except Exception as exc:
                fail(f"decode_many() of a batch holding {bad!r}", "a CodecError", exc)
            fail(f"decode_many() of a batch holding {bad!r}", "a CodecError", "values")

    def test_bad_bytes_raise_codec_error_only(self, codec: Codec) -> None:
        """Stored bytes are untrusted: whatever they are, decoding raises CodecError or returns a value."""
        rng = random.Random(20260101)
        good = codec.encode("conformance:key", self.round_trips[-1])
        candidates = [b"", b"\x00", b"\xff" * 7, good[: len(good) // 2], good + b"\x00"]
        candidates += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) for _ in range(200)]
        for i in range(len(good)):
            flipped = bytearray(good)
            flipped[i] ^= 0x5A
            candidates.append(bytes(flipped))
        for payload in candidates:
            try:
                codec.decode(payload)
            except CodecError:
                pass
            except Exception as exc:
                fail(f"decode({payload!r})", "a CodecError or a value", exc)
