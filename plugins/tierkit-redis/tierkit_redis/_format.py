"""Layout of a stored value: one GET returns the payload, its deadline and its tags.

``[version: u8][expires_at: f64, +inf = none][tags_len: u16][tags][payload]``, little
endian.  ``tags`` is ``tags_len`` bytes of ``[len: u16][utf-8]`` per tag.  The deadline
is kept next to the payload (Redis also expires the key natively, with ``PX``) so that
the chain can copy the entry upward with its real deadline and so that the chain's
clock, not the server's, decides expiry.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from operator import itemgetter
from typing import cast

from tierkit import Entry, Payloads

VERSION = 1
_HEAD = struct.Struct("<BdH")
HEADER_SIZE = _HEAD.size
_pack_head = _HEAD.pack
_unpack_head = _HEAD.unpack_from
_TAG_LEN = struct.Struct("<H")
_NO_EXPIRY = math.inf
_entry = tuple.__new__  # Entry(...) runs a Python-level __new__; this is the C one


def pack(value: bytes, expires_at: float | None, tags: tuple[str, ...]) -> bytes:
    """Header + tags + ``value``."""
    deadline = _NO_EXPIRY if expires_at is None else expires_at
    if not tags:
        return _pack_head(VERSION, deadline, 0) + value
    block = b"".join(_TAG_LEN.pack(len(raw)) + raw for raw in (t.encode() for t in tags))
    if len(block) > 0xFFFF:
        raise ValueError("the tags of one entry must fit in 64 KiB")
    return b"".join((_pack_head(VERSION, deadline, len(block)), block, value))


_DEADLINE = struct.Struct("<Bd")
DEADLINE_SIZE = _DEADLINE.size
_payload = itemgetter(slice(HEADER_SIZE, None))
"""Bytes at the start of a stored value that say whose it is and until when it lives."""


def is_live(head: bytes, now: float) -> bool:
    """Whether a stored value starting with ``head`` (at least :data:`DEADLINE_SIZE` bytes) is ours
    and unexpired at ``now``: what ``has`` asks without fetching the value."""
    if len(head) < DEADLINE_SIZE:
        return False
    version, expires_at = _DEADLINE.unpack_from(head)
    return bool(version == VERSION and expires_at > now)


def unpack(raw: bytes, now: float) -> Entry | None:
    """The entry in ``raw``, or ``None`` if it has expired at ``now`` or is not ours."""
    try:
        version, expires_at, tags_len = _unpack_head(raw)
    except struct.error:
        return None
    if version != VERSION or expires_at <= now:
        return None
    if expires_at == _NO_EXPIRY:
        expires_at = None
    if not tags_len:
        return _entry(Entry, (raw[HEADER_SIZE:], expires_at, ()))
    end = HEADER_SIZE + tags_len
    tags = _tags(raw, HEADER_SIZE, end)
    return None if tags is None else _entry(Entry, (raw[end:], expires_at, tags))


def unpack_columns(keys: Sequence[str], raws: Sequence[bytes | None], now: float) -> Payloads:
    """The live entries among ``raws`` (an MGET's answer for ``keys``), column by column.

    When every key hit and every value is ours, untagged and live (a warm batch),
    the columns are built by C-level passes (the headers unpacked by ``map``, then
    turned into columns by ``zip``); otherwise :func:`unpack`'s common case is inlined
    per value, and the tags parsing called only for tagged ones.
    """
    if raws:
        try:
            versions, expiries, tag_lens = zip(*map(_unpack_head, cast("list[bytes]", raws)), strict=True)
        except (struct.error, TypeError):  # a miss (None) or a value too short to be ours: the loop below
            pass
        else:
            count = len(versions)
            if versions.count(VERSION) == count and tag_lens.count(0) == count and min(expiries) > now:
                deadlines: list[float | None] = list(expiries)
                if _NO_EXPIRY in expiries:
                    deadlines = [None if d == _NO_EXPIRY else d for d in deadlines]
                return Payloads(list(keys), list(map(_payload, cast("list[bytes]", raws))), deadlines)
    return _unpack_each(keys, raws, now)


def _unpack_each(keys: Sequence[str], raws: Sequence[bytes | None], now: float) -> Payloads:
    """:func:`unpack_columns` value by value: misses, other programs' values, tags, expiry."""
    hit_keys: list[str] = []
    payloads: list[bytes] = []
    deadlines: list[float | None] = []
    tagged: dict[str, tuple[str, ...]] = {}
    head = _unpack_head
    add_key, add_payload, add_deadline = hit_keys.append, payloads.append, deadlines.append
    for key, raw in zip(keys, raws, strict=True):
        if raw is None:
            continue
        try:
            version, expires_at, tags_len = head(raw)
        except struct.error:
            continue
        if tags_len or version != VERSION or expires_at <= now:
            entry = unpack(raw, now)
            if entry is None:
                continue
            payload, deadline, tags = entry
            if tags:
                tagged[key] = tags
            add_key(key)
            add_payload(payload)
            add_deadline(deadline)
            continue
        add_key(key)
        add_payload(raw[HEADER_SIZE:])
        add_deadline(None if expires_at == _NO_EXPIRY else expires_at)
    return Payloads(hit_keys, payloads, deadlines, tagged)


def as_entries(columns: Payloads) -> dict[str, Entry]:
    """:func:`unpack_columns`' answer as ``tierkit_get_many`` gives it: an ``Entry`` per key."""
    keys, payloads, deadlines, tags = columns
    entry = _entry
    return {
        key: entry(Entry, (payload, deadline, tags.get(key, ())))
        for key, payload, deadline in zip(keys, payloads, deadlines, strict=True)
    }


def _tags(raw: bytes, pos: int, end: int) -> tuple[str, ...] | None:
    """The tags in ``raw[pos:end]``, or ``None`` if the block is malformed."""
    if len(raw) < end:
        return None
    tags = []
    try:
        while pos < end:
            size = int.from_bytes(raw[pos : pos + 2], "little")
            pos += 2
            tags.append(raw[pos : pos + size].decode())
            pos += size
    except UnicodeDecodeError:
        return None
    return tuple(tags) if pos == end else None
