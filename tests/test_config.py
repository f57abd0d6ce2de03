"""Configuration sources, their precedence, and the errors bad configuration gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierkit import Cache, ConfigError, PluginError, load_settings
from tierkit._config import redact

from ._tiers import KINDS, DictTier

REDIS = ("tiers", "redis", "options", "url")


def redis_url() -> str | None:
    tiers = load_settings().tiers
    return tiers["redis"].options.get("url") if "redis" in tiers else None


def write(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def test_defaults_without_any_configuration() -> None:
    settings = load_settings()
    assert settings.namespace == "default"
    assert settings.order is None
    assert settings.tier_names() == ["memory", "redis", "session", "file"]


def test_redis_url_precedence_across_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    write("tierkit.toml", '[tiers.redis.options]\nurl = "redis://toml"\n')
    assert redis_url() == "redis://toml"
    write(".streamlit/secrets.toml", 'REDIS_URL = "redis://secrets"\n')
    assert redis_url() == "redis://secrets"
    write(".env", "REDIS_URL=redis://dotenv\n")
    assert redis_url() == "redis://dotenv"
    write(".env.local", "REDIS_URL=redis://dotenv-local\n")
    assert redis_url() == "redis://dotenv-local"
    monkeypatch.setenv("REDIS_URL", "redis://plain-env")
    assert redis_url() == "redis://plain-env"
    monkeypatch.setenv("TIERKIT_TIERS__REDIS__OPTIONS__URL", "redis://tierkit-env")
    assert redis_url() == "redis://tierkit-env"
    assert (
        load_settings(tiers={"redis": {"options": {"url": "redis://argument"}}}).tiers["redis"].options["url"]
        == "redis://argument"
    )


def test_user_streamlit_secrets_are_read_when_the_project_has_none(tmp_path: Path) -> None:
    write(str(Path.home() / ".streamlit" / "secrets.toml"), 'REDIS_URL = "redis://home-secrets"\n')
    assert redis_url() == "redis://home-secrets"


def test_sources_merge_field_by_field(monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        "tierkit.toml", 'namespace = "app"\n[tiers.redis.options]\nurl = "redis://toml"\nsocket_timeout = 1\n'
    )
    monkeypatch.setenv("REDIS_URL", "redis://env")
    options = load_settings().tiers["redis"].options
    assert options == {"url": "redis://env", "socket_timeout": 1}
    assert load_settings().namespace == "app"


def test_pyproject_tool_table_and_tierkit_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write("pyproject.toml", '[project]\nname = "app"\n[tool.tierkit]\nnamespace = "from-pyproject"\n')
    assert load_settings().namespace == "from-pyproject"
    write("tierkit.toml", 'namespace = "from-tierkit-toml"\n')
    assert load_settings().namespace == "from-tierkit-toml"
    elsewhere = tmp_path / "conf" / "cache.toml"
    write(str(elsewhere), 'namespace = "from-env-file"\n')
    monkeypatch.setenv("TIERKIT_CONFIG", str(elsewhere))
    assert load_settings().namespace == "from-env-file"


def test_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERKIT_ORDER", "memory, file")
    monkeypatch.setenv("TIERKIT_DEFAULT_TTL", "30")
    monkeypatch.setenv("TIERKIT_TIERS__FILE__MAX_TTL", "60")
    monkeypatch.setenv("TIERKIT_TIERS__FILE__WRITE", "always")
    settings = load_settings()
    assert settings.order == ["memory", "file"]
    assert settings.default_ttl == 30
    assert settings.tier("file").max_ttl == 60
    assert settings.tier("file").write == "always"
    monkeypatch.setenv("TIERKIT_ORDER", '["file"]')
    assert load_settings().order == ["file"]


def test_arguments_override_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERKIT_NAMESPACE", "env")
    assert load_settings(namespace="arg").namespace == "arg"


def test_unknown_kind_in_an_explicit_order_lists_installed_kinds() -> None:
    with pytest.raises(ConfigError) as info:
        Cache(order=["memory", "memcached"])
    message = str(info.value)
    assert "tier 'memcached': unknown kind 'memcached'" in message
    assert "installed kinds: " in message and "memory" in message and "file" in message
    assert "install the distribution that provides tier kind 'memcached'" in message


def test_known_first_party_kind_names_its_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    import tierkit._discovery as discovery

    monkeypatch.setattr(discovery, "installed_entry_points", lambda: {"memory": []})
    with pytest.raises(
        ConfigError,
        match=r"unknown kind 'redis'; installed kinds: memory\. To use it, .*: pip install tierkit-redis",
    ):
        discovery.load_tier_class.__wrapped__("redis", "redis")


def test_bad_option_names_tier_kind_and_field() -> None:
    with pytest.raises(ConfigError) as info:
        Cache(order=["memory"], tiers={"memory": {"options": {"max_entries": 0, "colour": "red"}}})
    message = str(info.value)
    assert "invalid options for tier 'memory' (kind 'memory')" in message
    assert "max_entries: Input should be greater than 0" in message
    assert "colour: unknown name" in message


def test_bad_settings_are_reported_by_field() -> None:
    with pytest.raises(ConfigError, match="namespace: Value error, must be 1-64 characters"):
        load_settings(namespace="../etc")
    with pytest.raises(ConfigError, match="order: Value error, names a tier more than once: memory"):
        load_settings(order=["memory", "memory"])
    with pytest.raises(
        ConfigError, match=r"tiers.file.write: Input should be 'always', 'persistent' or 'never'"
    ):
        load_settings(tiers={"file": {"write": "sometimes"}})
    with (
        pytest.raises(ConfigError, match=r"TIERKIT_CONFIG names 'missing\.toml', which is not a file"),
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv("TIERKIT_CONFIG", "missing.toml")
        load_settings()


def test_broken_toml_is_a_config_error() -> None:
    write("tierkit.toml", "namespace = \n")
    with pytest.raises(ConfigError, match=r"cannot read configuration file tierkit\.toml"):
        load_settings()


def test_typo_in_tierkit_dotenv_variable_is_reported() -> None:
    write(".env", "TIERKIT_NAMESAPCE=x\nUNRELATED=1\n")
    with pytest.raises(ConfigError, match=r"namesapce: unknown name \(did you mean .namespace.\?\)"):
        load_settings()


def test_default_order_skips_what_is_not_here_and_health_says_why() -> None:
    cache = Cache()
    health = cache.health()
    assert health.tiers["session"].status in ("skipped", "ok")
    redis = health.tiers["redis"]
    assert redis.status == "skipped"
    assert redis.reason in ("not installed",) or "not configured" in redis.reason
    assert "memory" in cache.tiers and "file" in cache.tiers


def test_a_tier_class_given_in_code_is_checked_like_an_installed_one() -> None:
    class NotATier:
        Options = dict

    with pytest.raises(PluginError, match="Options must be a pydantic BaseModel subclass"):
        Cache(order=["bad"], kinds={"bad": NotATier})
    assert Cache(order=["dict"], kinds=KINDS).tiers == ("dict",)
    DictTier.stores.clear()


def test_pickle_codec_requires_a_signing_key() -> None:
    with pytest.raises(ConfigError, match="codec 'pickle' needs signing_key"):
        Cache(order=["memory"], codec="pickle")


def test_redact_masks_passwords_and_secret_fields() -> None:
    data = {
        "url": "rediss://user:s3cret@host:6380/0",
        "signing_key": "abc",
        "nested": ["redis://:pw@h"],
    }
    text = repr(redact(data))
    assert "s3cret" not in text and "abc" not in text and ":pw@" not in text
    assert "rediss://user:***@host:6380/0" in text


def test_setting_origins_name_the_source_that_won(monkeypatch: pytest.MonkeyPatch) -> None:
    from tierkit._config import setting_origins

    write(
        "tierkit.toml", 'namespace = "app"\n[tiers.redis.options]\nurl = "redis://toml"\nsocket_timeout = 1\n'
    )
    write(".env", "TIERKIT_DEFAULT_TTL=5\n")
    write(".streamlit/secrets.toml", 'REDIS_URL = "redis://secrets"\n')
    monkeypatch.setenv("TIERKIT_CODEC", "json")
    origins = setting_origins(order=["memory", "redis", "session"])
    assert origins == {
        "order": "arguments",
        "codec": "environment",
        "default_ttl": ".env / .env.local",
        "tiers.redis.options.url": "streamlit secrets",
        "tiers.redis.options.socket_timeout": "file tierkit.toml",
        "namespace": "file tierkit.toml",
    }
    monkeypatch.setenv("REDIS_URL", "redis://env")
    assert setting_origins()["tiers.redis.options.url"] == "environment (REDIS_URL)"
