"""The backplane over Redis: a change made in one process reaches the other's local tiers.

Real processes (``fork``) and real redis-servers; waits are generous and nothing
is timed (the propagation delay is measured by benchmarks/bench_coherence.py).
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from backplane_helpers import ABSENT, Peer, local_value, memory_redis, wait_until
from redis_helpers import RedisServer
from tierkit_redis._backplane import HEARTBEAT
from topology_helpers import Cluster, SentinelGroup

from tierkit import Cache, Entry
from tierkit._backplane import encode, with_tail

pytestmark = pytest.mark.redis


@pytest.fixture
def namespace() -> str:
    return f"bp{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(redis_url: str, namespace: str) -> dict[str, Any]:
    return memory_redis(namespace, {"url": redis_url})


@pytest.fixture
def peer(settings: dict[str, Any]) -> Iterator[Peer]:
    other = Peer(settings)
    yield other
    other.stop()


@pytest.fixture
def cache(settings: dict[str, Any]) -> Iterator[Cache]:
    own = Cache(**settings)
    wait_until(lambda: own.stats()["backplane"]["state"] == "subscribed", "the cache to subscribe")
    yield own
    own.clear()
    own.close()


def changes(cache: Cache) -> list[tuple[str, Callable[[], Any], dict[str, Any]]]:
    """Each kind of change, and what the other process must read afterwards (``None``: a miss)."""
    return [
        ("set", lambda: cache.set("a", "new"), {"a": "new"}),
        ("set_many", lambda: cache.set_many({"a": "A", "b": "B"}), {"a": "A", "b": "B"}),
        ("delete", lambda: cache.delete("a"), {"a": None}),
        ("tags", lambda: cache.invalidate(tags=["t"]), {"a": None, "b": None}),
        ("prefix", lambda: cache.invalidate(prefix="user:"), {"user:1": None}),
        ("clear", cache.clear, {"a": None, "b": None, "user:1": None}),
        ("delete_many", lambda: cache.delete_many(["a", "b"]), {"a": None, "b": None}),
        ("stale_ttl", lambda: cache.set("a", "fresh", ttl=60, stale_ttl=60), {"a": "fresh"}),
    ]


def test_every_kind_of_change_reaches_the_other_process(cache: Cache, peer: Peer) -> None:
    for name, change, expected in changes(cache):
        cache.set_many({"a": "old", "b": "old", "user:1": "old"}, tags=["t"])
        for key in expected:  # a read that raced the set_many's own message is not backfilled: read again
            wait_until(
                lambda k=key: peer.call("get", k) == "old" and peer.call("memory_holds", k),
                f"{name}: the peer to hold {key} in its memory tier",
            )
        change()
        for key, value in expected.items():
            wait_until(lambda k=key, v=value: peer.call("get", k) == v, f"{name}: the peer to see {key}")
    report = peer.backplane()
    assert report["received"] >= len(changes(cache)) and report["malformed"] == 0


def test_a_counter_changed_elsewhere_is_read_again(cache: Cache, peer: Peer) -> None:
    """incr and touch change Redis without a set: they announce too."""
    cache.set("hits", 1)
    received = lambda n: lambda: peer.backplane()["received"] == n  # noqa: E731 - messages leave a moment later
    wait_until(received(1), "the set's message")
    wait_until(lambda: peer.call("get", "hits") == 1 and peer.call("memory_holds", "hits"), "the peer's copy")
    assert cache.incr("hits", 5) == 6
    wait_until(received(2), "the incr's message")
    wait_until(lambda: peer.call("get", "hits") == 6 and peer.call("memory_holds", "hits"), "the new count")
    assert cache.touch("hits", 120)
    wait_until(lambda: not peer.call("memory_holds", "hits"), "the peer to drop its copy (old deadline)")


def test_a_change_made_just_before_exit_still_goes_out(settings: dict[str, Any], cache: Cache) -> None:
    """Messages leave from a sender thread; a process that writes and exits (no close) flushes them."""
    cache.set("k", "old")
    assert cache.inspect("k")["memory"].status == "held"
    script = "import json, sys, tierkit; tierkit.Cache(**json.loads(sys.argv[1])).set('k', 'new')"
    subprocess.run([sys.executable, "-c", script, json.dumps(settings)], check=True, timeout=60)
    wait_until(lambda: local_value(cache, "k") == "new", "the exiting writer's message (its value)")
    assert cache.get("k") == "new"


@pytest.mark.parametrize(
    "change",
    [
        "c.set('k', 'new')",
        "c.set('k', 'new', tags=['t'])",
        "c.set_many({'k': 'new', 'other': 1})",
        "c.delete('k')",
        "c.delete_many(['k', 'other'])",
        "c.set('k', 'new', ttl=60, stale_ttl=60)",
    ],
)
def test_a_change_is_announced_before_it_returns(settings: dict[str, Any], cache: Cache, change: str) -> None:
    """The message goes out with the write itself: a writer killed the moment its call returns
    (no exit handler runs) has still told the others (issue 10)."""
    cache.set("k", "old")
    assert cache.inspect("k")["memory"].status == "held"
    script = (
        "import json, os, signal, sys, tierkit\n"
        "c = tierkit.Cache(**json.loads(sys.argv[1]))\n"
        f"{change}\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, json.dumps(settings)], timeout=60, check=False)
    assert done.returncode == -9
    # A plain set carries its value (the copy is replaced); the others drop it.
    wait_until(lambda: local_value(cache, "k") in (ABSENT, "new"), "the killed writer's message")


def test_own_changes_are_not_echoed_back(cache: Cache, peer: Peer) -> None:
    cache.set("mine", 1)
    peer.call("set", "theirs", 2)
    wait_until(lambda: cache.stats()["backplane"]["received"] == 1, "the peer's change to arrive")
    assert cache.inspect("mine")["memory"].status == "held", "its own write stays in its memory tier"
    wait_until(  # the peer's subscriber thread applies the message a moment later
        lambda: peer.backplane()["received"] == 1 and cache.stats()["backplane"]["published"] == 1,
        "the own change to reach the peer, once",
    )


def test_a_value_read_before_its_invalidation_is_not_copied_into_local_tiers(
    settings: dict[str, Any], cache: Cache
) -> None:
    writer = Cache(**settings)  # another backplane end (its own name on the channel), same process
    cache.set("k", "old")
    cache.chain.slots[0].delete("k")
    stamp = cache.chain.stamp()  # a read of "k" from Redis starts …
    received = cache.stats()["backplane"]["received"]
    writer.set("k", "new")  # … the value changes and the invalidation arrives …
    wait_until(lambda: cache.stats()["backplane"]["received"] > received, "the invalidation")
    memory = cache.chain.slots[0]
    cache.chain.write_local(memory, {"k": Entry("old", None, ())}, stamp)
    assert cache.inspect("k")["memory"].status == "absent", "… so the old value is not backfilled"
    assert cache.get("k") == "new"
    cache.chain.write_local(memory, {"k": Entry("new", None, ())}, cache.chain.stamp())
    assert cache.inspect("k")["memory"].status == "held", "a read after the invalidation is kept"
    writer.close()


def test_killed_subscription_drops_local_copies_and_resubscribes(
    redis_url: str, cache: Cache, peer: Peer
) -> None:
    cache.set("k", 1)
    wait_until(lambda: peer.call("get", "k") == 1, "the peer to cache k")
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill_filter(_type="pubsub") >= 2  # this cache's and the peer's subscriptions
    cache.set("k", 2)  # published while nobody listens: the peer never gets this message
    wait_until(lambda: peer.backplane()["subscriptions"] >= 2, "the peer to resubscribe")
    assert peer.backplane()["disconnects"] >= 1
    assert peer.call("get", "k") == 2, "what changed while it was away is not served from memory"
    cache.set("k", 3)
    wait_until(lambda: peer.call("get", "k") == 3, "the backplane to work again")


def test_disconnected_backplane_serves_nothing_local_then_resumes(
    redis_factory: Callable[..., RedisServer], namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_factory()
    cache = Cache(**memory_redis(namespace, {"url": server.url}))
    wait_until(lambda: cache.stats()["backplane"]["state"] == "subscribed", "the cache to subscribe")
    cache.set("k", "v")
    assert cache.inspect("k")["memory"].status == "held"
    caplog.set_level(logging.INFO, logger="tierkit.events")
    server.stop()
    wait_until(lambda: cache.stats()["backplane"]["suspended"], "the backplane to notice")
    assert cache.inspect("k")["memory"].status == "absent", "local copies are dropped"
    cache.set("k", "while away")
    assert cache.inspect("k")["memory"].status == "absent", "and local tiers are not filled"
    health = cache.health().tiers["redis"]
    assert health.status != "ok" and health.details["backplane"]["state"] == "disconnected"
    events = [r.__dict__.get("tierkit_event") for r in caplog.records]
    assert "backplane_disconnected" in events
    server.start()
    wait_until(lambda: cache.stats()["backplane"]["state"] == "subscribed", "the backplane to come back")
    assert "backplane_subscribed" in [r.__dict__.get("tierkit_event") for r in caplog.records]
    cache.set("k", "back")
    assert cache.get("k") == "back" and cache.inspect("k")["memory"].status == "held"
    cache.close()


def test_another_program_may_publish_and_garbage_is_ignored(redis_url: str, cache: Cache, peer: Peer) -> None:
    cache.set("k", "v")
    wait_until(lambda: peer.backplane()["received"] == 1, "the set's own message (sent a moment later)")
    wait_until(lambda: peer.call("get", "k") == "v" and peer.call("memory_holds", "k"), "the peer to cache k")
    admin = redis.Redis.from_url(redis_url)
    channel = peer.backplane()["channel"]
    for garbage in (b"not json", b'{"o": "x"}', b'{"o": "x", "keys": [1]}', b'{"o": "x", "prefix": []}'):
        admin.publish(channel, garbage)
    wait_until(lambda: peer.backplane()["malformed"] == 4, "the garbage to be counted")
    assert peer.call("memory_holds", "k")
    admin.set(f"tierkit:{cache.settings.namespace}:k:k", b"ignored")  # a foreign write to Redis …
    admin.publish(channel, b'{"o": "another-program", "keys": ["k"]}')  # … announced by its program
    wait_until(lambda: not peer.call("memory_holds", "k"), "the announced change to reach the peer")


def test_backplane_off_and_no_local_tier_mean_no_backplane(redis_url: str, namespace: str) -> None:
    off = Cache(**memory_redis(namespace, {"url": redis_url}, backplane="off"))
    assert "backplane" not in off.stats()
    only_redis = Cache(namespace=namespace, order=["redis"], tiers={"redis": {"options": {"url": redis_url}}})
    assert "backplane" not in only_redis.stats()
    off.close()
    only_redis.close()


@pytest.mark.slow
def test_sentinel_failover_resubscribes_to_the_new_master(
    make_sentinels: Callable[[], SentinelGroup], namespace: str
) -> None:
    group = make_sentinels()
    options = {"sentinels": group.addresses, "service_name": group.service}
    settings = memory_redis(namespace, options)
    writer, reader = Cache(**settings), Peer(settings)
    wait_until(lambda: writer.stats()["backplane"]["state"] == "subscribed", "the writer to subscribe")
    writer.set("k", 1)
    wait_until(lambda: reader.call("get", "k") == 1, "the reader to cache k")
    old_master = group.current_master()
    group.master.stop()  # type: ignore[union-attr]
    wait_until(lambda: group.current_master() != old_master, "the failover", timeout=30)
    wait_until(lambda: reader.backplane()["subscriptions"] >= 2, "the reader to resubscribe", timeout=30)
    wait_until(lambda: writer.set("k", 2), "writes to reach the new master", timeout=30)
    wait_until(lambda: reader.call("get", "k") == 2, "the change to reach the reader")
    writer.set("k", 3)
    wait_until(lambda: reader.call("get", "k") == 3, "the next change too")
    reader.stop()
    writer.close()


@pytest.mark.slow
def test_cluster_backplane_survives_losing_its_node(
    make_cluster: Callable[[], Cluster], namespace: str
) -> None:
    cluster = make_cluster()
    options = {"url": cluster.url, "cluster": True}
    settings = memory_redis(namespace, options)
    writer, reader = Cache(**settings), Peer(settings)
    wait_until(lambda: writer.stats()["backplane"]["state"] == "subscribed", "the writer to subscribe")
    writer.set("k", 1)
    wait_until(lambda: reader.call("get", "k") == 1, "the reader to cache k")
    for node in cluster.live():  # wherever the subscriptions are, they are cut
        node.admin().client_kill_filter(_type="pubsub")
    wait_until(lambda: reader.backplane()["subscriptions"] >= 2, "the reader to resubscribe")
    writer.set("k", 2)
    wait_until(lambda: reader.call("get", "k") == 2, "the change to reach the reader")
    reader.stop()
    writer.close()


def test_changes_reach_every_session_when_it_is_next_used(redis_url: str, namespace: str) -> None:
    tierkit_session = pytest.importorskip("tierkit_session")
    options = {"url": redis_url}
    tiers = {"redis": {"options": options}}
    writer = Cache(namespace=namespace, order=["memory", "redis"], tiers=tiers)
    reader = Cache(namespace=namespace, order=["session", "redis"], tiers=tiers)  # another backplane end
    for cache in (writer, reader):
        wait_until(lambda c=cache: c.stats()["backplane"]["state"] == "subscribed", "subscriptions")
    sessions: list[dict[str, Any]] = [{}, {}]
    writer.set_many({"a": 1, "b": 1, "user:1": 1}, tags=["t"])
    wait_until(
        lambda: reader.stats()["backplane"]["received"] == 1, "the set_many's message (sent a moment later)"
    )
    for session in sessions:
        with tierkit_session.bind(session):
            wait_until(  # a read racing the set_many's own announcement is not backfilled: read again
                lambda: (
                    [reader.get(k) for k in ("a", "b", "user:1")] == [1, 1, 1]
                    and all(reader.inspect(k)["session"].status == "held" for k in ("a", "b", "user:1"))
                ),
                "the session to hold the values",
            )
    received = reader.stats()["backplane"]["received"]
    writer.set("a", 2)
    writer.invalidate(tags=["t"])  # b (a was rewritten without the tag)
    writer.invalidate(prefix="user:")
    wait_until(lambda: reader.stats()["backplane"]["received"] == received + 3, "the changes to arrive")
    for session in sessions:
        with tierkit_session.bind(session):
            assert [reader.inspect(k)["session"].status for k in ("a", "b", "user:1")] == ["absent"] * 3
            assert reader.get("a") == 2 and reader.get("b") is None
    writer.clear()
    wait_until(lambda: reader.stats()["backplane"]["received"] == received + 4, "the clear to arrive")
    with tierkit_session.bind(sessions[0]):
        assert reader.inspect("a")["session"].status == "absent"
    writer.close()
    reader.close()


# -- carried values: a plain set replaces the others' copies ----------------------------------------


def _received(cache: Cache, count: int) -> Callable[[], bool]:
    return lambda: cache.stats()["backplane"]["received"] >= count


def test_a_plain_set_replaces_the_copies_others_hold_and_other_writes_drop_them(
    cache: Cache, peer: Peer
) -> None:
    cache.set_many({"a": "old", "b": "old", "c": "old"})
    peer.call("set", "a", "new")
    wait_until(lambda: local_value(cache, "a") == "new", "the carried value to replace the copy")
    assert cache.stats()["backplane"]["replaced"] == 1
    peer.call("set", "b", "new", tags=["t"])  # tagged: a pipeline, not atomic with its message
    peer.call("set_many", {"c": "new", "d": 1})  # a pipeline too
    wait_until(_received(cache, 3), "the two other messages")
    assert local_value(cache, "b") is ABSENT and local_value(cache, "c") is ABSENT
    assert cache.get("b") == "new" and cache.get("c") == "new"
    assert cache.stats()["backplane"]["replaced"] == 1


def test_a_carried_value_is_never_added_where_the_key_is_not_held(cache: Cache, peer: Peer) -> None:
    peer.call("set", "elsewhere", "v")
    wait_until(_received(cache, 1), "the message")
    assert local_value(cache, "elsewhere") is ABSENT
    assert cache.stats()["backplane"]["replaced"] == 0


def test_a_replaced_copy_keeps_the_local_tiers_ttl_cap(redis_url: str, namespace: str) -> None:
    capped = memory_redis(namespace, {"url": redis_url}, tiers={"redis": {"options": {"url": redis_url}}})
    capped["tiers"]["memory"] = {"max_ttl": 5}
    cache = Cache(**capped)
    other = Peer(memory_redis(namespace, {"url": redis_url}))
    try:
        wait_until(lambda: cache.stats()["backplane"]["state"] == "subscribed", "the cache to subscribe")
        cache.set("k", "old", ttl=3600)
        other.call("set", "k", "new", 3600)
        wait_until(lambda: local_value(cache, "k") == "new", "the carried value")
        deadline = cache.chain.slots[0].get("k").expires_at
        assert deadline is not None and deadline <= time.time() + 5
    finally:
        other.stop()
        cache.clear()
        cache.close()


def test_a_read_racing_a_carried_value_does_not_put_the_older_value_back(
    settings: dict[str, Any], cache: Cache
) -> None:
    writer = Cache(**settings)  # another backplane end (its own name on the channel), same process
    cache.set("k", "old")
    stamp = cache.chain.stamp()  # a read of "k" from Redis starts and gets "old" …
    writer.set("k", "new")  # … the value changes and its message replaces the copy …
    wait_until(lambda: local_value(cache, "k") == "new", "the carried value")
    cache.chain.write_local(cache.chain.slots[0], {"k": Entry("old", None, ())}, stamp)
    assert local_value(cache, "k") == "new", "… so the read's backfill of the old value is refused"
    writer.close()


def test_values_above_the_threshold_are_not_carried(redis_url: str, namespace: str, cache: Cache) -> None:
    small = Peer(memory_redis(namespace, {"url": redis_url, "backplane_values": 64}))
    try:
        cache.set_many({"small": "old", "big": "old"})
        small.call("set", "small", "x")
        small.call("set", "big", "x" * 100)
        wait_until(_received(cache, 2), "both messages")
        assert local_value(cache, "small") == "x"
        assert local_value(cache, "big") is ABSENT
    finally:
        small.stop()


@pytest.mark.parametrize(
    "stored",
    [
        b"",  # a tail with no value
        b"\x01garbage",  # too short for a header
        b"\x07" + b"\x00" * 10 + b'"v"',  # not our format's version
        struct.pack("<BdH", 1, math.inf, 0) + b"\xff\xfe",  # undecodable payload
        struct.pack("<BdH", 1, math.inf, 0) + b"p" + pickle.dumps(print),  # pickle: never loaded
        struct.pack("<BdH", 1, 1.0, 0) + b'"v"',  # expired long ago
        struct.pack("<BdH", 1, math.inf, 3) + b"\x01\x00t" + b'"v"',  # tagged: only plain sets carry
    ],
)
def test_a_hostile_carried_value_drops_the_key(
    redis_url: str, namespace: str, cache: Cache, stored: bytes
) -> None:
    cache.set("k", "old")
    message = b'{"o":"someone","keys":["k"]}\x00' + (5).to_bytes(8, "little") + stored
    redis.Redis.from_url(redis_url).publish(f"tierkit:{namespace}:backplane", message)
    wait_until(_received(cache, 1), "the message")
    assert local_value(cache, "k") is ABSENT, "a value that cannot be read drops the copy"
    assert cache.stats()["backplane"]["bad_values"] == (0 if stored == b"" else 1)
    assert cache.get("k") == "old"


def test_a_carried_value_is_decoded_only_where_the_key_is_held(
    redis_url: str, namespace: str, cache: Cache
) -> None:
    """Most messages name keys a process never read: their values are not decoded at all."""
    cache.set("held", "old")
    undecodable = struct.pack("<BdH", 1, math.inf, 0) + b"\xff\xfe"
    for key in ("not-held", "held"):
        message = f'{{"o":"someone","keys":["{key}"]}}'.encode() + b"\x00" + (5).to_bytes(8, "little")
        redis.Redis.from_url(redis_url).publish(f"tierkit:{namespace}:backplane", message + undecodable)
    wait_until(_received(cache, 2), "the messages")
    assert cache.stats()["backplane"]["bad_values"] == 1, "only the held key's value was decoded"
    assert local_value(cache, "held") is ABSENT and local_value(cache, "not-held") is ABSENT


def test_an_own_echo_is_applied_when_a_carried_value_came_between(cache: Cache, peer: Peer) -> None:
    """Server order decides: an older value a peer's message put in after our local write is
    replaced again by our own write's echo (here a drop: the message as tierkit sends it, bare)."""
    backplane = cache.chain.backplane
    assert backplane is not None
    cache.set_many({"k": "mine", "other": 0})
    stamp = cache.chain.stamp()
    peer.call("set", "other", 1, tags=["t"])  # a drop: no copy replaced, the echo is still skipped
    wait_until(_received(cache, 1), "the peer's drop")
    backplane.on_message(with_tail(encode(backplane.origin, ("keys", ("k",))), stamp))
    assert local_value(cache, "k") == "mine"
    cache.set("other", 0)
    peer.call("set", "other", 2)  # a carried value replaces a copy: the stamp is now behind it
    wait_until(lambda: local_value(cache, "other") == 2, "the peer's carried value")
    cache.chain.slots[0].set("k", Entry("older", None, ()))  # as a late, older carried value would
    backplane.on_message(with_tail(encode(backplane.origin, ("keys", ("k",))), stamp))
    assert local_value(cache, "k") is ABSENT


def test_a_frozen_server_is_noticed_by_the_heartbeat(
    redis_factory: Callable[..., RedisServer], namespace: str
) -> None:
    """No FIN, no RST: only the unanswered PING tells (within two heartbeats), and local copies go."""
    server = redis_factory()
    cache = Cache(**memory_redis(namespace, {"url": server.url}))
    try:
        wait_until(lambda: cache.stats()["backplane"]["state"] == "subscribed", "the cache to subscribe")
        cache.set("k", "v")
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        began = time.monotonic()
        try:
            wait_until(lambda: cache.stats()["backplane"]["suspended"], "the heartbeat to notice")
            noticed = time.monotonic() - began
        finally:
            server.process.send_signal(signal.SIGCONT)
        assert noticed < 2 * HEARTBEAT + 1.0
        assert local_value(cache, "k") is ABSENT
        wait_until(lambda: cache.stats()["backplane"]["state"] == "subscribed", "the backplane to come back")
    finally:
        cache.close()
