"""Django's own ``BaseCacheTests`` against ``TierkitCache``: run in a fresh process per chain.

    python tests/django_suite.py CACHE_DIR CHAIN

``CACHE_DIR`` keeps Django's sdist (its test suite is not in the wheel; downloaded once
with ``pip download django==<installed version> --no-binary :all: --no-deps``).  ``CHAIN``
is ``memory``, ``memory+file`` or ``memory+redis`` (with ``REDIS_URL`` in the environment).
The chain is configured the way an application would: ``order`` in the backend's
``OPTIONS``, the rest in ``tierkit.toml`` (``TIERKIT_CONFIG``) and ``REDIS_URL`` — the
caches Django's tests add (``cull``, ``zero_cull``) replace ``OPTIONS`` and so read the
chain from there alone.  Prints one JSON line: passed, failed and skipped test names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import unittest
from pathlib import Path
from typing import Any


def django_tests(cache_dir: Path) -> Path:
    """``tests/`` of the installed Django's sdist, downloaded and unpacked into ``cache_dir`` once."""
    import django

    version = django.__version__
    tests = cache_dir / f"django-{version}" / "tests"
    if (tests / "cache" / "tests.py").exists():
        return tests
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", f"django=={version}", "--no-binary", ":all:"]
    subprocess.run([*command, "--no-deps", "--quiet", "-d", str(cache_dir)], check=True)
    with tarfile.open(cache_dir / f"django-{version}.tar.gz") as sdist:
        members = [m for m in sdist.getmembers() if m.name.startswith(f"django-{version}/tests/cache/")]
        sdist.extractall(cache_dir, members=members, filter="data")
    return tests


def run(tests_dir: Path, chain: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="tierkit-django-"))
    order = chain.split("+")
    toml = f'order = {json.dumps(order)}\n[tiers.file]\nwrite = "always"\n[tiers.file.options]\n'
    toml += f'directory = "{work / "store"}"\n'
    (work / "tierkit.toml").write_text(toml)
    os.environ["TIERKIT_CONFIG"] = str(work / "tierkit.toml")
    sys.path.insert(0, str(tests_dir))

    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="tierkit-django-suite-" + "x7Qe" * 10,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cache"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={"default": {"BACKEND": "tierkit.integrations.django.TierkitCache"}},
        USE_TZ=True,
    )
    django.setup()
    from cache.tests import BaseCacheTests, caches_setting_for_tests  # type: ignore[import-not-found]
    from django.core import signals
    from django.core.cache import caches
    from django.test import SimpleTestCase, TestCase, override_settings
    from django.test.runner import DiscoverRunner

    from tierkit import Cache
    from tierkit.integrations.django import signing_key

    base = {
        "BACKEND": "tierkit.integrations.django.TierkitCache",
        "LOCATION": "django-suite",
        "OPTIONS": {"order": order},
    }
    # Django leaves culling out for backends without a bounded local store (its Redis tests do).
    exclude = set() if order == ["memory"] else {"cull", "zero_cull"}

    chains = override_settings(CACHES=caches_setting_for_tests(base=base, exclude=exclude))

    @chains
    class TierkitCacheTests(BaseCacheTests, TestCase):  # type: ignore[misc]
        pass

    @chains
    class TierkitBackendTests(SimpleTestCase):  # type: ignore[misc]
        """What Django's suite does not ask: per-request close, sharing, the codec, the settings."""

        def test_close_after_a_request_leaves_the_chain_and_its_memory_tier_open(self) -> None:
            cache = caches["default"]
            cache.set("kept", {"across": "requests"})
            signals.request_finished.send(sender=None)  # Django closes every cache after a request
            assert cache.tierkit.chain.closed is False
            assert cache.tierkit.inspect(cache.make_key("kept"))["memory"].status == "held"
            assert cache.get("kept") == {"across": "requests"}

        def test_backends_of_every_thread_share_one_chain(self) -> None:
            chains = []
            thread = threading.Thread(target=lambda: chains.append(caches["default"].tierkit))
            thread.start()
            thread.join()
            assert chains == [caches["default"].tierkit]
            assert caches["prefix"].tierkit is caches["default"].tierkit, "same LOCATION and OPTIONS"

        def test_values_are_signed_pickle_with_a_key_derived_from_secret_key(self) -> None:
            cache = caches["default"]
            assert cache.tierkit.settings.codec == "pickle"
            cache.set("signed", {1, 2})
            reader = Cache(
                namespace="django-suite",
                order=order,
                codec="pickle",
                signing_key=signing_key(settings.SECRET_KEY),
            )
            key = cache.make_key("signed")
            reader.clear(tiers=["memory"])
            assert reader.get(key) == ({1, 2} if len(order) > 1 else None)
            reader.close()

        def test_timeouts_map_to_tierkit_ttls(self) -> None:
            cache = caches["default"]
            cache.set("forever", 1, timeout=None)
            cache.set("default", 1)
            ttls = {r.ttl for r in cache.tierkit.inspect(cache.make_key("forever")).values()}
            assert ttls == {None}
            ttls = {r.ttl for r in cache.tierkit.inspect(cache.make_key("default")).values()}
            assert all(ttl is not None and 295 < ttl <= 300 for ttl in ttls)

        async def test_async_methods_use_the_async_api(self) -> None:
            cache = caches["default"]
            await cache.aset("a", {"v": 1})
            assert await cache.aget("a") == {"v": 1}
            assert await cache.aadd("a", 2) is False
            assert await cache.aadd("b", 2) is True
            assert await cache.aincr("b", 5) == 7
            assert await cache.adecr("b") == 6
            assert await cache.atouch("b", 60) is True
            assert await cache.ahas_key("b") is True
            assert await cache.aset_many({"c": 3, "d": 4}) == []
            assert await cache.aget_many(["a", "c", "zz"]) == {"a": {"v": 1}, "c": 3}
            await cache.adelete_many(["c", "d"])
            assert await cache.ahas_key("c") is False
            assert await cache.aget_or_set("e", 5) == 5
            await cache.aset("f", 1, timeout=0)
            assert await cache.aget("f", "gone") == "gone"
            assert await cache.atouch("b", 0) is True
            assert await cache.adelete("a") is True
            await cache.aclear()
            assert await cache.aget("e") is None
            await cache.aclose()
            assert cache.tierkit.chain.closed is False

        def test_max_entries_bounds_the_memory_tier(self) -> None:
            if "cull" in exclude:
                self.skipTest("no bounded local tier in this chain")
            figures = caches["cull"].tierkit.stats()["tiers"]["memory"]
            assert figures["max_entries"] == 30

    runner = DiscoverRunner(verbosity=0, interactive=False)
    runner.setup_test_environment()
    databases = runner.setup_databases()
    try:
        loader = unittest.TestLoader()
        suite = unittest.TestSuite(
            [
                loader.loadTestsFromTestCase(TierkitCacheTests),
                loader.loadTestsFromTestCase(TierkitBackendTests),
            ]
        )
        result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    finally:
        runner.teardown_databases(databases)
        runner.teardown_test_environment()
    failed = [test.id() for test, _ in result.failures + result.errors]
    skipped = [test.id() for test, _ in result.skipped]
    return {
        "chain": chain,
        "tiers": list(Cache(namespace="probe", order=order).tiers),
        "ran": result.testsRun,
        "passed": result.testsRun - len(failed) - len(skipped),
        "failed": failed,
        "skipped": skipped,
    }


SDIST_CACHE = Path(sys.prefix) / "django-sdist"
"""Where Django's sdist is kept between runs: inside the virtual environment."""


def run_in_subprocess(chain: str, **env: str) -> dict[str, Any]:
    """This script for ``chain`` in a fresh Python; its summary, checked to hold no failure."""
    done = subprocess.run(
        [sys.executable, __file__, str(SDIST_CACHE), chain],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=900,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"the Django suite crashed:\n{done.stdout}\n{done.stderr[-6000:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    assert not summary["failed"], done.stderr[-12000:]
    summary["skipped"] = {name.rsplit(".", 1)[-1] for name in summary["skipped"]}
    return summary


CULLING = {
    "test_cull",
    "test_zero_cull",
    "test_cull_delete_when_store_empty",
    "test_max_entries_bounds_the_memory_tier",
}
"""Left out where no tier is bounded by entry count, as Django does for its Redis backend."""


if __name__ == "__main__":
    print(json.dumps(run(django_tests(Path(sys.argv[1])), sys.argv[2])))
