"""Django's own BaseCacheTests pass against TierkitCache over memory + Redis (see tests/django_suite.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow]

_SUITE = Path(__file__).resolve().parents[3] / "tests" / "django_suite.py"


def test_django_base_cache_tests_pass_over_memory_and_redis(redis_url: str) -> None:
    spec = importlib.util.spec_from_file_location("django_suite", _SUITE)
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    summary = suite.run_in_subprocess("memory+redis", REDIS_URL=redis_url)
    assert summary["tiers"] == ["memory", "redis"]
    assert summary["skipped"] == suite.CULLING
    assert summary["passed"] == summary["ran"] - len(suite.CULLING)
