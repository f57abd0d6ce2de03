"""The FastAPI / Starlette integration, through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import StreamingResponse

import tierkit
from tierkit.integrations.fastapi import (
    CacheDep,
    TierkitSessionMiddleware,
    cache_lifespan,
    cache_response,
)


class App:
    """An app with cached routes; ``calls`` counts the times each route really ran."""

    def __init__(self, order: tuple[str, ...] = ("memory",), **settings: Any) -> None:
        self.calls: list[str] = []
        lifespan = cache_lifespan(order=list(order), namespace="fastapi-test", **settings)
        self.app = app = FastAPI(lifespan=lifespan)

        @app.get("/search")
        @cache_response(ttl=60, vary=["Accept-Language"])
        async def search(q: str = "", page: int = 1) -> dict[str, Any]:
            self.calls.append(f"{q}:{page}")
            return {"q": q, "page": page}

        @app.get("/raw")
        @cache_response(ttl=60)
        async def raw(request: Request) -> Response:
            self.calls.append("raw")
            response = Response(
                b"\x00bytes", media_type="application/octet-stream", headers={"X-Kind": "raw"}
            )
            response.set_cookie("visitor", "alice")
            return response

        @app.get("/private")
        @cache_response(ttl=60)
        async def private() -> Response:
            self.calls.append("private")
            return Response("mine", headers={"Cache-Control": "private"})

        @app.get("/stream")
        @cache_response(ttl=60)
        async def stream() -> StreamingResponse:
            self.calls.append("stream")
            return StreamingResponse(iter([b"a", b"b"]))


@pytest.fixture
def served() -> Iterator[tuple[App, TestClient]]:
    app = App()
    with TestClient(app.app) as client:
        yield app, client


def test_query_string_is_part_of_the_key_and_sorted(served: tuple[App, TestClient]) -> None:
    app, client = served
    assert client.get("/search?q=a").json() == {"q": "a", "page": 1}
    assert client.get("/search?q=b").json() == {"q": "b", "page": 1}
    client.get("/search?q=a&page=2")
    client.get("/search?page=2&q=a")
    assert app.calls == ["a:1", "b:1", "a:2"]


def test_vary_header(served: tuple[App, TestClient]) -> None:
    app, client = served
    client.get("/search", headers={"Accept-Language": "fr"})
    client.get("/search", headers={"Accept-Language": "de"})
    client.get("/search", headers={"Accept-Language": "fr"})
    assert len(app.calls) == 2


def test_max_age_and_etag_then_304(served: tuple[App, TestClient]) -> None:
    app, client = served
    first = client.get("/search?q=a")
    assert first.headers["cache-control"] == "max-age=60"
    etag = first.headers["etag"]
    again = client.get("/search?q=a", headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    other = client.get("/search?q=a", headers={"If-None-Match": '"stale"'})
    assert (other.status_code, other.json()) == (200, {"q": "a", "page": 1})
    assert app.calls == ["a:1"]


def test_request_cache_control_bypasses(served: tuple[App, TestClient]) -> None:
    app, client = served
    client.get("/search?q=a")
    client.get("/search?q=a", headers={"Cache-Control": "no-cache"})  # fresh, and stored again
    client.get("/search?q=a")
    client.get("/search?q=z", headers={"Cache-Control": "no-store"})
    client.get("/search?q=z")
    assert app.calls == ["a:1", "a:1", "z:1", "z:1"]


def test_response_parts_are_kept_and_cookies_are_not_replayed(served: tuple[App, TestClient]) -> None:
    app, client = served
    first = client.get("/raw")
    assert "visitor=alice" in first.headers["set-cookie"]
    hit = client.get("/raw")
    assert (hit.content, hit.headers["x-kind"]) == (b"\x00bytes", "raw")
    assert hit.headers["content-type"] == "application/octet-stream"
    assert "set-cookie" not in hit.headers
    assert app.calls == ["raw"]


def test_private_and_streaming_responses_are_not_stored(served: tuple[App, TestClient]) -> None:
    app, client = served
    for _ in range(2):
        assert client.get("/private").text == "mine"
        assert client.get("/stream").content == b"ab"
    assert app.calls == ["private", "stream", "private", "stream"]


def test_through_a_byte_tier_and_the_json_codec() -> None:
    app = App(order=("file",), tiers={"file": {"write": "always"}}, codec="json")
    with TestClient(app.app) as client:
        first = client.get("/raw")
        again = client.get("/raw")
        cache = client.app.state.tierkit  # type: ignore[attr-defined]
        assert cache.tiers == ("file",)
    assert again.content == first.content and app.calls == ["raw"]


def test_lifespan_closes_the_cache_and_dependency_gives_it() -> None:
    closed: list[bool] = []

    class RecordingCache(tierkit.Cache):
        async def aclose(self) -> None:
            closed.append(True)
            await super().aclose()

    app = FastAPI(lifespan=cache_lifespan(RecordingCache(order=["memory"])))

    @app.get("/put/{value}")
    async def put(value: str, cache: CacheDep) -> dict[str, Any]:
        await cache.aset("v", value)
        return {"got": await cache.aget("v")}

    with TestClient(app) as client:
        assert client.get("/put/x").json() == {"got": "x"}
        assert not closed
    assert closed == [True]


def test_dependency_without_lifespan_says_what_to_do() -> None:
    app = FastAPI()

    @app.get("/")
    async def root(cache: CacheDep) -> None: ...

    with TestClient(app) as client, pytest.raises(RuntimeError, match="lifespan=cache_lifespan"):
        client.get("/")


def test_sync_routes_are_refused() -> None:
    with pytest.raises(TypeError, match="async routes"):
        cache_response(ttl=1)(lambda: None)  # type: ignore[arg-type]


def test_session_middleware_binds_each_request() -> None:
    pytest.importorskip("tierkit_session")
    app = FastAPI(lifespan=cache_lifespan(order=["memory", "session"]))
    app.add_middleware(TierkitSessionMiddleware, max_sessions=2)
    app.add_middleware(SessionMiddleware, secret_key="test-secret")  # added last: runs first

    @app.get("/recent")
    async def recent(cache: CacheDep) -> dict[str, Any]:
        viewed = await cache.aget_or_set("recent", lambda: ["p1"], ttl=60)
        return {"viewed": viewed, "session_tier": (await cache.ahealth()).tiers["session"].status}

    with TestClient(app) as alice, TestClient(app) as bob:
        assert alice.get("/recent").json() == {"viewed": ["p1"], "session_tier": "ok"}
        assert bob.get("/recent").json() == {"viewed": ["p1"], "session_tier": "ok"}


def test_session_middleware_needs_starlette_sessions() -> None:
    app = FastAPI(lifespan=cache_lifespan(order=["memory"]))
    app.add_middleware(TierkitSessionMiddleware)

    @app.get("/")
    async def root() -> None: ...

    with TestClient(app) as client, pytest.raises(RuntimeError, match="SessionMiddleware"):
        client.get("/")
