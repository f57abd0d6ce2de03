"""The backplane's wire format and the sender's coalescing (no Redis: pure functions).

The transport is tested with real processes in plugins/tierkit-redis/tests/test_redis_backplane.py.
"""

from __future__ import annotations

from tierkit._backplane import MESSAGE_NAMES, Op, coalesce, decode, encode


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
