"""The subscriber's own read path: bursts read whole through hiredis, or reply by reply through redis-py."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from tierkit_redis._resp import ConnectionReplies, Replies, ReplyError, replies_of

pytestmark = pytest.mark.redis


def test_hiredis_reads_bursts_when_installed(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    connection = client.connection_pool.make_connection()
    connection.connect()
    try:
        assert type(replies_of(connection)) is Replies  # the test extra installs hiredis
    finally:
        connection.disconnect()
        client.close()


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("kind", [Replies, ConnectionReplies])
def test_a_subscription_delivers_every_message_in_order(redis_url: str, protocol: int, kind: Any) -> None:
    client = redis.Redis.from_url(redis_url, protocol=protocol)
    connection = client.connection_pool.make_connection()
    connection.connect()
    try:
        replies = kind(connection)
        connection.send_command("CONFIG", "GET", "no-such-setting-*")
        assert replies.reply(5.0) in ([], {})
        connection.send_command("NO-SUCH-COMMAND")
        error = replies.reply(5.0)
        assert isinstance(error, ReplyError) and "unknown command" in str(error)
        connection.send_command("SUBSCRIBE", "resp-test")
        assert replies.reply(5.0)[0] == b"subscribe"
        payloads = [b"x" * n + b"\r\n" for n in range(300)]  # CRLF inside payloads too
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
