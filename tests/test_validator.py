"""One validator of tier classes: ``tierkit tiers``, ``Cache()`` and the conformance kit agree.

And configuration mistakes get errors that say how to fix them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from tierkit import Cache, ConfigError, PluginError, hookimpl
from tierkit._contract import check_tier_class

from ._run import run_module
from ._tiers import KINDS, DictTier

MISSPELLED = "tierkit_invalidate_prefixes is not a tierkit hook (did you mean 'tierkit_invalidate_prefix'?)"
BAD_PARAMETER = "tierkit_get: parameter 'k' is not in the spec tierkit_get(key)"


class Misspelled(DictTier):
    @hookimpl
    def tierkit_invalidate_prefixes(self, prefix: str) -> int:
        return 0


class BadParameter(DictTier):
    @hookimpl
    def tierkit_get(self, k: str) -> None:  # type: ignore[override]
        return None


class Unmarked(DictTier):
    def tierkit_delete(self, key: str) -> bool:
        return False


def test_the_validator_names_every_problem_and_how_to_fix_it() -> None:
    assert MISSPELLED in check_tier_class(Misspelled)[0]
    assert check_tier_class(BadParameter) == [BAD_PARAMETER]
    assert check_tier_class(Unmarked) == [
        "missing @tierkit.hookimpl methods: tierkit_delete",
        "tierkit_delete is not marked @tierkit.hookimpl, so tierkit would never call it",
    ]
    assert check_tier_class(DictTier) == []


@pytest.mark.parametrize("cls, problem", [(Misspelled, MISSPELLED), (BadParameter, BAD_PARAMETER)])
def test_cache_refuses_what_the_validator_finds_naming_the_kind(cls: type, problem: str) -> None:
    with pytest.raises(PluginError) as info:
        Cache(order=["memory", "odd"], kinds={**KINDS, "odd": cls})
    assert "tier kind 'odd'" in str(info.value) and problem in str(info.value)


PLUGIN = """
from tierkit import hookimpl
from tierkit.tiers.memory import MemoryTier


class OddTier(MemoryTier):
    default_rank = None

    @hookimpl
    def tierkit_invalidate_prefixes(self, prefix):
        return 0
"""


@pytest.fixture
def installed_odd_plugin(tmp_path: Path) -> Path:
    """A distribution ``odd-tier`` declaring kind ``odd`` (a misspelled hook), importable via PYTHONPATH."""
    site = tmp_path / "site"
    (site / "odd_tier").mkdir(parents=True)
    (site / "odd_tier" / "__init__.py").write_text(PLUGIN)
    info = site / "odd_tier-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: odd-tier\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[tierkit.tiers]\nodd = odd_tier:OddTier\n")
    return site


def test_tierkit_tiers_and_cache_give_the_same_verdict(installed_odd_plugin: Path) -> None:
    env = {"PYTHONPATH": str(installed_odd_plugin)}
    listing = run_module("tierkit", "tiers", "odd", **env)
    assert listing.returncode == 0, listing.stderr
    assert "valid: NO" in listing.stdout and MISSPELLED in listing.stdout
    assert "odd_tier:OddTier from odd-tier" in listing.stdout
    built = run_module("tierkit", "--order", "memory,odd", "health", **env)
    assert built.returncode == 2
    assert MISSPELLED in built.stderr and "odd_tier:OddTier from odd-tier" in built.stderr


# -- configuration errors that say how to fix them --------------------------------------------


def test_a_tier_table_that_configures_nothing_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        Cache(order=["memory", "file"], tiers={"fiel": {"options": {"max_bytes": 10}}})
    message = str(info.value)
    assert "[tiers.fiel] configures no tier" in message
    assert "(did you mean 'file'?)" in message


def test_a_tier_table_for_another_order_is_fine_when_it_names_its_kind() -> None:
    cache = Cache(order=["memory"], tiers={"archive": {"kind": "file"}})
    assert cache.tiers == ("memory",)


def test_an_option_typo_lists_the_valid_options() -> None:
    with pytest.raises(ConfigError) as info:
        Cache(order=["memory"], tiers={"memory": {"options": {"max_entrys": 5}}})
    message = str(info.value)
    assert "max_entrys: unknown name (did you mean 'max_entries'?)" in message
    assert "valid options of kind 'memory': copy_on_read, evict_batch, max_bytes, max_entries" in message


@pytest.mark.parametrize("source", ["keyword", "toml"])
def test_a_setting_typo_gets_a_suggestion(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    overrides = {"defualt_ttl": 5}
    if source == "toml":
        (tmp_path / "tierkit.toml").write_text("defualt_ttl = 5\n")
        overrides = {}
    with pytest.raises(ConfigError, match=r"defualt_ttl: unknown name \(did you mean 'default_ttl'\?\)"):
        Cache(**overrides)


def test_a_kind_typo_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown kind 'memroy' \(did you mean 'memory'\?\)") as info:
        Cache(order=["memroy"])
    assert str(info.value).endswith("Fix the name.")  # no "pip install tierkit-memroy"


# -- the core names no plugin -----------------------------------------------------------------


def _code_strings(source: str) -> Sequence[str]:
    """String constants of a module that are not docstrings (of modules, classes, functions, attributes)."""
    import ast

    tree = ast.parse(source)
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_code_in_the_core_names_a_plugin() -> None:
    import tierkit

    core = Path(tierkit.__file__).parent
    offenders = [
        f"{path.relative_to(core)}: {text[:60]!r}"
        for path in sorted(core.rglob("*.py"))
        for text in _code_strings(path.read_text())
        for word in ("redis", "streamlit", "tierkit-session", "tierkit_session")
        if word in text.lower()
    ]
    assert offenders == []


def test_a_plugin_declares_its_own_alias_and_place_in_the_default_order(tmp_path: Path) -> None:
    plugin = textwrap.dedent(
        """
        from tierkit.tiers.memory import MemoryTier

        class Second(MemoryTier):
            default_rank = 150
            settings_aliases = {"SECOND_SIZE": "max_entries"}
        """
    )
    site = tmp_path / "site"
    (site / "second_tier").mkdir(parents=True)
    (site / "second_tier" / "__init__.py").write_text(plugin)
    info = site / "second_tier-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: second-tier\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[tierkit.tiers]\nsecond = second_tier:Second\n")
    done = run_module("tierkit", "config", "--json", PYTHONPATH=str(site), SECOND_SIZE="7")
    assert done.returncode == 0, done.stderr
    import orjson

    config = orjson.loads(done.stdout)
    assert config["order"][:2] == ["memory", "second"]
    assert config["settings"]["tiers"]["second"]["options"]["max_entries"] == "7"
    assert config["origins"]["tiers.second.options.max_entries"].startswith("environment (SECOND_SIZE")
