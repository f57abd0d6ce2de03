"""Options, URL checks and redaction, packaging and start-up cost (no server needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import tierkit_redis
from pydantic import ValidationError
from tierkit_redis import Options, RedisTier, redacted_url

from tierkit import ConfigError, TierContext

SECRET = "S3cret-Pa55"


def test_defaults_fit_a_cache() -> None:
    options = Options()
    assert options.url is None
    assert options.connect_timeout == options.socket_timeout == 0.25
    assert options.retries == 1
    assert options.key_prefix is None
    for name, field in Options.model_fields.items():
        assert field.description, f"option {name} has no description"


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost",
        "redis://127.0.0.1:6380/3",
        f"redis://alice:{SECRET}@cache.internal:6379/0",
        f"redis://:{SECRET}@cache.internal",
        "redis://cache.internal?db=2",
        "rediss://cache.internal:6380",
        "unix:///run/redis/redis.sock",
        "unix:///run/redis/redis.sock?db=4",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert Options(url=url).url is not None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"http://alice:{SECRET}@host:6379", "scheme 'http' is not supported"),
        (f"alice:{SECRET}@host", "use redis://, rediss:// or unix://"),
        (f"{SECRET}@host", "scheme is missing"),
        (f"redis://alice:{SECRET}@host:notaport/0", "not a valid URL"),
        (f"redis://alice:{SECRET}@host:6379/db{SECRET}", "database must be a number"),
        (f"redis://alice:{SECRET}@host:0", "port must be between 1 and 65535"),
        ("unix://", "needs the socket path"),
    ],
)
def test_bad_urls_name_the_field_and_never_echo_the_password(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Options(url=url)
    text = str(raised.value)
    assert message in text
    assert raised.value.errors()[0]["loc"] == ("url",)
    assert SECRET not in text
    assert SECRET not in repr(raised.value)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"socket_timeout": -1}, "socket_timeout"),
        ({"retries": 9}, "retries"),
        ({"max_connections": 0}, "max_connections"),
        ({"key_prefix": ""}, "key_prefix"),
        ({"ssl_ca_certs": "/nonexistent/ca.pem"}, "ssl_ca_certs"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_invalid_options_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Options(**options)  # type: ignore[arg-type]
    assert raised.value.errors()[0]["loc"] == (field,)


def test_tls_files_need_a_tls_url(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ValidationError, match=r"ssl_ca_certs need a rediss:// url") as raised:
        Options(url=f"redis://:{SECRET}@host", ssl_ca_certs=ca)
    assert SECRET not in str(raised.value)
    assert Options(url="rediss://host", ssl_ca_certs=ca).ssl_ca_certs == ca
    with pytest.raises(ValidationError, match="go together"):
        Options(url="rediss://host", ssl_certfile=ca)


def test_options_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Options().retries = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://alice:{SECRET}@h:6379/0", "redis://alice:***@h:6379/0"),
        (f"rediss://:{SECRET}@h", "rediss://:***@h"),
        ("redis://alice@h", "redis://alice@h"),
        ("redis://h:6379/2", "redis://h:6379/2"),
        (f"unix:///tmp/r.sock?db=1&password={SECRET}", "unix:///tmp/r.sock?db=1&password=***"),
        (f"redis://alice:{SECRET}@h:bad", "redis://alice:***@h:bad"),
        (f"redis://alice:{SECRET}/x@y@h:6379/0", "redis://alice:***@h:6379/0"),
        (
            f"redis://:{SECRET}@h/0?client_name=app&Password={SECRET}",
            "redis://:***@h/0?client_name=app&Password=***",
        ),
        (f"alice:{SECRET}@h", "alice:***@h"),
        ("not a url", "not a url"),
    ],
)
def test_redacted_url(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_secret_url_is_masked_in_the_options() -> None:
    options = Options(url=f"redis://alice:{SECRET}@h")
    assert SECRET not in repr(options) and SECRET not in options.model_dump_json()


def test_without_url_the_tier_is_not_configured() -> None:
    context = TierContext(name="shared", namespace="app")
    reason = RedisTier.unavailable_reason(Options(), context)
    assert reason is not None
    assert reason.startswith("not configured: no REDIS_URL")
    assert "tiers.shared.options.url" in reason
    assert RedisTier.unavailable_reason(Options(url="redis://h"), context) is None
    with pytest.raises(ConfigError, match="not configured"):
        RedisTier(Options(), context)


def test_building_does_not_connect() -> None:
    tier = RedisTier(Options(url="redis://127.0.0.1:1/0"), TierContext("redis", "app"))
    assert repr(tier) == "RedisTier(name='redis', url='redis://127.0.0.1:1/0', key_prefix='tierkit:app:')"
    tier.tierkit_close()


def test_tier_class_attributes() -> None:
    assert RedisTier.holds == "bytes"
    assert RedisTier.remote is True
    assert RedisTier.default_write == "always"
    assert RedisTier.Options is Options


def test_entry_point_names_the_tier_class() -> None:
    (ep,) = [ep for ep in entry_points(group="tierkit.tiers") if ep.name == "redis"]
    assert ep.value == "tierkit_redis:RedisTier"
    assert ep.dist is not None and ep.dist.metadata["Name"] == "tierkit-redis"
    assert ep.load() is RedisTier


def test_importing_the_plugin_does_not_import_redis_py() -> None:
    code = (
        "import sys, tierkit_redis\n"
        "from tierkit import TierContext\n"
        "from tierkit_redis import Options, RedisTier\n"
        "RedisTier.unavailable_reason(Options(), TierContext('redis', 'ns'))\n"
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unconfigured_cache_skips_redis_without_importing_it(tmp_path: Path) -> None:
    code = (
        "import sys, tierkit\n"
        f"cache = tierkit.Cache(tiers={{'file': {{'options': {{'directory': {str(tmp_path)!r}}}}}}})\n"
        "report = cache.health().tiers['redis']\n"
        "print(cache.tiers, report.status, report.reason, 'redis' in sys.modules, sep='|')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERKIT_") and k != "REDIS_URL"}
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr
    tiers, status, reason, imported = out.stdout.strip().split("|")
    assert "redis" not in tiers and "memory" in tiers and "file" in tiers
    assert status == "skipped"
    assert reason.startswith("not configured: no REDIS_URL")
    assert imported == "False"


def test_public_api() -> None:
    assert set(tierkit_redis.__all__) == {"Options", "RedisTier", "is_available", "redacted_url"}
