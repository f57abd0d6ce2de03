"""The subscription's replies, read from its socket in large chunks (docs/coherence.md).

A burst of backplane messages is one ``recv`` and one parse loop on the subscriber
thread — not redis-py's read path per message — so the thread takes the GIL once per
burst.  hiredis parses when it is installed (the ``hiredis`` extra); otherwise
:class:`PyReader`, a small parser of the RESP2/RESP3 replies a subscription gets.
"""

from __future__ import annotations

import select
from typing import Any

CHUNK = 1 << 16
"""Bytes asked of the socket per read."""


class ReplyError(Exception):
    """An error reply (``-ERR …``) from the server."""


class PyReader:
    """hiredis's ``Reader`` interface (``feed``, ``gets``) without hiredis.

    Replies come as bytes, ints, lists (arrays, sets, pushes), dicts (maps), ``None``,
    or a :class:`ReplyError`; ``gets`` answers ``False`` until a whole reply is buffered.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def gets(self) -> Any:
        try:
            reply, self._pos = self._parse(self._pos)
        except IndexError:  # incomplete: wait for more bytes
            return False
        return reply

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._buffer.find(b"\r\n", pos)
        if end < 0:
            raise IndexError
        return bytes(self._buffer[pos:end]), end + 2

    def _parse(self, pos: int) -> tuple[Any, int]:
        if pos >= len(self._buffer):
            raise IndexError
        kind = bytes(self._buffer[pos : pos + 1])
        line, pos = self._line(pos + 1)
        if kind == b"+":
            return line, pos
        if kind == b"-":
            return ReplyError(line.decode(errors="replace")), pos
        if kind == b":":
            return int(line), pos
        if kind in (b"$", b"="):
            size = int(line)
            if size < 0:
                return None, pos
            if pos + size + 2 > len(self._buffer):
                raise IndexError
            return bytes(self._buffer[pos : pos + size]), pos + size + 2
        if kind == b"_":
            return None, pos
        if kind in (b"*", b">", b"~", b"%"):
            count = int(line)
            if count < 0:
                return None, pos
            items = []
            for _ in range(2 * count if kind == b"%" else count):
                item, pos = self._parse(pos)
                items.append(item)
            if kind == b"%":
                return dict(zip(items[::2], items[1::2], strict=True)), pos
            return items, pos
        raise ConnectionError(f"unexpected reply type {kind!r} on the subscription")


def make_reader() -> Any:
    """hiredis's reader if installed (C: a burst of messages costs little), else :class:`PyReader`."""
    try:
        from hiredis import Reader
    except ImportError:
        return PyReader()
    return Reader(replyError=ReplyError)


class Replies:
    """The replies arriving on a connected redis-py connection's socket, parsed by ``reader``."""

    def __init__(self, connection: Any, reader: Any) -> None:
        self._sock = connection._sock
        self._reader = reader

    def next(self) -> Any:
        """The next whole reply already received, or ``False``."""
        return self._reader.gets()

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
