"""Django's own BaseCacheTests pass against TierkitCache; each chain runs in a fresh process
(Django's settings are configured once per process).  memory + Redis: plugins/tierkit-redis/tests."""

from __future__ import annotations

import pytest

from .django_suite import CULLING, run_in_subprocess


@pytest.mark.slow
@pytest.mark.parametrize(("chain", "left_out"), [("memory", set()), ("memory+file", CULLING)])
def test_django_base_cache_tests_pass(chain: str, left_out: set[str]) -> None:
    summary = run_in_subprocess(chain)
    assert summary["tiers"] == chain.split("+")
    assert summary["skipped"] == left_out
    assert summary["passed"] == summary["ran"] - len(left_out)
