"""Writes by other programs reach local tiers when the server publishes keyspace notifications.

A private redis-server per test module, configured with ``notify-keyspace-events``; "another
program" is a plain redis-py client, or a tierkit cache with the backplane off (it announces
nothing).  Waits are generous and nothing is timed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from backplane_helpers import memory_redis, wait_until
from redis_helpers import RedisServer
from tierkit_redis._keyspace import ForeignWrites, publishes_events
from tierkit_redis._tier import glob_escape

from tierkit import Cache

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    own = RedisServer(tmp_path_factory.mktemp("keyspace"), extra=["notify-keyspace-events KA"]).start()
    yield own
    own.stop()


@pytest.fixture
def settings(server: RedisServer) -> dict[str, Any]:
    return memory_redis(f"ks{uuid.uuid4().hex[:10]}", {"url": server.url})


def subscribed(cache: Cache) -> Cache:
    wait_until(lambda: cache.stats()["backplane"]["state"] == "subscribed", "the cache to subscribe")
    return cache


@pytest.fixture
def cache(settings: dict[str, Any]) -> Iterator[Cache]:
    own = subscribed(Cache(**settings))
    yield own
    own.clear()
    own.close()


@pytest.fixture
def other_program(settings: dict[str, Any]) -> Iterator[Cache]:
    """Writes tierkit's format but announces nothing, as a program of its own would."""
    own = Cache(**{**settings, "backplane": "off"})
    yield own
    own.close()


def held(cache: Cache, key: str) -> bool:
    return cache.inspect(key)["memory"].status == "held"


def test_a_write_nobody_announced_drops_the_local_copy(cache: Cache, other_program: Cache) -> None:
    cache.set("price", 10)
    assert held(cache, "price")
    other_program.set("price", 12)
    wait_until(lambda: not held(cache, "price"), "the local copy to go")
    assert cache.get("price") == 12
    report = cache.stats()["backplane"]
    assert report["foreign_writes"] == "watched" and report["foreign_dropped"] >= 1


def test_a_raw_delete_and_an_expire_by_another_program_drop_it_too(
    cache: Cache, server: RedisServer, settings: dict[str, Any]
) -> None:
    raw = server.admin()
    prefix = f"tierkit:{settings['namespace']}:k:"
    for command in (lambda: raw.delete(prefix + "a"), lambda: raw.pexpire(prefix + "a", 50_000)):
        cache.set("a", "mine")
        assert held(cache, "a")
        command()
        wait_until(lambda: not held(cache, "a"), "the local copy to go")


def test_announced_writes_keep_the_local_copies(cache: Cache, settings: dict[str, Any]) -> None:
    """Own writes and peers' writes come with their messages: no copy is dropped for their events."""
    peer = subscribed(Cache(**settings))
    try:
        for round_ in range(20):
            cache.set(f"k{round_}", round_)
            peer.set(f"p{round_}", round_)
        wait_until(lambda: peer.stats()["backplane"]["received"] >= 20, "the peer to get the messages")
        assert all(held(cache, f"k{i}") for i in range(20)), "own writes must keep own copies"
        cache.get("p0")  # now held here too: the peer's next set carries its value, which replaces it
        peer.set("p0", "carried")
        wait_until(lambda: cache.stats()["backplane"]["replaced"] >= 1, "the carried value to replace it")
        assert held(cache, "p0") and cache.get("p0") == "carried"
        assert cache.stats()["backplane"]["foreign_dropped"] == 0
    finally:
        peer.close()


def test_a_server_without_notifications_is_reported_not_watched(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    assert not publishes_events(admin.config_get("notify-keyspace-events")["notify-keyspace-events"])
    cache = subscribed(Cache(**memory_redis(f"ks{uuid.uuid4().hex[:10]}", {"url": redis_url})))
    try:
        assert cache.stats()["backplane"]["foreign_writes"].startswith(
            "not published: notify-keyspace-events"
        )
    finally:
        cache.close()


def test_off_does_not_watch(settings: dict[str, Any], other_program: Cache) -> None:
    settings["tiers"]["redis"]["options"]["keyspace_events"] = "off"
    cache = subscribed(Cache(**settings))
    try:
        assert cache.stats()["backplane"]["foreign_writes"] == "off"
        cache.set("a", 1)
        other_program.set("a", 2)
        assert cache.get("a") == 1  # not watched: the copy lives until its TTL, as documented
    finally:
        cache.close()


@pytest.mark.parametrize(
    ("flags", "published"),
    [("", False), ("KA", True), ("Kg$", True), ("K$", False), ("EA", False), ("AKE", True), ("g$K", True)],
)
def test_which_settings_publish_the_events(flags: str, published: bool) -> None:
    assert publishes_events(flags) is published


def test_an_event_is_settled_only_by_a_message_after_it() -> None:
    foreign = ForeignWrites(0, "tierkit:ns:k:", glob_escape)
    assert foreign.pattern == "__keyspace@0__:tierkit:ns:k:*"
    channel = b"__keyspace@0__:tierkit:ns:k:"
    foreign.event(channel + b"a", b"set")
    foreign.event(channel + b"b", b"set")
    foreign.event(channel + b"c", b"expired")  # no value changed
    foreign.event(channel + b"d", b"evicted")
    foreign.event(channel + b"\xff", b"set")  # not a key tierkit could have written
    foreign.announced(b'{"o":"peer","keys":["a"]}')
    foreign.event(channel + b"a", b"del")  # after the message: another write
    foreign.announced(b"\x00 not a message")
    foreign.event(channel + b"t", b"set")
    foreign.announced(b'{"o":"peer","keys":["t"]}\x00' + bytes(8) + b"stored bytes")  # a carried value
    assert foreign.flush() == b'{"o":"keyspace","keys":["b","a"]}'
    assert foreign.flush() is None
    foreign.event(channel + b"user:1", b"set")
    foreign.event(channel + b"x", b"set")
    foreign.announced(b'{"o":"peer","prefix":["user:"]}')
    assert foreign.flush() == b'{"o":"keyspace","keys":["x"]}'
    foreign.event(channel + b"x", b"set")
    foreign.announced(b'{"o":"peer","clear":[]}')
    assert foreign.flush() is None
    assert foreign.seen == 3


def test_hostile_key_names_stay_literal(server: RedisServer, settings: dict[str, Any], cache: Cache) -> None:
    """A key with glob characters is watched like any other (the pattern escapes the prefix only)."""
    writer = Cache(**{**settings, "backplane": "off"})
    try:
        cache.set("a*[b]?", 1)
        writer.set("a*[b]?", 2)
        wait_until(lambda: not held(cache, "a*[b]?"), "the local copy to go")
        assert cache.get("a*[b]?") == 2
    finally:
        writer.close()


def test_the_pattern_escapes_a_glob_in_the_prefix(tmp_path: Path) -> None:
    foreign = ForeignWrites(3, "app[1]:k:", glob_escape)
    assert foreign.pattern == "__keyspace@3__:app\\[1\\]:k:*"


def test_an_acl_user_without_the_keyspace_channels_still_gets_the_backplane(server: RedisServer) -> None:
    rules = (
        "on >pw ~tierkit:* resetchannels &tierkit:* -@all +get +mget +set +unlink +eval +evalsha +scan "
        "+exists +pttl +ping +info +publish +subscribe +psubscribe +config|get"
    )
    server.admin().execute_command("ACL", "SETUSER", "app", *rules.split())
    url = server.url_for("app", "pw")
    cache = subscribed(Cache(**memory_redis(f"ks{uuid.uuid4().hex[:10]}", {"url": url})))
    try:
        assert cache.stats()["backplane"]["foreign_writes"] == "refused: PSUBSCRIBE to the keyspace channels"
        cache.set("a", 1)
        assert cache.get("a") == 1
    finally:
        cache.close()


def test_without_config_rights_it_listens_anyway(server: RedisServer, other_program: Cache) -> None:
    """Managed services refuse CONFIG but may publish the events (set in their console)."""
    namespace = other_program.settings.namespace
    rules = (  # PSUBSCRIBE needs its pattern granted literally
        f"on >pw2 ~tierkit:* resetchannels &tierkit:* &__keyspace@0__:tierkit:{namespace}:k:* -@all +get "
        "+mget +set +unlink +eval +evalsha +scan +exists +pttl +ping +info +publish +subscribe +psubscribe"
    )
    server.admin().execute_command("ACL", "SETUSER", "app2", *rules.split())
    cache = subscribed(Cache(**memory_redis(namespace, {"url": server.url_for("app2", "pw2")})))
    try:
        assert cache.stats()["backplane"]["foreign_writes"].startswith("watched if published")
        cache.set("a", 1)
        other_program.set("a", 2)
        wait_until(lambda: not held(cache, "a"), "the local copy to go")
    finally:
        cache.close()


def test_the_setting_is_asked_again_on_each_subscription(
    server: RedisServer, cache: Cache, other_program: Cache
) -> None:
    admin = server.admin()
    assert cache.stats()["backplane"]["foreign_writes"] == "watched"
    admin.config_set("notify-keyspace-events", "")
    try:
        admin.client_kill_filter(_type="pubsub")
        wait_until(lambda: cache.stats()["backplane"]["subscriptions"] >= 2, "the cache to resubscribe")
        assert cache.stats()["backplane"]["foreign_writes"].startswith("not published")
    finally:
        admin.config_set("notify-keyspace-events", "KA")
    admin.client_kill_filter(_type="pubsub")
    wait_until(lambda: cache.stats()["backplane"]["subscriptions"] >= 3, "the cache to resubscribe")
    assert cache.stats()["backplane"]["foreign_writes"] == "watched"
    cache.set("a", 1)
    other_program.set("a", 2)
    wait_until(lambda: not held(cache, "a"), "the local copy to go")
