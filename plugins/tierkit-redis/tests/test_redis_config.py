"""Where the Redis URL comes from (first found wins) and ``is_available``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis_helpers import RedisServer
from tierkit_redis import is_available

from tierkit import Cache, ConfigError

# Port 1 refuses at once: building and asking health needs no server, and the
# database number tells which source supplied the URL.
ARGUMENT = "redis://127.0.0.1:1/1"
TIERKIT_ENV = "redis://127.0.0.1:1/2"
REDIS_URL_ENV = "redis://127.0.0.1:1/3"
DOTENV_LOCAL = "redis://127.0.0.1:1/4"
DOTENV = "redis://127.0.0.1:1/5"
STREAMLIT = "redis://127.0.0.1:1/6"
TOML = "redis://127.0.0.1:1/7"


def chosen_url(**arguments: object) -> str | None:
    """The URL the Redis tier of a freshly built cache uses (``None``: not configured)."""
    with Cache(order=["memory", "redis"], **arguments) as cache:
        report = cache.health().tiers["redis"]
        if report.status == "skipped":
            assert report.reason.startswith("not configured")
            return None
        return str(report.details["url"])


def write_sources(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERKIT_TIERS__REDIS__OPTIONS__URL", TIERKIT_ENV)
    monkeypatch.setenv("REDIS_URL", REDIS_URL_ENV)
    (workdir / ".env.local").write_text(f"REDIS_URL={DOTENV_LOCAL}\n")
    (workdir / ".env").write_text(f"REDIS_URL={DOTENV}\n")
    (workdir / ".streamlit").mkdir()
    (workdir / ".streamlit" / "secrets.toml").write_text(f'REDIS_URL = "{STREAMLIT}"\n')
    (workdir / "tierkit.toml").write_text(f'[tiers.redis.options]\nurl = "{TOML}"\n')


def test_first_source_found_wins(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_sources(workdir, monkeypatch)
    assert chosen_url(tiers={"redis": {"options": {"url": ARGUMENT}}}) == ARGUMENT
    removals: list[tuple[str, Callable[[], None]]] = [
        (TIERKIT_ENV, lambda: monkeypatch.delenv("TIERKIT_TIERS__REDIS__OPTIONS__URL")),
        (REDIS_URL_ENV, lambda: monkeypatch.delenv("REDIS_URL")),
        (DOTENV_LOCAL, (workdir / ".env.local").unlink),
        (DOTENV, (workdir / ".env").unlink),
        (STREAMLIT, (workdir / ".streamlit" / "secrets.toml").unlink),
        (TOML, (workdir / "tierkit.toml").unlink),
    ]
    for expected, remove in removals:
        assert chosen_url() == expected
        remove()
    assert chosen_url() is None


@pytest.mark.parametrize("source", ["env", ".env.local", ".env", "streamlit", "toml"])
def test_each_source_alone(source: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "redis://alice:Pa55@127.0.0.1:1/9"
    if source == "env":
        monkeypatch.setenv("REDIS_URL", url)
    elif source == "streamlit":
        (workdir / ".streamlit").mkdir()
        (workdir / ".streamlit" / "secrets.toml").write_text(f'REDIS_URL = "{url}"\n')
    elif source == "toml":
        (workdir / "tierkit.toml").write_text(f'[tiers.redis.options]\nurl = "{url}"\n')
    else:
        (workdir / source).write_text(f"REDIS_URL={url}\n")
    assert chosen_url() == "redis://alice:***@127.0.0.1:1/9"


def test_tier_options_from_the_toml_file(workdir: Path) -> None:
    (workdir / "tierkit.toml").write_text(
        f'[tiers.redis.options]\nurl = "{TOML}"\nsocket_timeout = 0.1\nkey_prefix = "app:"\n'
    )
    with Cache(order=["memory", "redis"]) as cache:
        details = cache.health().tiers["redis"].details
    assert details["url"] == TOML
    assert details["key_prefix"] == "app:"


def test_invalid_url_is_a_config_error_without_the_password(workdir: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        Cache(order=["memory", "redis"], tiers={"redis": {"options": {"url": "http://u:Pa55-x@h"}}})
    assert "url" in str(raised.value) and "Pa55-x" not in str(raised.value)


@pytest.mark.redis
def test_is_available_with_a_url(redis_url: str) -> None:
    assert is_available(redis_url) is True


def test_is_available_is_false_fast_when_nothing_answers() -> None:
    start = time.perf_counter()
    assert is_available("redis://127.0.0.1:1/0") is False
    assert time.perf_counter() - start < 1


def test_is_available_without_any_url_is_false() -> None:
    assert is_available() is False


@pytest.mark.redis
def test_is_available_reads_the_configuration(
    redis_url: str, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / ".env").write_text(f"REDIS_URL={redis_url}\n")
    assert is_available() is True
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert is_available() is False


@pytest.mark.redis
def test_is_available_is_false_on_wrong_password(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(users={"alice": "Right-Pa55"})
    assert is_available(server.url_for("alice", "Right-Pa55")) is True
    assert is_available(server.url_for("alice", "Wrong-Pa55")) is False


def test_is_available_rejects_a_bad_url_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as raised:
        is_available("http://u:Pa55-y@h")
    assert "url" in str(raised.value) and "Pa55-y" not in str(raised.value)


@pytest.mark.parametrize(
    "command",
    [
        ["config"],
        ["config", "--json"],
        ["--order", "memory,redis", "health"],
        ["--order", "memory,redis", "health", "--json"],
        ["--order", "memory,redis", "stats", "--json"],
        ["tiers", "redis"],
    ],
)
def test_cli_never_prints_the_password(command: list[str], workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERKIT_")}
    env["REDIS_URL"] = "redis://alice:Cli-Pa55-word@127.0.0.1:1/0"
    out = subprocess.run(
        [sys.executable, "-m", "tierkit", *command],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode in (0, 1), out.stderr
    assert "Cli-Pa55-word" not in out.stdout + out.stderr
    if command[0] == "config" or command[-2:] == ["health", "--json"]:
        assert "alice:***@127.0.0.1:1/0" in out.stdout
