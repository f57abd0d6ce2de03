"""Streamlit without ever importing it: ``st.session_state`` for the tier, secrets for the settings."""

from __future__ import annotations

import logging
import sys
import tomllib
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from tierkit import ConfigError

log = logging.getLogger("tierkit")


def streamlit_session_state() -> MutableMapping[str, Any] | None:
    """``st.session_state`` when called from a Streamlit script run, else ``None``.

    Looks only at modules the application has already imported, so outside
    Streamlit it costs one ``sys.modules`` lookup and never raises.  Threads
    the application starts itself have no script run context (unless it
    attaches one with ``add_script_run_ctx``) and so get ``None``.
    """
    streamlit = sys.modules.get("streamlit")
    if streamlit is None:
        return None
    # Loaded whenever a script runs (the ScriptRunner lives in it); a missing
    # module means streamlit was imported but is not running a script.
    scriptrunner = sys.modules.get("streamlit.runtime.scriptrunner")
    if scriptrunner is None or scriptrunner.get_script_run_ctx(suppress_warning=True) is None:
        return None
    session_state: MutableMapping[str, Any] = streamlit.session_state
    return session_state


class StreamlitSecrets:
    """A tierkit settings source: plain variables (``REDIS_URL`` …) from Streamlit's secrets.

    Under a running Streamlit script it reads ``st.secrets`` (which also sees
    secrets Streamlit Cloud injects); otherwise the files Streamlit would read,
    the project's ``.streamlit/secrets.toml`` first, then the user's.  A file
    that cannot be read (no permission on a service user's home) counts as
    absent, with a warning; a malformed one is a configuration error.
    """

    label = "streamlit secrets"

    def __call__(self) -> dict[str, Any]:
        if streamlit_session_state() is not None:
            secrets = sys.modules["streamlit"].secrets
            try:
                return {key: secrets[key] for key in secrets}
            except FileNotFoundError:  # an app with no secrets at all (Streamlit's error subclasses it)
                return {}
        for path in secrets_files():
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("tierkit: cannot read Streamlit secrets %s (%s); skipped", path, exc.strerror)
                continue
            try:
                return tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"cannot read Streamlit secrets {path}: {exc}") from None
        return {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StreamlitSecrets)

    def __hash__(self) -> int:
        return hash(StreamlitSecrets)


def secrets_files() -> tuple[Path, ...]:
    """Where Streamlit keeps secrets: the project's ``.streamlit/`` first, then the user's."""
    try:
        home = Path.home()
    except RuntimeError:  # no home directory known for this user
        return (Path(".streamlit/secrets.toml"),)
    return (Path(".streamlit/secrets.toml"), home / ".streamlit" / "secrets.toml")
