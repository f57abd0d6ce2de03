"""The Flask extension, through Flask's test client: config, session binding, cached views."""

from __future__ import annotations

from typing import Any

import flask
import pytest

import tierkit
from tierkit.integrations.flask import Tierkit, settings_from_config


def make_app(**config: Any) -> tuple[flask.Flask, Tierkit, list[str]]:
    """An app with a cached /search view; ``calls`` records each time the view really ran."""
    app = flask.Flask(__name__)
    app.secret_key = "test-secret"
    app.config.update({"TIERKIT_ORDER": ["memory"], "TIERKIT_NAMESPACE": "flask-test", **config})
    ext = Tierkit(app)
    calls: list[str] = []

    @app.get("/search")
    @ext.cached(ttl=60, vary=["Accept-Language"])
    def search() -> flask.Response:
        calls.append(flask.request.query_string.decode())
        response = flask.jsonify(q=flask.request.args.getlist("q"), lang=flask.request.headers.get("Accept-Language"))
        response.headers["X-Served"] = "view"
        return response

    return app, ext, calls


def test_cached_plain_function_as_view_ignores_the_query_string() -> None:
    """Why the extension exists: @tierkit.cached keys on the function's arguments, and a view has none."""
    app = flask.Flask(__name__)

    @app.get("/search")
    @tierkit.cached(cache=tierkit.Cache(order=["memory"]))
    def search() -> dict[str, str | None]:
        return {"q": flask.request.args.get("q")}

    client = app.test_client()
    assert client.get("/search?q=a").json == {"q": "a"}
    assert client.get("/search?q=b").json == {"q": "a"}  # the wrong answer the view decorator fixes


def test_view_key_includes_the_query_string() -> None:
    app, _, calls = make_app()
    client = app.test_client()
    assert client.get("/search?q=a").json["q"] == ["a"]
    assert client.get("/search?q=b").json["q"] == ["b"]
    assert client.get("/search?q=a").json["q"] == ["a"]
    assert calls == ["q=a", "q=b"]
