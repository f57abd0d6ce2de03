"""Streamlit detection.

The detection is tested against stand-in ``streamlit`` modules placed in
``sys.modules`` that mimic the two attributes it reads; the tests marked "real"
run the real thing through ``streamlit.testing`` (streamlit is in the test extra).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest
from tierkit_session import SessionTier, bind, current_session
from tierkit_session._streamlit import streamlit_session_state

from tierkit import Entry

_CTX_ATTR = "streamlit_script_run_ctx"  # where Streamlit keeps a thread's context


@pytest.fixture
def fake_streamlit(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """Stand-in streamlit modules; the current thread runs a script until told otherwise."""
    streamlit = types.ModuleType("streamlit")
    streamlit.session_state = {}  # type: ignore[attr-defined]
    scriptrunner = types.ModuleType("streamlit.runtime.scriptrunner")

    def get_script_run_ctx(suppress_warning: bool = False) -> object | None:
        assert suppress_warning, "must not log Streamlit's missing-context warning"
        return getattr(threading.current_thread(), _CTX_ATTR, None)

    scriptrunner.get_script_run_ctx = get_script_run_ctx  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "streamlit", streamlit)
    monkeypatch.setitem(sys.modules, "streamlit.runtime.scriptrunner", scriptrunner)
    monkeypatch.setattr(threading.current_thread(), _CTX_ATTR, object(), raising=False)
    yield streamlit


def test_none_without_streamlit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "streamlit", raising=False)
    assert streamlit_session_state() is None


def test_none_when_streamlit_is_imported_but_runs_no_script(
    fake_streamlit: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "streamlit.runtime.scriptrunner")
    assert streamlit_session_state() is None


def test_none_in_a_thread_without_script_run_context(
    fake_streamlit: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(threading.current_thread(), _CTX_ATTR)
    assert streamlit_session_state() is None


def test_session_state_inside_a_script_run(fake_streamlit: types.ModuleType) -> None:
    assert streamlit_session_state() is fake_streamlit.session_state
    assert current_session() is fake_streamlit.session_state


def test_an_explicit_bind_wins_over_streamlit(fake_streamlit: types.ModuleType) -> None:
    session: dict[str, Any] = {}
    with bind(session):
        assert current_session() is session


def test_the_tier_uses_session_state(fake_streamlit: types.ModuleType, tier: SessionTier) -> None:
    tier.tierkit_set("k", Entry(1, None))
    assert tier.tierkit_get("k") == Entry(1, None)
    assert "tierkit" in fake_streamlit.session_state
    assert tier.tierkit_health().status == "ok"


def test_importing_and_using_the_tier_never_imports_streamlit() -> None:
    code = (
        "import sys, tierkit_session\n"
        "from tierkit import Entry, TierContext\n"
        "tier = tierkit_session.SessionTier("
        "tierkit_session.SessionTier.Options(), TierContext('session', 'app'))\n"
        "tier.tierkit_set('k', Entry(1, None))\n"
        "assert tier.tierkit_get('k') is None and tier.tierkit_health().status == 'skipped'\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'streamlit'], 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_streamlit_script_run() -> None:
    """Under the real Streamlit runtime, the tier caches in st.session_state across reruns."""
    app_test = pytest.importorskip("streamlit.testing.v1").AppTest

    def app() -> None:
        import streamlit as st  # type: ignore[import-not-found,unused-ignore]
        import tierkit_session

        from tierkit import Entry, TierContext

        tier = tierkit_session.SessionTier(
            tierkit_session.SessionTier.Options(), TierContext("session", "app")
        )
        hit = tier.tierkit_get("runs")
        runs = 1 if hit is None else hit.value + 1
        tier.tierkit_set("runs", Entry(runs, None))
        st.session_state["runs_seen"] = runs
        st.session_state["health"] = tier.tierkit_health().status

    at = app_test.from_function(app, default_timeout=60).run()
    assert not at.exception
    assert (at.session_state["runs_seen"], at.session_state["health"]) == (1, "ok")
    at.run()
    assert at.session_state["runs_seen"] == 2


def _run_context(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    monkeypatch.setattr(
        threading.current_thread(), _CTX_ATTR, types.SimpleNamespace(main_script_path=script), raising=False
    )


def test_each_streamlit_app_gets_its_own_default_namespace(
    fake_streamlit: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tierkit

    _run_context(monkeypatch, "/srv/sales/app.py")
    sales = tierkit.Cache(order=["memory", "session"]).settings.namespace
    assert tierkit.Cache(order=["memory", "session"]).settings.namespace == sales  # stable per app
    _run_context(monkeypatch, "/srv/stock/app.py")
    stock = tierkit.Cache(order=["memory", "session"]).settings.namespace
    assert sales != stock
    assert sales.startswith("st-app-") and stock.startswith("st-app-")
    assert tierkit.Cache(order=["memory", "session"], namespace="shared").settings.namespace == "shared"


def test_namespace_stays_default_outside_a_script_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import tierkit

    monkeypatch.delitem(sys.modules, "streamlit", raising=False)
    assert tierkit.Cache(order=["memory", "session"]).settings.namespace == "default"


def test_real_streamlit_apps_get_different_namespaces(tmp_path: Any) -> None:
    """Two app scripts run by the real Streamlit runtime: the default cache of each has its own namespace."""
    app_test = pytest.importorskip("streamlit.testing.v1").AppTest
    script = (
        "import streamlit as st\n"
        "import tierkit\n"
        "st.session_state['ns'] = tierkit.Cache().settings.namespace\n"
    )
    namespaces = []
    for name in ("sales", "stock"):
        path = tmp_path / name / "streamlit_app.py"
        path.parent.mkdir()
        path.write_text(script)
        at = app_test.from_file(str(path), default_timeout=60).run()
        assert not at.exception
        namespaces.append(at.session_state["ns"])
    assert namespaces[0] != namespaces[1]
    assert all(ns.startswith("st-streamlit_app-") for ns in namespaces)


def test_an_invalid_derived_namespace_names_the_tier_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    import tierkit

    monkeypatch.setattr(SessionTier, "default_namespace", classmethod(lambda cls: "not a namespace!"))
    with pytest.raises(tierkit.PluginError, match=r"'session': default_namespace\(\) gave an invalid"):
        tierkit.Cache(order=["memory", "session"])
