"""Writes by other programs, seen through Redis keyspace notifications (docs/coherence.md).

A server configured to publish keyspace events (``notify-keyspace-events`` with ``K`` and
the generic and string classes) tells the subscriber of every change to an entry key —
tierkit's own writes too, each of which is followed on the same connection by the
backplane message announcing it (the message is published after the write, in the same
script, pipeline or a little later from the sender thread).  So an event is held until the
end of the burst of replies it arrived in, and a backplane message naming the key after it
settles it: its writer announced it.  What is left names a write nobody announced; the
subscriber hands it to the backplane as an ordinary message (the format other programs may
publish themselves), and local copies of those keys are dropped.

A message split from its event by the network only costs a needless drop; a write by
another program is never missed while the subscription holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

IGNORED = frozenset({b"expired", b"evicted"})
"""Events that change no value: a local copy expires with the entry, and an evicted entry's copy is still
its last value."""
ORIGIN = "keyspace"
"""The sender named in the messages made of events (never a process's own name: those hold a pid)."""


def publishes_events(flags: str) -> bool:
    """Whether ``notify-keyspace-events`` = ``flags`` publishes keyspace events of string and generic
    commands."""
    return "K" in flags and ("A" in flags or {"g", "$"} <= set(flags))


class ForeignWrites:
    """The keyspace events of one subscription, held until their burst ends (see the module's doc)."""

    def __init__(self, db: int, entries: str, escape: Callable[[str], str]) -> None:
        channel_prefix = f"__keyspace@{db}__:{entries}"
        self.channel_prefix = channel_prefix.encode()
        self.pattern = escape(channel_prefix) + "*"
        """What the subscriber ``PSUBSCRIBE``s (``escape``: the tier's glob escaping)."""
        self.seen = 0
        """Keys dropped because no backplane message announced their change."""
        self._pending: dict[str, None] = {}

    def event(self, channel: bytes, event: bytes) -> None:
        """A keyspace notification: ``event`` happened to the key named by ``channel``."""
        if event in IGNORED or not channel.startswith(self.channel_prefix):
            return
        try:
            key = channel[len(self.channel_prefix) :].decode()
        except UnicodeDecodeError:  # tierkit writes UTF-8 keys: this one is not an entry of ours
            return
        if not key:
            return
        self._pending.pop(key, None)
        self._pending[key] = None

    def announced(self, data: bytes) -> None:
        """A backplane message went by: the pending keys it covers were announced by their writer."""
        pending = self._pending
        if not pending:
            return
        try:
            message: Any = orjson.loads(data.partition(b"\x00")[0])  # a carried value follows a NUL
        except orjson.JSONDecodeError:
            return
        if type(message) is not dict:
            return
        keys, prefix = message.get("keys"), message.get("prefix")
        if type(keys) is list:
            for key in keys:
                if type(key) is str:
                    pending.pop(key, None)
        elif "clear" in message:
            pending.clear()
        elif type(prefix) is list and prefix and type(prefix[0]) is str:
            for key in [k for k in pending if k.startswith(prefix[0])]:
                del pending[key]

    def flush(self) -> bytes | None:
        """The end of a burst: the message dropping what no writer announced, if anything."""
        if not self._pending:
            return None
        keys, self._pending = list(self._pending), {}
        self.seen += len(keys)
        return orjson.dumps({"o": ORIGIN, "keys": keys})
