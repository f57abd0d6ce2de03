"""Finding Streamlit's ``st.session_state`` without ever importing streamlit."""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any


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
