"""Conformance checks of the optional atomic hooks (``tierkit_add``, ``_incr``, ``_touch``, ``_has``,
``_delete_many``): part of :class:`~tierkit.testing.TierConformance`.

A tier without one of these hooks has each of its checks skipped with the reason: the chain then
uses its documented fallback.  A tier that has a hook must keep its promise, atomicity included.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, ClassVar

import pytest

from tierkit._types import Entry
from tierkit.errors import NotACounter
from tierkit.testing._context import FakeClock
from tierkit.testing._expect import expect, expect_equal, expect_hit, expect_miss, fail
from tierkit.testing._threads import _run_threads


def hook(tier: Any, name: str) -> Any:
    """The tier's ``tierkit_<name>`` hook; the check is skipped when the tier has none."""
    method = getattr(tier, f"tierkit_{name}", None)
    if not callable(method):
        pytest.skip(f"tier has no tierkit_{name}: the chain uses its fallback (tierkit.hookspecs)")
    return method


def counter(tier: Any, value: int) -> Any:
    """A counter as the tier holds it: an ``int``, or its digits for a byte tier."""
    return b"%d" % value if tier.holds == "bytes" else value


class AtomicConformance:
    """The checks of the atomic hooks; :class:`~tierkit.testing.TierConformance` inherits them."""

    supports_ttl: ClassVar[bool] = True
    value: Any
    put: Any
    expect_value: Any

    def test_add_stores_only_when_absent(self, tier: Any, clock: FakeClock) -> None:
        add = hook(tier, "add")
        first = Entry(self.value(tier, 1), None, ("t",))
        added = add(key="k", entry=first)
        expect(added is True, "tierkit_add of an absent key", "True", added)
        added = add(key="k", entry=Entry(self.value(tier, 2), None))
        expect(added is False, "tierkit_add of a key holding a live entry", "False", added)
        self.expect_value(tier, "k", 1, "after two adds")
        if self.supports_ttl:
            add(key="short", entry=Entry(self.value(tier, 3), clock() + 5))
            clock.advance(5)
            again = add(key="short", entry=Entry(self.value(tier, 4), None))
            expect(again is True, "tierkit_add over an expired entry", "True (expired is absent)", again)
            self.expect_value(tier, "short", 4, "after an add over an expired entry")

    def test_add_has_one_winner_among_threads(self, tier: Any) -> None:
        add = hook(tier, "add")
        results: list[bool] = []
        start = threading.Barrier(8)

        def race(n: int) -> None:
            start.wait(30)
            results.append(add(key="contended", entry=Entry(self.value(tier, n), None)))

        _run_threads([functools.partial(race, n) for n in range(8)])
        expect(results.count(True) == 1, "8 threads adding one key", "exactly one True", results)

    def test_incr_counts_and_keeps_deadline_and_tags(self, tier: Any, clock: FakeClock) -> None:
        incr = hook(tier, "incr")
        expires_at = clock() + 100 if self.supports_ttl else None
        tier.tierkit_set(key="n", entry=Entry(counter(tier, 41), expires_at, ("counters",)))
        entry = expect_hit(incr(key="n", delta=1), "tierkit_incr(delta=1)")
        expect_equal(entry.value, counter(tier, 42), "the incremented value")
        expect_equal(entry.expires_at, expires_at, "the deadline after tierkit_incr")
        expect_equal(tuple(entry.tags), ("counters",), "the tags after tierkit_incr")
        expect_hit(incr(key="n", delta=-50), "tierkit_incr(delta=-50)")
        stored = expect_hit(tier.tierkit_get(key="n"), "get after two increments")
        expect_equal(stored.value, counter(tier, -8), "the stored counter")
        expect_miss(incr(key="absent", delta=1), "tierkit_incr of an absent key")
        tier.tierkit_set(key="text", entry=Entry(self.value(tier, 0), None))
        try:
            incr(key="text", delta=1)
        except NotACounter:
            pass
        else:
            fail("tierkit_incr of a value that is not an integer", "tierkit.NotACounter raised", "no error")

    def test_incr_is_exact_under_threads(self, tier: Any) -> None:
        incr = hook(tier, "incr")
        tier.tierkit_set(key="hits", entry=Entry(counter(tier, 0), None))

        def count() -> None:
            for _ in range(100):
                incr(key="hits", delta=1)

        _run_threads([count] * 4)
        stored = expect_hit(tier.tierkit_get(key="hits"), "the counter after 4 threads x 100 increments")
        expect_equal(stored.value, counter(tier, 400), "the counter after 4 threads x 100 increments")

    def test_touch_changes_only_the_deadline(self, tier: Any, clock: FakeClock) -> None:
        touch = hook(tier, "touch")
        if not self.supports_ttl:
            pytest.skip("tier does not support TTL (supports_ttl = False)")
        self.put(tier, "k", 7, expires_at=clock() + 5, tags=("t",))
        touched = touch(key="k", expires_at=clock() + 100)
        expect(touched is True, "tierkit_touch of a live key", "True", touched)
        clock.advance(50)
        entry = self.expect_value(tier, "k", 7, "50 s after a touch to 100 s (set for 5 s)")
        expect_equal(tuple(entry.tags), ("t",), "the tags after tierkit_touch")
        touched = touch(key="k", expires_at=None)
        expect(touched is True, "tierkit_touch to no expiry", "True", touched)
        entry = self.expect_value(tier, "k", 7, "after a touch to no expiry")
        expect_equal(entry.expires_at, None, "the deadline after a touch to no expiry")
        touched = touch(key="absent", expires_at=None)
        expect(touched is False, "tierkit_touch of an absent key", "False", touched)

    def test_has_tells_live_entries(self, tier: Any, clock: FakeClock) -> None:
        has = hook(tier, "has")
        tier.tierkit_set(key="none", entry=Entry(None if tier.holds == "objects" else b"null", None))
        held = has(key="none")
        expect(held is True, "tierkit_has of a cached None", "True", held)
        held = has(key="absent")
        expect(held is False, "tierkit_has of an absent key", "False", held)
        if self.supports_ttl:
            self.put(tier, "short", 1, expires_at=clock() + 5)
            clock.advance(5)
            held = has(key="short")
            expect(held is False, "tierkit_has of an expired entry", "False", held)

    def test_delete_many_counts_what_it_removed(self, tier: Any) -> None:
        delete_many = hook(tier, "delete_many")
        for key in ("a", "b", "c"):
            self.put(tier, key)
        removed = delete_many(keys=["a", "b", "absent"])
        what = "tierkit_delete_many of 2 held keys and 1 absent"
        expect(type(removed) is int and removed == 2, what, "2", removed)
        expect_miss(tier.tierkit_get(key="a"), "'a' after tierkit_delete_many")
        self.expect_value(tier, "c", 0, "'c', not named to tierkit_delete_many")
