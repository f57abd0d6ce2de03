"""The async half of the conformance kit: a tier's ``tierkit_a*`` hooks, as the async API calls them.

Each hook is taken as :mod:`tierkit._achain` takes it: the native coroutine
when the tier has one, else its sync twin (inline for ``blocking = False``, in
a worker thread otherwise).  The tests run their own event loop
(``asyncio.run``), so no pytest async plugin is needed.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar

import pytest

from tierkit._types import Entry, Payloads
from tierkit.hookspecs import ASYNC_HOOKS

__all__ = ["AsyncTierConformance", "async_hook"]


def async_hook(tier: Any, name: str) -> Callable[..., Awaitable[Any]]:
    """The coroutine function the async API uses for hook ``name`` (``"get"``, ``"set_many"`` …)."""
    native = getattr(tier, f"tierkit_a{name}", None)
    if native is not None:
        return native  # type: ignore[no-any-return]
    sync = getattr(tier, f"tierkit_{name}")
    if not getattr(tier, "blocking", True):

        async def inline(**kwargs: Any) -> Any:
            return sync(**kwargs)

        return inline

    async def in_thread(**kwargs: Any) -> Any:
        return await asyncio.to_thread(lambda: sync(**kwargs))

    return in_thread


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


class AsyncTierConformance:
    """What the async API relies on, as pytest tests; subclass it next to :class:`TierConformance`.

    Provide the same ``tier`` fixture (built with the ``clock`` fixture's
    :class:`~tierkit.testing.FakeClock`).  ``native_async = True`` also requires
    every async hook (:data:`tierkit.hookspecs.ASYNC_HOOKS`) to be a real coroutine.
    """

    native_async: ClassVar[bool] = False
    supports_batch: ClassVar[bool] = True

    @pytest.fixture
    def clock(self) -> Any:
        from tierkit.testing._context import FakeClock

        return FakeClock()

    @pytest.fixture
    def tier(self) -> Any:
        pytest.fail("an AsyncTierConformance subclass must provide a `tier` fixture")

    @staticmethod
    def value(tier: Any, n: int = 0) -> Any:
        if tier.holds == "bytes":
            return b"\x00async-" + str(n).encode() + b"\xff"
        return {"n": n, "async": True}

    def test_async_hooks_are_coroutines_or_absent(self, tier: Any) -> None:
        for name in ASYNC_HOOKS:
            hook = getattr(tier, f"tierkit_a{name}", None)
            if hook is None:
                assert not self.native_async, f"native_async tier lacks tierkit_a{name}"
                continue
            assert inspect.iscoroutinefunction(hook), f"tierkit_a{name} must be `async def`"

    def test_declares_blocking_as_a_bool(self, tier: Any) -> None:
        assert type(getattr(tier, "blocking", True)) is bool

    def test_set_get_delete(self, tier: Any, clock: Any) -> None:
        async def scenario() -> None:
            entry = Entry(self.value(tier, 1), clock() + 60, ("t",))
            assert await async_hook(tier, "get")(key="a") is None
            await async_hook(tier, "set")(key="a", entry=entry)
            got = await async_hook(tier, "get")(key="a")
            assert got is not None and got.value == entry.value and got.tags == ("t",)
            assert got.expires_at == pytest.approx(entry.expires_at, abs=0.01)
            assert await async_hook(tier, "delete")(key="a") is True
            assert await async_hook(tier, "delete")(key="a") is False
            assert await async_hook(tier, "get")(key="a") is None

        run(scenario())

    def test_sync_and_async_hooks_see_one_store(self, tier: Any) -> None:
        tier.tierkit_set(key="from-sync", entry=Entry(self.value(tier, 2), None, ()))

        async def scenario() -> None:
            got = await async_hook(tier, "get")(key="from-sync")
            assert got is not None and got.value == self.value(tier, 2)
            await async_hook(tier, "set")(key="from-async", entry=Entry(self.value(tier, 3), None, ()))

        run(scenario())
        got = tier.tierkit_get(key="from-async")
        assert got is not None and got.value == self.value(tier, 3)

    def test_expired_is_a_miss(self, tier: Any, clock: Any) -> None:
        async def scenario() -> None:
            await async_hook(tier, "set")(key="short", entry=Entry(self.value(tier), clock() + 10, ()))
            clock.advance(11)
            assert await async_hook(tier, "get")(key="short") is None

        run(scenario())

    def test_invalidation_and_clear(self, tier: Any) -> None:
        async def scenario() -> None:
            put = async_hook(tier, "set")
            for key, tags in (("u:1", ("x",)), ("u:2", ("y",)), ("v:1", ("x",)), ("w", ())):
                await put(key=key, entry=Entry(self.value(tier), None, tags))
            assert await async_hook(tier, "invalidate_tags")(tags=["x"]) == 2
            assert await async_hook(tier, "invalidate_prefix")(prefix="u:") == 1
            assert await async_hook(tier, "get")(key="w") is not None
            await async_hook(tier, "clear")()
            assert await async_hook(tier, "get")(key="w") is None

        run(scenario())

    def test_batches(self, tier: Any) -> None:
        has_batch = any(hasattr(tier, f"tierkit_{a}get_many") for a in ("", "a"))
        if not (self.supports_batch and has_batch):
            pytest.skip("tier does not implement get_many/set_many (the chain goes key by key)")

        async def scenario() -> None:
            entries = {f"b{n}": Entry(self.value(tier, n), None, ()) for n in range(30)}
            await async_hook(tier, "set_many")(entries=entries)
            found = await async_hook(tier, "get_many")(keys=[*entries, "absent"])
            assert {key: entry.value for key, entry in found.items()} == {
                key: entry.value for key, entry in entries.items()
            }

        run(scenario())

    def test_batches_column_by_column(self, tier: Any) -> None:
        """``tierkit_aget_many_payloads`` (or its sync twin) answers what ``get_many`` answers."""
        if not any(hasattr(tier, f"tierkit_{a}get_many_payloads") for a in ("", "a")):
            pytest.skip("tier has no tierkit_(a)get_many_payloads (the chain reads batches with get_many)")

        async def scenario() -> None:
            entries = {f"p{n}": Entry(self.value(tier, n), None, ("t",) if n % 2 else ()) for n in range(30)}
            await async_hook(tier, "set_many")(entries=entries)
            answer = await async_hook(tier, "get_many_payloads")(keys=[*entries, "absent"])
            assert type(answer) is Payloads, answer
            found = dict(zip(answer.keys, answer.payloads, strict=True))
            assert found == {key: entry.value for key, entry in entries.items()}
            assert answer.expires_at == [None] * len(entries)
            assert {key: tuple(tags) for key, tags in answer.tags.items()} == {
                key: entry.tags for key, entry in entries.items() if entry.tags
            }

        run(scenario())

    def test_concurrent_coroutines_do_not_corrupt_entries(self, tier: Any) -> None:
        values = [self.value(tier, n) for n in range(20)]

        async def worker(w: int) -> None:
            for n in range(20):
                key = f"c{w % 4}"
                await async_hook(tier, "set")(key=key, entry=Entry(values[n], None, ()))
                got = await async_hook(tier, "get")(key=key)
                assert got is None or got.value in values

        async def scenario() -> None:
            await asyncio.gather(*(worker(w) for w in range(20)))

        run(scenario())

    def test_aclose_then_sync_hooks_still_work(self, tier: Any) -> None:
        """``Cache.aclose()`` awaits ``tierkit_aclose`` and then calls ``tierkit_close``: in that order."""
        aclose = getattr(tier, "tierkit_aclose", None)
        if aclose is None:
            pytest.skip("tier has no tierkit_aclose")

        async def scenario() -> None:
            await async_hook(tier, "get")(key="opened")
            await aclose()

        run(scenario())
        tier.tierkit_set(key="after", entry=Entry(self.value(tier), None, ()))
        assert tier.tierkit_get(key="after") is not None
