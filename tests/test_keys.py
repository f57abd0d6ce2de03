"""@cached keys: key=, ignore=, methods, array and frame arguments, version=, code_hash=, invalidate_all()."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tierkit
from tierkit import Cache
from tierkit.testing import FakeClock

from ._run import run_module

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(clock: FakeClock) -> Cache:
    return Cache(order=["memory"], clock=clock)


def run_python(code: str, *, seed: int = 0, cwd: Path | None = None) -> str:
    """``code`` run by this interpreter in a fresh process; its standard output."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env={
            "PYTHONHASHSEED": str(seed),
            "PATH": "",
            "PYTHONPATH": str(cwd or ""),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
    ).stdout


# -- key= -----------------------------------------------------------------------------------------


def test_key_receives_the_arguments_as_the_function_takes_them(cache: Cache) -> None:
    calls: list[str] = []

    @tierkit.cached(cache=cache, key=lambda user, verbose=False: user["id"])
    def profile(user: dict[str, Any], verbose: bool = False) -> str:
        calls.append(user["name"])
        return user["name"]

    assert profile({"id": 7, "name": "ada"}) == "ada"
    assert profile({"id": 7, "name": "ada, renamed"}, verbose=True) == "ada"  # same key: a hit
    assert calls == ["ada"]
    assert profile.key({"id": 7}) == f"{profile.__module__}.{profile.__qualname__}:(7,)"
    assert profile.invalidate({"id": 7, "name": "x"}) is True


def test_key_results_that_are_not_plain_are_digested(cache: Cache) -> None:
    @tierkit.cached(cache=cache, key=lambda day, rows: (day, frozenset(rows)))
    def report(day: dt.date, rows: list[int]) -> int:
        return len(rows)

    assert report.key(dt.date(2026, 1, 1), [1, 2]) == report.key(dt.date(2026, 1, 1), [2, 1])
    assert report.key(dt.date(2026, 1, 1), [1, 2]) != report.key(dt.date(2026, 1, 2), [1, 2])
    assert "#" in report.key(dt.date(2026, 1, 1), [1])


def test_key_and_ignore_together_or_a_key_that_is_no_callable_are_refused() -> None:
    with pytest.raises(TypeError, match=r"@cached .*\.f: pass key= or ignore=, not both"):

        @tierkit.cached(key=lambda x, y: x, ignore=["y"])
        def f(x: int, y: int) -> int:
            return x

    with pytest.raises(TypeError, match=r"@cached .*\.g: key= must be a callable, got str"):

        @tierkit.cached(key="x")  # type: ignore[arg-type]
        def g(x: int) -> int:
            return x


# -- ignore= --------------------------------------------------------------------------------------


def test_ignored_arguments_are_left_out_of_the_key(cache: Cache) -> None:
    calls: list[int] = []

    @tierkit.cached(cache=cache, ignore=["session", "log"])
    def load(page: int, session: object, *, log: bool = False) -> int:
        calls.append(page)
        return page

    assert load(1, object()) == load(1, object(), log=True) == 1
    assert calls == [1]
    assert load.key(1, "anything") == f"{load.__module__}.{load.__qualname__}:(1,)"
    assert load.key(2, None) != load.key(1, None)


def test_ignoring_an_unknown_argument_is_a_type_error_naming_the_function() -> None:
    with pytest.raises(TypeError) as info:

        @tierkit.cached(ignore=["sesion"])
        def load(page: int, session: object) -> int:
            return page

    assert str(info.value) == (
        f"@cached {__name__}.test_ignoring_an_unknown_argument_is_a_type_error_naming_the_function."
        "<locals>.load: ignore= names 'sesion', which is not a parameter of it (parameters: page, session)"
    )
    with pytest.raises(TypeError, match=r"ignore= takes a list of argument names, got 'page'"):

        @tierkit.cached(ignore="page")
        def other(page: int) -> int:
            return page


# -- methods --------------------------------------------------------------------------------------

method_cache = Cache(order=["memory"])
loads: list[tuple[str, int]] = []


class Repo:
    """A service object: its results do not depend on which instance runs them."""

    def __init__(self, db: str) -> None:
        self.db = db

    @tierkit.cached(cache=method_cache)
    def load(self, item: int) -> str:
        loads.append((self.db, item))
        return f"item {item}"

    @tierkit.cached(cache=method_cache)
    @classmethod
    def table(cls, item: int) -> str:
        return f"{cls.__name__} {item}"

    @classmethod
    @tierkit.cached(cache=method_cache)
    def view(cls, item: int) -> str:
        return f"{cls.__name__} view {item}"

    @tierkit.cached(cache=method_cache)
    @staticmethod
    def parse(text: str) -> int:
        return int(text)

    @staticmethod
    @tierkit.cached(cache=method_cache)
    def render(item: int) -> str:
        return str(item)


class Tenant(Repo):
    """Results depend on the tenant: ``__cache_key__`` says so."""

    def __cache_key__(self) -> str:
        return self.db


def test_self_is_left_out_of_a_method_key(cache: Cache) -> None:
    loads.clear()
    method_cache.clear()
    assert Repo("a").load(1) == Repo("b").load(1) == "item 1"
    assert loads == [("a", 1)]
    assert Repo("a").load.key(1) == Repo.load.key(Repo("z"), 1) == f"{__name__}.Repo.load:(1,)"


def test_cache_key_method_gives_each_instance_its_entries() -> None:
    loads.clear()
    method_cache.clear()
    assert Tenant("a").load(1) == Tenant("b").load(1) == Tenant("a").load(1)
    assert loads == [("a", 1), ("b", 1)]
    assert Tenant("a").load.key(1) == f"{__name__}.Repo.load:('a', 1)"
    assert Tenant("a").load.invalidate(1) is True
    assert Tenant("b").load.invalidate(1) is True
    assert Tenant("a").load.invalidate(1) is False


def test_a_remembered_method_key_is_not_reused_for_a_receiver_with_cache_key() -> None:
    """The hit path remembers ``obj.method(x)``'s key by ``x`` alone only for receivers left out of it."""
    loads.clear()
    method_cache.clear()
    for _ in range(3):  # the key of `1` is remembered once Repo is known to have no __cache_key__
        assert Repo("a").load(1) == "item 1"
    assert Tenant("t1").load(1) == Tenant("t2").load(1) == Tenant("t1").load(1) == "item 1"
    assert Repo("b").load(1) == "item 1"
    assert loads == [("a", 1), ("t1", 1), ("t2", 1)]


def test_classmethods_key_the_class_by_its_qualified_name() -> None:
    method_cache.clear()
    assert Repo.table(1) == "Repo 1" and Tenant.table(1) == "Tenant 1"
    assert Repo.view(1) == "Repo view 1" and Tenant.view(1) == "Tenant view 1"
    assert Repo.table.key(1) == f"{__name__}.Repo.table:('{__name__}.Repo', 1)"
    assert Tenant("x").table.key(1) == f"{__name__}.Repo.table:('{__name__}.Tenant', 1)"
    assert Repo.table.invalidate(1) is True


def test_staticmethods_key_every_argument() -> None:
    assert Repo.parse("12") == Repo("x").parse("12") == 12
    assert Repo.parse.key("12") == Repo("x").parse.key("12") == f"{__name__}.Repo.parse:('12',)"
    assert Repo.render(3) == "3" and Repo.render.key(3) == f"{__name__}.Repo.render:(3,)"


def test_ignore_self_leaves_out_even_a_cache_key(cache: Cache) -> None:
    class Shared(Tenant):
        @tierkit.cached(cache=cache, ignore=["self"])
        def load(self, item: int) -> str:
            return self.db

    assert Shared("a").load(1) == Shared("b").load(1) == "a"


def test_key_receives_self_on_a_method(cache: Cache) -> None:
    class Account:
        def __init__(self, number: str) -> None:
            self.number = number

        @tierkit.cached(cache=cache, key=lambda self, month: (self.number, month))
        def statement(self, month: str) -> str:
            return f"{self.number} {month}"

    assert Account("1").statement("may") == "1 may" and Account("2").statement("may") == "2 may"
    assert Account("1").statement.key("may") == Account.statement.key(Account("1"), "may")


@pytest.mark.anyio
async def test_async_methods_and_functions_take_the_same_key_control(cache: Cache) -> None:
    class Client:
        @tierkit.cached(cache=cache, ignore=["timeout"])
        async def fetch(self, url: str, timeout: float = 1.0) -> str:
            return url.upper()

    assert await Client().fetch("a", timeout=2) == "A"
    assert Client().fetch.key("a", 5) == f"{Client.fetch.__module__}.{Client.fetch.__qualname__}:('a',)"
    assert await Client().fetch.ainvalidate("a") is True
    await Client().fetch("a")
    assert await Client().fetch.ainvalidate_all() == 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- what arguments can be keyed ------------------------------------------------------------------


def test_an_argument_that_cannot_be_keyed_is_a_type_error_naming_function_and_argument(cache: Cache) -> None:
    @tierkit.cached(cache=cache)
    def load(page: int, options: dict[str, Any]) -> int:
        return page

    with pytest.raises(TypeError) as info:
        load(1, {"conn": Repo("db")})
    message = str(info.value)
    assert message.startswith(
        f"@cached {load.__module__}.{load.__qualname__}: argument 'options' holds a {__name__}.Repo, "
        "which cannot be part of a cache key (keys are built from JSON types"
    )
    assert message.endswith(
        "leave it out with ignore=['options'], derive the key with key=, or give its class a "
        "__cache_key__() method"
    )

    @tierkit.cached(cache=cache, key=lambda page: Repo("db"))
    def custom(page: int) -> int:
        return page

    with pytest.raises(TypeError, match=r"argument '\(the value key= returned\)' holds a .*Repo"):
        custom(1)


def test_list_tuple_and_set_arguments_get_different_keys(cache: Cache) -> None:
    @tierkit.cached(cache=cache)
    def f(x: object) -> None:
        return None

    keys = {f.key([1, 2]), f.key((1, 2)), f.key({1, 2}), f.key(frozenset({1, 2})), f.key({"1": 2})}
    assert len(keys) == 5
    assert f.key([[1], (2,)]) != f.key([(1,), [2]])


def test_objects_with_a_cache_key_method_are_keyed_by_it(cache: Cache) -> None:
    @tierkit.cached(cache=cache)
    def f(repo: Tenant) -> None:
        return None

    assert f.key(Tenant("a")) == f.key(Tenant("a")) != f.key(Tenant("b"))
    assert f.key(Tenant("a")) != f.key("a")


def test_numpy_arrays_are_keyed_by_dtype_shape_and_content(cache: Cache) -> None:
    calls: list[int] = []

    @tierkit.cached(cache=cache)
    def total(values: np.ndarray) -> float:  # type: ignore[type-arg]
        calls.append(1)
        return float(values.sum())

    a = np.arange(6, dtype=np.int64)
    assert total(a) == total(a.copy()) == 15.0
    assert calls == [1]
    key = total.key
    assert key(a) != key(a.astype(np.int32))  # dtype
    assert key(a) != key(a.reshape(2, 3))  # shape
    assert key(a) != key(a + 1)  # content
    assert key(np.arange(12)[::2]) == key(np.arange(0, 12, 2))  # a strided view, by its elements
    assert key(np.array(["a", None], dtype=object)) != key(np.array(["b", None], dtype=object))
    assert key(np.float64(1.5)) != key(1.5) and key(np.float64(1.5)) == key(np.float64(1.5))
    with pytest.raises(TypeError, match=r"argument 'values' holds a numpy\.ma\.MaskedArray"):
        key(np.ma.masked_array([1, 2], mask=[0, 1]))


def test_pandas_frames_series_and_indexes_are_keyed_by_content(cache: Cache) -> None:
    @tierkit.cached(cache=cache)
    def size(frame: object) -> int:
        return len(frame)  # type: ignore[arg-type]

    df = pd.DataFrame({"city": ["Oslo", "Rome"], "people": [0.7, 2.8]})
    key = size.key
    assert key(df) == key(df.copy()) == key(pd.DataFrame({"city": ["Oslo", "Rome"], "people": [0.7, 2.8]}))
    assert key(df) != key(df.rename(columns={"people": "inhabitants"}))  # labels
    assert key(df) != key(df.astype({"people": "float32"}))  # dtypes
    assert key(df) != key(df.set_axis([5, 6]))  # the index
    changed = df.copy()
    changed.loc[1, "city"] = "Roma"
    assert key(df) != key(changed)  # values
    assert key(df["city"]) != key(df["people"]) and key(df["city"]) == key(df["city"].copy())
    assert key(df.index) != key(pd.Index([0, 1], name="n"))
    assert size(df) == 2


def test_array_and_frame_keys_are_stable_across_processes() -> None:
    code = """
        import numpy as np, pandas as pd, tierkit
        @tierkit.cached()
        def f(*args): return None
        frame = pd.DataFrame({"s": ["a", "b"], "x": [1, 2]})
        print(f.key(np.arange(4), frame, np.array(["x", 1], dtype=object)))
    """
    assert len({run_python(code, seed=seed) for seed in (1, 2, 3)}) == 1


def test_numpy_and_pandas_are_not_imported_to_build_keys() -> None:
    code = """
        import sys, tierkit
        @tierkit.cached()
        def f(*args, **kwargs): return None
        f.key([1], {2}, x={"a": (3,)}); f.key(object.__name__)
        print(sorted(m for m in ("numpy", "pandas") if m in sys.modules))
    """
    assert run_python(code).strip() == "[]"


# -- version= and invalidate_all() ----------------------------------------------------------------


def test_version_joins_the_key_and_invalidate_all_drops_every_version(cache: Cache) -> None:
    def define(version: int | None) -> Any:
        @tierkit.cached(cache=cache, version=version, namespace="prices")
        def prices(day: int) -> str:
            return f"v{version} day {day}"

        return prices

    old, new, plain = define(1), define(2), define(None)
    assert old.key(3) == "prices:v1:(3,)" and new.key(3) == "prices:v2:(3,)" and plain.key(3) == "prices:(3,)"
    assert old(3) == "v1 day 3" and new(3) == "v2 day 3"  # a new version never serves the old results

    @tierkit.cached(cache=cache, namespace="prices_eu")
    def neighbour(day: int) -> int:
        return day

    neighbour(3)
    assert new.invalidate_all() == 2
    assert cache.get("prices:v1:(3,)") is None and cache.get("prices_eu:(3,)") == 3


def test_version_must_be_a_str_or_an_int() -> None:
    with pytest.raises(TypeError, match=r"version= must be a non-empty str or an int, got 1\.5"):

        @tierkit.cached(version=1.5)  # type: ignore[arg-type]
        def f() -> None:
            return None


# -- code_hash= -----------------------------------------------------------------------------------

_REPORT = """
import tierkit

SEEN = []


@tierkit.cached(code_hash=True, persistent=True)
def report(n: int) -> int:
    SEEN.append(n)
    def scale(x):
        return x * {factor}
    return scale(n) if n in {{1, 2, 3}} else 0
"""

_RUN = """
    import tierkit, reports
    print(reports.report.key(2), reports.report(2), reports.SEEN)
"""


def test_code_hash_changes_the_key_when_the_body_changes(tmp_path: Path) -> None:
    """Editing the body stops serving old results; comments, blank lines and hash seeds do not."""
    module = tmp_path / "reports.py"
    tierkit_toml = tmp_path / "tierkit.toml"
    tierkit_toml.write_text(f'order = ["file"]\n[tiers.file.options]\ndirectory = "{tmp_path / "store"}"\n')

    def run(source: str, seed: int = 0) -> list[str]:
        module.write_text(source)
        return run_python(_RUN, seed=seed, cwd=tmp_path).split(" ", 2)

    first_key, result, seen = run(_REPORT.format(factor=10))
    assert (result, seen.strip()) == ("20", "[2]")
    assert run(_REPORT.format(factor=10), seed=7) == [first_key, "20", "[]\n"]  # served from the file tier
    moved = "# a comment\n\n\n" + _REPORT.format(factor=10).replace("    SEEN", "    # why\n    SEEN")
    assert run(moved)[0] == first_key
    edited_key, result, seen = run(_REPORT.format(factor=100))
    assert edited_key != first_key and (result, seen.strip()) == ("200", "[2]")  # the nested function changed
    assert edited_key.rsplit(":", 2)[0] == first_key.rsplit(":", 2)[0] == "reports.report"


def test_code_hash_needs_a_python_function() -> None:
    class Callable:
        def __call__(self) -> None:
            return None

    with pytest.raises(TypeError, match="code_hash=True needs a Python function"):
        tierkit.cached(code_hash=True, namespace="callable")(Callable())
    with pytest.raises(
        TypeError, match=r"@cached needs namespace= to key <.*Callable object at .*>, which has no"
    ):
        tierkit.cached()(Callable())
    assert tierkit.cached(namespace="callable")(Callable()).key() == "callable:()"


@pytest.mark.slow
def test_mypy_binds_cached_methods_like_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        textwrap.dedent(
            """
            from typing import assert_type
            import tierkit

            class Repo:
                @tierkit.cached()
                def load(self, item: int) -> str:
                    return str(item)

                @tierkit.cached()
                async def aload(self, item: int) -> list[int]:
                    return [item]

            async def use(repo: Repo) -> None:
                assert_type(repo.load(1), str)
                assert_type(repo.load.key(1), str)
                assert_type(Repo.load(repo, 1), str)
                assert_type(await repo.aload(1), list[int])
                repo.load("1")
            """
        )
    )
    result = run_module("mypy", "--strict", "--no-incremental", str(sample), cwd=ROOT, timeout=600)
    assert 'Argument 1 to "__call__" of "CachedFunction" has incompatible type "str"' in result.stdout
    assert result.stdout.count("error:") == 1, result.stdout
