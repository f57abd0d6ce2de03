"""A Streamlit app's own cache namespace, derived from its main script."""

from __future__ import annotations

import hashlib
import os
import re
import sys

from tierkit_session._streamlit import streamlit_session_state

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def streamlit_namespace() -> str | None:
    """``st-<script stem>-<digest of its absolute path>`` inside a Streamlit script run, else ``None``.

    Two apps on one machine (or one Redis server) get different namespaces;
    reruns, sessions and restarts of one app get the same one.
    """
    if streamlit_session_state() is None:
        return None
    path = _main_script_path()
    if path is None:
        return None
    path = os.path.abspath(path)
    stem = _UNSAFE.sub("-", os.path.splitext(os.path.basename(path))[0])[:40]
    return f"st-{stem}-{hashlib.sha256(path.encode()).hexdigest()[:10]}"


def _main_script_path() -> str | None:
    """The script ``streamlit run`` was given: the run context knows it; Streamlit's ``__main__`` too."""
    scriptrunner = sys.modules["streamlit.runtime.scriptrunner"]
    ctx = scriptrunner.get_script_run_ctx(suppress_warning=True)
    path = getattr(ctx, "main_script_path", None)
    if isinstance(path, str) and path:
        return path
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path if isinstance(path, str) and path else None
