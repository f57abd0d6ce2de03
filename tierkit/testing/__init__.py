"""Test kit for tier authors: a conformance suite every tier must pass, and a fake clock.

Use it from your plugin's tests (it is not loaded into pytest runs by itself)::

    import pytest
    from tierkit.testing import FakeClock, TierConformance, make_context
    from my_tier import MyTier

    class TestMyTier(TierConformance):
        @pytest.fixture
        def tier(self, clock: FakeClock):
            tier = MyTier(MyTier.Options(), make_context(clock))
            yield tier
            tier.tierkit_clear()

Capability flags (class attributes) switch off what a tier does not claim:
``supports_ttl``, ``supports_batch`` (``tierkit_get_many``/``tierkit_set_many``);
a persistent tier sets ``persistent = True`` and provides a ``reopen`` fixture
returning a fresh instance over the same storage.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pluggy
import pytest

from tierkit import hookspecs
from tierkit._types import Entry, TierContext, TierHealth

__all__ = ["FakeClock", "TierConformance", "make_context"]


class FakeClock:
    """A clock that moves only when told to: ``clock()`` reads it, ``advance(s)`` moves it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_context(
    clock: Callable[[], float], name: str = "under-test", namespace: str = "conformance"
) -> TierContext:
    """A :class:`~tierkit.TierContext` for building a tier in a test."""
    return TierContext(name=name, namespace=namespace, clock=clock)


class TierConformance:
    """The behaviour every tier owes the chain, as pytest tests.

    Subclass it and provide a ``tier`` fixture that builds your tier with a
    context from :func:`make_context` using the ``clock`` fixture.
    """

    supports_ttl: ClassVar[bool] = True
    supports_batch: ClassVar[bool] = True
    persistent: ClassVar[bool] = False

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def tier(self) -> Any:
        pytest.fail("a TierConformance subclass must provide a `tier` fixture")

    @pytest.fixture
    def reopen(self) -> Callable[[], Any]:
        pytest.fail("a persistent tier's conformance class must provide a `reopen` fixture")

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def value(tier: Any, n: int = 0) -> Any:
        """A value of the kind the tier holds."""
        if tier.holds == "bytes":
            return b"\x00payload-" + str(n).encode() + b"\xff"
        return {"n": n, "items": [1, 2.5, "three", None], "nested": {"ok": True}}

    def put(
        self, tier: Any, key: str, n: int = 0, expires_at: float | None = None, tags: tuple[str, ...] = ()
    ) -> Entry:
        entry = Entry(self.value(tier, n), expires_at, tags)
        tier.tierkit_set(key=key, entry=entry)
        return entry

    # -- the contract ----------------------------------------------------------

    def test_registers_with_pluggy_against_the_specs(self, tier: Any) -> None:
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        pm.register(tier, name="under-test")
        pm.check_pending()
        for hook in hookspecs.REQUIRED_HOOKS:
            assert getattr(pm.hook, hook).get_hookimpls(), f"{hook} is required"

    def test_miss_is_none(self, tier: Any) -> None:
        assert tier.tierkit_get(key="absent") is None

    def test_set_then_get_returns_the_entry(self, tier: Any, clock: FakeClock) -> None:
        entry = self.put(tier, "k", 1, expires_at=clock() + 60, tags=("t1", "t2"))
        got = tier.tierkit_get(key="k")
        assert got is not None
        assert got.value == entry.value
        assert got.expires_at == pytest.approx(entry.expires_at, abs=0.01)
        assert sorted(got.tags) == ["t1", "t2"]

    def test_no_expiry_is_kept_as_none(self, tier: Any) -> None:
        self.put(tier, "forever", 2)
        got = tier.tierkit_get(key="forever")
        assert got is not None and got.expires_at is None

    def test_empty_and_falsy_values_are_hits(self, tier: Any) -> None:
        falsy = b"" if tier.holds == "bytes" else None
        tier.tierkit_set(key="falsy", entry=Entry(falsy, None, ()))
        got = tier.tierkit_get(key="falsy")
        assert got is not None and got.value == falsy

    def test_set_replaces(self, tier: Any) -> None:
        self.put(tier, "k", 1, tags=("old",))
        self.put(tier, "k", 2)
        got = tier.tierkit_get(key="k")
        assert got is not None and got.value == self.value(tier, 2)
        tier.tierkit_invalidate_tags(tags=["old"])
        assert tier.tierkit_get(key="k") is not None, "a replaced entry must not keep its old tags"

    def test_delete(self, tier: Any) -> None:
        self.put(tier, "k")
        assert tier.tierkit_delete(key="k") is True
        assert tier.tierkit_get(key="k") is None
        assert tier.tierkit_delete(key="k") is False

    def test_keys_are_opaque_strings(self, tier: Any) -> None:
        keys = ["ünïcode:ключ:鍵", "spaces and/slashes\\", "glob*chars?[x]", "x" * 1000, "%s{}\n\t"]
        for n, key in enumerate(keys):
            self.put(tier, key, n)
        for n, key in enumerate(keys):
            got = tier.tierkit_get(key=key)
            assert got is not None and got.value == self.value(tier, n), key

    def test_ttl_expiry(self, tier: Any, clock: FakeClock) -> None:
        if not self.supports_ttl:
            pytest.skip("tier does not support TTL")
        self.put(tier, "short", 1, expires_at=clock() + 10)
        self.put(tier, "long", 2, expires_at=clock() + 1000)
        clock.advance(11)
        assert tier.tierkit_get(key="short") is None
        assert tier.tierkit_get(key="long") is not None

    def test_invalidate_tags(self, tier: Any) -> None:
        self.put(tier, "a", 1, tags=("x",))
        self.put(tier, "b", 2, tags=("y",))
        self.put(tier, "c", 3, tags=("x", "y"))
        self.put(tier, "d", 4)
        assert tier.tierkit_invalidate_tags(tags=["x"]) == 2
        assert tier.tierkit_get(key="a") is None
        assert tier.tierkit_get(key="c") is None
        assert tier.tierkit_get(key="b") is not None
        assert tier.tierkit_get(key="d") is not None
        assert tier.tierkit_invalidate_tags(tags=["nothing-has-this"]) == 0

    def test_invalidate_prefix(self, tier: Any) -> None:
        for key in ("user:1", "user:2", "users", "other", "*user:", "user"):
            self.put(tier, key)
        assert tier.tierkit_invalidate_prefix(prefix="user:") == 2
        assert tier.tierkit_get(key="user:1") is None
        assert tier.tierkit_get(key="user:2") is None
        for key in ("users", "other", "*user:", "user"):
            assert tier.tierkit_get(key=key) is not None, key

    def test_invalidate_prefix_treats_glob_characters_literally(self, tier: Any) -> None:
        for key in ("a*[b]?:1", "a*[b]?:2", "aX[b]?:3", "ab:4"):
            self.put(tier, key)
        assert tier.tierkit_invalidate_prefix(prefix="a*[b]?:") == 2
        assert tier.tierkit_get(key="aX[b]?:3") is not None
        assert tier.tierkit_get(key="ab:4") is not None

    def test_clear(self, tier: Any) -> None:
        for n in range(5):
            self.put(tier, f"k{n}", n, tags=("t",))
        tier.tierkit_clear()
        assert all(tier.tierkit_get(key=f"k{n}") is None for n in range(5))
        assert tier.tierkit_invalidate_tags(tags=["t"]) == 0

    def test_batch_operations(self, tier: Any, clock: FakeClock) -> None:
        if not self.supports_batch:
            pytest.skip("tier does not implement get_many/set_many")
        entries = {f"b{n}": Entry(self.value(tier, n), clock() + 60, ("batch",)) for n in range(20)}
        tier.tierkit_set_many(entries=entries)
        found = tier.tierkit_get_many(keys=[*entries, "absent"])
        assert set(found) == set(entries)
        for key, entry in entries.items():
            assert found[key].value == entry.value
        assert tier.tierkit_invalidate_tags(tags=["batch"]) == 20

    def test_health_and_stats(self, tier: Any) -> None:
        health = tier.tierkit_health()
        assert isinstance(health, TierHealth)
        assert health.status in ("ok", "degraded", "down", "skipped")
        stats = tier.tierkit_stats()
        assert isinstance(dict(stats), dict)

    def test_threads_do_not_corrupt_entries(self, tier: Any) -> None:
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for n in range(50):
                    key = f"w{worker}:{n % 5}"
                    self.put(tier, key, n, tags=(f"w{worker}",))
                    got = tier.tierkit_get(key=key)
                    assert got is None or got.value in [self.value(tier, m) for m in range(50)]
            except BaseException as exc:
                errors.append(exc)

        # Each worker runs in a copy of the test's context, so context-scoped
        # tiers (a bound session) see the same scope as the test body.
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(work, w)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors[0]

    def test_entries_survive_reopening(self, tier: Any, request: pytest.FixtureRequest) -> None:
        if not self.persistent:
            pytest.skip("tier is not persistent")
        reopen: Callable[[], Any] = request.getfixturevalue("reopen")
        self.put(tier, "kept", 7, tags=("t",))
        fresh = reopen()
        got = fresh.tierkit_get(key="kept")
        assert got is not None and got.value == self.value(fresh, 7)
