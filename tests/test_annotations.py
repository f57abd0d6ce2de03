"""Return annotations of @cached functions are hints, never traps."""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import logging
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierkit
from tierkit import Cache
from tierkit.testing import FakeClock


def test_a_pandas_annotation_falls_back_to_the_codec_and_says_so_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """pydantic builds no schema for ``pd.DataFrame``: that used to fail the first call."""
    cache = Cache(order=["memory"], clock=clock)
    calls: list[str] = []

    @tierkit.cached(cache=cache)
    def frame(city: str) -> pd.DataFrame:
        calls.append(city)
        return pd.DataFrame({"city": [city]})

    with caplog.at_level(logging.DEBUG, logger="tierkit"):
        assert frame("Oslo").equals(pd.DataFrame({"city": ["Oslo"]}))
        assert frame("Oslo").equals(frame("Oslo")) and frame("Rome") is not None
    assert calls == ["Oslo", "Rome"]
    notes = [r.getMessage() for r in caplog.records if "return annotation" in r.getMessage()]
    assert len(notes) == 1 and notes[0].startswith(f"@cached {frame.__module__}.{frame.__qualname__}: no pyd")


def test_a_django_model_annotation_falls_back_to_the_codec(tmp_path: Path) -> None:
    """A real Django model class (settings configured in a fresh process): the annotation never decides."""
    script = textwrap.dedent(
        """
        import django
        from django.conf import settings

        settings.configure(INSTALLED_APPS=[], DATABASES={})
        django.setup()

        from django.db import models
        import tierkit

        class Product(models.Model):
            name = models.CharField(max_length=40)

            class Meta:
                app_label = "shop"

        objects = tierkit.Cache(order=["memory"], codec="objects")

        @tierkit.cached(cache=objects)
        def product(name: str) -> Product:
            return Product(name=name)

        first = product("lamp")
        assert isinstance(first, Product) and first.name == "lamp" and product("lamp") is first

        # With the JSON codec the model is refused by the codec, as it is without an annotation
        # (the same answer with or without Redis), not by pydantic's schema generation.
        @tierkit.cached(cache=tierkit.Cache(order=["memory"]))
        def plain(name: str) -> Product:
            return Product(name=name)

        try:
            plain("lamp")
        except TypeError as exc:
            assert "not supported by the JSON codec" in str(exc), exc
        else:
            raise AssertionError("the JSON codec accepted a Django model")
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert out.stdout.strip() == "ok", out.stderr


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.dates()
    | st.decimals(allow_nan=False, allow_infinity=False, places=3)
    | st.sampled_from(Level)
    | st.frozensets(st.integers(-3, 3), max_size=3)  # small ints: one iteration order, so one repr
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def file_cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    directory = tmp_path_factory.mktemp("annotations")
    return Cache(order=["memory", "file"], tiers={"file": {"options": {"directory": str(directory)}}})


_numbers = itertools.count()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.dictionaries(st.text(max_size=6), _values, max_size=4))
def test_an_annotation_never_makes_a_value_less_exact(file_cache: Cache, value: dict[str, Any]) -> None:
    """``-> dict`` (and ``dict[str, Any]``) bring back from a byte tier exactly what was cached:
    datetimes, tuples, frozensets, Decimals and IntEnums included, with their types — ``repr`` tells
    them apart."""
    stored: dict[int, dict[str, Any]] = {}

    @tierkit.cached(cache=file_cache, persistent=True)
    def as_dict(n: int) -> dict:  # type: ignore[type-arg]
        return stored[n]

    @tierkit.cached(cache=file_cache, persistent=True)
    def as_mapping(n: int) -> dict[str, Any]:
        return stored[n]

    for load in (as_dict, as_mapping):
        n = next(_numbers)
        stored[n] = value
        assert repr(load(n)) == repr(value)
        file_cache.clear(tiers=["memory"])
        assert repr(load(n)) == repr(value)


def test_a_narrower_annotation_does_not_change_numbers(tmp_path: Path, clock: FakeClock) -> None:
    """``dict[str, float]`` would read an int back as a float: the JSON codec writes it instead."""
    cache = Cache(
        order=["memory", "file"], tiers={"file": {"options": {"directory": str(tmp_path)}}}, clock=clock
    )

    @tierkit.cached(cache=cache, persistent=True)
    def rates() -> dict[str, float]:
        return {"eur": 1, "usd": 1.08, "flag": True, "level": Level.HIGH, "price": Decimal("2.50")}  # type: ignore[dict-item]

    first = rates()
    cache.clear(tiers=["memory"])
    assert repr(rates()) == repr(first)
