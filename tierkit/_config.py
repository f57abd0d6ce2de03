"""Configuration: one pydantic-settings model fed by every place deployments keep settings.

Sources, highest precedence first:

1. arguments (``Cache(namespace=..., order=[...])`` or ``load_settings(...)``)
2. environment: ``TIERKIT_…`` (nested with ``__``), then the plain variables tier
   plugins declare (:attr:`tierkit.Tier.settings_aliases`, e.g. ``REDIS_URL``)
3. ``.env.local`` then ``.env`` in the working directory (same names)
4. the extra sources tier plugins declare (:meth:`tierkit.Tier.settings_sources`,
   e.g. Streamlit secrets), plain variables only
5. a TOML file: ``$TIERKIT_CONFIG``, else ``tierkit.toml``, else ``[tool.tierkit]`` in ``pyproject.toml``
6. defaults

The core names no plugin: which plain variables exist, where else they are read
from, and the default order all come from the installed tier classes.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tierkit._contract import suggest
from tierkit._discovery import default_order, installed_entry_points, load_tier_class
from tierkit._types import SettingsSource, WritePolicy
from tierkit.errors import ConfigError, PluginError

DOTENV_FILES = (".env", ".env.local")  # later files win


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # fullmatch: "$" would admit a final newline


class BreakerSettings(BaseModel):
    """When a failing tier is taken out of the path and how often it is probed."""

    model_config = ConfigDict(extra="forbid")

    threshold: int = Field(3, gt=0, description="Consecutive failures that open the breaker.")
    cooldown: float = Field(
        0.5, gt=0, description="Seconds before the first probe; doubles per failed probe."
    )
    max_cooldown: float = Field(5.0, gt=0, description="Longest wait between probes, in seconds.")


class TierSettings(BaseModel):
    """Settings of one tier in the order."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    kind: str | None = Field(None, description="Tier kind (entry-point name); defaults to the tier's name.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Options, validated by the tier's model."
    )
    max_ttl: float | None = Field(
        None, gt=0, description="Cap, in seconds, on the TTL of entries in this tier."
    )
    write: WritePolicy | None = Field(
        None,
        description="'always', 'persistent' (only set(..., persistent=True)) or 'never' (read-only).",
    )
    breaker: BreakerSettings = Field(default_factory=BreakerSettings, description="Circuit breaker settings.")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr(settings) and str(settings) end up here: options may hold passwords (Redis URLs)
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "options" else value


class Settings(BaseSettings):
    """The effective configuration of a cache."""

    model_config = SettingsConfigDict(
        env_prefix="TIERKIT_",
        env_nested_delimiter="__",
        extra="forbid",
        env_file=DOTENV_FILES,
        dotenv_filtering="match_prefix",
        hide_input_in_errors=True,  # inputs may be secrets
    )

    namespace: str = Field(
        "default",
        description="Keeps caches sharing a server or a directory apart. Unset, a tier kind of the order "
        "may derive one from the host app (Tier.default_namespace).",
    )
    order: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Tier names, fastest first. Default: every installed kind with a default_rank, "
        "lowest first (those that cannot run here are skipped).",
    )
    tiers: dict[str, TierSettings] = Field(
        default_factory=dict, description="Per-tier settings by tier name."
    )
    default_ttl: float | None = Field(None, gt=0, description="TTL in seconds when set() is given none.")
    lock_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a get_or_set / @cached call with lock=True waits for another process "
        "computing the same key before computing it itself (docs/stampede.md).",
    )
    stale_ttl: float | None = Field(
        None,
        ge=0,
        description="Seconds an expired value is kept to be served when recomputing it fails or "
        "passes soft_timeout; the default of set, get_or_set and @cached (docs/stampede.md).",
    )
    latency_sampling: int = Field(
        0,
        ge=0,
        description="Time one tier call in this many, per tier, into latency histograms "
        "(stats()['tiers'][name]['latency'], Prometheus); 0 (default) times nothing. "
        "Hits served by the memory tier's front door are never timed.",
    )
    backplane: Literal["auto", "off"] = Field(
        "auto",
        description="'auto' (default): when the chain has a shared tier offering a backplane, changes "
        "made by any process reach every other process's local tiers within milliseconds "
        "(docs/coherence.md); 'off': local copies live until their TTL.",
    )
    codec: str = Field(
        "json",
        pattern="^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The codec values go through, by name: 'json' (default, exact), 'pickle' (signed), "
        "'objects' (no codec: any object, object tiers only) or an installed codec plugin.",
    )
    compress_min_bytes: int | None = Field(
        None,
        gt=0,
        description="Compress payloads of at least this many bytes for byte tiers (None: never).",
    )
    compression: Literal["zstd", "zlib"] = Field(
        "zstd",
        description="Compression library: 'zstd' (pip install 'tierkit[zstd]') or 'zlib' (standard library).",
    )
    signing_key: SecretStr | list[SecretStr] | None = Field(
        None,
        description="HMAC key of the pickle codec (required with it); a list rotates keys: the first signs.",
    )
    config: Path | None = Field(None, description="TOML file to read (TIERKIT_CONFIG).", exclude=True)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-'")
        return value

    @model_validator(mode="after")
    def _host_namespace(self) -> Settings:
        if "namespace" not in self.model_fields_set:
            derived = host_namespace(self.tier_names())
            if derived is not None:
                self.namespace = derived
        return self

    @field_validator("order", mode="before")
    @classmethod
    def _split_order(cls, value: Any) -> Any:
        return _split_names(value)

    @field_validator("order")
    @classmethod
    def _check_order(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("must name at least one tier")
            dupes = sorted({name for name in value if value.count(name) > 1})
            if dupes:
                raise ValueError(f"names a tier more than once: {', '.join(dupes)}")
        return value

    @property
    def explicit_order(self) -> bool:
        return self.order is not None

    def tier_names(self) -> list[str]:
        """The order: configured, else every installed kind that declares a ``default_rank``."""
        return list(self.order) if self.order is not None else list(default_order())

    def tier(self, name: str) -> TierSettings:
        return self.tiers.get(name) or TierSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return tuple(
            source
            for _, source in _labelled_sources(settings_cls, init_settings, env_settings, dotenv_settings)
        )


def _split_names(value: Any) -> Any:
    """``"a, b"`` or ``'["a", "b"]'`` (environment spellings of a list) as a list; others unchanged."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                return value  # the field's validation reports it
        return [p.strip() for p in text.split(",") if p.strip()]
    return value


@dataclass(frozen=True)
class PluginDeclarations:
    """What the tier kinds of an order declare about configuration."""

    aliases: Mapping[str, tuple[str, str]]
    """Plain variable → (tier name, option) it supplies."""
    sources: Sequence[SettingsSource]
    """Extra places plain variables are read from."""


def plugin_declarations(kinds: Iterable[str]) -> PluginDeclarations:
    """The plain variables the tier classes of ``kinds`` declare, and where else they are read.

    Sources serve every declared variable, so they come from every installed
    kind (the session plugin adds Streamlit secrets whether or not a session
    tier is in the order) — but only when some kind of the order declares a
    variable: a chain without one imports no other plugin.
    """
    aliases: dict[str, tuple[str, str]] = {}
    for kind, cls in _tier_classes(kinds):
        for variable, option in getattr(cls, "settings_aliases", {}).items():
            aliases.setdefault(variable, (kind, option))
    sources: list[SettingsSource] = []
    if aliases:
        for _, cls in _tier_classes(installed_entry_points()):
            sources.extend(s for s in cls.settings_sources() if s not in sources)
    return PluginDeclarations(aliases, sources)


def host_namespace(kinds: Iterable[str]) -> str | None:
    """The first namespace a tier class of ``kinds`` derives from the host app, if any."""
    for kind, cls in _tier_classes(kinds):
        derive = getattr(cls, "default_namespace", None)  # optional: tiers of 0.1.0 have none
        namespace = derive() if derive is not None else None
        if namespace is not None:
            if not isinstance(namespace, str) or not _NAME.fullmatch(namespace):
                raise PluginError(f"tier kind {kind!r}: default_namespace() gave an invalid namespace")
            return namespace
    return None


def _tier_classes(kinds: Iterable[str]) -> list[tuple[str, Any]]:
    """(kind, class) for each installed kind of ``kinds`` that loads; the others are left out
    here and reported when a chain is built (health shows them down)."""
    installed = installed_entry_points()
    classes = []
    for kind in kinds:
        if kind in installed:
            try:
                classes.append((kind, load_tier_class(kind)))
            except PluginError:
                continue
    return classes


def _order_kinds(sources: Iterable[PydanticBaseSettingsSource]) -> list[str]:
    """The tier names of the order the highest source that sets one gives, else the default order."""
    for source in sources:
        order = source().get("order")
        if order is not None:
            names = _split_names(order)
            return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []
    return list(default_order())


def _labelled_sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    dotenv_settings: PydanticBaseSettingsSource,
) -> list[tuple[str, PydanticBaseSettingsSource]]:
    """Every source, highest precedence first, with the name ``tierkit config`` shows for it."""
    toml = [
        (f"file {_toml_path(init_settings)}", source) for source in _toml_sources(settings_cls, init_settings)
    ]
    core = [init_settings, env_settings, dotenv_settings, *(source for _, source in toml)]
    declared = plugin_declarations(_order_kinds(core))
    aliases = declared.aliases
    plain = ", ".join(aliases)

    def plain_source(read: Callable[[], Mapping[str, Any]]) -> PydanticBaseSettingsSource:
        return _PlainAliases(settings_cls, read, aliases)

    return [
        ("arguments", init_settings),
        ("environment", env_settings),
        *([(f"environment ({plain})", plain_source(lambda: os.environ))] if aliases else []),
        (" / ".join(DOTENV_FILES), dotenv_settings),
        *([(f"{' / '.join(DOTENV_FILES)} ({plain})", plain_source(_dotenv_values))] if aliases else []),
        *((source.label, plain_source(source)) for source in declared.sources if aliases),
        *toml,
    ]


def declared_sources(**overrides: Any) -> list[str]:
    """Names of the configuration sources for ``overrides``, highest precedence first."""
    return [label for label, _ in _labelled(overrides)]


def plain_variables(**overrides: Any) -> list[str]:
    """The plain variables (``REDIS_URL`` …) the tier kinds of this configuration's order read."""
    init = InitSettingsSource(Settings, init_kwargs=overrides)
    core = [init, EnvSettingsSource(Settings), DotEnvSettingsSource(Settings), *_toml_sources(Settings, init)]
    return list(plugin_declarations(_order_kinds(core)).aliases)


def _labelled(overrides: dict[str, Any]) -> list[tuple[str, PydanticBaseSettingsSource]]:
    return _labelled_sources(
        Settings,
        InitSettingsSource(Settings, init_kwargs=overrides),
        EnvSettingsSource(Settings),
        DotEnvSettingsSource(Settings),
    )


def setting_origins(**overrides: Any) -> dict[str, str]:
    """Which source supplied each setting, by dotted path (``tiers.redis.options.url``).

    Settings no source mentions are absent: they have their default value.
    """
    origins: dict[str, str] = {}
    for label, source in _labelled(overrides):
        for path in _paths(source()):
            if path:  # a source with nothing to say yields the empty path
                origins.setdefault(path, label)
    return origins


def _paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value:
        return [
            p for key, item in value.items() for p in _paths(item, f"{prefix}.{key}" if prefix else str(key))
        ]
    return [prefix]


class _PlainAliases(PydanticBaseSettingsSource):
    """Maps plain variables such as ``REDIS_URL`` onto the tier options plugins declared for them."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        read: Callable[[], Mapping[str, Any]],
        aliases: Mapping[str, tuple[str, str]],
    ) -> None:
        super().__init__(settings_cls)
        self._read = read
        self._aliases = aliases

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values = self._read()
        tiers: dict[str, Any] = {}
        for variable, (tier, option) in self._aliases.items():
            value = values.get(variable)
            if value:
                tiers.setdefault(tier, {}).setdefault("options", {})[option] = value
        return {"tiers": tiers} if tiers else {}


def _dotenv_values() -> dict[str, str | None]:
    merged: dict[str, str | None] = {}
    for name in DOTENV_FILES:
        if Path(name).is_file():
            merged.update(dotenv_values(name))
    return merged


def config_file() -> Path | None:
    """The TOML file configuration is read from, if any."""
    named = os.environ.get("TIERKIT_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"TIERKIT_CONFIG names {named!r}, which is not a file")
        return path
    for candidate in (Path("tierkit.toml"), Path("pyproject.toml")):
        if candidate.is_file():
            return candidate
    return None


def _toml_path(init_settings: PydanticBaseSettingsSource) -> Path | None:
    init = init_settings()
    return Path(init["config"]) if init.get("config") else config_file()


def _toml_sources(
    settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource
) -> tuple[PydanticBaseSettingsSource, ...]:
    path = _toml_path(init_settings)
    if path is None:
        return ()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("tierkit", {})
    return (InitSettingsSource(settings_cls, init_kwargs=data),)


def load_settings(**overrides: Any) -> Settings:
    """Read the configuration from every source; ``overrides`` take precedence.

    Raises :class:`~tierkit.errors.ConfigError` naming each invalid field.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        message = describe_validation_error("tierkit configuration", exc, Settings.model_fields)
    raise ConfigError(message) from None  # not chained: the pydantic error holds the inputs (secrets)


def describe_validation_error(what: str, exc: ValidationError, known: Iterable[str] = ()) -> str:
    """One readable line per problem, naming the field; input values are left out (secrets).

    A top-level name that is not in ``known`` (a typo) gets a "did you mean".
    """
    lines = [f"invalid {what}:"]
    known = sorted(known)
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        if error["type"] == "extra_forbidden" and len(error["loc"]) == 1 and known:
            lines.append(f"  {location}: unknown name{suggest(location, known)}")
        else:
            lines.append(f"  {location}: {redact(error['msg'])}")
    return "\n".join(lines)


_URL_PASSWORD = re.compile(  # up to the last '@' of the URL: a password may itself hold '@' or ':'
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s'\"]*):[^\s'\"]*@", re.I
)
_QUERY_SECRET = re.compile(  # ?password=…, &pass=…, &auth=…, &api_key=…
    r"(?P<name>[?&;][^=&\s'\"]*(?:pass|pwd|secret|token|auth|key|credential)[^=&\s'\"]*=)[^&;#\s'\"]*", re.I
)


def redact(value: Any) -> Any:
    """Copy of ``value`` with secrets masked: ``SecretStr``, passwords inside URLs, secret-named fields."""
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else ""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", _QUERY_SECRET.sub(r"\g<name>***", value))
    if isinstance(value, dict):
        return {k: ("**********" if _is_secret_name(k) and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def _is_secret_name(name: Any) -> bool:
    return isinstance(name, str) and any(
        word in name.lower() for word in ("password", "secret", "signing_key", "token")
    )
