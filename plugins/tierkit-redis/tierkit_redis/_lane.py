"""The ``redis`` tier's reads and single-key writes without redis-py's per-command machinery.

``Redis.get`` spends most of a GET miss outside the socket: two ``getpid`` calls
(the pool's fork check), the pool's lock, a ``poll`` for stray bytes on the
pooled connection, a retry object with two closures and, since redis-py 6,
metrics hooks on checkout, release and completion — about 140 000 instructions
and five system calls besides the ``sendto``/``recvfrom`` pair.  A cache miss
in tierkit pays that, and then asks the tiers below Redis; a ``set`` pays it
on top of the round trip it exists for.

A :class:`Lane` keeps its own idle connections (made by the client's pool, so
they count against ``max_connections`` and carry the same settings) and sends
pre-packed ``GET``, ``SET``, ``EVALSHA`` and ``MULTI``/``EXEC`` commands, and ``MGET``
packed by the connection, through redis-py's connection methods, which keep their error
handling (timeouts, disconnect on error, lazy reconnect).  It keeps the guarantees those
skipped steps gave:

* **stray bytes** — a connection goes back to the idle list connected only after
  its reply has been read in full; anything else (an error, a timeout, a
  ``KeyboardInterrupt`` between the send and the read) disconnects it first, so
  no reply can be read by the next command.
* **fork** — a child forgets the parent's connections (``os.register_at_fork``):
  it never writes to a socket its parent uses.
* **retries** — a connection error is retried ``retries`` times on a fresh
  connection, as redis-py does for every command; a timeout is not.  One more
  attempt is allowed when the connection had been idle, as redis-py's checkout
  reconnects one the server closed.
* **scripts** — ``EVALSHA``, and on ``NOSCRIPT`` (a restarted or flushed server)
  ``EVAL``, which loads the script again, as redis-py's ``Script`` does.
* **transactions** — every reply of a ``MULTI`` … ``EXEC`` is read before the connection
  goes back, an error reply among them included.

Only for the plain pool of a single server, speaking RESP2, without client-side
caching; other clients (Sentinel, cluster) keep redis-py's commands.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

_GET = b"*2\r\n$3\r\nGET\r\n$"
_MULTI, _EXEC = b"*1\r\n$5\r\nMULTI\r\n", b"*1\r\n$4\r\nEXEC\r\n"
JOIN_UP_TO = 1 << 16
"""Bytes up to which a command goes out as one buffer (one ``send``); a larger value goes apart, uncopied."""
_lanes: weakref.WeakSet[Lane] = weakref.WeakSet()

Script = Callable[..., Any]
"""``script(keys=…, args=…)``: a Lua script run by name (``EVALSHA``), as redis-py's ``Script`` is called."""


def lane_of(client: redis.Redis, retries: int) -> Lane | None:
    """A lane for ``client``'s commands, or ``None`` when its pool is not one the lane can use."""
    pool = client.connection_pool
    if type(pool) is not redis.ConnectionPool or getattr(pool, "cache", None) is not None:
        return None
    if pool.connection_kwargs.get("protocol") not in (None, 2, "2"):
        return None  # RESP3 may interleave push messages with replies
    return Lane(pool, retries)


def _command(*parts: bytes) -> tuple[bytes, ...]:
    """``parts`` as a RESP command, in as few buffers as :data:`JOIN_UP_TO` allows."""
    chunks = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if len(part) > JOIN_UP_TO:
            chunks += (b"$%d\r\n" % len(part), part, b"\r\n")
        else:
            chunks.append(b"$%d\r\n%b\r\n" % (len(part), part))
    return (b"".join(chunks),) if len(chunks) == len(parts) + 1 else tuple(chunks)


def _set(name: str, value: bytes, ttl_ms: int) -> tuple[bytes, ...]:
    """``SET name value``, with ``PX ttl_ms`` unless it is 0 (no expiry)."""
    if ttl_ms:
        return _command(b"SET", name.encode(), value, b"PX", b"%d" % ttl_ms)
    return _command(b"SET", name.encode(), value)


def _bytes(arg: object) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if type(arg) is int:
        return b"%d" % arg
    raise TypeError(f"a lane sends bytes, str and int, not {type(arg).__name__}")


class Lane:
    """Commands on connections of ``pool`` kept apart from it (see the module docstring)."""

    __slots__ = ("__weakref__", "_attempts", "_idle", "_make")

    def __init__(self, pool: redis.ConnectionPool, retries: int) -> None:
        self._make = pool.make_connection
        self._idle: list[Any] = []
        self._attempts = 1 + retries
        _lanes.add(self)

    def get(self, name: str) -> bytes | None:
        """``GET name``: the value, ``None`` if absent; redis-py's exceptions otherwise."""
        raw = name.encode()
        return self._call((b"%b%d\r\n%b\r\n" % (_GET, len(raw), raw),))  # type: ignore[no-any-return]

    def mget(self, names: Sequence[str]) -> list[bytes | None]:
        """``MGET names``: a value, or ``None``, per name (packed by the connection, as redis-py does)."""
        return self._call(("MGET", *names), packed=False)  # type: ignore[no-any-return]

    def set(self, name: str, value: bytes, ttl_ms: int) -> None:
        """``SET name value`` with ``PX ttl_ms`` (0: no expiry)."""
        self._call(_set(name, value, ttl_ms))

    def script(self, text: str) -> Script:
        """``text`` run by its SHA-1 (``EVALSHA``), loaded again with ``EVAL`` when the server lacks it."""
        sha = hashlib.sha1(text.encode()).hexdigest().encode()
        source = text.encode()

        def run(keys: Sequence[str] = (), args: Sequence[object] = ()) -> Any:
            rest = [_bytes(key) for key in keys] + [_bytes(arg) for arg in args]
            count = b"%d" % len(keys)
            try:
                return self._call(_command(b"EVALSHA", sha, count, *rest))
            except NoScriptError:
                return self._call(_command(b"EVAL", source, count, *rest))

        return run

    def set_announced(self, name: str, value: bytes, ttl_ms: int, channel: str, message: bytes) -> None:
        """``SET name value`` (``PX ttl_ms``; 0: none), then ``PUBLISH channel message``, as one
        transaction (``MULTI`` … ``EXEC``) in one round trip: atomic like a script — no other
        client's command runs between the two, so messages leave in write order — and cheaper for
        the server than ``EVALSHA`` of the same two commands."""
        parts = (_MULTI, *_set(name, value, ttl_ms), *_command(b"PUBLISH", channel.encode(), message), _EXEC)
        self._call((b"".join(parts),) if len(parts) == 4 else parts, replies=4)

    def _call(self, command: tuple[Any, ...], packed: bool = True, replies: int = 1) -> Any:
        """Send ``command`` (``packed`` bytes, else its arguments) on an idle connection and read its
        ``replies``: the last one, or the first error reply, raised once all have been read.

        See the module docstring for what it guarantees.
        """
        idle = self._idle
        try:
            conn = idle.pop()
            attempts = self._attempts + 1  # the server may have closed it while idle
        except IndexError:
            conn = self._make()
            attempts = self._attempts
        clean = False
        try:
            while True:
                attempts -= 1
                error: ResponseError | None = None
                try:
                    if packed:
                        conn.send_packed_command(command)
                    else:
                        conn.send_command(*command)
                    for _ in range(replies):
                        try:
                            reply = conn.read_response()
                        except ResponseError as exc:  # read in full: the connection is fine
                            error = error or exc
                except RedisConnectionError:  # redis-py has disconnected it; the next send reconnects
                    if attempts <= 0:
                        raise
                    continue
                clean = True
                if error is not None:
                    raise error
                return reply
        finally:
            if not clean:
                conn.disconnect()
            idle.append(conn)

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without touching their sockets."""
        self._idle = []

    def close(self) -> None:
        """Disconnect the idle connections (the tier is closing)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()


def _forget_all() -> None:
    for lane in list(_lanes):
        lane.forget()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_all)
