"""The backplane's wire format and the sender's coalescing (no Redis: pure functions).

The transport is tested with real processes in plugins/tierkit-redis/tests/test_redis_backplane.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tierkit._backplane import (
    MESSAGE_NAMES,
    Backplane,
    Op,
    carries,
    coalesce,
    decode,
    encode,
    split,
    with_tail,
)


def test_a_burst_of_changes_travels_as_few_messages() -> None:
    ops: list[Op] = [
        ("keys", ("a",)),
        ("tags", ("t",)),
        ("keys", ("b", "a")),
        ("prefix", ("user:",)),
        ("tags", ("t",)),
    ]
    assert coalesce(ops) == [("prefix", ("user:",)), ("keys", ("a", "b")), ("tags", ("t",))]


def test_a_clear_covers_every_other_change() -> None:
    assert coalesce([("keys", ("a",)), ("clear", ()), ("prefix", ("p",))]) == [("clear", ())]


def test_many_keys_are_split_into_bounded_messages() -> None:
    keys = tuple(f"k{i}" for i in range(MESSAGE_NAMES + 1))
    assert coalesce([("keys", keys)]) == [("keys", keys[:MESSAGE_NAMES]), ("keys", keys[MESSAGE_NAMES:])]


def test_messages_round_trip_and_hostile_ones_are_refused() -> None:
    ops: list[Op] = [("keys", ("a", "b")), ("tags", ("t",)), ("prefix", ("p:",)), ("clear", ())]
    for op in ops:
        assert decode(encode("me", op)) == ("me", op)
    for data in (
        b"not json",
        b"[]",
        b'{"o": "x"}',
        b'{"o": "x", "keys": [1]}',
        b'{"o": "x", "prefix": ["a", "b"]}',
    ):
        assert decode(data) is None


class _Silent:
    """A transport that delivers nothing by itself: the test hands messages to the listener."""

    channel = "test"

    def publish(self, message: bytes) -> None:
        pass

    def subscribe(self, listener: Any) -> None:
        listener.on_subscribed()

    def close(self) -> None:
        pass


def test_own_echoes_are_skipped_before_decoding_and_a_lookalike_origin_is_not() -> None:
    backplane = Backplane(_Silent, (), "ns", _Silent())
    try:
        own = encode(backplane.origin, ("keys", ("k",)))
        assert own.startswith(backplane.own_mark)
        backplane.on_message(own)
        backplane.on_message(own[:-1])  # garbled, but ours by its first bytes: skipped as well
        assert (backplane.received, backplane.malformed) == (0, 0)
        lookalike = encode(backplane.origin + "0", ("keys", ("k",)))  # another process's name
        backplane.on_message(lookalike)
        assert backplane.received == 1
    finally:
        backplane.close()


class _BrokenDrain(_Silent):
    """A transport whose optional ``drain`` raises."""

    def drain(self) -> None:
        raise RuntimeError("bug in a third-party transport")


def test_a_transport_drain_that_raises_never_reaches_a_read(caplog: pytest.LogCaptureFixture) -> None:
    backplane = Backplane(_BrokenDrain, (), "ns", _BrokenDrain())
    try:
        assert backplane.fresh is not None
        caplog.set_level(logging.WARNING, logger="tierkit")
        for _ in range(3):
            backplane.fresh.until = float("-inf")
            assert backplane.stamp() == backplane.log.seq  # a read's catch-up: no exception
        warnings = [r for r in caplog.records if "drain() raised" in r.getMessage()]
        assert len(warnings) == 1, "logged once, not per catch-up"
    finally:
        backplane.close()


def test_a_message_may_carry_a_binary_tail_after_its_json() -> None:
    message = encode("me", ("keys", ("k",)))
    assert not carries(message) and split(message) == (message, None)
    tailed = with_tail(message, 7)
    assert carries(tailed), "a tier may append the stored value"
    assert split(tailed) == (message, None)
    assert split(tailed + b"\x00stored\x00") == (message, b"\x00stored\x00")
    assert decode(split(tailed + b"value")[0]) == ("me", ("keys", ("k",)))
