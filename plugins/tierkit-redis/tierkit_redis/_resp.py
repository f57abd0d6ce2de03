"""The subscription's replies, read from its socket in large chunks (docs/coherence.md).

A burst of backplane messages is one ``recv`` and one parse loop — not redis-py's read
path per message — on the subscriber thread, or on a reader's own thread when it catches
up (:meth:`Replies.arrived` lets the subscriber thread watch the socket meanwhile).
hiredis parses when it is installed (the ``hiredis`` extra); otherwise redis-py's own
parser reads reply by reply on the subscriber thread alone (:class:`ConnectionReplies`), as a
plain subscription would.
"""

from __future__ import annotations

import select
from typing import Any

CHUNK = 1 << 16
"""Bytes asked of the socket per read."""


class ReplyError(Exception):
    """An error reply (``-ERR …``) from the server."""


class Replies:
    """The replies arriving on a connected redis-py connection's socket, parsed by hiredis's ``Reader``."""

    def __init__(self, connection: Any) -> None:
        from hiredis import Reader

        self._sock = connection._sock
        self._reader = Reader(replyError=ReplyError)

    def next(self) -> Any:
        """The next whole reply already received, or ``False``."""
        return self._reader.gets()

    drains = True
    """Whether another thread may read this socket while the subscriber thread waits in :meth:`arrived`."""

    def arrived(self, timeout: float) -> bool:
        """Whether bytes are waiting in the socket, after up to ``timeout`` seconds; receives nothing.

        Safe while another thread receives, unlike :meth:`wait`: it asks the kernel only (bytes a TLS
        layer has decrypted but not handed out are not seen; a reader that drains takes them all).
        """
        return bool(select.select([self._sock], [], [], timeout)[0])

    def wait(self, timeout: float) -> bool:
        """Receive what arrives within ``timeout`` seconds: whether anything did (raises once closed)."""
        sock = self._sock
        pending = getattr(sock, "pending", None)  # TLS: decrypted bytes select() does not see
        if not (pending is not None and pending()) and not select.select([sock], [], [], timeout)[0]:
            return False
        data = sock.recv(CHUNK)
        if not data:
            raise ConnectionError("connection closed by the server")
        self._reader.feed(data)
        return True

    def reply(self, timeout: float) -> Any:
        """The next reply, waiting up to ``timeout`` seconds for it (a command's answer)."""
        while (reply := self.next()) is False:
            if not self.wait(timeout):
                raise TimeoutError(f"no reply within {timeout:g}s")
        return reply


class ConnectionReplies(Replies):
    """The same through redis-py's own parser, one reply per call (without hiredis)."""

    drains = False  # redis-py's parser reads ahead into its own buffer: one thread only

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def arrived(self, timeout: float) -> bool:
        return self.wait(timeout)

    def next(self) -> Any:
        from redis.exceptions import ResponseError

        connection = self._connection
        if not connection.can_read(timeout=0):
            return False
        try:
            # push_request: RESP3 subscription replies are pushes, which redis-py would otherwise
            # route to a push handler and never return.
            return connection.read_response(disable_decoding=True, push_request=True)
        except ResponseError as exc:
            return ReplyError(str(exc))

    def wait(self, timeout: float) -> bool:
        return bool(self._connection.can_read(timeout=timeout))


def replies_of(connection: Any) -> Replies:
    """hiredis reading whole bursts if installed (the ``hiredis`` extra), else redis-py's reply by reply."""
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return ConnectionReplies(connection)
    return Replies(connection)
