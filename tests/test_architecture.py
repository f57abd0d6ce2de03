"""Guards on the architecture: the public surface, plugin isolation, lazy imports, hook docs."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import tierkit
from tierkit import hookspecs

CORE = Path(tierkit.__file__).parent
PLUGIN_PACKAGES = {"tierkit_redis", "tierkit_session", "redis", "streamlit"}


def test_public_surface_is_exactly_this() -> None:
    assert len(set(tierkit.__all__)) == len(tierkit.__all__)
    assert set(tierkit.__all__) == {
        "FOREVER",
        "MISSING",
        "AsyncCachedFunction",
        "Cache",
        "CachedFunction",
        "Codec",
        "CodecError",
        "ConfigError",
        "Entry",
        "HealthReport",
        "Invalidated",
        "KeyReport",
        "NoOptions",
        "NotACounter",
        "Parts",
        "Payloads",
        "PluginError",
        "Settings",
        "SettingsSource",
        "Tier",
        "TierContext",
        "TierHealth",
        "TierReport",
        "TierSettings",
        "TierkitError",
        "__version__",
        "cached",
        "get_cache",
        "hookimpl",
        "load_settings",
        "register_types",
    }
    for name in tierkit.__all__:
        assert hasattr(tierkit, name), name


def test_the_core_never_imports_a_plugin_package() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(CORE)}: {n}" for n in names if n.split(".")[0] in PLUGIN_PACKAGES
            ]
    assert not offenders


def test_only_configured_tiers_are_imported() -> None:
    code = (
        "import sys, tierkit\n"
        "c = tierkit.Cache(order=['memory'])\n"
        "c.set('k', 1); c.get('k')\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {PLUGIN_PACKAGES!r}"
        " or m == 'tierkit.tiers.file'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unconfigured_redis_tier_does_not_import_redis_py() -> None:
    code = "import sys, tierkit\nc = tierkit.Cache()\nc.get('k')\nprint('redis' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_hookspec_has_a_contract_docstring() -> None:
    specs = [
        f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("tierkit_")
    ]
    assert len(specs) >= 10
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        assert len(doc.splitlines()) >= 3, spec.__name__
        assert ("Required" in doc) or ("Optional" in doc) or ("Broadcast" in doc), spec.__name__


def test_hookspecs_cover_the_operations_the_chain_calls() -> None:
    chain_source = "".join(
        (CORE / name).read_text() for name in ("_chain.py", "_lock.py", "_atomics.py", "_backplane.py")
    )
    async_bound = "ASYNC_HOOKS" in chain_source  # TierSlot binds tierkit_a<name> for each of them
    for name in dir(hookspecs):
        if name.startswith("tierkit_"):
            bound = async_bound and name.removeprefix("tierkit_a") in hookspecs.ASYNC_HOOKS
            assert name in chain_source or bound, f"{name} is specified but the chain never calls it"
