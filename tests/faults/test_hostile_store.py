"""A Redis shared with programs the application does not control: its bytes are untrusted."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import pickle
import secrets
import sys
import uuid
from pathlib import Path

import pytest
from tierkit_redis._format import pack

from tierkit import MISSING, Cache

from ._redis import RedisServer
from ._suite import Scenario


def shared_cache(server: RedisServer, **settings: object) -> Cache:
    tiers = {"redis": {"options": {"url": server.url}}}
    return Cache(namespace=f"h{uuid.uuid4().hex[:8]}", order=["memory", "redis"], tiers=tiers, **settings)


def redis_key(cache: Cache, key: str) -> str:
    return str(cache.chain.slots[1].tier.key_prefix) + "k:" + key


def test_a_payload_naming_a_module_imports_nothing(
    record: Scenario, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry another client wrote naming a module and a class is a miss: nothing is imported (item 16)."""
    name = f"tierkit_planted_{secrets.token_hex(4)}"
    marker = tmp_path / "ran"
    (tmp_path / f"{name}.py").write_text(
        f"import pathlib, enum\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "class E(enum.Enum):\n    A = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cache = shared_cache(redis_server)
    payload = b'e{"\\u0000t":"enum","v":1,"c":"%s:E"}' % name.encode()
    redis_server.admin().set(redis_key(cache, "planted"), pack(payload, None, ()))
    got = cache.get("planted", MISSING)
    figures = cache.stats()["tiers"]["redis"]
    record.did(f"another client SET a value whose envelope names {name}:E under the cache's prefix")
    record.saw(read=repr(got), module_imported=name in sys.modules, code_ran=marker.exists())
    assert got is MISSING and name not in sys.modules and not marker.exists()
    assert (figures["errors"], figures["corrupt"], figures["breaker"]) == (1, 0, "closed")  # decoded, refused
    cache.close()


def test_a_forged_pickle_never_runs(record: Scenario, redis_server: RedisServer, tmp_path: Path) -> None:
    """A pickle signed with another key (or the docs' example key) is rejected, never unpickled (item 18)."""
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (Path.write_text, (marker, "ran"))  # type: ignore[return-value]

    cache = shared_cache(redis_server, codec="pickle", signing_key=secrets.token_urlsafe(32))
    body = pickle.dumps(Boom())
    for forger_key in (b"change-me", secrets.token_bytes(32)):
        forged = b"p" + hmac.new(forger_key, body, hashlib.sha256).digest() + body
        redis_server.admin().set(redis_key(cache, "forged"), pack(forged, None, ()))
        assert cache.get("forged", MISSING) is MISSING
    record.did("a pickle whose reduce writes a file, signed with 'change-me' and with a random key, SET raw")
    removed = cache.stats()["tiers"]["redis"]["corrupt"]
    record.saw(code_ran=marker.exists(), forgeries_removed=removed)
    assert not marker.exists() and removed == 2
    cache.close()


def test_unencodable_values_name_key_type_and_path(record: Scenario, redis_server: RedisServer) -> None:
    """A value the codec cannot write is a TypeError naming the key, the type and the path (item 19)."""

    @dataclasses.dataclass
    class Row:
        when: object

    cycle: list[object] = []
    cycle.append(cycle)
    cache = shared_cache(redis_server)
    messages = []
    for value in ({"rows": [1, 2, 3, Row(object())]}, cycle):
        with pytest.raises(TypeError) as raised:
            cache.set("report", value)
        messages.append(str(raised.value))
    record.did("set() with an object nested in a dataclass in a list, and with a list containing itself")
    record.saw(first=messages[0][:90], second=messages[1][:90])
    assert "'report'" in messages[0] and "builtins.object" in messages[0] and ".when" in messages[0]
    assert "'report'" in messages[1] and "circular" in messages[1]
    assert cache.get("report", MISSING) is MISSING
    cache.close()
