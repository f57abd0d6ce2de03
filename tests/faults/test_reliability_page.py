"""docs/reliability.md describes the fault suite as it is: every scenario, nothing more."""

from __future__ import annotations

import re

from ._suite import PAGE, declared_scenarios


def page_ids() -> set[str]:
    return set(re.findall(r"<br>`([\w.]+::\w+)(?:\[[^\]]*\])?`", PAGE.read_text()))


def test_every_scenario_is_on_the_reliability_page() -> None:
    missing = sorted(declared_scenarios().keys() - page_ids())
    assert not missing, f"not in {PAGE.name}: {missing}; regenerate it with `make reliability`"


def test_the_reliability_page_lists_no_removed_scenario() -> None:
    stale = sorted(page_ids() - declared_scenarios().keys())
    assert not stale, f"{PAGE.name} lists scenarios that no longer exist: {stale}; run `make reliability`"


def test_the_suite_has_scenarios() -> None:
    assert len(declared_scenarios()) >= 10
