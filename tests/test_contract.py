"""The tier contract, enforced at the boundary: a tier that breaks it fails alone, never the caller."""

from __future__ import annotations

import array
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from tierkit import MISSING, Cache, Entry, Payloads, TierHealth, hookimpl
from tierkit.testing import FakeClock

from ._tiers import KINDS, DictTier


class Misbehaving(DictTier):
    """A dict tier whose hooks answer ``answers[hook]`` instead of what the contract says."""

    answers: ClassVar[dict[str, Any]] = {}

    @hookimpl
    def tierkit_get(self, key: str) -> Entry | None:
        return self.answers.get("get", super().tierkit_get(key))

    @hookimpl
    def tierkit_get_many(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        return self.answers.get("get_many", super().tierkit_get_many(keys))

    @hookimpl
    def tierkit_delete(self, key: str) -> bool:
        return self.answers.get("delete", super().tierkit_delete(key))

    @hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        return self.answers.get("invalidate_tags", super().tierkit_invalidate_tags(tags))

    @hookimpl
    def tierkit_invalidate_prefix(self, prefix: str) -> int:
        return self.answers.get("invalidate_prefix", super().tierkit_invalidate_prefix(prefix))

    @hookimpl
    def tierkit_health(self) -> TierHealth:
        return self.answers.get("health", TierHealth("ok"))

    @hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        return self.answers.get("stats", {"entries": len(self.data)})


class MisbehavingBytes(Misbehaving):
    holds: ClassVar[Any] = "bytes"


class MisbehavingPayloads(MisbehavingBytes):
    """A byte tier that also answers batches column by column (``tierkit_get_many_payloads``)."""

    asked: ClassVar[list[str]] = []

    @hookimpl
    def tierkit_get_many_payloads(self, keys: Sequence[str]) -> Payloads:
        self.asked.append("get_many_payloads")
        if "get_many_payloads" in self.answers:
            return self.answers["get_many_payloads"]  # type: ignore[no-any-return]
        found = super().tierkit_get_many(keys)
        tags = {key: entry.tags for key, entry in found.items() if entry.tags}
        return Payloads(
            list(found), [e.value for e in found.values()], [e.expires_at for e in found.values()], tags
        )

    @hookimpl
    async def tierkit_aget_many_payloads(self, keys: Sequence[str]) -> Payloads:
        return self.tierkit_get_many_payloads(keys)


class MisbehavingBuffer(MisbehavingBytes):
    """A byte tier that hands its payloads over (``tierkit_get_buffer``), in a new bytearray."""

    @hookimpl
    def tierkit_get_buffer(self, key: str) -> Entry | None:
        entry = DictTier.tierkit_get(self, key)
        handed = None if entry is None else entry._replace(value=bytearray(entry.value))
        return self.answers.get("get_buffer", handed)


@pytest.fixture(autouse=True)
def fresh() -> None:
    DictTier.stores.clear()
    Misbehaving.answers = {}
    MisbehavingPayloads.asked = []


class StrKey(str):
    """A key equal to a ``str`` the chain asked for, but not a ``str``."""


def chain(clock: FakeClock, bad: type = Misbehaving) -> Cache:
    """memory → bad → good: what the bad tier breaks, the good one below must still serve."""
    kinds = {**KINDS, "bad": bad}
    tiers = {"bad": {"kind": "bad", "breaker": {"threshold": 1000}}, "good": {"kind": "dict"}}
    return Cache(order=["memory", "bad", "good"], tiers=tiers, clock=clock, kinds=kinds)


@pytest.mark.parametrize(
    "answer",
    [("v", None), "hello", ["hello", None, ()], {"value": 1}, 42],
    ids=["2-tuple", "bare str", "list", "dict", "int"],
)
def test_a_get_of_the_wrong_type_is_a_failure_of_that_tier(clock: FakeClock, answer: Any) -> None:
    cache = chain(clock)
    cache.set("k", "from good")
    cache.clear(tiers=["memory"])
    Misbehaving.answers["get"] = answer
    assert cache.get("k") == "from good"
    bad = cache.stats()["tiers"]["bad"]
    assert (bad["hits"], bad["errors"], bad["contract_errors"]) == (0, 1, 1)


def test_the_violation_is_logged_once_with_the_tier_and_what_was_expected(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = chain(clock)
    Misbehaving.answers["get"] = "hello"
    with caplog.at_level(logging.ERROR, logger="tierkit"):
        for _ in range(5):
            cache.clear(tiers=["memory"])
            assert cache.get("k", MISSING) is MISSING
    messages = [r.getMessage() for r in caplog.records if "contract" in r.getMessage()]
    assert messages == [
        "tier 'bad' (kind 'bad') broke the tier contract: tierkit_get returned builtins.str, "
        "expected Entry or None; treated as a failure of the tier"
    ]


def test_a_byte_tier_must_return_bytes(clock: FakeClock) -> None:
    cache = chain(clock, MisbehavingBytes)
    cache.set("k", {"v": 1})
    cache.clear(tiers=["memory"])
    Misbehaving.answers["get"] = Entry(memoryview(b'{"v":1}'), None, ())
    Misbehaving.answers["get_many"] = {"k": Entry(memoryview(b'{"v":1}'), None, ())}
    assert cache.get("k") == {"v": 1}  # from the good tier below
    cache.clear(tiers=["memory"])
    assert cache.get_many(["k"]) == {"k": {"v": 1}}
    assert cache.stats()["tiers"]["bad"]["contract_errors"] == 2


def test_a_get_reads_a_byte_tier_through_get_buffer_when_it_can(clock: FakeClock) -> None:
    cache = chain(clock, MisbehavingBuffer)
    cache.set("k", {"v": 1})
    cache.clear(tiers=["memory"])
    Misbehaving.answers["get"] = "never asked"  # Cache.get asks tierkit_get_buffer instead
    assert cache.get("k") == {"v": 1}
    bad = cache.stats()["tiers"]["bad"]
    assert (bad["hits"], bad["contract_errors"]) == (1, 0)


@pytest.mark.parametrize(
    "answer",
    ["hello", Entry("{}", None, ()), Entry(array.array("b", b"{}"), None, ())],
    ids=["bare str", "str payload", "array payload"],
)
def test_a_get_buffer_of_the_wrong_type_is_a_failure_of_that_tier(
    clock: FakeClock, answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = chain(clock, MisbehavingBuffer)
    cache.set("k", "from good")
    cache.clear(tiers=["memory"])
    Misbehaving.answers["get_buffer"] = answer
    with caplog.at_level(logging.ERROR, logger="tierkit"):
        assert cache.get("k") == "from good"
    bad = cache.stats()["tiers"]["bad"]
    assert (bad["hits"], bad["errors"], bad["contract_errors"]) == (0, 1, 1)
    assert "tierkit_get_buffer returned" in caplog.text


@pytest.mark.parametrize("answer", [["k"], None, {"k": ("v", None, ())}, {"k": "v"}])
def test_a_get_many_of_the_wrong_type_is_a_failure_of_that_tier(clock: FakeClock, answer: Any) -> None:
    cache = chain(clock)
    cache.set_many({"k": "from good", "j": 2})
    cache.clear(tiers=["memory"])
    Misbehaving.answers["get_many"] = answer
    assert cache.get_many(["k", "j"]) == {"k": "from good", "j": 2}
    assert cache.stats()["tiers"]["bad"]["contract_errors"] == 1


def test_get_many_ignores_keys_nobody_asked_for(clock: FakeClock) -> None:
    cache = chain(clock)
    cache.set("k", 1)
    cache.clear(tiers=["memory"])
    Misbehaving.answers["get_many"] = {"other": Entry("smuggled", None, ())}
    assert cache.get_many(["k"]) == {"k": 1}


def test_get_many_reads_a_byte_tier_column_by_column_when_it_can(clock: FakeClock) -> None:
    cache = chain(clock, MisbehavingPayloads)
    cache.set_many({"k": {"v": 1}, "j": [2]}, ttl=60, tags=["t"])
    cache.clear(tiers=["memory"])
    assert cache.get_many(["k", "j", "absent"]) == {"k": {"v": 1}, "j": [2]}
    assert MisbehavingPayloads.asked == ["get_many_payloads"]
    bad = cache.stats()["tiers"]["bad"]
    assert (bad["hits"], bad["misses"], bad["errors"]) == (2, 1, 0)
    memory = cache.inspect("k")["memory"]  # copied up with its deadline and tags
    assert (memory.status, memory.ttl, memory.tags) == ("held", 60.0, ("t",))
    assert cache.invalidate(tags=["t"]) == 6  # two keys in each of the three tiers


@pytest.mark.parametrize(
    "answer",
    [
        {"k": Entry(b'"bad"', None, ())},
        (["k"], [b'"bad"'], [None]),
        Payloads(("k",), [b'"bad"'], [None]),  # type: ignore[arg-type]
        Payloads(["k"], [b'"bad"'], []),
        Payloads(["k"], ['"bad"'], [None]),  # type: ignore[list-item]
        Payloads(["k"], [memoryview(b'"bad"')], [None]),  # type: ignore[list-item]
        Payloads(["k"], [b'"bad"'], ["soon"]),  # type: ignore[list-item]
        Payloads([1], [b'"bad"'], [None]),  # type: ignore[list-item]
        Payloads([StrKey("k"), StrKey("j")], [b'"bad"', b"2"], [None, None]),
        Payloads(["k"], [b'"bad"'], [None], {"k": ["t"]}),  # type: ignore[dict-item]
        Payloads(["k"], [b'"bad"'], [None], ["k"]),  # type: ignore[arg-type]
        None,
    ],
    ids=[
        "a mapping",
        "a plain tuple",
        "keys as a tuple",
        "unequal lists",
        "a str payload",
        "a memoryview payload",
        "a str deadline",
        "an int key",
        "str-subclass keys, equal to the asked ones",
        "tags as a list",
        "tags not a mapping",
        "None",
    ],
)
def test_a_get_many_payloads_of_the_wrong_shape_is_a_failure_of_that_tier(
    clock: FakeClock, answer: Any
) -> None:
    cache = chain(clock, MisbehavingPayloads)
    cache.set_many({"k": "from good", "j": 2})
    cache.clear(tiers=["memory"])
    Misbehaving.answers["get_many_payloads"] = answer
    assert cache.get_many(["k", "j"]) == {"k": "from good", "j": 2}
    bad = cache.stats()["tiers"]["bad"]
    assert (bad["hits"], bad["contract_errors"]) == (0, 1)


def test_get_many_payloads_ignores_keys_nobody_asked_for_and_repeats(clock: FakeClock) -> None:
    cache = chain(clock, MisbehavingPayloads)
    cache.set("k", 1)
    cache.clear(tiers=["memory"])
    answer = Payloads(["other", "k", "k"], [b'"smuggled"', b"1", b"2"], [None, None, None])
    Misbehaving.answers["get_many_payloads"] = answer
    assert cache.get_many(["k"]) == {"k": 1}
    bad = cache.stats()["tiers"]["bad"]
    assert (bad["hits"], bad["contract_errors"]) == (1, 0)


def test_get_many_payloads_may_answer_equal_keys_that_are_other_objects(clock: FakeClock) -> None:
    cache = chain(clock, MisbehavingPayloads)
    cache.set_many({"k": 1, "j": 2})
    cache.clear(tiers=["memory"])
    keys = ["".join(key) for key in ("k", "j")]  # equal to the asked keys, not the same objects
    Misbehaving.answers["get_many_payloads"] = Payloads(keys, [b"1", b"2"], [None, None])
    assert cache.get_many(["k", "j"]) == {"k": 1, "j": 2}
    bad = cache.stats()["tiers"]["bad"]
    assert (bad["hits"], bad["contract_errors"]) == (2, 0)


def test_get_many_payloads_cannot_smuggle_keys_into_the_list_it_was_handed(clock: FakeClock) -> None:
    class Rewriting(MisbehavingPayloads):
        @hookimpl
        def tierkit_get_many_payloads(self, keys: Sequence[str]) -> Payloads:
            assert isinstance(keys, list)
            keys[0] = "other"
            return Payloads(keys, [b'"smuggled"', b"2"], [None, None])

    cache = chain(clock, Rewriting)
    cache.set_many({"k": 1, "j": 2})
    cache.clear(tiers=["memory"])
    assert cache.get_many(["k", "j"]) == {"k": 1, "j": 2}
    assert cache.stats()["tiers"]["bad"]["hits"] == 1


def test_a_corrupt_payload_in_a_batch_costs_only_its_own_key(clock: FakeClock) -> None:
    cache = chain(clock, MisbehavingPayloads)
    cache.set_many({f"k{n}": n for n in range(5)})
    cache.clear(tiers=["memory"])
    bad_store = DictTier.stores["bad"]
    bad_store["k2"] = bad_store["k2"]._replace(value=b"{not json")
    assert cache.get_many([f"k{n}" for n in range(5)]) == {f"k{n}": n for n in range(5)}
    bad = cache.stats()["tiers"]["bad"]
    assert (bad["hits"], bad["corrupt"]) == (4, 1)
    assert bad_store["k2"].value == b"2"  # removed, then served from the good tier below and copied up


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aget_many_reads_column_by_column_and_enforces_the_contract(clock: FakeClock) -> None:
    cache = chain(clock, MisbehavingPayloads)
    cache.set_many({"k": "v", "j": 2}, ttl=60)
    cache.clear(tiers=["memory"])
    assert await cache.aget_many(["k", "j"]) == {"k": "v", "j": 2}
    assert MisbehavingPayloads.asked == ["get_many_payloads"]
    assert cache.stats()["tiers"]["bad"]["hits"] == 2
    cache.clear(tiers=["memory"])
    Misbehaving.answers["get_many_payloads"] = Payloads(["k"], [b'"bad"'], [])
    assert await cache.aget_many(["k", "j"]) == {"k": "v", "j": 2}  # from the good tier below
    assert cache.stats()["tiers"]["bad"]["contract_errors"] == 1


def test_removal_hooks_of_the_wrong_type_do_not_reach_the_caller(clock: FakeClock) -> None:
    cache = chain(clock)
    cache.set("recipes:1", 1, tags=["recipes"])
    Misbehaving.answers.update(invalidate_tags=None, invalidate_prefix="two", delete=None)
    assert cache.invalidate(tags=["recipes"]) == 2  # memory and good; bad's None counts nothing
    cache.set("recipes:1", 1)
    assert cache.invalidate(prefix="recipes:") == 2
    cache.set("k", 1)
    assert cache.delete("k") is True
    assert cache.stats()["tiers"]["bad"]["contract_errors"] == 3


@pytest.mark.parametrize("answer", ["ok", None, TierHealth("fine")], ids=["str", "None", "unknown status"])
def test_a_malformed_health_answer_reports_the_tier_down(clock: FakeClock, answer: Any) -> None:
    Misbehaving.answers["health"] = answer
    report = chain(clock).health()
    assert report.status == "down"
    assert report.tiers["bad"].status == "down"
    assert "not a TierHealth (a bug in the tier)" in report.tiers["bad"].reason
    assert report.tiers["good"].status == "ok"


def test_health_and_stats_that_raise_do_not_reach_the_caller(clock: FakeClock) -> None:
    class Raising(Misbehaving):
        @hookimpl
        def tierkit_health(self) -> TierHealth:
            raise RuntimeError("backend gone")

        @hookimpl
        def tierkit_stats(self) -> Mapping[str, Any]:
            raise RuntimeError("backend gone")

    cache = chain(clock, Raising)
    assert cache.health().tiers["bad"].reason == "health check failed: RuntimeError: backend gone"
    assert cache.stats()["tiers"]["bad"]["errors"] == 2


def test_stats_of_the_wrong_type_are_left_out(clock: FakeClock) -> None:
    Misbehaving.answers["stats"] = ["entries", 3]
    figures = chain(clock).stats()["tiers"]["bad"]
    assert figures["contract_errors"] == 1 and "entries" not in figures


def test_repeated_violations_open_the_breaker(clock: FakeClock) -> None:
    kinds = {**KINDS, "bad": Misbehaving}
    tiers = {"bad": {"kind": "bad", "breaker": {"threshold": 3}}, "good": {"kind": "dict"}}
    cache = Cache(order=["memory", "bad", "good"], tiers=tiers, clock=clock, kinds=kinds)
    Misbehaving.answers["get"] = "hello"
    for n in range(5):
        cache.clear(tiers=["memory"])
        cache.get(f"k{n}")
    assert cache.stats()["tiers"]["bad"]["contract_errors"] == 3
    assert cache.health().tiers["bad"].details["breaker"] == "open"


def test_a_first_local_tier_without_a_front_door_is_checked_too(clock: FakeClock) -> None:
    kinds = {**KINDS, "bad": Misbehaving}
    cache = Cache(
        order=["bad", "good"],
        tiers={"bad": {"kind": "bad"}, "good": {"kind": "dict"}},
        clock=clock,
        kinds=kinds,
    )
    cache.set("k", "from good")
    Misbehaving.answers["get"] = ("v", None)
    assert cache.get("k") == "from good"
    assert cache.stats()["tiers"]["bad"]["contract_errors"] == 1


class WrongAtomics(DictTier):
    """A dict tier whose atomic hooks answer what their contract forbids."""

    @hookimpl
    def tierkit_add(self, key: str, entry: Entry) -> bool:
        return "yes"  # type: ignore[return-value]

    @hookimpl
    def tierkit_incr(self, key: str, delta: int) -> Entry | None:
        return Entry("7", None, ())  # an object tier's counter must be an int

    @hookimpl
    def tierkit_touch(self, key: str, expires_at: float | None) -> bool:
        return None  # type: ignore[return-value]

    @hookimpl
    def tierkit_has(self, key: str) -> bool:
        return 1  # type: ignore[return-value]

    @hookimpl
    def tierkit_delete_many(self, keys: Sequence[str]) -> int:
        return "two"  # type: ignore[return-value]


def test_atomic_hooks_of_the_wrong_type_are_failures_of_that_tier(clock: FakeClock) -> None:
    kinds = {**KINDS, "bad": WrongAtomics}
    tiers = {"bad": {"kind": "bad", "breaker": {"threshold": 1000}}}
    cache = Cache(order=["memory", "bad"], tiers=tiers, clock=clock, kinds=kinds)
    assert cache.add("k", 1) is False, "the deciding tier did not answer: nobody won"
    assert cache.inspect("k")["memory"].status == "absent"
    cache.set("n", 1)
    assert cache.incr("n") == 2  # counted where a tier could; 'bad' drops 'n' before it serves again
    assert cache.touch("n", 10) is True
    assert cache.has("absent") is False
    removed = cache.delete_many(["n"])
    assert (removed, removed.pending) == (1, ("bad",))
    assert cache.stats()["tiers"]["bad"]["contract_errors"] == 5


def test_the_validator_refuses_a_coroutine_for_a_sync_hook() -> None:
    from tierkit._contract import check_tier_class

    class AsyncAdd(DictTier):
        @hookimpl
        async def tierkit_add(self, key: str, entry: Entry) -> bool:
            return True

    assert check_tier_class(AsyncAdd) == [
        "tierkit_add is called without await: define it with `def`, not `async def`"
    ]
