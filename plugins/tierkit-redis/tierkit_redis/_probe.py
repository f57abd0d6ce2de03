"""``is_available``: a one-off PING for code that only needs to know whether Redis is there."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from tierkit import ConfigError, load_settings
from tierkit_redis._options import Options


def is_available(url: str | None = None) -> bool:
    """Whether Redis answers PING within the configured timeouts.

    ``url`` defaults to the one tierkit's configuration gives the Redis tier (tier
    options, ``TIERKIT_…``, ``REDIS_URL``, ``.env.local`` / ``.env``, Streamlit secrets,
    the TOML file); the timeouts and TLS options come from there too.  Returns
    ``False`` when no URL is configured or the server does not answer; raises
    :class:`tierkit.ConfigError` for an invalid URL or option.
    """
    options = configured_options(url)
    if not options.configured:
        return False
    from redis.exceptions import RedisClusterException, RedisError

    from tierkit_redis._client import connect, connect_cluster

    try:
        client = connect_cluster(options) if options.cluster else connect(options).write
    except (RedisError, RedisClusterException, OSError):  # the cluster client reads the slot map
        return False
    try:
        return bool(client.ping())
    except (RedisError, RedisClusterException, OSError):
        return False
    finally:
        client.close()


def configured_options(url: str | None = None) -> Options:
    """The options of the configured Redis tier, with ``url`` taking precedence if given."""
    raw: dict[str, Any] = dict(_configured_raw_options())
    if url is not None:
        raw["url"] = url
    try:
        return Options.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'options'}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        raise ConfigError(f"invalid options for the redis tier: {problems}") from None


def _configured_raw_options() -> dict[str, Any]:
    settings = load_settings()
    for name in settings.tier_names():
        tier = settings.tier(name)
        if (tier.kind or name) == "redis":
            return dict(tier.options)
    return dict(settings.tier("redis").options)
