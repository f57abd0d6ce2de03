"""The conformance kit catches broken tiers: each broken copy of the diskcache tier fails the
checks its bug breaks, with a message showing what came back, and the real tier passes all.

Each case runs the whole suite in a nested pytest session (``pytester``) on a subclass of
``TestDiskcacheConformance`` whose ``tier_class`` is the broken copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from . import broken_tiers as broken
from .diskcache_tier import DiskcacheTier

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.slow

SUITE = """
from tests.conformance import broken_tiers, diskcache_tier, test_diskcache_tier


class TestUnderTest(test_diskcache_tier.TestDiskcacheConformance):
    tier_class = {module}.{name}
"""


@dataclass(frozen=True)
class Case:
    tier: type[DiskcacheTier]
    must_fail: tuple[str, ...]
    says: str = ""
    """Text the failure report must show: what the suite expected and what came back."""


CASES = [
    Case(
        broken.ClearWipesOtherNamespaces,
        ("test_clear_leaves_other_namespaces_alone",),
        "the other namespace's entry after clear(): expected a hit (an Entry), got None",
    ),
    Case(
        broken.IgnoresNamespace,
        ("test_namespaces_do_not_see_each_other", "test_clear_leaves_other_namespaces_alone"),
        "get of a key set only in another namespace: expected a miss (None), got Entry(value=",
    ),
    Case(
        broken.GetManyIgnoresExpiry,
        ("test_get_many_skips_expired_entries",),
        "expected the keys ['forever', 'live'], got ['at-deadline', 'forever', 'live', 'past']",
    ),
    Case(
        broken.PayloadsDropTags,
        ("test_get_many_payloads_answers_as_get_many",),
        "get_many_payloads() for 'tagged': tags: expected ('a', 'b'), got ()",
    ),
    Case(
        broken.SetPartsKeepsTheFirstPiece,
        ("test_set_parts_stores_what_set_would",),
        "get after set_parts of 1009 bytes: value: expected b'\\x00head\\x00\\x01",
    ),
    Case(
        broken.GetBufferHandsOutItsOwnMemory,
        ("test_get_buffer_answers_as_get",),
        "get_buffer('buffer-1000').value: expected new memory on every call, got bytearray bytearray(b'\\xff",
    ),
    Case(
        broken.ExpiryOffByOne,
        ("test_expiry_is_exact_at_expires_at", "test_an_entry_set_past_its_deadline_is_a_miss"),
        "get at exactly expires_at (expired when expires_at <= now): expected a miss (None), got Entry(",
    ),
    Case(
        broken.TagIndexLostOnReopen,
        ("test_tag_index_survives_reopening",),
        "entries a reopened instance removes by a tag set before it opened: expected 1, got 0",
    ),
    Case(
        broken.StaleTagIndexAfterInvalidation,
        ("test_invalidation_leaves_no_stale_tag_index",),
        "entries removed by invalidating 'x', which no live entry has: expected 0, got 2",
    ),
    Case(
        broken.BytesAsMemoryview,
        ("test_get_returns_an_entry_of_the_declared_types",),
        "a byte tier's value: expected bytes, got memoryview <memory at",
    ),
    Case(
        broken.TagsAsList,
        ("test_get_returns_an_entry_of_the_declared_types",),
        "get after set: tags: expected a tuple of str, got ['t']",
    ),
    Case(
        broken.TagsDropped,
        ("test_set_then_get_returns_the_entry",),
        "get after set: tags: expected ('t1', 't2'), got ()",
    ),
    Case(
        broken.GetReturnsPlainTuple,
        ("test_get_returns_an_entry_of_the_declared_types", "test_set_then_get_returns_the_entry"),
        "get after set: expected a tierkit.Entry, got (b'\\x00payload-1\\xff', ",
    ),
    Case(broken.DeleteReturnsNone, ("test_delete",), "delete of a present key: expected True, got None"),
    Case(
        broken.HealthRaises,
        ("test_health_answers_when_the_backend_is_broken",),
        "expected a TierHealth, never an exception, got OperationalError",
    ),
    Case(
        broken.PrivateReadCache,
        ("test_instances_over_one_storage_see_each_others_writes",),
        "instance A's read after instance B replaced the entry: value: "
        "expected b'\\x00payload-2\\xff', got b'\\x00payload-1\\xff'",
    ),
    Case(
        broken.UnsafeConcurrentInvalidation,
        ("test_invalidation_while_threads_write",),
        "expected a hit (an Entry), got None",
    ),
    Case(
        broken.RacyAdd,
        ("test_add_has_one_winner_among_threads",),
        "8 threads adding one key: expected exactly one True, got [True, True",
    ),
    Case(
        broken.IncrDropsTheDeadline,
        ("test_incr_counts_and_keeps_deadline_and_tags",),
        "the deadline after tierkit_incr: expected 1700000100.0, got None",
    ),
    Case(
        broken.OptionsAcceptTypos,
        ("test_tier_class_passes_the_core_validator",),
        "Options must set model_config extra='forbid'",
    ),
]


def run_suite(pytester: pytest.Pytester, module: str, name: str) -> pytest.HookRecorder:
    pytester.makepyfile(test_under_test=SUITE.format(module=module, name=name))
    return pytester.inline_run("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def test_there_are_a_dozen_broken_copies() -> None:
    assert len({case.tier for case in CASES}) >= 12


@pytest.mark.parametrize("case", CASES, ids=[case.tier.__name__ for case in CASES])
def test_the_kit_catches(pytester: pytest.Pytester, case: Case) -> None:
    result = run_suite(pytester, "broken_tiers", case.tier.__name__)
    _, _, failed = result.listoutcomes()
    failures = {report.nodeid.rpartition("::")[2]: report.longreprtext for report in failed}
    missed = [name for name in case.must_fail if name not in failures]
    assert not missed, f"{case.tier.__name__} passed {missed}; the suite failed only {sorted(failures)}"
    report = "\n".join(failures[name] for name in case.must_fail)
    assert case.says in report, f"the failure report does not show {case.says!r}:\n{report}"


def test_the_real_tier_passes_everything(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, "diskcache_tier", "DiskcacheTier")
    passed, skipped, failed = result.listoutcomes()
    assert [r.nodeid for r in failed] == [], "\n".join(r.longreprtext for r in failed)
    # Every check applies but make_room's: the tier never evicts, so it has no room to make.
    skips = [r.nodeid.rpartition("::")[2] for r in skipped]
    assert skips == ["test_make_room_keeps_the_batch_that_follows"], "every other check applies"
    assert len(passed) >= 30
