"""The subscriber's own read path: replies parsed from raw bytes, with or without hiredis."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from tierkit_redis._resp import PyReader, Replies, ReplyError, make_reader

WIRE = (
    b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\nl\r\n"  # RESP2 message, CRLF inside the payload
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$0\r\n\r\n"  # RESP3 push, empty payload
    b"+PONG\r\n"
    b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    b"%1\r\n$22\r\nnotify-keyspace-events\r\n$2\r\nKA\r\n"
    b":3\r\n"
    b"$-1\r\n_\r\n"
    b"-NOPERM no\r\n"
)


def _all(reader: Any, chunks: list[bytes]) -> list[Any]:
    out = []
    for chunk in chunks:
        reader.feed(chunk)
        while (reply := reader.gets()) is not False:
            out.append(reply)
    return out


@pytest.mark.parametrize("size", [1, 3, len(WIRE)])
def test_the_pure_python_reader_parses_what_hiredis_parses(size: int) -> None:
    chunks = [WIRE[i : i + size] for i in range(0, len(WIRE), size)]
    replies = _all(PyReader(), chunks)
    *values, error = replies
    assert values == [
        [b"message", b"ch", b"he\r\nl"],
        [b"message", b"ch", b""],
        b"PONG",
        [b"pong", b""],
        {b"notify-keyspace-events": b"KA"},
        3,
        None,
        None,
    ]
    assert isinstance(error, ReplyError) and str(error) == "NOPERM no"
    hiredis_replies = _all(make_reader(), chunks)
    assert [r for r in hiredis_replies if not isinstance(r, Exception)] == values
    assert isinstance(hiredis_replies[-1], ReplyError)


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_subscription_read_without_hiredis_delivers_bursts(redis_url: str, protocol: int) -> None:
    client = redis.Redis.from_url(redis_url, protocol=protocol)
    connection = client.connection_pool.make_connection()
    connection.connect()
    try:
        replies = Replies(connection, PyReader())
        connection.send_command("SUBSCRIBE", "resp-test")
        assert replies.reply(5.0)[0] == b"subscribe"
        payloads = [b"x" * n for n in range(300)]
        pipe = client.pipeline(transaction=False)
        for payload in payloads:
            pipe.publish("resp-test", payload)
        pipe.execute()
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < len(payloads) and time.monotonic() < deadline:
            replies.wait(1.0)
            while (reply := replies.next()) is not False:
                got.append(reply[2])
        assert got == payloads
        assert not replies.wait(0.05)  # nothing more: the wait times out
    finally:
        connection.disconnect()
        client.close()
