"""The backplane over Redis pub/sub: one channel per namespace (docs/coherence.md says why pub/sub).

A subscriber thread holds one connection of its own, made by the tier's pool
(so a Sentinel-managed pool finds the current master on each reconnect, and a
cluster subscribes on one of its nodes: plain ``PUBLISH`` reaches every node).
It tells the backplane at once when the connection is lost — redis-py's
``PubSub`` would reconnect silently and hide the messages missed meanwhile —
and PINGs when idle, so that a dead peer is noticed within two heartbeats.

Once connected, the thread reads the socket itself (:mod:`tierkit_redis._resp`): each
burst of messages is one ``recv`` and is handled whole before the thread blocks again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

from tierkit import Entry
from tierkit_redis._format import unpack
from tierkit_redis._keyspace import ForeignWrites, publishes_events
from tierkit_redis._resp import Replies, ReplyError, replies_of

HEARTBEAT = 1.0
"""Seconds of silence on the subscription before a PING; no answer within as long again: lost."""
BACKOFF = (0.02, 1.0)
"""First and longest wait between reconnection attempts, in seconds."""


class Listener(Protocol):
    def on_subscribed(self) -> None: ...
    def on_message(self, data: bytes) -> None: ...
    def on_disconnected(self, reason: str) -> None: ...


class RedisBackplane:
    """Publish with the tier's client; subscribe on a connection ``connect()`` makes for the thread.

    ``describe`` turns a connection error into a password-free reason.  ``outbox``: the
    tier's, when its writes send the backplane's messages in their own round trip (the
    ``outbox`` capability of :class:`tierkit._backplane.Transport`).  ``keyspace``: the
    tier's entry keys, for watching other programs' writes through keyspace notifications
    when the server publishes them (``_keyspace``); ``None``: not watched.
    """

    def __init__(
        self,
        publisher: Any,
        connect: Callable[[], Any],
        channel: str,
        describe: Callable[[BaseException], str],
        outbox: ContextVar[bytes | None] | None = None,
        keyspace: ForeignWrites | None = None,
    ) -> None:
        self.channel = channel
        self.outbox = outbox
        self.keyspace = keyspace
        self.foreign_writes = "off" if keyspace is None else "connecting"
        """Whether other programs' writes are seen: ``watched``, ``off``, or why not (server settings)."""
        self._publish = publisher.publish
        self._connect = connect
        self._describe = describe
        self._closed = threading.Event()
        self._connection: Any = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"RedisBackplane(channel={self.channel!r})"

    @staticmethod
    def unpack_value(raw: bytes, now: float) -> Entry | None:
        """The entry in the stored bytes a message carries (the ``unpack_value`` capability)."""
        return unpack(raw, now)

    def publish(self, message: bytes) -> None:
        self._publish(self.channel, message)

    def subscribe(self, listener: Listener) -> None:
        self._thread = threading.Thread(
            target=self._listen, args=(listener,), name=f"tierkit-backplane {self.channel}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        connection = self._connection
        if connection is not None:
            try:
                connection.disconnect()
            except Exception:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * HEARTBEAT)

    def _listen(self, listener: Listener) -> None:
        wait = BACKOFF[0]
        while not self._closed.is_set():
            try:
                connection = self._connection = self._connect()
                connection.connect()
                replies = replies_of(connection)
                foreign = self._watch(connection, replies)
                connection.send_command("SUBSCRIBE", self.channel)
                self._serve(connection, replies, listener, foreign)
            except Exception as exc:
                if self._closed.is_set():
                    break
                listener.on_disconnected(self._describe(exc))
            else:
                wait = BACKOFF[0]
            finally:
                self._drop()
            if self._closed.wait(wait):
                break
            wait = min(wait * 2, BACKOFF[1])

    def details(self) -> dict[str, Any]:
        """What the backplane's report adds from its transport."""
        details: dict[str, Any] = {"foreign_writes": self.foreign_writes}
        if self.keyspace is not None:
            details["foreign_dropped"] = self.keyspace.seen
        return details

    def _watch(self, connection: Any, replies: Replies) -> ForeignWrites | None:
        """Listen to the keyspace events of the entry keys, if the server publishes them (asked on each
        connection: a failover may land on a server configured otherwise)."""
        if self.keyspace is None:
            return None
        connection.send_command("CONFIG", "GET", "notify-keyspace-events")
        watching = "watched"
        reply = replies.reply(HEARTBEAT)
        if isinstance(reply, ReplyError):
            # CONFIG renamed or forbidden (managed services set the events in their console, ACL
            # users): listen anyway — if the server publishes the events, they arrive.
            watching = "watched if published (CONFIG GET notify-keyspace-events refused: cannot tell)"
        else:
            if isinstance(reply, list):  # RESP2 gives [name, value]; RESP3 (redis-py 8's default) a map
                reply = dict(zip(reply[::2], reply[1::2], strict=False))
            flags = reply.get(b"notify-keyspace-events", b"") if isinstance(reply, dict) else b""
            flags = flags.decode() if isinstance(flags, bytes) else str(flags)
            if not publishes_events(flags):
                self.foreign_writes = (
                    f"not published: notify-keyspace-events is {flags!r}, needs K and g$ (or A)"
                )
                return None
        connection.send_command("PSUBSCRIBE", self.keyspace.pattern)
        if isinstance(replies.reply(HEARTBEAT), ReplyError):  # an ACL user without the __keyspace@ channels
            self.foreign_writes = "refused: PSUBSCRIBE to the keyspace channels"
            return None
        self.foreign_writes = watching
        return self.keyspace

    def _serve(
        self, connection: Any, replies: Replies, listener: Listener, foreign: ForeignWrites | None
    ) -> None:
        """Deliver until the connection fails (raises) or the backplane closes (returns)."""
        pinged = False
        while not self._closed.is_set():
            if not replies.wait(HEARTBEAT):
                if pinged:
                    raise ConnectionError(f"no answer to PING within {HEARTBEAT:g}s")
                connection.send_command("PING")
                pinged = True
                continue
            while (reply := replies.next()) is not False:
                kind = reply[0] if isinstance(reply, list) and reply else reply  # RESP3: a list subclass
                if kind == b"message":
                    if foreign is not None:
                        foreign.announced(reply[2])
                    listener.on_message(reply[2])
                elif kind == b"pmessage" and foreign is not None:
                    foreign.event(reply[2], reply[3])
                elif kind in (b"pong", b"PONG"):
                    pinged = False
                elif kind == b"subscribe":
                    listener.on_subscribed()
                elif isinstance(reply, ReplyError):
                    raise reply
            if foreign is not None:
                message = foreign.flush()  # the burst is over: what no writer announced
                if message is not None:
                    listener.on_message(message)

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.disconnect()
            except Exception:
                pass
