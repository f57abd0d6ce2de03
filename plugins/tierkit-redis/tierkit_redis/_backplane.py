"""The backplane over Redis pub/sub: one channel per namespace (docs/coherence.md says why pub/sub).

A subscriber thread holds one connection of its own, made by the tier's pool
(so a Sentinel-managed pool finds the current master on each reconnect, and a
cluster subscribes on one of its nodes: plain ``PUBLISH`` reaches every node).
It tells the backplane at once when the connection is lost — redis-py's
``PubSub`` would reconnect silently and hide the messages missed meanwhile —
and PINGs when idle, so that a dead peer is noticed within two heartbeats.

Once connected, the socket is read directly (:mod:`tierkit_redis._resp`): each burst of
messages is one ``recv`` and is handled whole.  Readers of the cache drain it on their own
thread (:meth:`RedisBackplane.drain`, every millisecond while they read): while they do, the
thread leaves the bursts to them and only watches — it would otherwise take the GIL from a
busy reader for every burst (docs/coherence.md).  It delivers what no reader drained within
:data:`LEAVE` (an idle process), sends the heartbeats and reconnects.
"""

from __future__ import annotations

import socket
import threading
import time
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
LEAVE = 0.05
"""Seconds since a reader last drained within which the thread leaves a burst to the readers (and
looks again after as long): it then takes the GIL at most this often, not once per burst."""


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
        self._reading = threading.Lock()
        """Held by whoever receives from the subscription and delivers (the thread, or a reader)."""
        self._live: tuple[Replies, Listener, ForeignWrites | None] | None = None
        """What :meth:`drain` reads: set once subscribed, cleared when the connection goes."""
        self._drained_at = 0.0  # time.monotonic() of the last drain by a reader
        self._heard_at = 0.0  # time.monotonic() of the last bytes received, by anyone
        self._pinged_at: float | None = None
        self._failure: BaseException | None = None  # what a reader's drain ran into, for the thread

    def __repr__(self) -> str:
        return f"RedisBackplane(channel={self.channel!r})"

    @staticmethod
    def unpack_value(raw: bytes, now: float) -> Entry | None:
        """The entry in the stored bytes a message carries (the ``unpack_value`` capability)."""
        return unpack(raw, now)

    def publish(self, message: bytes) -> None:
        self._publish(self.channel, message)

    def drain(self) -> None:
        """Deliver, on the calling thread, what has arrived (the ``drain`` capability); never waits.

        A failure is left to the subscriber thread, woken to report it and reconnect.
        """
        live = self._live
        if live is None or not live[0].drains:
            return
        with self._reading:
            if live is not self._live:
                return  # reconnected meanwhile
            try:
                self._pump(*live)
            except Exception as exc:
                self._failure = exc
                self._live = None
                self._wake()
                return
            self._drained_at = time.monotonic()

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
        self._heard_at, self._pinged_at, self._failure = time.monotonic(), None, None
        while not self._closed.is_set():
            now = time.monotonic()
            if self._pinged_at is not None and now - self._pinged_at >= HEARTBEAT:
                raise ConnectionError(f"no answer to PING within {HEARTBEAT:g}s")
            if self._pinged_at is None and now - self._heard_at >= HEARTBEAT:
                connection.send_command("PING")
                self._pinged_at = now
            quiet = HEARTBEAT - (now - (self._heard_at if self._pinged_at is None else self._pinged_at))
            arrived = replies.arrived(max(quiet, 0.0))
            with self._reading:
                if self._failure is not None:
                    raise self._failure
                if not arrived or time.monotonic() - self._drained_at >= LEAVE:
                    self._pump(replies, listener, foreign)
                    continue
            self._closed.wait(LEAVE)  # the readers are draining: look again later

    def _pump(self, replies: Replies, listener: Listener, foreign: ForeignWrites | None) -> None:
        """Receive what has arrived and deliver every whole reply (hold :attr:`_reading`)."""
        while replies.wait(0):
            self._heard_at = time.monotonic()
        while (reply := replies.next()) is not False:
            kind = reply[0] if isinstance(reply, list) and reply else reply  # RESP3: a list subclass
            if kind == b"message":
                if foreign is not None:
                    foreign.announced(reply[2])
                listener.on_message(reply[2])
            elif kind == b"pmessage" and foreign is not None:
                foreign.event(reply[2], reply[3])
            elif kind in (b"pong", b"PONG"):
                self._pinged_at = None
            elif kind == b"subscribe":
                listener.on_subscribed()
                self._live = (replies, listener, foreign)
            elif isinstance(reply, ReplyError):
                raise reply
        if foreign is not None:
            message = foreign.flush()  # the burst is over: what no writer announced
            if message is not None:
                listener.on_message(message)

    def _wake(self) -> None:
        """Make the thread's wait on the socket return (a reader's drain failed)."""
        connection = self._connection
        sock = getattr(connection, "_sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _drop(self) -> None:
        self._live = None
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.disconnect()
            except Exception:
                pass
