"""A stateful hypothesis test: the chain behaves like one dict with TTLs and tags."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tierkit import MISSING, Cache
from tierkit.testing import FakeClock

from ._tiers import KINDS, DictTier

keys = st.sampled_from(["a", "b", "ab", "ba", "c:1", "c:2"])
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=6,
)
tag_sets = st.lists(st.sampled_from(["x", "y", "z"]), max_size=2, unique=True)


class ChainMatchesADict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        DictTier.stores.clear()
        self.clock = FakeClock()
        self.cache = Cache(
            order=["memory", "dict1", "bytes2"],
            tiers={"dict1": {"kind": "dict", "max_ttl": 50}, "bytes2": {"kind": "bytes"}},
            clock=self.clock,
            kinds=KINDS,
        )
        self.model: dict[str, tuple[Any, float | None, set[str]]] = {}

    def expected(self, key: str) -> Any:
        value, expires_at, _ = self.model.get(key, (MISSING, None, set()))
        if expires_at is not None and expires_at <= self.clock():
            return MISSING
        return value

    @rule(key=keys, value=values, ttl=st.none() | st.integers(1, 100), tags=tag_sets)
    def set(self, key: str, value: Any, ttl: int | None, tags: list[str]) -> None:
        self.cache.set(key, value, ttl=ttl, tags=tags)
        self.model[key] = (value, None if ttl is None else self.clock() + ttl, set(tags))

    @rule(key=keys)
    def get(self, key: str) -> None:
        assert self.cache.get(key, MISSING) == self.expected(key)

    @rule(wanted=st.lists(keys, max_size=4))
    def get_many(self, wanted: list[str]) -> None:
        expected = {k: self.expected(k) for k in wanted if self.expected(k) is not MISSING}
        assert self.cache.get_many(wanted) == expected

    @rule(key=keys)
    def delete(self, key: str) -> None:
        self.cache.delete(key)
        self.model.pop(key, None)

    @rule(tag=st.sampled_from(["x", "y", "z"]))
    def invalidate_tag(self, tag: str) -> None:
        self.cache.invalidate(tags=[tag])
        self.model = {k: v for k, v in self.model.items() if tag not in v[2]}

    @rule(prefix=st.sampled_from(["a", "c:", "b"]))
    def invalidate_prefix(self, prefix: str) -> None:
        self.cache.invalidate(prefix=prefix)
        self.model = {k: v for k, v in self.model.items() if not k.startswith(prefix)}

    @rule(seconds=st.integers(1, 60))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(tiers=st.sampled_from([["memory"], ["dict1"], ["memory", "dict1"]]))
    def upper_tiers_lose_everything(self, tiers: list[str]) -> None:
        self.cache.clear(tiers=tiers)  # like a restart or eviction: the bottom tier still has it all

    @invariant()
    def counters_add_up(self) -> None:
        stats = self.cache.stats()
        assert stats["gets"] == stats["hits"] + stats["misses"]


ChainMatchesADict.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestChainMatchesADict = ChainMatchesADict.TestCase
