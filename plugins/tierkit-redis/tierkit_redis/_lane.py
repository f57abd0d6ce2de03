"""The ``redis`` tier's GET and MGET without redis-py's per-command machinery.

``Redis.get`` spends most of a GET miss outside the socket: two ``getpid`` calls
(the pool's fork check), the pool's lock, a ``poll`` for stray bytes on the
pooled connection, a retry object with two closures and, since redis-py 6,
metrics hooks on checkout, release and completion — about 140 000 instructions
and five system calls besides the ``sendto``/``recvfrom`` pair.  A cache miss
in tierkit pays that, and then asks the tiers below Redis.

A :class:`ReadLane` keeps its own idle connections (made by the client's pool, so
they count against ``max_connections`` and carry the same settings) and sends a
pre-packed ``GET``, or an ``MGET`` the connection packs, through redis-py's
connection methods, which keep their error handling (timeouts, disconnect on
error, lazy reconnect).  It keeps the
guarantees those skipped steps gave:

* **stray bytes** — a connection goes back to the idle list connected only after
  its reply has been read in full; anything else (an error, a timeout, a
  ``KeyboardInterrupt`` between the send and the read) disconnects it first, so
  no reply can be read by the next GET.
* **fork** — a child forgets the parent's connections (``os.register_at_fork``):
  it never writes to a socket its parent uses.
* **retries** — a connection error is retried ``retries`` times on a fresh
  connection, as redis-py does; a timeout is not.  One more attempt is allowed
  when the connection had been idle, as redis-py's checkout reconnects one the
  server closed.  GET and MGET are idempotent, so sending them again is harmless.

Only for the plain pool of a single server, speaking RESP2, without client-side
caching; other clients (Sentinel, cluster) keep ``Redis.get`` and ``Redis.mget``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

_GET = b"*2\r\n$3\r\nGET\r\n$"
_lanes: weakref.WeakSet[ReadLane] = weakref.WeakSet()


def read_lane(client: redis.Redis, retries: int) -> ReadLane | None:
    """A lane for ``client``'s GETs and MGETs, or ``None`` when its pool is not one the lane can use."""
    pool = client.connection_pool
    if type(pool) is not redis.ConnectionPool or getattr(pool, "cache", None) is not None:
        return None
    if pool.connection_kwargs.get("protocol") not in (None, 2, "2"):
        return None  # RESP3 may interleave push messages with replies
    return ReadLane(pool, retries)


class ReadLane:
    """GETs and MGETs on connections of ``pool`` kept apart from it (see the module docstring)."""

    __slots__ = ("__weakref__", "_attempts", "_idle", "_make")

    def __init__(self, pool: redis.ConnectionPool, retries: int) -> None:
        self._make = pool.make_connection
        self._idle: list[Any] = []
        self._attempts = 1 + retries
        _lanes.add(self)

    def get(self, name: str) -> bytes | None:
        """``GET name``: the value, ``None`` if absent; redis-py's exceptions otherwise."""
        raw = name.encode()
        return self._ask((b"%b%d\r\n%b\r\n" % (_GET, len(raw), raw),), True)  # type: ignore[no-any-return]

    def mget(self, names: Sequence[str]) -> list[bytes | None]:
        """``MGET names``: a value, or ``None``, per name (packed by the connection, as redis-py does)."""
        return self._ask(("MGET", *names), False)  # type: ignore[no-any-return]

    def _ask(self, command: tuple[Any, ...], packed: bool) -> Any:
        """Send ``command`` (``packed`` bytes, else its arguments) on an idle connection; its reply."""
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
                try:
                    if packed:
                        conn.send_packed_command(command)
                    else:
                        conn.send_command(*command)
                    reply = conn.read_response()
                except ResponseError:  # the reply was read in full: the connection is fine
                    clean = True
                    raise
                except RedisConnectionError:  # redis-py has disconnected it; the next send reconnects
                    if attempts <= 0:
                        raise
                    continue
                clean = True
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
