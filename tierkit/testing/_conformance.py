"""The conformance suite: the behaviour every tier owes the chain, as pytest tests."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pluggy
import pytest

from tierkit import hookspecs
from tierkit._contract import check_tier_class
from tierkit._types import Entry, Parts, Payloads, TierHealth, room_maker
from tierkit.testing._atomic_conformance import AtomicConformance
from tierkit.testing._context import FakeClock
from tierkit.testing._expect import (
    expect,
    expect_entry,
    expect_equal,
    expect_hit,
    expect_keys,
    expect_miss,
    expect_tags,
    fail,
)
from tierkit.testing._threads import _THREAD_TIMEOUT, _join, _run_threads, _start_thread

_PIECE_SIZES = (1000, 3 << 20)
"""Payload sizes of the piece checks: a small one, and one a tier may store apart (the file tier's
value files start at 512 KiB)."""


def _pattern(size: int) -> bytes:
    """``size`` bytes that differ from their neighbours (a shifted or swapped piece shows)."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


OTHER_NAMESPACE = "conformance-other"
"""The namespace the suite passes to ``make_tier`` for a neighbour of the tier under test."""


class TierConformance(AtomicConformance):
    """The behaviour every tier owes the chain, as pytest tests.

    The checks of the optional atomic hooks (:mod:`tierkit.testing._atomic_conformance`)
    run for the hooks the tier has and are skipped, with the reason, for the others.

    Subclass it and provide a ``tier`` fixture that builds your tier with a
    context from :func:`make_context` using the ``clock`` fixture.  The other
    fixtures and the class flags switch on the checks that need more than one
    instance; each test that cannot apply is skipped with the reason.
    """

    supports_ttl: ClassVar[bool] = True
    """``False`` if the tier does not store expiry: the TTL tests are skipped."""
    supports_batch: ClassVar[bool] = True
    """``False`` if the tier has no ``tierkit_get_many`` / ``tierkit_set_many``."""
    persistent: ClassVar[bool] = False
    """``True`` if entries outlive the tier object; then provide ``reopen``."""
    shared: ClassVar[bool | None] = None
    """``True`` if two live instances over one storage must see each other's writes
    (then ``second_instance`` is used); ``None`` means the same as ``persistent``."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The tier's clock: build the tier with ``make_context(clock)``."""
        return FakeClock()

    @pytest.fixture
    def tier(self) -> Any:
        """The tier under test, freshly built and empty.  Required."""
        pytest.fail("a TierConformance subclass must provide a `tier` fixture")

    @pytest.fixture
    def reopen(self) -> Callable[[], Any]:
        """A callable returning a new instance over the same storage as ``tier`` (``persistent``)."""
        pytest.fail("a persistent tier's conformance class must provide a `reopen` fixture")

    @pytest.fixture
    def second_instance(self, request: pytest.FixtureRequest) -> Any:
        """Another live instance over ``tier``'s storage and namespace (``shared``).

        By default, for a persistent tier, ``reopen()``.
        """
        if not self.persistent:
            pytest.fail("a shared, non-persistent tier's conformance class must provide `second_instance`")
        reopen: Callable[[], Any] = request.getfixturevalue("reopen")
        return reopen()

    @pytest.fixture
    def make_tier(self) -> Callable[[str], Any]:
        """A callable ``make_tier(namespace)``: an instance over ``tier``'s storage and clock in
        ``namespace`` (the suite passes ``OTHER_NAMESPACE``).  Optional: without it the
        namespace checks are skipped."""
        pytest.skip(
            "no `make_tier` fixture: provide one, returning an instance of the tier for a given "
            "namespace over the same storage, to check that namespaces are kept apart"
        )

    @pytest.fixture
    def broken_tier(self) -> Any:
        """An instance whose backend is broken (server stopped, directory gone).  Optional:
        without it the check that health reports a broken backend is skipped."""
        pytest.skip(
            "no `broken_tier` fixture: provide one, returning an instance whose backend is "
            "unreachable, to check that health reports it instead of raising"
        )

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

    def expect_value(self, tier: Any, key: str, n: int, what: str) -> Entry:
        """Fail unless ``key`` is a hit holding ``value(tier, n)``."""
        entry = expect_hit(tier.tierkit_get(key=key), what)
        expect_equal(entry.value, self.value(tier, n), f"{what}: value")
        return entry

    def _skip_unless_ttl(self) -> None:
        if not self.supports_ttl:
            pytest.skip("tier does not support TTL (supports_ttl = False)")

    def _skip_unless_batch(self) -> None:
        if not self.supports_batch:
            pytest.skip("tier does not implement get_many/set_many (supports_batch = False)")

    # -- the class -------------------------------------------------------------

    def test_registers_with_pluggy_against_the_specs(self, tier: Any) -> None:
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        pm.register(tier, name="under-test")
        pm.check_pending()
        for hook in hookspecs.REQUIRED_HOOKS:
            impls = getattr(pm.hook, hook).get_hookimpls()
            expect(bool(impls), f"required hook {hook}", "an implementation", impls)

    def test_tier_class_passes_the_core_validator(self, tier: Any) -> None:
        """The one check tierkit runs on a tier class (``Cache()``, ``tierkit tiers``)."""
        problems = check_tier_class(type(tier))
        expect_equal(problems, [], f"problems tierkit finds in {type(tier).__qualname__}")

    # -- one entry -------------------------------------------------------------

    def test_miss_is_none(self, tier: Any) -> None:
        expect_miss(tier.tierkit_get(key="absent"), "get of a key never set")

    def test_set_then_get_returns_the_entry(self, tier: Any, clock: FakeClock) -> None:
        entry = self.put(tier, "k", 1, expires_at=clock() + 60, tags=("t1", "t2"))
        expect_entry(tier.tierkit_get(key="k"), entry, "get after set")

    def test_get_returns_an_entry_of_the_declared_types(self, tier: Any, clock: FakeClock) -> None:
        """An ``Entry``; ``bytes`` (not memoryview/bytearray) from a byte tier; tags a tuple of str."""
        self.put(tier, "k", 1, expires_at=clock() + 60, tags=("t",))
        got = expect_hit(tier.tierkit_get(key="k"), "get after set")
        if tier.holds == "bytes":
            expect(type(got.value) is bytes, "a byte tier's value", "bytes", got.value)
        expect(type(got.expires_at) in (float, int), "expires_at", "a float", got.expires_at)
        expect_tags(got.tags, ("t",), "get after set")

    def test_no_expiry_is_kept_as_none(self, tier: Any) -> None:
        self.put(tier, "forever", 2)
        got = expect_hit(tier.tierkit_get(key="forever"), "get of an entry set without expiry")
        expect_equal(got.expires_at, None, "expires_at of an entry set without expiry")

    def test_empty_and_falsy_values_are_hits(self, tier: Any) -> None:
        falsy = b"" if tier.holds == "bytes" else None
        tier.tierkit_set(key="falsy", entry=Entry(falsy, None, ()))
        got = expect_hit(tier.tierkit_get(key="falsy"), f"get of the value {falsy!r}")
        expect_equal(got.value, falsy, "a falsy value")

    def test_set_replaces(self, tier: Any) -> None:
        self.put(tier, "k", 1, tags=("old",))
        replacement = self.put(tier, "k", 2)
        expect_entry(tier.tierkit_get(key="k"), replacement, "get after a second set")
        removed = tier.tierkit_invalidate_tags(tags=["old"])
        expect_equal(removed, 0, "entries removed by invalidating a tag only the replaced entry had")
        self.expect_value(tier, "k", 2, "the replacement after invalidating the old entry's tag")

    def test_delete(self, tier: Any) -> None:
        self.put(tier, "k")
        expect_equal(tier.tierkit_delete(key="k"), True, "delete of a present key")
        expect_miss(tier.tierkit_get(key="k"), "get after delete")
        expect_equal(tier.tierkit_delete(key="k"), False, "delete of an absent key")

    def test_keys_are_opaque_strings(self, tier: Any) -> None:
        keys = ["ünïcode:ключ:鍵", "spaces and/slashes\\", "glob*chars?[x]", "x" * 1000, "%s{}\n\t"]
        for n, key in enumerate(keys):
            self.put(tier, key, n)
        for n, key in enumerate(keys):
            self.expect_value(tier, key, n, f"get of the key {key[:40]!r}")

    # -- expiry ----------------------------------------------------------------

    def test_ttl_expiry(self, tier: Any, clock: FakeClock) -> None:
        self._skip_unless_ttl()
        self.put(tier, "short", 1, expires_at=clock() + 10)
        self.put(tier, "long", 2, expires_at=clock() + 1000)
        clock.advance(11)
        expect_miss(tier.tierkit_get(key="short"), "get 1 s after expires_at")
        self.expect_value(tier, "long", 2, "get 989 s before expires_at")

    def test_expiry_is_exact_at_expires_at(self, tier: Any, clock: FakeClock) -> None:
        """Expired means ``expires_at <= clock()``: a hit just before, a miss at the instant."""
        self._skip_unless_ttl()
        deadline = clock() + 10
        self.put(tier, "k", 1, expires_at=deadline)
        clock.now = deadline - 0.5
        self.expect_value(tier, "k", 1, "get 0.5 s before expires_at")
        clock.now = deadline
        expect_miss(tier.tierkit_get(key="k"), "get at exactly expires_at (expired when expires_at <= now)")

    def test_an_entry_set_past_its_deadline_is_a_miss(self, tier: Any, clock: FakeClock) -> None:
        self._skip_unless_ttl()
        self.put(tier, "late", 1, expires_at=clock() - 1)
        self.put(tier, "now", 2, expires_at=clock())
        expect_miss(tier.tierkit_get(key="late"), "get of an entry set 1 s past its expires_at")
        expect_miss(tier.tierkit_get(key="now"), "get of an entry set at its expires_at")

    # -- invalidation ------------------------------------------------------------

    def test_invalidate_tags(self, tier: Any) -> None:
        self.put(tier, "a", 1, tags=("x",))
        self.put(tier, "b", 2, tags=("y",))
        self.put(tier, "c", 3, tags=("x", "y"))
        self.put(tier, "d", 4)
        expect_equal(tier.tierkit_invalidate_tags(tags=["x"]), 2, "entries removed by invalidating tag 'x'")
        expect_miss(tier.tierkit_get(key="a"), "entry 'a' tagged x, after invalidating x")
        expect_miss(tier.tierkit_get(key="c"), "entry 'c' tagged x and y, after invalidating x")
        self.expect_value(tier, "b", 2, "entry 'b' tagged y only, after invalidating x")
        self.expect_value(tier, "d", 4, "untagged entry 'd', after invalidating x")
        removed = tier.tierkit_invalidate_tags(tags=["nothing-has-this"])
        expect_equal(removed, 0, "entries removed by invalidating a tag nothing has")

    def test_invalidating_several_tags_counts_entries_once(self, tier: Any) -> None:
        self.put(tier, "both", 1, tags=("x", "y"))
        self.put(tier, "x-only", 2, tags=("x",))
        removed = tier.tierkit_invalidate_tags(tags=["x", "y"])
        expect_equal(removed, 2, "entries removed by invalidating ['x', 'y'] (two entries, one has both)")

    def test_invalidation_leaves_no_stale_tag_index(self, tier: Any) -> None:
        """A key removed by invalidation, delete or clear and set again without its old tag
        must not be found through the old tag."""
        self.put(tier, "cleared", 1, tags=("z",))
        tier.tierkit_clear()
        self.put(tier, "cleared", 7)
        self.put(tier, "invalidated", 2, tags=("x", "y"))
        self.put(tier, "deleted", 3, tags=("x", "y"))
        expect_equal(tier.tierkit_invalidate_tags(tags=["x"]), 2, "entries removed by invalidating 'x'")
        self.put(tier, "invalidated", 4)
        self.put(tier, "deleted", 5, tags=("y",))
        expect_equal(tier.tierkit_delete(key="deleted"), True, "delete of a present key")
        self.put(tier, "deleted", 6)
        for tag in ("x", "y", "z"):
            removed = tier.tierkit_invalidate_tags(tags=[tag])
            expect_equal(removed, 0, f"entries removed by invalidating {tag!r}, which no live entry has")
        self.expect_value(
            tier, "invalidated", 4, "a key set again without tags after its tag was invalidated"
        )
        self.expect_value(tier, "deleted", 6, "a key set again without tags after it was deleted")
        self.expect_value(tier, "cleared", 7, "a key set again without tags after clear()")

    def test_invalidate_prefix(self, tier: Any) -> None:
        for key in ("user:1", "user:2", "users", "other", "*user:", "user"):
            self.put(tier, key)
        expect_equal(tier.tierkit_invalidate_prefix(prefix="user:"), 2, "keys removed by prefix 'user:'")
        expect_miss(tier.tierkit_get(key="user:1"), "'user:1' after invalidating prefix 'user:'")
        expect_miss(tier.tierkit_get(key="user:2"), "'user:2' after invalidating prefix 'user:'")
        for key in ("users", "other", "*user:", "user"):
            self.expect_value(tier, key, 0, f"{key!r} after invalidating prefix 'user:'")

    def test_invalidate_prefix_treats_glob_characters_literally(self, tier: Any) -> None:
        for key in ("a*[b]?:1", "a*[b]?:2", "aX[b]?:3", "ab:4"):
            self.put(tier, key)
        removed = tier.tierkit_invalidate_prefix(prefix="a*[b]?:")
        expect_equal(removed, 2, "keys removed by prefix 'a*[b]?:'")
        self.expect_value(tier, "aX[b]?:3", 0, "'aX[b]?:3' after invalidating prefix 'a*[b]?:'")
        self.expect_value(tier, "ab:4", 0, "'ab:4' after invalidating prefix 'a*[b]?:'")

    def test_clear(self, tier: Any) -> None:
        for n in range(5):
            self.put(tier, f"k{n}", n, tags=("t",))
        tier.tierkit_clear()
        for n in range(5):
            expect_miss(tier.tierkit_get(key=f"k{n}"), f"'k{n}' after clear()")
        expect_equal(tier.tierkit_invalidate_tags(tags=["t"]), 0, "entries removed by a tag after clear()")

    # -- batches -------------------------------------------------------------------

    def test_batch_operations(self, tier: Any, clock: FakeClock) -> None:
        self._skip_unless_batch()
        entries = {f"b{n}": Entry(self.value(tier, n), clock() + 60, ("batch",)) for n in range(20)}
        tier.tierkit_set_many(entries=entries)
        found = tier.tierkit_get_many(keys=[*entries, "absent"])
        expect_keys(found, set(entries), "get_many of the 20 keys set and one absent key")
        for key, entry in entries.items():
            expect_entry(found[key], entry, f"get_many()[{key!r}]")
        removed = tier.tierkit_invalidate_tags(tags=["batch"])
        expect_equal(removed, 20, "entries removed by the tag of a set_many batch")

    def test_get_many_skips_expired_entries(self, tier: Any, clock: FakeClock) -> None:
        self._skip_unless_ttl()
        self._skip_unless_batch()
        start = clock()
        self.put(tier, "past", 1, expires_at=start + 10)
        self.put(tier, "at-deadline", 2, expires_at=start + 20)
        self.put(tier, "live", 3, expires_at=start + 30)
        self.put(tier, "forever", 4)
        clock.now = start + 20
        found = tier.tierkit_get_many(keys=["past", "at-deadline", "live", "forever", "absent"])
        expect_keys(found, {"live", "forever"}, "get_many at the deadline of 'at-deadline'")
        expect_entry(found["live"], Entry(self.value(tier, 3), start + 30, ()), "get_many()['live']")

    def test_get_many_payloads_answers_as_get_many(self, tier: Any, clock: FakeClock) -> None:
        """The column-by-column batch read (optional) says what ``get_many`` says, tags and deadlines too."""
        read = getattr(tier, "tierkit_get_many_payloads", None)
        if read is None:
            pytest.skip("tier has no tierkit_get_many_payloads (the chain reads batches with get_many)")
        start = clock()
        self.put(tier, "plain", 1)
        self.put(tier, "tagged", 2, tags=("a", "b"))
        keys = ["plain", "tagged", "absent"]
        if self.supports_ttl:
            self.put(tier, "live", 3, expires_at=start + 60, tags=("a",))
            self.put(tier, "expired", 4, expires_at=start + 10)
            keys += ["live", "expired"]
            clock.now = start + 10
        answer = read(keys=keys)
        expect(type(answer) is Payloads, "get_many_payloads()", "a tierkit.Payloads", answer)
        for column in ("keys", "payloads", "expires_at"):
            got = getattr(answer, column)
            expect(type(got) is list, f"get_many_payloads().{column}", "a list", got)
            expect_equal(len(got), len(answer.keys), f"len(get_many_payloads().{column})")
        expected = (
            tier.tierkit_get_many(keys=keys)
            if hasattr(tier, "tierkit_get_many")
            else {key: entry for key in keys if (entry := tier.tierkit_get(key=key)) is not None}
        )
        expect_keys(dict.fromkeys(answer.keys), set(expected), "get_many_payloads().keys")
        expect_equal(len(answer.keys), len(set(answer.keys)), "number of keys (each key once)")
        for key, payload, deadline in zip(answer.keys, answer.payloads, answer.expires_at, strict=True):
            tags = answer.tags.get(key, ())
            what = f"get_many_payloads() for {key!r}"
            expect_tags(tags, tuple(expected[key].tags), what)
            expect_entry(Entry(payload, deadline, tags), expected[key], what)

    # -- making room before a batch (optional) -----------------------------------

    def test_make_room_keeps_the_batch_that_follows(self, tier: Any, clock: FakeClock) -> None:
        """``make_room(count)`` (optional) raises nothing, and the ``count`` entries stored next are kept."""
        make_room = room_maker(tier)
        if make_room is None:
            pytest.skip("tier does not make room (no Tier.make_room of its own: the chain does not ask)")
        for n in range(3):
            self.put(tier, f"before{n}", n)
        make_room(0)
        for n in range(3):
            self.expect_value(tier, f"before{n}", n, f"'before{n}' after make_room(0)")
        make_room(3)
        batch = {f"after{n}": Entry(self.value(tier, n), None, ()) for n in range(3)}
        if self.supports_batch:
            tier.tierkit_set_many(entries=batch)
        else:
            for key, entry in batch.items():
                tier.tierkit_set(key=key, entry=entry)
        for n in range(3):
            self.expect_value(tier, f"after{n}", n, f"'after{n}', stored after make_room(3)")

    # -- large payloads in pieces (optional) -------------------------------------

    def test_set_parts_stores_what_set_would(self, tier: Any, clock: FakeClock) -> None:
        """``tierkit_set_parts`` (optional) stores the pieces joined, and keeps no view of them."""
        write = getattr(tier, "tierkit_set_parts", None)
        if write is None:
            pytest.skip("tier has no tierkit_set_parts (the chain writes with tierkit_set)")
        deadline = clock() + 60 if self.supports_ttl else None
        for size in _PIECE_SIZES:
            body = bytearray(_pattern(size))
            payload = b"\x00head" + bytes(body) + b"tail"
            write(
                key=f"parts-{size}",
                entry=Entry(Parts([b"\x00head", memoryview(body), b"tail"]), deadline, ("t",)),
            )
            body[:] = bytes(size)  # the caller's memory changes after the call: the tier must not care
            expect_entry(
                tier.tierkit_get(key=f"parts-{size}"),
                Entry(payload, deadline, ("t",)),
                f"get after set_parts of {size + 9} bytes",
            )

    def test_get_buffer_answers_as_get(self, tier: Any, clock: FakeClock) -> None:
        """``tierkit_get_buffer`` (optional) says what ``tierkit_get`` says, in memory it hands over."""
        read = getattr(tier, "tierkit_get_buffer", None)
        if read is None:
            pytest.skip("tier has no tierkit_get_buffer (the chain reads with tierkit_get)")
        deadline = clock() + 60 if self.supports_ttl else None
        keys = [f"buffer-{size}" for size in _PIECE_SIZES]
        for key, size in zip(keys, _PIECE_SIZES, strict=True):
            tier.tierkit_set(key=key, entry=Entry(_pattern(size), deadline, ("t",)))
        for key in [*keys, "absent"]:
            expected = tier.tierkit_get(key=key)
            got = read(key=key)
            if expected is None:
                expect_miss(got, f"get_buffer({key!r}) where get misses")
                continue
            entry = expect_hit(got, f"get_buffer({key!r})")
            value = entry.value
            what = f"get_buffer({key!r}).value"
            expect(
                type(value) in (bytes, bytearray, memoryview), what, "bytes, bytearray or memoryview", value
            )
            expect_entry(Entry(bytes(value), entry.expires_at, entry.tags), expected, f"get_buffer({key!r})")
            if type(value) is not bytes and not getattr(value, "readonly", False) and len(value):
                value[0] ^= 0xFF  # the codec may write into what it was handed
                again = read(key=key)
                expect(again.value is not value, what, "new memory on every call", again.value)
                expect_equal(
                    bytes(again.value), expected.value, f"{what} after the last answer was written to"
                )

    # -- namespaces (make_tier) --------------------------------------------------

    def test_clear_leaves_other_namespaces_alone(self, tier: Any, make_tier: Callable[[str], Any]) -> None:
        other = make_tier(OTHER_NAMESPACE)
        neighbour = self.put(other, "k", 1, tags=("t",))
        self.put(tier, "k", 2, tags=("t",))
        tier.tierkit_clear()
        expect_miss(tier.tierkit_get(key="k"), "get after clear()")
        expect_entry(other.tierkit_get(key="k"), neighbour, "the other namespace's entry after clear()")
        removed = other.tierkit_invalidate_tags(tags=["t"])
        expect_equal(removed, 1, "entries the other namespace removes by its tag after clear() of this one")

    def test_namespaces_do_not_see_each_other(self, tier: Any, make_tier: Callable[[str], Any]) -> None:
        other = make_tier(OTHER_NAMESPACE)
        self.put(other, "k", 1, tags=("t",))
        self.put(other, "p:1", 2)
        expect_miss(tier.tierkit_get(key="k"), "get of a key set only in another namespace")
        if self.supports_batch:
            expect_keys(tier.tierkit_get_many(keys=["k"]), set(), "get_many of a key set only elsewhere")
        expect_equal(tier.tierkit_delete(key="k"), False, "delete of a key set only in another namespace")
        removed = tier.tierkit_invalidate_tags(tags=["t"])
        expect_equal(removed, 0, "entries removed by a tag used only in another namespace")
        removed = tier.tierkit_invalidate_prefix(prefix="p:")
        expect_equal(removed, 0, "entries removed by a prefix matching only another namespace's keys")
        self.expect_value(other, "k", 1, "the other namespace's entry after delete/invalidate here")
        self.expect_value(other, "p:1", 2, "the other namespace's entry after invalidate_prefix here")

    # -- more than one instance over one storage -----------------------------------

    def test_entries_survive_reopening(self, tier: Any, request: pytest.FixtureRequest) -> None:
        if not self.persistent:
            pytest.skip("tier is not persistent")
        reopen: Callable[[], Any] = request.getfixturevalue("reopen")
        entry = self.put(tier, "kept", 7, tags=("t",))
        expect_entry(reopen().tierkit_get(key="kept"), entry, "get through a reopened instance")

    def test_tag_index_survives_reopening(self, tier: Any, request: pytest.FixtureRequest) -> None:
        if not self.persistent:
            pytest.skip("tier is not persistent")
        reopen: Callable[[], Any] = request.getfixturevalue("reopen")
        self.put(tier, "tagged", 1, tags=("drop", "keep"))
        self.put(tier, "kept", 2, tags=("keep",))
        self.put(tier, "plain", 3)
        fresh = reopen()
        removed = fresh.tierkit_invalidate_tags(tags=["drop"])
        expect_equal(removed, 1, "entries a reopened instance removes by a tag set before it opened")
        expect_miss(fresh.tierkit_get(key="tagged"), "the invalidated entry, through the reopened instance")
        self.expect_value(fresh, "kept", 2, "an entry without the invalidated tag")
        self.expect_value(fresh, "plain", 3, "an untagged entry")

    def test_instances_over_one_storage_see_each_others_writes(
        self, tier: Any, request: pytest.FixtureRequest
    ) -> None:
        if not (self.persistent if self.shared is None else self.shared):
            pytest.skip("tier does not share storage between instances (shared = False)")
        other: Any = request.getfixturevalue("second_instance")
        self.put(tier, "k", 1)
        self.expect_value(other, "k", 1, "instance B's read of what instance A wrote")
        self.expect_value(tier, "k", 1, "instance A's read of what it wrote")
        self.put(other, "k", 2)
        self.expect_value(tier, "k", 2, "instance A's read after instance B replaced the entry")
        expect_equal(other.tierkit_delete(key="k"), True, "instance B's delete of A's entry")
        expect_miss(tier.tierkit_get(key="k"), "instance A's read after instance B deleted the entry")
        self.put(tier, "tagged", 3, tags=("t",))
        self.put(tier, "p:1", 4)
        self.put(tier, "plain", 5)
        for key, n in (("tagged", 3), ("p:1", 4), ("plain", 5)):
            self.expect_value(tier, key, n, "instance A's read of what it wrote")
        expect_equal(other.tierkit_invalidate_tags(tags=["t"]), 1, "instance B's invalidation of A's tag")
        expect_miss(tier.tierkit_get(key="tagged"), "instance A's read after B invalidated its tag")
        expect_equal(other.tierkit_invalidate_prefix(prefix="p:"), 1, "instance B's invalidation of A's key")
        expect_miss(tier.tierkit_get(key="p:1"), "instance A's read after B invalidated the prefix")
        other.tierkit_clear()
        expect_miss(tier.tierkit_get(key="plain"), "instance A's read after instance B's clear()")

    # -- health and stats ------------------------------------------------------------

    def test_health_and_stats(self, tier: Any) -> None:
        health = tier.tierkit_health()
        expect(isinstance(health, TierHealth), "tierkit_health()", "a tierkit.TierHealth", health)
        statuses = ("ok", "degraded", "down", "skipped")
        expect(health.status in statuses, "tierkit_health().status", " or ".join(statuses), health.status)
        stats = tier.tierkit_stats()
        expect(
            hasattr(stats, "keys") and hasattr(stats, "__getitem__"), "tierkit_stats()", "a mapping", stats
        )
        expect(all(type(name) is str for name in stats), "tierkit_stats() keys", "str", list(stats))

    def test_health_answers_when_the_backend_is_broken(self, broken_tier: Any) -> None:
        try:
            health = broken_tier.tierkit_health()
        except Exception as exc:
            fail("tierkit_health() of a broken backend", "a TierHealth, never an exception", exc)
        expect(isinstance(health, TierHealth), "tierkit_health()", "a tierkit.TierHealth", health)
        expect(
            health.status in ("down", "degraded"),
            "tierkit_health().status of a broken backend",
            "'down' or 'degraded'",
            health.status,
        )
        expect(bool(health.reason), "tierkit_health().reason of a broken backend", "a reason", health.reason)

    # -- threads ---------------------------------------------------------------------

    def test_threads_do_not_corrupt_entries(self, tier: Any) -> None:
        values = [self.value(tier, m) for m in range(50)]

        def work(worker: int) -> None:
            for n in range(50):
                key = f"w{worker}:{n % 5}"
                self.put(tier, key, n, tags=(f"w{worker}",))
                got = tier.tierkit_get(key=key)
                expect(got is None or got.value in values, f"get of {key!r}", "a value some thread set", got)

        _run_threads([functools.partial(work, w) for w in range(8)])

    def test_invalidation_while_threads_write(self, tier: Any) -> None:
        """Invalidating a tag while other threads write removes exactly the entries that carry
        it: an entry just rewritten without the tag stays, an entry just tagged stays indexed.

        The writers go on past their rounds until several invalidations have run while they
        write (or a minute has passed): how the threads are scheduled must not decide whether
        an unsafe tier is caught."""
        writers, rounds, overlapping = 4, 60, 5
        writing = threading.Event()
        writing.set()
        invalidations = [0]
        deadline = time.monotonic() + _THREAD_TIMEOUT / 2

        def write(worker: int) -> None:
            n = 0
            while n < rounds or (invalidations[0] < overlapping and time.monotonic() < deadline):
                i = n % rounds  # past the rounds, the same keys again: a bounded tier holds them all
                self.put(tier, f"spared{worker}:{i}", i, tags=("t",))
                self.put(tier, f"doomed{worker}:{i}", i, tags=("t",))
                self.put(tier, f"spared{worker}:{i}", i)
                n += 1

        def invalidate() -> None:
            while writing.is_set():
                tier.tierkit_invalidate_tags(tags=["t"])
                invalidations[0] += 1
                time.sleep(0)

        invalidator = _start_thread(invalidate)
        try:
            _run_threads([functools.partial(write, w) for w in range(writers)])
        finally:
            writing.clear()
            _join([invalidator])
        tier.tierkit_invalidate_tags(tags=["t"])
        for worker in range(writers):
            for n in range(rounds):
                what = "while 't' was being invalidated, then 't' invalidated once more"
                spared, doomed = f"spared{worker}:{n}", f"doomed{worker}:{n}"
                self.expect_value(tier, spared, n, f"{spared!r}, set with tag 't' then without it {what}")
                expect_miss(tier.tierkit_get(key=doomed), f"{doomed!r}, set with tag 't' {what}")
