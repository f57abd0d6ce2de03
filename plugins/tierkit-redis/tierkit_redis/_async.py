"""The Redis tier's native async hooks, on ``redis.asyncio`` clients built from the same options.

A ``redis.asyncio`` connection belongs to the event loop it was opened in, so
the tier keeps one client per running loop (:class:`LoopClients`): an app's
loop, a test client's loop and ``asyncio.run`` calls each get their own pool,
with the sync client's URL, TLS, ACL user, timeouts and pool size
(:mod:`tierkit_redis._aclient`): one server, a Sentinel-managed master, or a
cluster (whose hooks :class:`~tierkit_redis._cluster.RedisClusterTier` adapts).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from tierkit import Entry, Payloads, hookimpl
from tierkit_redis._format import as_entries, unpack, unpack_columns
from tierkit_redis._options import Options
from tierkit_redis._scripts import INVALIDATE

if TYPE_CHECKING:
    from collections.abc import Callable

    from tierkit_redis._aclient import AsyncClients


class LoopClients:
    """The ``redis.asyncio`` clients of each event loop, made on first use in that loop."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClients] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop | None, Any] = (None, None)

    def of_loop(self) -> AsyncClients:
        """The running loop's clients (the last loop's are remembered: the common case is one loop)."""
        loop = asyncio.get_running_loop()
        last_loop, clients = self._last
        if loop is not last_loop:
            clients = self._clients.get(loop)
            if clients is None:
                from tierkit_redis._aclient import connect_async

                clients = self._clients[loop] = connect_async(self._options)
            self._last = (loop, clients)
        return cast("AsyncClients", clients)

    def current(self) -> Any:
        """The running loop's client for writes (and reads, unless they go to replicas)."""
        return self.of_loop().write

    def reader(self) -> Any:
        """The running loop's client for reads."""
        return self.of_loop().read

    async def aclose(self) -> None:
        """Close the running loop's clients (the others belong to loops that must close their own)."""
        loop = asyncio.get_running_loop()
        clients = self._clients.pop(loop, None)
        if self._last[0] is loop:
            self._last = (None, None)
        if clients is not None:
            await clients.aclose()


class AsyncRedisHooks:
    """The ``tierkit_a*`` hooks of :class:`~tierkit_redis.RedisTier`: its sync hooks' logic, awaited."""

    _aclients: LoopClients
    _entries: str
    _tag_sets: str
    key_prefix: str
    _clock: Callable[[], float]
    _response_error: type[Exception]
    _write: Callable[..., None]

    @hookimpl
    async def tierkit_aget(self, key: str) -> Entry | None:
        try:
            raw = cast("bytes | None", await self._aclients.reader().get(self._entries + key))
        except self._response_error as exc:
            if str(exc).startswith("WRONGTYPE"):
                return None  # another program's value type under our prefix: a miss
            raise
        return None if raw is None else unpack(raw, self._clock())

    @hookimpl
    async def tierkit_aget_many(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        return as_entries(await self.tierkit_aget_many_payloads(keys))

    @hookimpl
    async def tierkit_aget_many_payloads(self, keys: Sequence[str]) -> Payloads:
        if not keys:
            return Payloads([], [], [])
        raws = await self._aclients.reader().mget(list(map(self._entries.__add__, keys)))
        return unpack_columns(keys, cast("list[bytes | None]", raws), self._clock())

    @hookimpl
    async def tierkit_aset(self, key: str, entry: Entry) -> None:
        await self.tierkit_aset_many({key: entry})

    @hookimpl
    async def tierkit_aset_many(self, entries: Mapping[str, Entry]) -> None:
        if not entries:
            return
        pipe = self._aclients.current().pipeline(transaction=False)
        now = self._clock()
        for key, entry in entries.items():
            self._write(pipe, key, entry, now)  # queues the same commands as the sync tier
        await pipe.execute()

    @hookimpl
    async def tierkit_adelete(self, key: str) -> bool:
        return bool(await self._aclients.current().unlink(self._entries + key))

    @hookimpl
    async def tierkit_ainvalidate_tags(self, tags: Sequence[str]) -> int:
        from tierkit_redis._tier import BATCH, _batches

        if not tags:
            return 0
        client = self._aclients.current()
        tag_sets = [self._tag_sets + tag for tag in tags]
        members = await client.sunion(tag_sets)
        if not members:
            return 0
        pipe = client.pipeline(transaction=False)
        for batch in _batches(members, BATCH):
            pipe.eval(INVALIDATE, len(tag_sets) + len(batch), *tag_sets, *batch, len(tags), *tags)
        return sum(await pipe.execute())

    @hookimpl
    async def tierkit_ainvalidate_prefix(self, prefix: str) -> int:
        from tierkit_redis._tier import glob_escape

        return await self._unlink_matching_async(glob_escape(self._entries + prefix) + "*")

    @hookimpl
    async def tierkit_aclear(self) -> None:
        from tierkit_redis._tier import glob_escape

        await self._unlink_matching_async(glob_escape(self.key_prefix) + "*")

    @hookimpl
    async def tierkit_aclose(self) -> None:
        await self._aclients.aclose()

    async def _unlink_matching_async(self, pattern: str) -> int:
        from tierkit_redis._tier import BATCH

        client = self._aclients.current()
        removed = 0
        batch: list[Any] = []
        async for name in client.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) == BATCH:
                removed += await client.unlink(*batch)
                batch = []
        if batch:
            removed += await client.unlink(*batch)
        return removed
