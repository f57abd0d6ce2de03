"""The ``redis`` tier: a cache shared by every process that reaches the same Redis."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from math import ceil
from typing import TYPE_CHECKING, Any, ClassVar, cast

from pydantic import BaseModel

from tierkit import ConfigError, Entry, NotACounter, Payloads, Tier, TierContext, TierHealth, hookimpl
from tierkit._backplane import carries
from tierkit_redis._async import AsyncRedisHooks, LoopClients
from tierkit_redis._backplane import RedisBackplane
from tierkit_redis._format import DEADLINE_SIZE, as_entries, is_live, pack, unpack, unpack_columns
from tierkit_redis._keyspace import ForeignWrites
from tierkit_redis._options import Options, redacted_url
from tierkit_redis._options import Options as RedisOptions  # the name Options is the class attribute below
from tierkit_redis._scripts import (
    ADD,
    INCR,
    INVALIDATE,
    LOCK,
    REGISTER,
    SET_ANNOUNCED,
    TAGGED_SET,
    TOUCH,
    UNLINK_ANNOUNCED,
    UNLOCK,
)

if TYPE_CHECKING:
    import redis
    from redis.sentinel import Sentinel

EXACT = 2**53
"""Largest counter a Lua script (double-precision numbers) adds exactly."""
BATCH = 500
"""Keys per UNLINK, or per invalidation script, when invalidating or clearing."""

_GLOB = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return _GLOB.sub(r"\\\1", text)


def not_configured(context: TierContext) -> str:
    """The reason given for a Redis tier without a URL (or Sentinels)."""
    return (
        "not configured: no REDIS_URL (set REDIS_URL, "
        f"or tiers.{context.name}.options.url in the tierkit configuration)"
    )


class RedisTier(AsyncRedisHooks, Tier[RedisOptions]):
    """A byte tier in Redis, under ``<key_prefix>k:<key>``; tag sets under ``<key_prefix>t:<tag>``.

    Every stored value carries its deadline and tags (:mod:`tierkit_redis._format`);
    Redis expires it natively (``PX``).  Backend errors are raised for the chain to
    count; the client's timeouts are small so that a failing call fails fast.  The async
    hooks (:mod:`tierkit_redis._async`) do the same through ``redis.asyncio``.

    When the chain's backplane rides on this tier (its transport's ``outbox``, see
    :class:`tierkit._backplane.Transport`), ``set``, ``set_many``, ``delete`` and
    ``delete_many`` send the message the backplane left in the outbox with the write,
    in the same round trip, and empty the outbox once both went through.
    """

    Options: ClassVar[type[BaseModel]] = Options
    holds = "bytes"
    default_write = "always"
    remote = True
    default_rank = 200  # after memory, before session and file
    settings_aliases: ClassVar[Mapping[str, str]] = {"REDIS_URL": "url"}

    def __new__(cls, options: BaseModel, context: TierContext) -> RedisTier:
        """A :class:`~tierkit_redis._cluster.RedisClusterTier` when the options say ``cluster``."""
        if cls is RedisTier and isinstance(options, Options) and options.cluster:
            from tierkit_redis._cluster import RedisClusterTier

            return super().__new__(RedisClusterTier)
        return super().__new__(cls)

    def __init__(self, options: RedisOptions, context: TierContext) -> None:
        super().__init__(options, context)
        opts = _options(options)
        if not opts.configured:
            raise ConfigError(f"tier {context.name!r} (redis): {not_configured(context)}")
        from tierkit_redis._client import describe, location, server_version

        self._describe = describe
        self._version_of = server_version
        self._opts = opts
        self._url = redacted_url(opts.url.get_secret_value()) if opts.url is not None else location(opts)
        self.key_prefix = opts.key_prefix or f"tierkit:{context.namespace}:"
        self._entries = self.key_prefix + "k:"
        self._locks = self.key_prefix + "l:"
        self._tag_sets = self.key_prefix + "t:"
        self._clock = context.clock
        self._response_error: type[Exception] = _response_error()
        self._server_version: str | None = None
        self._outbox: ContextVar[bytes | None] = ContextVar("tierkit_redis_outbox", default=None)
        """The message to send with the next write (docs/coherence.md); offered to the backplane
        by the single-server tier's transport only."""
        self._connect(opts)
        self._aclients = LoopClients(opts)

    def _connect(self, opts: RedisOptions) -> None:
        """Make the clients: one server, or the master (and replicas) a Sentinel names."""
        from redis.exceptions import NoPermissionError

        from tierkit_redis._client import connect
        from tierkit_redis._lane import lane_of

        clients = connect(opts)
        self._client: redis.Redis = clients.write
        self._reader: redis.Redis = clients.read
        self._sentinel = clients.sentinel
        self._lane = lane_of(self._client, opts.retries)
        read_lane = self._lane if self._reader is self._client else lane_of(self._reader, opts.retries)
        self._lanes = tuple({id(lane): lane for lane in (self._lane, read_lane) if lane is not None}.values())
        get = self._reader.get if read_lane is None else read_lane.get
        self._redis_get = cast("Callable[[str], bytes | None]", get)
        mget = self._reader.mget if read_lane is None else read_lane.mget
        self._redis_mget = cast("Callable[[list[str]], list[bytes | None]]", mget)
        script = self._client.register_script if self._lane is None else self._lane.script
        self._unlink_announced = script(UNLINK_ANNOUNCED)
        self._refused: type[Exception] = NoPermissionError
        set_script = script(SET_ANNOUNCED)
        self._set_scripted: Callable[[str, bytes, int, str, bytes], Any] = (
            lambda name, data, ttl, channel, message: set_script(
                keys=(name,), args=(data, ttl, channel, message)
            )
        )
        """``SET`` then ``PUBLISH`` in one script (``EVALSHA``)."""
        self._set_announced: Callable[[str, bytes, int, str, bytes], Any] = (
            self._set_scripted if self._lane is None else self._set_in_transaction
        )

    @classmethod
    def unavailable_reason(cls, options: BaseModel, context: TierContext) -> str | None:
        """``not configured: …`` when neither a URL nor Sentinels reached the options."""
        return None if _options(options).configured else not_configured(context)

    def __repr__(self) -> str:
        name, url, prefix = self.context.name, self._url, self.key_prefix
        return f"RedisTier(name={name!r}, url={url!r}, key_prefix={prefix!r})"

    # -- data hooks -------------------------------------------------------------------

    @hookimpl
    def tierkit_get(self, key: str) -> Entry | None:
        try:
            raw = self._redis_get(self._entries + key)
        except self._response_error as exc:
            if str(exc).startswith("WRONGTYPE"):
                return None  # another program's hash or list under our prefix: not ours, a miss
            raise
        return None if raw is None else unpack(raw, self._clock())

    @hookimpl
    def tierkit_get_many(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        return as_entries(self.tierkit_get_many_payloads(keys))

    @hookimpl
    def tierkit_get_many_payloads(self, keys: Sequence[str]) -> Payloads:
        """One ``MGET``; the chain decodes the payloads in one pass (no ``Entry`` per key)."""
        if not keys:
            return Payloads([], [], [])
        raws = self._redis_mget(list(map(self._entries.__add__, keys)))  # prefixed in C, no bytecode per key
        return unpack_columns(keys, raws, self._clock())

    @hookimpl
    def tierkit_set(self, key: str, entry: Entry) -> None:
        message = self._outbox.get()
        value, expires_at, tags = entry
        now = self._clock()
        ttl = 0 if expires_at is None else ceil((expires_at - now) * 1000)
        if tags or (expires_at is not None and ttl <= 0):
            if message is None:
                self._write(self._client, key, entry, now)
            else:
                self.tierkit_set_many({key: entry})  # a script and its tag sets, or an unlink: pipelined
            return
        data = pack(value, expires_at, tags)
        if message is None:
            if self._lane is None:
                self._client.set(self._entries + key, data, px=ttl or None)
            else:
                self._lane.set(self._entries + key, data, ttl)
            return
        if carries(message) and len(data) <= self._opts.backplane_values:
            # SET and PUBLISH are one script: the value reaches the others in write order. (A
            # pipeline's or the sender thread's message could land after a newer write's and
            # leave the older value for good: those only drop.)
            message += data
        self._set_announced(self._entries + key, data, ttl, self.backplane_channel, message)
        self._outbox.set(None)

    @hookimpl
    def tierkit_set_many(self, entries: Mapping[str, Entry]) -> None:
        if not entries:
            return
        pipe = self._client.pipeline(transaction=False)
        now = self._clock()
        for key, entry in entries.items():
            self._write(pipe, key, entry, now)
        message = self._outbox.get()
        if message is not None:
            pipe.publish(self.backplane_channel, message)
        pipe.execute()
        if message is not None:
            self._outbox.set(None)

    def _write(self, target: redis.Redis, key: str, entry: Entry, now: float) -> None:
        """Queue or send the commands storing ``entry`` (an expired one deletes the key)."""
        value, expires_at, tags = entry
        name = self._entries + key
        ttl = None
        if expires_at is not None:
            ttl = ceil((expires_at - now) * 1000)
            if ttl <= 0:
                target.unlink(name)
                return
        data = pack(value, expires_at, tags)
        if tags:
            tag_sets = [self._tag_sets + tag for tag in tags]
            target.eval(TAGGED_SET, 1 + len(tag_sets), name, *tag_sets, data, ttl or 0)
        else:
            target.set(name, data, px=ttl)

    def _set_in_transaction(self, name: str, data: bytes, ttl: int, channel: str, message: bytes) -> None:
        """``SET`` then ``PUBLISH`` in one ``MULTI``/``EXEC`` on the lane: atomic like the script,
        for ~10 us less of the server's time per write.  An ACL user without ``MULTI``/``EXEC``
        (rules written before tierkit used them) gets the script from then on, this write included."""
        assert self._lane is not None
        try:
            self._lane.set_announced(name, data, ttl, channel, message)
        except self._refused:
            self._set_announced = self._set_scripted
            self._set_scripted(name, data, ttl, channel, message)

    @hookimpl
    def tierkit_delete(self, key: str) -> bool:
        message = self._outbox.get()
        if message is None:
            return bool(self._client.unlink(self._entries + key))
        removed = self._unlink_announced(keys=(self._entries + key,), args=(self.backplane_channel, message))
        self._outbox.set(None)
        return bool(removed)

    # -- atomic operations: one script each, atomic on the server ------------------------

    def _lifetime(self, expires_at: float | None, now: float) -> int:
        """Milliseconds left until ``expires_at`` (0: no expiry, negative: already past)."""
        return 0 if expires_at is None else ceil((expires_at - now) * 1000) or -1

    @hookimpl
    def tierkit_add(self, key: str, entry: Entry) -> bool:
        """First writer wins across processes: the liveness check and the write are one script."""
        value, expires_at, tags = entry
        now = self._clock()
        ttl = self._lifetime(expires_at, now)
        if ttl < 0:
            return not self.tierkit_has(key)  # absent: added, and expired at once
        name = self._entries + key
        tag_sets = self._tag_set_names(name, tags)
        self._register_tags(name, tags, ttl)
        data = pack(value, expires_at, tags)
        return bool(self._routed().eval(ADD, 1 + len(tag_sets), name, *tag_sets, data, ttl, now))

    @hookimpl
    def tierkit_incr(self, key: str, delta: int) -> Entry | None:
        """The counter's digits are added to on the server (header and TTL kept), below ±2**53."""
        if abs(delta) >= EXACT:
            raise NotACounter(f"delta {delta} is beyond 2**53, the most the redis tier counts exactly")
        now = self._clock()
        try:
            raw = self._routed().eval(INCR, 1, self._entries + key, now, delta)
        except self._response_error as exc:
            message = str(exc)
            if message.startswith("NOTACOUNTER "):
                raise NotACounter(message.removeprefix("NOTACOUNTER ")) from None
            raise
        return None if raw is None else unpack(raw, now)

    @hookimpl
    def tierkit_touch(self, key: str, expires_at: float | None) -> bool:
        """The header's deadline and the key's expiry are rewritten on the server; the value is not sent."""
        now = self._clock()
        name = self._entries + key
        ttl = self._lifetime(expires_at, now)
        client = self._routed()
        if ttl < 0:
            return bool(client.unlink(name))
        raw = client.eval(TOUCH, 1, name, now, expires_at or 0, ttl)
        if raw is None:
            return False
        entry = unpack(raw, now)
        if entry is not None and entry.tags:  # its tag sets must live as long as it does
            tag_sets = self._tag_set_names(name, entry.tags)
            self._register_tags(name, entry.tags, ttl)
            client.eval(REGISTER, len(tag_sets), *tag_sets, name, ttl)
        return True

    @hookimpl
    def tierkit_has(self, key: str) -> bool:
        """Reads the first bytes of the value (whose it is, its deadline), never the value."""
        try:
            head = self._reading().getrange(self._entries + key, 0, DEADLINE_SIZE - 1)
        except self._response_error as exc:
            if str(exc).startswith("WRONGTYPE"):
                return False
            raise
        return is_live(cast(bytes, head), self._clock())

    @hookimpl
    def tierkit_delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        entries = self._entries
        names = [entries + key for key in keys]
        message = self._outbox.get()
        if message is None:
            return int(self._routed().unlink(*names))  # a cluster splits it by slot
        pipe = self._client.pipeline(transaction=False)
        pipe.unlink(*names)
        pipe.publish(self.backplane_channel, message)
        removed = pipe.execute()[0]
        self._outbox.set(None)
        return int(removed)

    @hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove the entries that carry any of ``tags``: read the sets, then one pipeline.

        Each batch of members is checked and unlinked by a script, atomically, so an
        entry rewritten without the tag survives and one tagged meanwhile stays indexed.
        """
        if not tags:
            return 0
        tag_sets = [self._tag_sets + tag for tag in tags]
        members = self._client.sunion(tag_sets)
        if not members:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for batch in _batches(members, BATCH):
            pipe.eval(INVALIDATE, len(tag_sets) + len(batch), *tag_sets, *batch, len(tags), *tags)
        return sum(pipe.execute())

    @hookimpl
    def tierkit_invalidate_prefix(self, prefix: str) -> int:
        return self._unlink_matching(glob_escape(self._entries + prefix) + "*")

    @hookimpl
    def tierkit_clear(self) -> None:
        """Unlink every key under ``key_prefix`` (SCAN + UNLINK in batches; never FLUSHDB)."""
        self._unlink_matching(glob_escape(self.key_prefix) + "*")

    def _unlink_matching(self, pattern: str) -> int:
        client = self._client
        removed = 0
        for batch in _batches(client.scan_iter(match=pattern, count=1000), BATCH):
            removed += client.unlink(*batch)
        return removed

    def _tag_set_names(self, name: str, tags: Iterable[str]) -> list[str]:
        """The sets that index the entry ``name`` by ``tags`` (a cluster keeps them in its slot)."""
        return [self._tag_sets + tag for tag in tags]

    def _register_tags(self, name: str, tags: Sequence[str], ttl: int) -> None:
        """Before a script indexes ``name`` by ``tags``: nothing to do on one server (a cluster
        records in each tag's registry which slot holds a set of it)."""

    def _routed(self) -> Any:
        """The client single-key commands and scripts run on: the master (a cluster routes by key)."""
        return self._client

    def _reading(self) -> Any:
        """The client reads go to (replicas, when configured)."""
        return self._reader

    # -- computation locks (docs/stampede.md) ----------------------------------------------

    @hookimpl
    def tierkit_lock(self, key: str, token: str, ttl: float) -> bool:
        """``SET NX PX`` on ``<key_prefix>l:<key>``, or extend it when ``token`` holds it."""
        return bool(self._routed().eval(LOCK, 1, self._locks + key, token, max(1, ceil(ttl * 1000))))

    @hookimpl
    def tierkit_unlock(self, key: str, token: str) -> bool:
        """Delete the lock if ``token`` still holds it (a Lua compare-and-delete)."""
        return bool(self._routed().eval(UNLOCK, 1, self._locks + key, token))

    # -- broadcast hooks ------------------------------------------------------------------

    @hookimpl
    def tierkit_health(self) -> TierHealth:
        """PING latency and server version; ``degraded`` when slow, ``down`` with the reason."""
        details: dict[str, Any] = {"url": self._url, "key_prefix": self.key_prefix}
        try:
            if self._sentinel is not None:
                details.update(self._sentinel_topology(self._sentinel))
            if self._server_version is None:
                self._server_version = self._version_of(self._client)
            start = time.perf_counter()
            self._client.ping()
            latency = time.perf_counter() - start
        except Exception as exc:  # health must not raise
            self._server_version = None
            return TierHealth("down", self._describe(exc, self._opts), details)
        details["latency_ms"] = round(latency * 1000, 3)
        details["server_version"] = self._server_version
        if latency > self._opts.slow_threshold:
            limit = self._opts.slow_threshold * 1000
            reason = f"slow: PING took {latency * 1000:.1f} ms (threshold {limit:g} ms)"
            return TierHealth("degraded", reason, details)
        return TierHealth("ok", "", details)

    def _sentinel_topology(self, sentinel: Sentinel) -> dict[str, Any]:
        """Where the Sentinels say the master and replicas of the service are, right now."""
        name = self._opts.service_name
        host, port = sentinel.discover_master(name)  # type: ignore[no-untyped-call]
        replicas = [f"{h}:{p}" for h, p in sentinel.discover_slaves(name)]  # type: ignore[no-untyped-call]
        return {"service_name": name, "master": f"{host}:{port}", "replicas": replicas}

    @hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        """Server figures from one INFO call (no SCAN)."""
        try:
            info = self._client.info()
        except Exception as exc:  # stats are broadcast: one failing tier must not sink them
            return {"server_error": self._describe(exc, self._opts)}
        db = self._client.get_connection_kwargs().get("db", 0)
        figures = {name: info.get(name) for name in _INFO_FIGURES}
        figures["db_keys"] = info.get(f"db{db}", {}).get("keys", 0)
        return figures

    @hookimpl
    def tierkit_backplane(self) -> RedisBackplane:
        """Pub/sub on ``<key_prefix>backplane``; the subscriber's connection comes from the tier's pool
        (with Sentinel, each reconnection asks for the current master)."""
        pool = self._client.connection_pool
        keyspace = None
        if self._opts.keyspace_events == "auto":
            db = self._client.get_connection_kwargs().get("db", 0)
            keyspace = ForeignWrites(db, self._entries, glob_escape)
        return RedisBackplane(
            self._client,
            pool.make_connection,
            self.backplane_channel,
            self._why,
            outbox=self._outbox,
            keyspace=keyspace,
        )

    @property
    def backplane_channel(self) -> str:
        """The pub/sub channel of this namespace's backplane (other programs may publish on it)."""
        return self.key_prefix + "backplane"

    def _why(self, exc: BaseException) -> str:
        return self._describe(exc, self._opts)

    @hookimpl
    def tierkit_close(self) -> None:
        for lane in self._lanes:
            lane.close()
        self._client.close()


_INFO_FIGURES = (
    "redis_version",
    "used_memory",
    "maxmemory",
    "connected_clients",
    "keyspace_hits",
    "keyspace_misses",
    "evicted_keys",
    "expired_keys",
)


def _response_error() -> type[Exception]:
    from redis.exceptions import ResponseError

    return ResponseError


def _options(options: BaseModel) -> Options:
    if not isinstance(options, Options):
        raise TypeError(f"expected tierkit_redis.Options, got {type(options).__name__}")
    return options


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
