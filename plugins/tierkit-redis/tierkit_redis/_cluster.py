"""The ``redis`` tier on a Redis Cluster (``cluster = true``): keys spread over the hash slots.

Entries keep the single-server names (``<key_prefix>k:<key>``), so they spread over every
slot.  A Lua script may touch only one slot, so the tag index is kept per slot:

* ``<key_prefix>t:{<slot tag>}:<tag>`` — the entries of that slot carrying ``tag``, in the
  entries' own slot (written with the entry by the same script as on one server);
* ``<key_prefix>r:<tag>`` — the registry of the slot tags that have such a set, so that an
  invalidation visits only those slots.  It is written *before* the entry, so an indexed
  entry is always reachable from it; it only grows (at most one member per slot) and
  expires with its longest-lived entry.

Batches (``get_many``, ``set_many``, invalidation) send one pipeline per node.  The async
hooks run the same steps on ``redis.asyncio``'s cluster client (one per event loop).  A node
that cannot be reached costs only its own keys: ``get_many`` returns what the other
shards hold (and raises only when no shard answered); writes and invalidations go to
every reachable shard, then raise so the chain counts the failure.  Each failure makes
the client re-read the slot map (at most every :data:`REFRESH_INTERVAL`), so a promoted
replica takes over without a restart.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from contextlib import suppress
from math import ceil
from typing import TYPE_CHECKING, Any, TypeVar

from tierkit import ConfigError, Entry, Payloads, TierContext, TierHealth, hookimpl
from tierkit_redis._backplane import RedisBackplane
from tierkit_redis._format import pack, unpack_columns
from tierkit_redis._options import Options as RedisOptions
from tierkit_redis._scripts import INVALIDATE, REGISTER, TAGGED_SET
from tierkit_redis._slots import key_slot, slot_tag
from tierkit_redis._tier import _INFO_FIGURES, BATCH, RedisTier, _batches

if TYPE_CHECKING:
    from redis.cluster import ClusterNode

REFRESH_INTERVAL = 0.25
"""Seconds between two re-reads of the slot map after failures."""

T = TypeVar("T")
Steps = Generator[Any, Any, T]
"""Pipelines to execute one after the other (each receives the previous one's replies): the
logic of a multi-step write or invalidation, run by :func:`_drive` (sync) or :func:`_adrive`."""

_SUMMED = tuple(name for name in _INFO_FIGURES if name != "redis_version")
"""The single-server INFO figures that add up over the masters."""


class RedisClusterTier(RedisTier):
    """A :class:`RedisTier` whose keys spread over the masters of a Redis Cluster.

    Built by ``RedisTier(options, context)`` when ``options.cluster`` is true.  The
    cluster client is made on first use, so a cluster that is down when the
    application starts is picked up when it comes back.
    """

    def __init__(self, options: RedisOptions, context: TierContext) -> None:
        super().__init__(options, context)
        if "{" in self.key_prefix or "}" in self.key_prefix:
            raise ConfigError(
                f"tier {context.name!r} (redis): the namespace {context.namespace!r} contains '{{' or "
                "'}' and cluster = true: a hash tag in the key prefix would put every key in one slot; "
                "choose another namespace or set key_prefix"
            )
        self._registries = self.key_prefix + "r:"

    def _connect(self, opts: RedisOptions) -> None:
        self._cluster_client: Any = None  # a RedisCluster; redis-py's cluster API is untyped
        self._connect_lock = threading.Lock()
        self._refreshed = 0.0
        self._redis_get = self._first_get

    def _first_get(self, key: str) -> bytes | None:
        return self._cluster().get(key)  # type: ignore[no-any-return]

    def _cluster(self) -> Any:
        """The cluster client, made on first use (reading the slot map from the url's node)."""
        cluster: Any = self._cluster_client
        if cluster is None:
            with self._connect_lock:
                cluster = self._cluster_client
                if cluster is None:
                    from tierkit_redis._client import connect_cluster

                    cluster = connect_cluster(self._opts)
                    self._cluster_client = cluster
                    self._redis_get = cluster.get
        return cluster

    def _refresh(self, cluster: Any) -> None:
        """Re-read the slot map after a failure (a failover moves slots to a promoted replica)."""
        if self._refresh_due():
            with suppress(Exception):  # no node answers: the next call tries again
                cluster.nodes_manager.initialize()

    async def _arefresh(self, cluster: Any) -> None:
        """:meth:`_refresh` of a ``redis.asyncio`` cluster client."""
        if self._refresh_due():
            with suppress(Exception):
                await cluster.nodes_manager.initialize()

    def _refresh_due(self) -> bool:
        now = time.monotonic()
        if now - self._refreshed < REFRESH_INTERVAL:
            return False
        self._refreshed = now
        return True

    @hookimpl
    def tierkit_backplane(self) -> RedisBackplane:
        """Plain pub/sub: a ``PUBLISH`` on any node reaches subscribers on every node, so the
        subscriber takes one node's connection and moves to the next when that node fails."""
        turn = itertools.count()

        def connect() -> Any:
            cluster = self._cluster()
            nodes = cluster.get_nodes()
            if not nodes:
                self._refresh(cluster)
                raise ConnectionError("no cluster node known")
            node = nodes[next(turn) % len(nodes)]
            return node.redis_connection.connection_pool.make_connection()

        return RedisBackplane(_Publisher(self._cluster), connect, self.backplane_channel, self._why)

    # -- data hooks -------------------------------------------------------------------

    @hookimpl
    def tierkit_get_many_payloads(self, keys: Sequence[str]) -> Payloads:
        """An MGET per slot, pipelined per node; a shard that fails costs only its keys."""
        if not keys:
            return Payloads([], [], [])
        cluster = self._cluster()
        entries = self._entries
        names = {entries + key: key for key in keys}
        groups = self._by_node(cluster, names)
        replies, failures = _mget_per_node(cluster, groups.values())
        found = self._found(names, replies)
        if failures:
            self._refresh(cluster)
            if not replies:
                raise failures[0]
        return found

    def _found(self, names: Mapping[str, str], replies: Iterable[tuple[Any, Any]]) -> Payloads:
        """The live entries in MGET ``replies`` (``(slots, values per slot)`` per node), column by column."""
        keys: list[str] = []
        payloads: list[bytes] = []
        deadlines: list[float | None] = []
        tags: dict[str, tuple[str, ...]] = {}
        now = self._clock()
        for slots, raws_per_slot in replies:
            for slot_names, raws in zip(slots.values(), raws_per_slot, strict=True):
                part = unpack_columns(slot_names, raws, now)
                keys += [names[name] for name in part.keys]
                payloads += part.payloads
                deadlines += part.expires_at
                tags.update((names[name], found) for name, found in part.tags.items())
        return Payloads(keys, payloads, deadlines, tags)

    def _by_node(
        self, cluster: Any, names: Mapping[str, str]
    ) -> dict[str, tuple[ClusterNode, dict[int, list[str]]]]:
        """``names`` grouped by the node serving their slot (a replica when reads go there)."""
        by_slot: dict[int, list[str]] = {}
        for name in names:
            by_slot.setdefault(key_slot(name.encode()), []).append(name)
        slot_map = cluster.nodes_manager.slots_cache  # slot -> [master, replicas…]
        pick = cluster.nodes_manager.get_node_from_slot  # balances replicas; raises if uncovered
        replicas = self._opts.read_from_replicas
        groups: dict[str, tuple[ClusterNode, dict[int, list[str]]]] = {}
        for slot, slot_names in by_slot.items():
            owners = None if replicas else slot_map.get(slot)
            node = owners[0] if owners else pick(slot, replicas)
            group = groups.get(node.name)
            if group is None:
                group = groups[node.name] = (node, {})
            group[1][slot] = slot_names
        return groups

    @hookimpl
    def tierkit_set(self, key: str, entry: Entry) -> None:
        self._store({key: entry}, batch=False)

    @hookimpl
    def tierkit_set_many(self, entries: Mapping[str, Entry]) -> None:
        if entries:
            self._store(entries, batch=True)

    def _store(self, entries: Mapping[str, Entry], batch: bool) -> None:
        """Register the tags' slots, then write the entries (pipelined per node when ``batch``)."""
        cluster = self._cluster()
        if batch:
            _drive(self._store_steps(entries, cluster.pipeline), lambda pipe: self._execute(cluster, pipe))
        else:  # commands sent one by one as they are queued
            _drive(self._store_steps(entries, lambda: cluster), lambda _: None)

    def _store_steps(self, entries: Mapping[str, Entry], pipeline: Callable[[], Any]) -> Steps[None]:
        """The commands storing ``entries``: every tag registry first (an entry is never indexed
        where no registry points), then the entries; each step a ``pipeline()`` to execute."""
        now = self._clock()
        writes: list[tuple[str, bytes | None, int, list[str]]] = []  # name, data (None: unlink), …
        registrations: dict[tuple[str, str], int] = {}
        for key, (value, expires_at, tags) in entries.items():
            name = self._entries + key
            ttl = 0
            if expires_at is not None:
                ttl = ceil((expires_at - now) * 1000)
                if ttl <= 0:
                    writes.append((name, None, 0, []))
                    continue
            data = pack(value, expires_at, tags)
            tag_sets: list[str] = []
            if tags:
                hashtag = slot_tag(key_slot(name.encode()))
                tag_sets = self._tag_set_names(name, tags)
                for tag in tags:
                    known = registrations.get((tag, hashtag))
                    longest = 0 if ttl == 0 or known == 0 else max(ttl, known or 0)
                    registrations[(tag, hashtag)] = longest
            writes.append((name, data, ttl, tag_sets))
        if registrations:
            target = pipeline()
            for (tag, hashtag), lifetime in registrations.items():
                target.execute_command("EVAL", REGISTER, 1, self._registries + tag, hashtag, lifetime)
            yield target
        target = pipeline()
        for name, stored, lifetime, tag_sets in writes:
            if stored is None:
                target.execute_command("UNLINK", name)  # an async cluster pipeline's unlink() is a coroutine
            elif tag_sets:
                target.execute_command(
                    "EVAL", TAGGED_SET, 1 + len(tag_sets), name, *tag_sets, stored, lifetime
                )
            else:
                target.set(name, stored, px=lifetime or None)
        yield target

    def _execute(self, cluster: Any, pipe: Any) -> list[Any]:
        """Run a cluster pipeline (one round trip per node); re-read the slot map if it failed."""
        try:
            return pipe.execute()  # type: ignore[no-any-return]
        except Exception:
            self._refresh(cluster)
            raise

    @hookimpl
    def tierkit_delete(self, key: str) -> bool:
        return bool(self._cluster().unlink(self._entries + key))

    def _routed(self) -> Any:
        return self._cluster()

    def _reading(self) -> Any:
        return self._cluster()

    def _tag_set_names(self, name: str, tags: Iterable[str]) -> list[str]:
        hashtag = slot_tag(key_slot(name.encode()))  # in the entry's slot: one script writes both
        return [f"{self._tag_sets}{{{hashtag}}}:{tag}" for tag in tags]

    def _register_tags(self, name: str, tags: Sequence[str], ttl: int) -> None:
        cluster, hashtag = self._cluster(), slot_tag(key_slot(name.encode()))
        for tag in tags:
            cluster.execute_command("EVAL", REGISTER, 1, self._registries + tag, hashtag, ttl)

    @hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        """Read the tags' registries, then check and unlink the members slot by slot."""
        if not tags:
            return 0
        cluster = self._cluster()
        return _drive(self._invalidation(tags, cluster.pipeline), lambda pipe: self._execute(cluster, pipe))

    def _invalidation(self, tags: Sequence[str], pipeline: Callable[[], Any]) -> Steps[int]:
        """Three pipelined steps, each one round trip per node involved: the registries,
        the members of each slot's tag sets, then the :data:`INVALIDATE` script per slot
        (the same script as on one server: it keeps entries rewritten without the tag)."""
        pipe = pipeline()
        for tag in tags:
            pipe.smembers(self._registries + tag)
        hashtags = sorted({h.decode() for found in (yield pipe) for h in found})
        if not hashtags:
            return 0
        tag_sets = {h: [f"{self._tag_sets}{{{h}}}:{tag}" for tag in tags] for h in hashtags}
        pipe = pipeline()
        for hashtag in hashtags:
            pipe.execute_command("SUNION", *tag_sets[hashtag])
        members = yield pipe
        pipe = pipeline()
        queued = False
        for hashtag, names in zip(hashtags, members, strict=True):
            sets = tag_sets[hashtag]
            for names_batch in _batches(names, BATCH):
                pipe.execute_command(
                    "EVAL", INVALIDATE, len(sets) + len(names_batch), *sets, *names_batch, len(tags), *tags
                )
                queued = True
        return sum((yield pipe)) if queued else 0

    def _unlink_matching(self, pattern: str) -> int:
        """SCAN every master; UNLINK what matches, one key per command (keys differ in slot)."""
        cluster = self._cluster()
        removed = 0
        failures: list[BaseException] = []
        for node in cluster.get_primaries():
            try:
                client = cluster.get_redis_connection(node)
                for batch in _batches(client.scan_iter(match=pattern, count=1000), BATCH):
                    pipe = client.pipeline(transaction=False)
                    for name in batch:
                        pipe.unlink(name)
                    removed += sum(pipe.execute())
            except Exception as exc:  # the other masters are still cleared
                failures.append(exc)
        if failures:
            self._refresh(cluster)
            raise failures[0]
        return removed

    # -- async data hooks: the same steps on the running loop's redis.asyncio cluster client --------

    async def _acluster(self) -> Any:
        """The running loop's cluster client, its slot map read on first use."""
        return await self._aclients.current().initialize()

    async def _aexecute(self, cluster: Any, pipe: Any) -> list[Any]:
        try:
            return await pipe.execute()  # type: ignore[no-any-return]
        except Exception:
            await self._arefresh(cluster)
            raise

    @hookimpl
    async def tierkit_aget_many_payloads(self, keys: Sequence[str]) -> Payloads:
        """The MGETs of each node in one pipeline, the nodes concurrently; a failing shard costs its keys."""
        if not keys:
            return Payloads([], [], [])
        cluster = await self._acluster()
        names = {self._entries + key: key for key in keys}
        groups = [slots for _, slots in self._by_node(cluster, names).values()]
        replies, failures = await _amget_nodes(cluster, groups)
        rounds = len(groups)
        while failures and rounds:
            rounds -= 1
            # One node's connection error makes redis-py close the client and re-read the topology,
            # which fails the other nodes' pipelines running at that moment: ask the failed groups
            # again one at a time, for as long as a round gets more of them answered, so that only
            # the dead shard's keys are lost.
            await self._arefresh(cluster)
            if not replies:
                # Every pipeline failed: redis-py re-initializes through its default node, which
                # may be the dead one (as its own single-command path knows, and replaces).
                cluster.replace_default_node()
            again, failures = await _amget_each(cluster, [slots for slots, _ in failures])
            replies += again
            if not again:
                break
        if failures and not replies:
            raise failures[0][1]
        return self._found(names, replies)

    @hookimpl
    async def tierkit_aset_many(self, entries: Mapping[str, Entry]) -> None:
        if entries:
            cluster = await self._acluster()
            await _adrive(self._store_steps(entries, cluster.pipeline), lambda p: self._aexecute(cluster, p))

    @hookimpl
    async def tierkit_ainvalidate_tags(self, tags: Sequence[str]) -> int:
        if not tags:
            return 0
        cluster = await self._acluster()
        return await _adrive(self._invalidation(tags, cluster.pipeline), lambda p: self._aexecute(cluster, p))

    async def _unlink_matching_async(self, pattern: str) -> int:
        """SCAN every master; UNLINK what matches, pipelined (the keys differ in slot)."""
        cluster = await self._acluster()
        removed = 0
        failures: list[BaseException] = []
        for node in cluster.get_primaries():
            try:
                batch: list[Any] = []
                async for name in cluster.scan_iter(match=pattern, count=1000, target_nodes=node):
                    batch.append(name)
                    if len(batch) == BATCH:
                        removed += await _aunlink(cluster, batch)
                        batch = []
                removed += await _aunlink(cluster, batch)
            except Exception as exc:  # the other masters are still cleared
                failures.append(exc)
        if failures:
            await self._arefresh(cluster)
            raise failures[0]
        return removed

    # -- broadcast hooks ------------------------------------------------------------------

    @hookimpl
    def tierkit_health(self) -> TierHealth:
        """Every node of the slot map, PINGed: ``degraded`` while some master is unreachable.

        ``details["nodes"]`` lists each node's address, role, slot ranges (masters),
        latency or error.  ``down`` only when no master answers.
        """
        details: dict[str, Any] = {"url": self._url, "key_prefix": self.key_prefix, "cluster": True}
        try:
            cluster = self._cluster()
        except Exception as exc:  # health must not raise
            return TierHealth("down", self._describe(exc, self._opts), details)
        ranges, master_of = _slot_map(cluster)
        nodes: list[dict[str, Any]] = []
        unreachable: list[str] = []
        slowest = 0.0
        for node in sorted(cluster.get_nodes(), key=lambda n: (n.server_type != "primary", n.name)):
            primary = node.server_type == "primary"
            about: dict[str, Any] = {"address": node.name, "role": "master" if primary else "replica"}
            if primary:
                about["slots"] = ranges.get(node.name, "")
            else:
                about["master"] = master_of.get(node.name, "")
            try:
                client = cluster.get_redis_connection(node)
                if self._server_version is None:
                    self._server_version = self._version_of(client)
                start = time.perf_counter()
                client.ping()
                latency = time.perf_counter() - start
            except Exception as exc:
                about["error"] = self._describe(exc, self._opts, node.name)
                if primary:
                    unreachable.append(f"{node.name} (slots {about['slots']}): {about['error']}")
            else:
                about["latency_ms"] = round(latency * 1000, 3)
                slowest = max(slowest, latency) if primary else slowest
            nodes.append(about)
        details["nodes"] = nodes
        details["masters"] = sum(1 for n in nodes if n["role"] == "master")
        details["server_version"] = self._server_version
        if unreachable:
            self._refresh(cluster)
            if len(unreachable) == details["masters"]:
                return TierHealth("down", "no master answers: " + "; ".join(unreachable), details)
            reason = (
                f"{len(unreachable)} of {details['masters']} masters unreachable (their keys miss, "
                f"the other shards serve): {'; '.join(unreachable)}"
            )
            return TierHealth("degraded", reason, details)
        if slowest > self._opts.slow_threshold:
            limit = self._opts.slow_threshold * 1000
            reason = f"slow: PING took {slowest * 1000:.1f} ms (threshold {limit:g} ms)"
            return TierHealth("degraded", reason, details)
        return TierHealth("ok", "", details)

    @hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        """The masters' INFO figures, summed (``redis_version`` of the first); no SCAN."""
        figures: dict[str, Any] = dict.fromkeys(_SUMMED, 0)
        figures.update(redis_version=None, db_keys=0, masters=0)
        errors: list[str] = []
        try:
            primaries = self._cluster().get_primaries()
        except Exception as exc:  # stats are broadcast: one failing tier must not sink them
            return {"server_error": self._describe(exc, self._opts)}
        for node in primaries:
            try:
                info = self._cluster().get_redis_connection(node).info()
            except Exception as exc:
                errors.append(self._describe(exc, self._opts, node.name))
                continue
            figures["masters"] += 1
            figures["redis_version"] = figures["redis_version"] or info.get("redis_version")
            for name in _SUMMED:
                figures[name] += info.get(name) or 0
            figures["db_keys"] += info.get("db0", {}).get("keys", 0)
        if errors:
            figures["server_error"] = "; ".join(errors)
        return figures

    @hookimpl
    def tierkit_close(self) -> None:
        if self._cluster_client is not None:
            self._cluster_client.close()


def _drive(steps: Steps[T], execute: Callable[[Any], Any]) -> T:
    """Run ``steps``, executing each pipeline it yields with ``execute``."""
    replies = None
    try:
        while True:
            replies = execute(steps.send(replies))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def _adrive(steps: Steps[T], execute: Callable[[Any], Awaitable[Any]]) -> T:
    """:func:`_drive`, awaiting each pipeline."""
    replies = None
    try:
        while True:
            replies = await execute(steps.send(replies))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def _amget_nodes(
    cluster: Any, groups: Sequence[Mapping[int, list[str]]]
) -> tuple[list[tuple[Any, Any]], list[tuple[Mapping[int, list[str]], Exception]]]:
    """:func:`_amget` of every node's group, concurrently: the replies, and the groups that failed."""
    answers = await asyncio.gather(*(_amget(cluster, slots) for slots in groups), return_exceptions=True)
    replies, failures = [], []
    for slots, answer in zip(groups, answers, strict=True):
        if isinstance(answer, Exception):
            failures.append((slots, answer))
        elif isinstance(answer, BaseException):
            raise answer  # cancelled
        else:
            replies.append((slots, answer))
    return replies, failures


async def _amget_each(
    cluster: Any, groups: Sequence[Mapping[int, list[str]]]
) -> tuple[list[tuple[Any, Any]], list[tuple[Mapping[int, list[str]], Exception]]]:
    """:func:`_amget` of every node's group, one after the other: the replies, and the groups that failed.

    A group that fails is asked once more at once: the failure may be the previous group's (a dead
    node's error makes redis-py re-read the topology, and a pipeline sent meanwhile fails with it).
    """
    replies, failures = [], []
    for slots in groups:
        for attempt in (1, 2):
            try:
                replies.append((slots, await _amget(cluster, slots)))
                break
            except Exception as exc:
                if attempt == 2:
                    failures.append((slots, exc))
    return replies, failures


async def _amget(cluster: Any, slots: Mapping[int, list[str]]) -> list[list[bytes | None]]:
    """One node's MGETs (one per slot), in one pipeline: one round trip."""
    pipe = cluster.pipeline()
    for names in slots.values():
        pipe.execute_command("MGET", *names)
    return await pipe.execute()  # type: ignore[no-any-return]


async def _aunlink(cluster: Any, names: list[Any]) -> int:
    if not names:
        return 0
    pipe = cluster.pipeline()
    for name in names:
        pipe.execute_command("UNLINK", name)  # its unlink() is a coroutine (it splits across slots)
    return sum(await pipe.execute())


def _mget_per_node(
    cluster: Any, groups: Iterable[tuple[ClusterNode, dict[int, list[str]]]]
) -> tuple[list[tuple[dict[int, list[str]], list[list[bytes | None]]]], list[BaseException]]:
    """Send every node its MGETs (one write each), then read the replies node by node.

    Lower level than a redis-py pipeline, whose per-command bookkeeping cost more than
    the round trips here.  A node that fails (refused, timed out, ``MOVED`` after a
    failover) has its connection dropped and its error returned; the others' replies
    are ``(slots, one list of values per slot)``.
    """
    sent = []
    failures: list[BaseException] = []
    for node, slots in groups:
        connection = None
        try:
            pool = cluster.get_redis_connection(node).connection_pool
            connection = pool.get_connection()
            connection.send_packed_command(connection.pack_commands([("MGET", *n) for n in slots.values()]))
        except Exception as exc:  # this node only
            failures.append(exc)
            if connection is not None:
                connection.disconnect()
                pool.release(connection)
            continue
        sent.append((slots, pool, connection))
    replies = []
    for slots, pool, connection in sent:
        try:
            replies.append((slots, [connection.read_response() for _ in slots]))
        except Exception as exc:  # an error reply leaves the rest unread: drop the connection
            failures.append(exc)
            connection.disconnect()
        finally:
            pool.release(connection)
    return replies, failures


def _slot_map(cluster: Any) -> tuple[dict[str, str], dict[str, str]]:
    """From the client's slot map: master → its slots (``0-5460,10923-…``), and replica → master."""
    owners: dict[str, list[int]] = {}
    master_of: dict[str, str] = {}
    for slot, nodes in sorted(cluster.nodes_manager.slots_cache.items()):
        if nodes:
            owners.setdefault(nodes[0].name, []).append(slot)
            master_of.update((replica.name, nodes[0].name) for replica in nodes[1:])
    ranges: dict[str, str] = {}
    for name, slots in owners.items():
        spans: list[list[int]] = []
        for slot in slots:
            if spans and spans[-1][1] == slot - 1:
                spans[-1][1] = slot
            else:
                spans.append([slot, slot])
        ranges[name] = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)
    return ranges, master_of


class _Publisher:
    """Publishes through the cluster client, made on first use like the tier's."""

    def __init__(self, cluster: Callable[[], Any]) -> None:
        self._cluster = cluster

    def publish(self, channel: str, message: bytes) -> None:
        self._cluster().publish(channel, message)
