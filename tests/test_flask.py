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
        response = flask.jsonify(
            q=flask.request.args.getlist("q"), lang=flask.request.headers.get("Accept-Language")
        )
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


def test_query_parameters_are_sorted_into_one_key() -> None:
    app, _, calls = make_app()
    client = app.test_client()
    client.get("/search?q=a&page=2")
    assert client.get("/search?page=2&q=a").headers["X-Served"] == "view"
    assert calls == ["q=a&page=2"]


def test_vary_headers_are_part_of_the_key() -> None:
    app, _, calls = make_app()
    client = app.test_client()
    assert client.get("/search?q=a", headers={"Accept-Language": "fr"}).json["lang"] == "fr"
    assert client.get("/search?q=a", headers={"Accept-Language": "de"}).json["lang"] == "de"
    assert client.get("/search?q=a", headers={"Accept-Language": "fr"}).json["lang"] == "fr"
    assert len(calls) == 2


def test_response_parts_round_trip_through_a_byte_tier_and_the_json_codec() -> None:
    """The file tier holds bytes: the stored response goes through the JSON codec, not pickle."""
    app, ext, calls = make_app(
        TIERKIT_ORDER=["file"], TIERKIT_TIERS={"file": {"write": "always"}}, TIERKIT_CODEC="json"
    )
    client = app.test_client()
    first = client.get("/search?q=a")
    again = client.get("/search?q=a")
    assert calls == ["q=a"]
    assert (again.status_code, again.data, again.headers["X-Served"]) == (200, first.data, "view")
    assert again.headers["Content-Type"] == "application/json"
    with app.app_context():
        stored = ext.cache.get("flask:view:/search?q=a|accept-language=")
        assert set(stored) == {"status", "headers", "body", "expires_at"}
        assert isinstance(stored["body"], bytes)


def test_request_cache_control_bypasses() -> None:
    app, _, calls = make_app()
    client = app.test_client()
    client.get("/search?q=a")
    client.get("/search?q=a", headers={"Cache-Control": "no-cache"})  # fresh, and stored
    assert len(calls) == 2
    client.get("/search?q=a")
    assert len(calls) == 2
    client.get("/search?q=z", headers={"Cache-Control": "no-store"})
    client.get("/search?q=z")
    assert calls[-2:] == ["q=z", "q=z"]  # no-store stored nothing


def test_only_storable_responses_are_stored_and_cookies_never() -> None:
    app = flask.Flask(__name__)
    app.config.update(TIERKIT_ORDER=["memory"])
    ext = Tierkit(app)
    runs: list[int] = []

    @app.route("/item/<int:n>", methods=["GET", "POST"])
    @ext.cached(ttl=60)
    def item(n: int) -> flask.Response:
        runs.append(n)
        response = flask.make_response({"n": n}, 404 if n == 0 else 200)
        response.set_cookie("visitor", "alice")
        if n == 2:
            response.headers["Cache-Control"] = "private"
        return response

    client = app.test_client()
    assert "visitor=alice" in client.get("/item/1").headers["Set-Cookie"]
    hit = client.get("/item/1")
    assert hit.json == {"n": 1} and "Set-Cookie" not in hit.headers
    for path in ("/item/0", "/item/0", "/item/2", "/item/2"):
        client.get(path)
    client.post("/item/1")
    assert runs == [1, 0, 0, 2, 2, 1]


def test_each_request_is_bound_to_its_users_session_store() -> None:
    pytest.importorskip("tierkit_session")
    app = flask.Flask(__name__)
    app.secret_key = "test-secret"
    app.config.update(TIERKIT_ORDER=["memory", "session"], TIERKIT_MAX_SESSIONS=2)
    ext = Tierkit(app)

    @app.get("/recent")
    def recent() -> dict[str, Any]:
        viewed = ext.cache.get_or_set("recent", lambda: ["p1"], ttl=60)
        return {"viewed": viewed, "session_tier": ext.cache.health().tiers["session"].status}

    alice, bob, carol = app.test_client(), app.test_client(), app.test_client()
    assert alice.get("/recent").json == {"viewed": ["p1"], "session_tier": "ok"}
    assert bob.get("/recent").json == {"viewed": ["p1"], "session_tier": "ok"}
    stores = app.extensions["tierkit.sessions"]
    assert len(stores) == 2
    carol.get("/recent")
    assert len(stores) == 2  # bounded: the least recently used session's store went
    with app.app_context():
        assert ext.cache.health().tiers["session"].status == "skipped"  # outside a request: unbound


def test_config_keys_map_onto_settings() -> None:
    assert settings_from_config(
        {
            "TIERKIT_NAMESPACE": "shop",
            "TIERKIT_DEFAULT_TTL": 30,
            "TIERKIT_BIND_SESSIONS": False,
            "DEBUG": True,
        }
    ) == {"namespace": "shop", "default_ttl": 30}
    app, ext, _ = make_app(TIERKIT_NAMESPACE="shop")
    with app.app_context():
        assert ext.cache.settings.namespace == "shop"


def test_unknown_config_key_is_named() -> None:
    with pytest.raises(tierkit.ConfigError, match=r"TIERKIT_NAMESPCE.*did you mean 'TIERKIT_NAMESPACE'"):
        settings_from_config({"TIERKIT_NAMESPCE": "shop"})


def test_app_factory_pattern_and_a_given_cache() -> None:
    cache = tierkit.Cache(order=["memory"], namespace="given")
    ext = Tierkit(cache=cache)
    app = flask.Flask(__name__)
    ext.init_app(app)
    with app.app_context():
        assert ext.cache is cache


def test_a_tier_written_for_0_1_needs_no_session_binding() -> None:
    """Tiers without the optional bind_session capability: nothing is bound, the app works."""
    from tests.compat.dict_tier_v0_1 import DictTier

    app = flask.Flask(__name__)
    Tierkit(app, cache=tierkit.Cache(order=["memory", "dict"], kinds={"dict": DictTier}))

    @app.get("/")
    def root() -> str:
        return "ok"

    assert app.test_client().get("/").text == "ok"
    assert "tierkit.sessions" not in app.extensions
