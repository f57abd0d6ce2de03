"""The ``tierkit`` command, run as a real subprocess in each test's isolated directory."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from ._run import run_module

IN_CI = os.environ.get("CI", "").lower() == "true"
SECRET_URL = "redis://user:s3cret@127.0.0.1:1/0"
COMMANDS = ("tiers", "config", "health", "stats", "get", "set", "delete", "clear", "demo")


def tierkit(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tierkit ARGS`` with this test's environment plus ``env``."""
    return run_module("tierkit", *args, **env)


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def require_redis_plugin() -> None:
    if importlib.util.find_spec("tierkit_redis") is None:
        reason = "tierkit-redis is not installed (pip install -e plugins/tierkit-redis)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true: this test must run", pytrace=False)
        pytest.skip(reason)


# -- help and version -------------------------------------------------------------------------


def test_help_names_every_command_and_the_process_caveat() -> None:
    result = tierkit("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"\n    {command} " in result.stdout
    assert "new process" in result.stdout
    assert "--namespace" in result.stdout and "--order" in result.stdout


def test_set_help_explains_persistent() -> None:
    result = tierkit("set", "--help")
    assert result.returncode == 0
    assert "--persistent" in result.stdout and "--ttl" in result.stdout and "--tags" in result.stdout
    assert "vanishes" in result.stdout


def test_version() -> None:
    import tierkit as package

    result = tierkit("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"tierkit {package.__version__}"


def test_no_command_is_a_usage_error() -> None:
    result = tierkit()
    assert result.returncode == 2
    assert "COMMAND" in result.stderr


# -- tiers ------------------------------------------------------------------------------------


def test_tiers_json_lists_the_first_party_kinds_with_their_distributions() -> None:
    data = json_of(tierkit("tiers", "--json"))
    assert data["group"] == "tierkit.tiers"
    kinds = {tier["kind"]: tier for tier in data["tiers"]}
    expected = {"memory": "tierkit", "file": "tierkit", "session": "tierkit-session"}
    for kind, distribution in expected.items():
        tier = kinds[kind]
        assert tier["distribution"] == distribution
        assert tier["version"]
        assert tier["valid"] is True and tier["error"] is None
        assert {"tierkit_get", "tierkit_set", "tierkit_delete", "tierkit_clear"} <= set(tier["hooks"])
    assert kinds["memory"]["holds"] == "objects"
    assert kinds["file"]["holds"] == "bytes"
    assert "max_entries" in kinds["memory"]["options"]


def test_tiers_table_shows_distribution_version_hooks_and_validation() -> None:
    result = tierkit("tiers")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("KIND"))
    assert header.split() == ["KIND", "DISTRIBUTION", "VERSION", "HOLDS", "VALID", "CLASS"]
    session = next(line for line in lines if line.startswith("session "))
    assert session.split()[1:5] == ["tierkit-session", "0.1.0", "objects", "yes"]
    assert any(line.split()[:4] == ["memory", "add", "clear", "delete"] for line in lines)


def test_tiers_kind_shows_its_options() -> None:
    result = tierkit("tiers", "file")
    assert result.returncode == 0
    assert "directory" in result.stdout and "max_bytes" in result.stdout


def test_tiers_unknown_kind_is_a_usage_error() -> None:
    result = tierkit("tiers", "nosuch")
    assert result.returncode == 2
    assert "tier kind 'nosuch' is not installed" in result.stderr
    assert "memory" in result.stderr


# -- config -----------------------------------------------------------------------------------


def test_config_json_merges_toml_and_environment_and_redacts(isolated_config: Path) -> None:
    (isolated_config / "tierkit.toml").write_text(
        'namespace = "from-toml"\ndefault_ttl = 30\n\n[tiers.file]\nmax_ttl = 60\n'
    )
    data = json_of(tierkit("config", "--json", TIERKIT_DEFAULT_TTL="45", REDIS_URL=SECRET_URL))
    settings = data["settings"]
    assert settings["namespace"] == "from-toml"
    assert settings["default_ttl"] == 45  # the environment beats the file
    assert settings["tiers"]["file"]["max_ttl"] == 60
    assert settings["tiers"]["redis"]["options"]["url"] == "redis://user:***@127.0.0.1:1/0"
    assert data["order"] == ["memory", "redis", "session", "file"]
    assert data["order_is_default"] is True
    sources = data["sources"]
    assert Path(sources["config_file"]) == (isolated_config / "tierkit.toml").resolve()
    assert sources["environment"] == ["REDIS_URL", "TIERKIT_DEFAULT_TTL"]


def test_config_human_output_names_the_file_and_the_order(isolated_config: Path) -> None:
    (isolated_config / "tierkit.toml").write_text('order = ["memory", "file"]\n')
    result = tierkit("config")
    assert result.returncode == 0
    assert "tierkit.toml" in result.stdout
    assert "chain order: memory -> file (configured)" in result.stdout


def test_global_options_override_the_configuration(isolated_config: Path) -> None:
    (isolated_config / "tierkit.toml").write_text('namespace = "from-toml"\n')
    data = json_of(tierkit("--namespace", "cli", "--order", "memory, file", "config", "--json"))
    assert data["settings"]["namespace"] == "cli"
    assert data["order"] == ["memory", "file"]
    assert data["order_is_default"] is False


def test_config_option_reads_another_file(isolated_config: Path) -> None:
    other = isolated_config / "other.toml"
    other.write_text('namespace = "other"\n')
    data = json_of(tierkit("--config", str(other), "config", "--json"))
    assert data["settings"]["namespace"] == "other"
    assert Path(data["sources"]["config_file"]) == other.resolve()


@pytest.mark.parametrize("command", ["config", "health", "stats", "tiers"])
@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_no_output_shows_the_redis_password(command: str, as_json: bool) -> None:
    result = tierkit(command, *(["--json"] if as_json else []), REDIS_URL=SECRET_URL)
    assert result.returncode in (0, 1), result.stderr
    assert "s3cret" not in result.stdout + result.stderr


# -- health and stats -------------------------------------------------------------------------


def test_health_of_the_default_chain_is_ok() -> None:
    result = tierkit("health")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split()[:3] for line in result.stdout.splitlines()[1:5]]
    assert [row[0] for row in rows] == ["memory", "redis", "session", "file"]
    assert {row[0]: row[2] for row in rows} == {
        "memory": "ok",
        "redis": "skipped",
        "session": "skipped",
        "file": "ok",
    }
    assert "overall: ok" in result.stdout


def test_health_json_reports_each_tier_with_its_reason() -> None:
    data = json_of(tierkit("health", "--json"))
    assert data["status"] == "ok"
    assert list(data["tiers"]) == ["memory", "redis", "session", "file"]
    assert "REDIS_URL" in data["tiers"]["redis"]["reason"]


def test_health_exits_1_when_a_configured_tier_is_down() -> None:
    require_redis_plugin()
    url = f"redis://127.0.0.1:{closed_port()}/0"
    result = tierkit("--order", "memory,redis", "health", REDIS_URL=url)
    assert result.returncode == 1, result.stdout + result.stderr
    redis_row = next(line for line in result.stdout.splitlines() if line.startswith("redis "))
    assert redis_row.split()[2] == "down"
    data = orjson.loads(tierkit("--order", "memory,redis", "health", "--json", REDIS_URL=url).stdout)
    assert data["status"] == "down"


def test_stats_json_shows_what_the_file_tier_holds() -> None:
    assert tierkit("set", "k", "[1, 2]", "--persistent").returncode == 0
    data = json_of(tierkit("stats", "--json"))
    assert data["namespace"] == "default"
    assert list(data["tiers"]) == ["memory", "redis", "session", "file"]
    assert data["tiers"]["file"]["entries"] == 1
    assert data["tiers"]["redis"]["status"] == "skipped"


def test_stats_table() -> None:
    result = tierkit("stats")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "namespace: default"
    assert any(line.split()[:2] == ["file", "file"] for line in result.stdout.splitlines())


# -- entries ----------------------------------------------------------------------------------


def test_set_get_delete_round_trip_through_the_file_tier() -> None:
    stored = tierkit("set", "user:1", '{"name": "Ada", "tags": [1, 2]}', "--persistent", "--ttl", "60")
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.strip() == "stored 'user:1' in file (expires in 60 s)"
    assert json_of(tierkit("get", "user:1")) == {"name": "Ada", "tags": [1, 2]}
    deleted = tierkit("delete", "user:1")
    assert deleted.returncode == 0 and "deleted 'user:1'" in deleted.stdout
    missing = tierkit("get", "user:1")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert "'user:1' not found in namespace 'default'" in missing.stderr
    again = tierkit("delete", "user:1")
    assert again.returncode == 1 and "not found" in again.stderr


def test_a_cached_null_is_a_hit() -> None:
    assert tierkit("set", "nothing", "null", "--persistent").returncode == 0
    result = tierkit("get", "nothing")
    assert result.returncode == 0
    assert result.stdout.strip() == "null"


def test_namespaces_keep_entries_apart() -> None:
    assert tierkit("--namespace", "a", "set", "k", '"in a"', "--persistent").returncode == 0
    assert tierkit("--namespace", "b", "get", "k").returncode == 1
    assert json_of(tierkit("--namespace", "a", "get", "k")) == "in a"


def test_set_without_persistent_refuses_when_only_in_process_tiers_take_it() -> None:
    result = tierkit("set", "k", "1")
    assert result.returncode == 2
    assert "was not stored" in result.stderr and "--persistent" in result.stderr
    assert tierkit("get", "k").returncode == 1


def test_set_reports_a_tier_that_failed() -> None:
    require_redis_plugin()
    url = f"redis://127.0.0.1:{closed_port()}/0"
    result = tierkit("--order", "memory,redis", "set", "k", "1", REDIS_URL=url)
    assert result.returncode == 1
    assert "'k' was not stored: redis failed" in result.stderr


def test_set_with_tags_can_be_read_back() -> None:
    assert tierkit("set", "k", '"v"', "--persistent", "--tags", "a,b").returncode == 0
    assert json_of(tierkit("get", "k")) == "v"


@pytest.mark.parametrize("value", ["{a", "hello", ""])
def test_set_rejects_bad_json(value: str) -> None:
    result = tierkit("set", "k", value, "--persistent")
    assert result.returncode == 2
    assert "tierkit: error: VALUE is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("ttl", ["0", "-5", "soon"])
def test_set_rejects_a_bad_ttl(ttl: str) -> None:
    result = tierkit("set", "k", "1", "--persistent", "--ttl", ttl)
    assert result.returncode == 2
    assert "must be a positive number of seconds" in result.stderr


def test_clear_removes_the_namespace_only() -> None:
    for key in ("a", "b"):
        assert tierkit("set", key, "1", "--persistent").returncode == 0
    assert tierkit("--namespace", "other", "set", "a", "2", "--persistent").returncode == 0
    result = tierkit("clear")
    assert result.returncode == 0
    assert "cleared namespace 'default'" in result.stdout
    assert tierkit("get", "a").returncode == 1
    assert tierkit("get", "b").returncode == 1
    assert json_of(tierkit("--namespace", "other", "get", "a")) == 2


def test_clear_one_tier() -> None:
    assert tierkit("set", "a", "1", "--persistent").returncode == 0
    assert tierkit("clear", "--tier", "memory").returncode == 0
    assert json_of(tierkit("get", "a")) == 1
    assert tierkit("clear", "--tier", "file").returncode == 0
    assert tierkit("get", "a").returncode == 1


def test_clear_unknown_tier_is_a_usage_error() -> None:
    result = tierkit("clear", "--tier", "nosuch")
    assert result.returncode == 2
    assert "no tier named nosuch in the chain (memory, session, file)" in result.stderr


# -- configuration errors ---------------------------------------------------------------------


def test_unknown_kind_is_a_usage_error_naming_the_installed_kinds() -> None:
    result = tierkit("--order", "memory,nosuch", "health")
    assert result.returncode == 2
    assert result.stderr.startswith("tierkit: error: tier 'nosuch': unknown kind 'nosuch'")
    assert "installed kinds: " in result.stderr and "memory" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_configuration_is_one_line_naming_the_field(isolated_config: Path) -> None:
    (isolated_config / "tierkit.toml").write_text('compression = "lz4"\n')
    for command in ("config", "health", "get"):
        result = tierkit(command, *(["k"] if command == "get" else []))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("tierkit: error: invalid tierkit configuration: compression:")


def test_unknown_codec_is_a_usage_error_naming_the_installed_codecs(isolated_config: Path) -> None:
    (isolated_config / "tierkit.toml").write_text('codec = "yaml"\n')
    result = tierkit("health")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tierkit: error: unknown codec 'yaml'; installed codecs: json, objects, pickle"
    ]


def test_bad_tier_option_names_the_tier_and_field(isolated_config: Path) -> None:
    (isolated_config / "tierkit.toml").write_text("[tiers.memory.options]\nmax_entrys = 5\n")
    result = tierkit("health")
    assert result.returncode == 2
    assert "'memory'" in result.stderr and "max_entrys" in result.stderr


def test_missing_config_file_is_a_usage_error(isolated_config: Path) -> None:
    result = tierkit("config", TIERKIT_CONFIG=str(isolated_config / "absent.toml"))
    assert result.returncode == 2
    assert "absent.toml" in result.stderr and "Traceback" not in result.stderr


def test_config_says_where_each_setting_came_from() -> None:
    Path("tierkit.toml").write_text('namespace = "shop"\n')
    result = tierkit("config", "--json", REDIS_URL="redis://default:s3cret@127.0.0.1:1/0")
    origins = json_of(result)["origins"]
    assert origins == {"namespace": "file tierkit.toml", "tiers.redis.options.url": "environment (REDIS_URL)"}
    human = tierkit("config", REDIS_URL="redis://default:s3cret@127.0.0.1:1/0").stdout
    assert "environment (REDIS_URL)" in human and "s3cret" not in human
