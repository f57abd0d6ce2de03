"""Development and production agree: a memory-only cache accepts exactly what memory + Redis accepts.

Each value is offered to both chains; both accept it (and the Redis one brings it back
exactly, read by another cache in the namespace) or both refuse it with the same message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import django
import flask
import numpy as np
import pandas as pd
import pytest
from django.conf import settings as django_settings

from tierkit import Cache

pytestmark = pytest.mark.redis

if not django_settings.configured:
    django_settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    )
    django.setup()

from django.contrib.auth.models import User  # noqa: E402 - needs the settings above


def flask_response() -> Any:
    app = flask.Flask("parity")
    with app.test_request_context("/"):
        return flask.jsonify(answer=42)


VALUES: dict[str, Callable[[], Any]] = {
    "flask Response": flask_response,
    "Django model instance": lambda: User(username="ada", email="ada@example.com"),
    "numpy float64 array": lambda: np.linspace(0.0, 1.0, 7).reshape(7, 1),
    "numpy datetime64 array": lambda: np.array(["2026-01-01T10:00"], dtype="datetime64[m]"),
    "numpy object array": lambda: np.array([{"a": 1}, None], dtype=object),
    "np.float64": lambda: np.float64(2.5),
    "DataFrame": lambda: pd.DataFrame(
        {
            "price": [1.5, 2.25],
            "kind": pd.Categorical(["a", "b"]),
            "at": pd.date_range("2026-01-01", periods=2, tz="Europe/Paris"),
        }
    ),
    "DataFrame with mixed object column": lambda: pd.DataFrame({"x": pd.Series([1, "a"], dtype=object)}),
    "Series": lambda: pd.Series([1, 2, 3], name="n"),
    "dict holding a Response": lambda: {"response": flask_response()},
}
ACCEPTED = {
    "numpy float64 array",
    "numpy datetime64 array",
    "np.float64",
    "DataFrame",
    "Series",
}


@pytest.fixture
def chains(redis_url: str) -> Iterator[dict[str, Cache]]:
    namespace = f"values-{uuid.uuid4().hex[:10]}"
    redis = {"redis": {"options": {"url": redis_url}}}
    made = {
        "memory": Cache(namespace=namespace, order=["memory"]),
        "memory+redis": Cache(namespace=namespace, order=["memory", "redis"], tiers=redis),
        "redis reader": Cache(namespace=namespace, order=["redis"], tiers=redis),
    }
    yield made
    made["memory+redis"].clear()
    for cache in made.values():
        cache.close()


def outcome(cache: Cache, key: str, value: Any) -> str:
    try:
        cache.set(key, value)
    except TypeError as exc:
        return f"refused: {exc}"
    return "accepted"


def same(got: Any, expected: Any) -> bool:
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        return True
    if isinstance(expected, pd.Series):
        pd.testing.assert_series_equal(got, expected, check_exact=True)
        return True
    if isinstance(expected, np.ndarray):
        return bool(got.dtype == expected.dtype and np.array_equal(got, expected))
    return bool(type(got) is type(expected) and got == expected)


@pytest.mark.parametrize("name", VALUES)
def test_memory_only_and_memory_plus_redis_give_the_same_answer(name: str, chains: dict[str, Cache]) -> None:
    value = VALUES[name]()
    dev = outcome(chains["memory"], "v", value)
    prod = outcome(chains["memory+redis"], "v", value)
    assert dev == prod
    assert (dev == "accepted") == (name in ACCEPTED), dev
    if dev == "accepted":
        assert same(chains["redis reader"].get("v"), value), "Redis brings it back exactly"
    else:
        assert "cannot cache key 'v'" in dev
        assert chains["redis reader"].get("v", "absent") == "absent"


def test_an_objects_cache_takes_what_json_refuses() -> None:
    with Cache(order=["memory"], codec="objects") as cache:
        response = flask_response()
        cache.set("response", response)
        assert cache.get("response") is response
