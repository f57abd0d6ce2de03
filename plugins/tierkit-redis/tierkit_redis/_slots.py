"""Hash slots of Redis Cluster, and a hash tag for each, so a tag index can live beside its entries.

A Lua script may only touch keys of one slot, so in a cluster the tag index is kept per
slot: the set of tag ``T`` for the entries of slot ``s`` is named with ``{slot_tag(s)}``,
a short string whose own slot is ``s``.
"""

from __future__ import annotations

from binascii import crc_hqx
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["REDIS_CLUSTER_HASH_SLOTS", "key_slot", "slot_tag"]


def slot_tag(slot: int) -> str:
    """A four-letter string (letters ``@`` to ``O``) whose hash slot is ``slot``."""
    return _slot_tags()[slot]


@cache
def _slot_tags() -> tuple[str, ...]:
    """One hash tag per slot, found once per process (~50 ms).

    CRC16 is linear, and the low nibbles of four such letters are 16 free bits that
    it maps one-to-one onto the 65 536 CRC values, so every slot is reached.
    """
    pairs = [bytes((0x40 | byte >> 4, 0x40 | byte & 15)) for byte in range(256)]
    found: dict[int, bytes] = {}
    for first in pairs:
        for second in pairs:
            text = first + second
            found.setdefault(crc_hqx(text, 0) % REDIS_CLUSTER_HASH_SLOTS, text)
    return tuple(found[slot].decode() for slot in range(REDIS_CLUSTER_HASH_SLOTS))
