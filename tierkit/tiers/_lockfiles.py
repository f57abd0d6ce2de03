"""Computation locks between the processes of one machine: one lock file per key being computed.

The file tier's ``tierkit_lock`` (docs/stampede.md).  A lock is an exclusive ``flock`` on
``<directory>/<namespace>/locks/<hash of the key>.lock``: the kernel releases it when its
holder dies, however it dies, so the lease the chain asks for needs no expiry here and a
renewal only confirms the holder.  The file names the holder (``pid token``) for whoever
looks.  The holder unlinks the file before closing it; a process that opened the old
file and locks it afterwards sees that the path names another file now and answers
"held" (its next try opens the new one).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import weakref
from pathlib import Path

if sys.platform != "win32":
    import fcntl

_live: weakref.WeakSet[LockFiles] = weakref.WeakSet()


class LockFiles:
    """The computation locks of one namespace directory, and those this process holds."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: dict[str, tuple[str, int, Path]] = {}  # key -> (token, descriptor, path)
        self._mutex = threading.Lock()
        _live.add(self)

    def lock(self, key: str, token: str) -> bool:
        """Take the lock of ``key`` for ``token``; ``True`` too if ``token`` already holds it."""
        with self._mutex:
            held = self._held.get(key)
            if held is not None:
                return held[0] == token
            path = self._path(key)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            if not _names(path, fd):  # its holder removed it after we opened it: held by another
                os.close(fd)
                return False
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {token}\n".encode())
            self._held[key] = (token, fd, path)
            return True

    def unlock(self, key: str, token: str) -> bool:
        """Release the lock of ``key`` if ``token`` holds it: remove the file, then close it."""
        with self._mutex:
            held = self._held.get(key)
            if held is None or held[0] != token:
                return False
            del self._held[key]
        _, fd, path = held
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
        return True

    def close(self) -> None:
        """Release every lock this process holds here."""
        with self._mutex:
            held, self._held = self._held, {}
        for _, fd, path in held.values():
            path.unlink(missing_ok=True)
            os.close(fd)

    def _path(self, key: str) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.directory / (hashlib.blake2b(key.encode(), digest_size=16).hexdigest() + ".lock")

    def _forget_inherited(self) -> None:
        """In a forked child: the parent's locks are the parent's; drop our copies of them."""
        held, self._held = self._held, {}
        self._mutex = threading.Lock()
        for _, fd, _ in held.values():
            os.close(fd)


def _names(path: Path, fd: int) -> bool:
    """Does ``path`` still name the file open as ``fd``?"""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _after_fork_in_child() -> None:
    for files in list(_live):
        files._forget_inherited()


if sys.platform != "win32":
    os.register_at_fork(after_in_child=_after_fork_in_child)
