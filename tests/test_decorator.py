"""@tierkit.cached: keys, typed round trips, single flight, invalidation."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from pathlib import Path

from pydantic import BaseModel

import tierkit
from tierkit import Cache
from tierkit.testing import FakeClock


class Recipe(BaseModel):
    name: str
    created: dt.date


def test_results_are_cached_with_ttl_and_tags(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    calls: list[int] = []

    @tierkit.cached(ttl=60, tags=["recipes"], cache=cache)
    def load(page: int, size: int = 10) -> list[int]:
        calls.append(page)
        return list(range(page * size, page * size + 3))

    assert load(1) == [10, 11, 12]
    assert load(1) == [10, 11, 12]
    assert load(page=1) == [10, 11, 12]
    assert load(1, size=10) == [10, 11, 12]
    assert calls == [1]
    cache.invalidate(tags=["recipes"])
    load(1)
    assert calls == [1, 1]
    clock.advance(61)
    load(1)
    assert calls == [1, 1, 1]
    assert load.invalidate(1) is True
    load(2)
    assert calls == [1, 1, 1, 2]


def test_key_is_module_qualname_and_arguments() -> None:
    @tierkit.cached()
    def f(a: int, b: str = "x") -> int:
        return a

    assert f.key(1) == f"{__name__}.test_key_is_module_qualname_and_arguments.<locals>.f:(1, 'x')"
    assert f.key(1) == f.key(a=1, b="x")
    assert f.key({"b": 1, "a": {3, 1, 2}}).startswith(f"{__name__}.")
    assert f.key({"b": 1, "a": {3, 1, 2}}) == f.key({"a": {2, 1, 3}, "b": 1})


def test_keys_are_stable_across_processes(tmp_path: Path) -> None:
    script = tmp_path / "keys.py"
    script.write_text(
        "import tierkit\n"
        "@tierkit.cached()\n"
        "def f(*args, **kwargs): return None\n"
        "import datetime\n"
        "print(f.key('a', 1, 2.5, None, {'s': {'x', 'y', 'z'}}, when=datetime.date(2026, 1, 1)))\n"
    )
    keys = {
        subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(keys) == 1


def test_return_annotation_brings_the_model_back_from_a_byte_tier(tmp_path: Path, clock: FakeClock) -> None:
    cache = Cache(
        order=["memory", "file"], tiers={"file": {"options": {"directory": str(tmp_path)}}}, clock=clock
    )

    @tierkit.cached(persistent=True, cache=cache)
    def recipes(page: int) -> list[Recipe]:
        return [Recipe(name=f"soup {page}", created=dt.date(2026, 1, page))]

    first = recipes(1)
    cache.clear(tiers=["memory"])
    again = recipes(1)
    assert again == first and isinstance(again[0], Recipe)
    assert cache.stats()["tiers"]["file"]["hits"] == 1


def test_concurrent_calls_run_the_function_once(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)
    calls = 0

    @tierkit.cached(cache=cache)
    def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        time.sleep(0.2)
        return x * 2

    threads = [threading.Thread(target=slow, args=(21,)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == 1 and slow(21) == 42


def test_default_cache_is_used_when_none_is_given() -> None:
    @tierkit.cached(ttl=5)
    def f() -> str:
        return "v"

    assert f() == "v"
    assert tierkit.get_cache().get(f.key()) == "v"


def test_equal_arguments_of_different_types_get_different_entries(clock: FakeClock) -> None:
    cache = Cache(order=["memory"], clock=clock)

    @tierkit.cached(cache=cache)
    def kind(x: object) -> str:
        return type(x).__name__

    assert [kind(1), kind(True), kind(1.0), kind(1), kind("1")] == ["int", "bool", "float", "int", "str"]
    assert len({kind.key(1), kind.key(True), kind.key(1.0), kind.key("1")}) == 4


def test_list_tuple_and_set_arguments_get_different_entries(clock: FakeClock) -> None:
    """Issue 9 item 10: f([1, 2]), f((1, 2)) and f({1, 2}) shared one key."""
    cache = Cache(order=["memory"], clock=clock)

    @tierkit.cached(cache=cache)
    def kind(x: object) -> str:
        return type(x).__name__

    assert [kind([1, 2]), kind((1, 2)), kind({1, 2}), kind(frozenset({1, 2}))] == [
        "list",
        "tuple",
        "set",
        "frozenset",
    ]
    assert kind.key({1, 2}) == kind.key({2, 1})  # a set's order never matters


def test_an_annotation_never_makes_a_value_less_exact(tmp_path: Path, clock: FakeClock) -> None:
    """Issue 9 item 10: ``-> dict`` turned datetimes into strings and tuples into lists from a byte tier."""
    cache = Cache(
        order=["memory", "file"], tiers={"file": {"options": {"directory": str(tmp_path)}}}, clock=clock
    )
    value = {"when": dt.datetime(2026, 1, 2, 3, 4, 5), "pair": (1, 2), "day": dt.date(2026, 1, 2)}

    @tierkit.cached(persistent=True, cache=cache)
    def load() -> dict:  # type: ignore[type-arg]
        return dict(value)

    assert load() == value
    cache.clear(tiers=["memory"])
    again = load()
    assert again == value and type(again["pair"]) is tuple and type(again["when"]) is dt.datetime
    assert cache.stats()["tiers"]["file"]["hits"] == 1
