"""The tier's GET, SET and scripts go through a lane of their own (tierkit_redis._lane): what
redis-py's per-command machinery guaranteed must still hold, against a real server."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest
import redis
from redis_helpers import RedisServer
from tierkit_redis import RedisTier
from tierkit_redis._lane import JOIN_UP_TO, lane_of

import tierkit
from tierkit import Entry

pytestmark = [pytest.mark.redis]


def get_connections(admin: redis.Redis) -> int:
    """Connections of the server whose last command was a GET."""
    return sum(1 for client in admin.client_list() if client["cmd"] == "get")


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_failure(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory()
    tier = make_tier(server.url, retries=0)  # even with no retries, as redis-py's checkout did
    tier.tierkit_set("k", Entry(b"v", None, ()))
    assert tier.tierkit_get("k") == Entry(b"v", None, ())
    admin = server.admin()
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    assert tier.tierkit_get("k") == Entry(b"v", None, ())


def test_a_timed_out_get_leaves_no_reply_behind_for_the_next_one(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory()
    tier = make_tier(server.url, socket_timeout=0.2)
    tier.tierkit_set_many({"a": Entry(b"value of a", None, ()), "b": Entry(b"value of b", None, ())})
    server.admin().execute_command("CLIENT", "PAUSE", 500, "ALL")
    with pytest.raises(redis.TimeoutError):
        tier.tierkit_get("a")  # its reply comes after the pause, to a connection closed meanwhile
    time.sleep(0.6)
    assert tier.tierkit_get("b") == Entry(b"value of b", None, ())
    assert tier.tierkit_get("a") == Entry(b"value of a", None, ())


def test_a_foreign_value_is_a_miss_and_the_connection_stays_usable(tier: RedisTier, redis_url: str) -> None:
    tier.tierkit_set("ours", Entry(b"v", None, ()))
    redis.Redis.from_url(redis_url).hset(tier.key_prefix + "k:theirs", "field", "x")
    assert tier.tierkit_get("theirs") is None  # WRONGTYPE: another program's hash
    assert tier.tierkit_get("ours") == Entry(b"v", None, ())


def test_a_forked_child_reads_on_a_connection_of_its_own(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory()
    tier = make_tier(server.url)
    tier.tierkit_set_many({"parent": Entry(b"p", None, ()), "child": Entry(b"c", None, ())})
    assert tier.tierkit_get("parent") == Entry(b"p", None, ())
    admin = server.admin()
    assert get_connections(admin) == 1
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        status = 1
        try:
            ok = tier.tierkit_get("child") == Entry(b"c", None, ())
            fresh = get_connections(redis.Redis.from_url(server.url)) == 2
            os.write(write_end, b"ok" if ok and fresh else f"ok={ok} fresh={fresh}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report = os.read(read_end, 100)
    os.close(read_end)
    assert status == 0 and report == b"ok"
    for _ in range(20):  # the parent's connection was neither used nor shut down by the child
        assert tier.tierkit_get("parent") == Entry(b"p", None, ())


def test_closing_the_tier_closes_its_read_connections(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory()
    tier = make_tier(server.url)
    assert tier.tierkit_get("k") is None
    admin = server.admin()
    assert get_connections(admin) == 1
    tier.tierkit_close()
    deadline = time.monotonic() + 2
    while get_connections(admin) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert get_connections(admin) == 0


def test_threads_reading_at_once_each_get_their_own_reply(tier: RedisTier) -> None:
    keys = [f"k{i}" for i in range(8)]
    tier.tierkit_set_many({key: Entry(key.encode(), None, ()) for key in keys})
    wrong: list[tuple[str, object]] = []

    def read(key: str) -> None:
        for _ in range(300):
            entry = tier.tierkit_get(key)
            if entry != Entry(key.encode(), None, ()):
                wrong.append((key, entry))

    threads = [threading.Thread(target=read, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_set_stores_the_value_with_its_ttl_or_none(tier: RedisTier, redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    tier.tierkit_set("ttl", Entry(b"v", time.time() + 60, ()))
    tier.tierkit_set("forever", Entry(b"w", None, ()))
    assert 55_000 < admin.pttl(tier.key_prefix + "k:ttl") <= 60_000
    assert admin.pttl(tier.key_prefix + "k:forever") == -1
    assert tier.tierkit_get("forever") == Entry(b"w", None, ())


def test_a_value_larger_than_one_buffer_is_sent_in_pieces_intact(tier: RedisTier) -> None:
    big = bytes(range(256)) * (JOIN_UP_TO // 256 * 3 + 1)
    tier.tierkit_set("big", Entry(big, None, ()))
    entry = tier.tierkit_get("big")
    assert entry is not None and entry.value == big


def test_a_timed_out_set_leaves_no_reply_behind_for_the_next_command(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory()
    tier = make_tier(server.url, socket_timeout=0.2)
    tier.tierkit_set("b", Entry(b"value of b", None, ()))
    server.admin().execute_command("CLIENT", "PAUSE", 500, "WRITE")
    with pytest.raises(redis.TimeoutError):
        tier.tierkit_set("a", Entry(b"value of a", None, ()))
    time.sleep(0.6)
    assert tier.tierkit_get("b") == Entry(b"value of b", None, ())


def test_a_script_the_server_forgot_is_loaded_again(redis_url: str) -> None:
    lane = lane_of(redis.Redis.from_url(redis_url), retries=1)
    assert lane is not None
    echo = lane.script("return {KEYS[1], ARGV[1], ARGV[2]}")
    assert echo(keys=["key"], args=[b"bytes", 7]) == [b"key", b"bytes", b"7"]
    redis.Redis.from_url(redis_url).script_flush()
    assert echo(keys=["key"], args=["str", 8]) == [b"key", b"str", b"8"]
    with pytest.raises(redis.ResponseError, match="boom"):
        lane.script("return redis.error_reply('boom')")()
    with pytest.raises(TypeError, match="float"):
        echo(keys=["key"], args=[1.5, 1])
    lane.close()


def test_a_set_and_its_message_go_as_one_transaction(redis_url: str) -> None:
    lane = lane_of(redis.Redis.from_url(redis_url), retries=1)
    assert lane is not None
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.subscribe("lane-test")
    assert listener.get_message(timeout=2) is not None  # the subscription's confirmation
    lane.set_announced("lane:k", b"value", 60_000, "lane-test", b"message")
    message = listener.get_message(timeout=2)
    assert message is not None and message["data"] == b"message"
    admin = redis.Redis.from_url(redis_url)
    assert admin.get("lane:k") == b"value" and 55_000 < admin.pttl("lane:k") <= 60_000
    lane.set_announced("lane:k", b"forever", 0, "lane-test", b"again")
    assert admin.get("lane:k") == b"forever" and admin.pttl("lane:k") == -1
    listener.close()
    lane.close()


def test_an_error_among_a_transactions_replies_leaves_the_connection_clean(
    redis_factory: Callable[..., RedisServer],
) -> None:
    server = redis_factory()
    server.admin().execute_command("ACL", "SETUSER", "nomulti", "on", ">pw", "~*", "&*", "+@all", "-multi")
    lane = lane_of(redis.Redis.from_url(server.url_for("nomulti", "pw")), retries=0)
    assert lane is not None
    with pytest.raises(redis.exceptions.NoPermissionError):
        lane.set_announced("k", b"v", 0, "ch", b"m")  # MULTI refused; SET and PUBLISH run; EXEC errs
    assert lane.get("k") == b"v", "every reply was read: the next command gets its own"
    lane.close()


def test_a_user_without_multi_and_exec_gets_the_script_with_no_failed_write(
    redis_factory: Callable[..., RedisServer],
) -> None:
    """ACL rules written before tierkit sent MULTI/EXEC keep working."""
    server = redis_factory()
    rules = (
        "on >pw ~tierkit:* resetchannels &tierkit:* -@all +get +set +unlink +eval +evalsha +ping "
        "+publish +subscribe"
    )
    server.admin().execute_command("ACL", "SETUSER", "older", *rules.split())
    settings = {"url": server.url_for("older", "pw")}
    cache = tierkit.Cache(namespace="acl", order=["memory", "redis"], tiers={"redis": {"options": settings}})
    other = tierkit.Cache(namespace="acl", order=["memory", "redis"], tiers={"redis": {"options": settings}})
    for version in range(3):
        cache.set("k", version)
        other.clear(tiers=["memory"])
        assert other.get("k") == version
    assert cache.stats()["tiers"]["redis"]["errors"] == 0
    cache.close()
    other.close()


def test_get_many_reads_through_the_lane_and_a_timed_out_one_leaves_no_reply_behind(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory()
    tier = make_tier(server.url, socket_timeout=0.2)
    tier.tierkit_set_many({"a": Entry(b"value of a", None, ()), "b": Entry(b"value of b", None, ())})
    assert tier.tierkit_get("a") == Entry(b"value of a", None, ())
    assert tier.tierkit_get_many_payloads(["a", "absent", "b"]).keys == ["a", "b"]
    admin = server.admin()
    commands = [client["cmd"] for client in admin.client_list()]
    assert (commands.count("get"), commands.count("mget")) == (0, 1)  # the MGET went on the GET's connection
    admin.execute_command("CLIENT", "PAUSE", 500, "ALL")
    with pytest.raises(redis.TimeoutError):
        tier.tierkit_get_many_payloads(["a"])  # its reply comes after the pause
    time.sleep(0.6)
    assert tier.tierkit_get_many_payloads(["b", "a"]).payloads == [b"value of b", b"value of a"]
    assert tier.tierkit_get("a") == Entry(b"value of a", None, ())
