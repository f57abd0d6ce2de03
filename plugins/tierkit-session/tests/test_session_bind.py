"""bind(): contextvar scoping across nesting, exceptions, threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from tierkit_session import SessionTier, bind, current_session

from tierkit import Entry


def test_bind_makes_the_mapping_current_and_yields_it() -> None:
    session: dict[str, Any] = {}
    with bind(session) as bound:
        assert bound is session
        assert current_session() is session
    assert current_session() is None


def test_an_empty_mapping_is_still_a_session(tier: SessionTier) -> None:
    session: dict[str, Any] = {}
    with bind(session):
        assert tier.tierkit_health().status == "ok"


def test_nested_bind_restores_the_outer_binding(tier: SessionTier) -> None:
    outer: dict[str, Any] = {}
    inner: dict[str, Any] = {}
    with bind(outer):
        tier.tierkit_set("k", Entry("outer", None))
        with bind(inner):
            assert current_session() is inner
            assert tier.tierkit_get("k") is None
            tier.tierkit_set("k", Entry("inner", None))
        assert current_session() is outer
        assert tier.tierkit_get("k") == Entry("outer", None)
    with bind(inner):
        assert tier.tierkit_get("k") == Entry("inner", None)


def test_bind_restores_on_exception() -> None:
    outer: dict[str, Any] = {}
    with bind(outer):
        with pytest.raises(RuntimeError), bind({}):
            raise RuntimeError
        assert current_session() is outer
    assert current_session() is None


def test_a_new_thread_does_not_inherit_the_binding() -> None:
    seen: list[object] = []
    with bind({}):
        thread = threading.Thread(target=lambda: seen.append(current_session()))
        thread.start()
        thread.join()
    assert seen == [None]


def test_asyncio_tasks_are_isolated(tier: SessionTier) -> None:
    async def request(user: str) -> list[Any]:
        with bind({}):
            hits = []
            for i in range(50):
                tier.tierkit_set(f"k{i % 5}", Entry(user, None))
                await asyncio.sleep(0)  # let the other requests interleave
                hit = tier.tierkit_get(f"k{i % 5}")
                hits.append(None if hit is None else hit.value)
            return hits

    async def main() -> list[list[Any]]:
        return await asyncio.gather(*(request(f"user{n}") for n in range(10)))

    for n, hits in enumerate(asyncio.run(main())):
        assert hits == [f"user{n}"] * 50


def test_tasks_inherit_the_binding_and_cannot_change_the_parents() -> None:
    parent: dict[str, Any] = {}

    async def child() -> object:
        inherited = current_session()
        with bind({}):
            await asyncio.sleep(0)
        return inherited

    async def main() -> None:
        with bind(parent):
            assert await asyncio.create_task(child()) is parent
            assert current_session() is parent

    asyncio.run(main())
