"""TLS and ACL: what works, and failures that say why without leaking the password."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
import redis
from redis_helpers import RedisServer, TlsFiles
from tierkit_redis import RedisTier

from tierkit import Entry

pytestmark = pytest.mark.redis

PASSWORD = "Pa55-w0rd-Alice"
WRONG = "Wr0ng-Pa55-Alice"


def test_tls_with_the_right_ca(
    redis_factory: Callable[..., RedisServer],
    make_tier: Callable[..., RedisTier],
    tls_files: TlsFiles,
) -> None:
    server = redis_factory(tls=tls_files)
    assert server.url.startswith("rediss://")
    tier = make_tier(server.url, ssl_ca_certs=tls_files.ca)
    tier.tierkit_set("k", Entry(b"v", None, ("t",)))
    assert tier.tierkit_get("k") == Entry(b"v", None, ("t",))
    health = tier.tierkit_health()
    assert health.status == "ok", health.reason
    assert health.details["server_version"]


def test_tls_with_a_wrong_ca_is_down_with_a_tls_reason(
    redis_factory: Callable[..., RedisServer],
    make_tier: Callable[..., RedisTier],
    tls_files: TlsFiles,
) -> None:
    server = redis_factory(tls=tls_files)
    tier = make_tier(server.url, ssl_ca_certs=tls_files.other_ca)
    health = tier.tierkit_health()
    assert health.status == "down"
    assert health.reason.startswith("TLS error with 127.0.0.1:")
    assert "certificate verify failed" in health.reason
    with pytest.raises(redis.ConnectionError):
        tier.tierkit_get("k")


def test_plain_client_on_a_tls_port_is_down(
    redis_factory: Callable[..., RedisServer],
    make_tier: Callable[..., RedisTier],
    tls_files: TlsFiles,
) -> None:
    server = redis_factory(tls=tls_files)
    tier = make_tier(server.url.replace("rediss://", "redis://"))
    assert tier.tierkit_health().status == "down"


def test_acl_user_and_password_in_the_url(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory(users={"alice": PASSWORD})
    tier = make_tier(server.url_for("alice", PASSWORD))
    tier.tierkit_set("k", Entry(b"v", None, ()))
    assert tier.tierkit_get("k") == Entry(b"v", None, ())
    assert tier.tierkit_health().status == "ok"
    assert PASSWORD not in repr(tier)
    assert PASSWORD not in str(tier.tierkit_health())


def test_acl_over_tls(
    redis_factory: Callable[..., RedisServer],
    make_tier: Callable[..., RedisTier],
    tls_files: TlsFiles,
) -> None:
    server = redis_factory(tls=tls_files, users={"alice": PASSWORD})
    tier = make_tier(server.url_for("alice", PASSWORD), ssl_ca_certs=tls_files.ca)
    tier.tierkit_set("k", Entry(b"v", None, ()))
    assert tier.tierkit_get("k") == Entry(b"v", None, ())


def test_wrong_password_is_down_and_never_shown(
    redis_factory: Callable[..., RedisServer],
    make_tier: Callable[..., RedisTier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = redis_factory(users={"alice": PASSWORD})
    tier = make_tier(server.url_for("alice", WRONG))
    health = tier.tierkit_health()
    assert health.status == "down"
    assert "authentication failed" in health.reason
    with pytest.raises(redis.AuthenticationError) as raised:
        tier.tierkit_get("k")
    stats = tier.tierkit_stats()
    assert "authentication failed" in stats["server_error"]
    shown = [repr(tier), str(health), str(stats), str(raised.value), repr(raised.value), caplog.text]
    shown += [repr(tier.options), str(tier.options), tier.options.model_dump_json()]
    for text in shown:
        assert WRONG not in text
        assert PASSWORD not in text
    assert "alice:***@" in repr(tier)


def test_password_only_url_for_requirepass_servers(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory(users={"default": PASSWORD})
    tier = make_tier(f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0")
    tier.tierkit_set("k", Entry(b"v", None, ()))
    assert tier.tierkit_get("k") == Entry(b"v", None, ())
    assert ":***@" in repr(tier)


LEAST_PRIVILEGE = (
    "on >app-Pa55 ~{prefix}* resetchannels -@all "
    "+get +mget +set +unlink +eval +sunion +scan +sadd +srem +srandmember +exists +pttl +pexpire +persist "
    "+ping"
)
"""What the tier needs, on its own keys only (INFO is optional)."""


def test_least_privilege_acl_user(
    redis_factory: Callable[..., RedisServer], make_tier: Callable[..., RedisTier]
) -> None:
    server = redis_factory(users={"admin": PASSWORD})
    rules = LEAST_PRIVILEGE.format(prefix="tierkit:app:").split()
    server.admin().execute_command("ACL", "SETUSER", "app", *rules)
    tier = make_tier(server.url_for("app", "app-Pa55"), namespace="app")
    tier.tierkit_set("a", Entry(b"1", time.time() + 60, ("t",)))
    tier.tierkit_set_many({"b": Entry(b"2", None, ()), "c": Entry(b"3", None, ("t",))})
    assert tier.tierkit_get("a") == Entry(b"1", pytest.approx(time.time() + 60, abs=1), ("t",))
    assert tier.tierkit_get_many(["a", "b", "c"]).keys() == {"a", "b", "c"}
    assert tier.tierkit_invalidate_tags(["t"]) == 2
    assert tier.tierkit_invalidate_prefix("b") == 1
    assert tier.tierkit_delete("b") is False
    tier.tierkit_clear()
    health = tier.tierkit_health()
    assert health.status == "ok", health.reason
    assert health.details["server_version"] == "unknown (INFO not permitted)"
    assert "not permitted" in tier.tierkit_stats()["server_error"]

    outsider = make_tier(server.url_for("app", "app-Pa55"), namespace="other")
    with pytest.raises(redis.exceptions.NoPermissionError):
        outsider.tierkit_set("a", Entry(b"1", None, ()))
