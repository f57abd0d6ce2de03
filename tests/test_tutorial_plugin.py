"""The plugin tutorial works: its example builds, installs next to tierkit and joins a chain.

``examples/tierkit-dict-tier`` is the folder the tutorial walks through, and the page shows
its files in full (the raw Markdown reads on its own, imports included).  The slow tests
build it and tierkit (from this source tree) as wheels, install both into a fresh virtual
environment — no ``--system-site-packages``: nothing from this environment leaks in — and
there run ``tierkit tiers`` and a cache whose order places the plugin between memory and
file, as the tutorial's step 6 does.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._run import run_module
from .test_docs import Block, console_sessions, parse_page

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "tierkit-dict-tier"
TUTORIAL = ROOT / "docs" / "plugins" / "tutorial.md"
KIND, DISTRIBUTION, PACKAGE = "dict", "tierkit-dict-tier", "tierkit_dict_tier"
TOML = f"""\
order = ["memory", "{KIND}", "file"]

[tiers.file.options]
directory = "cache"
"""
_SKIP = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", "site")


@dataclass
class Installed:
    venv: Path
    plugin_wheel: Path

    @property
    def bin(self) -> Path:
        return self.venv / ("Scripts" if os.name == "nt" else "bin")

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def run(self, *argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env |= {"PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}", "COLUMNS": "100"}
        return subprocess.run(
            [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )


def _run(*argv: str | Path, cwd: Path | None = None) -> None:
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """tierkit and the example plugin, built as wheels and installed into a fresh venv."""
    work = tmp_path_factory.mktemp("tutorial")
    # Build from copies: a build writes build/ and *.egg-info next to the sources.
    core = work / "src" / "tierkit"
    core.mkdir(parents=True)
    shutil.copytree(ROOT / "tierkit", core / "tierkit", ignore=_SKIP)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, core / name)
    plugin = shutil.copytree(EXAMPLE, work / "src" / DISTRIBUTION, ignore=_SKIP)
    wheels = work / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels, core, plugin)
    venv = work / "venv"
    _run(sys.executable, "-m", "venv", venv)
    env = Installed(venv, next(wheels.glob(f"{PACKAGE}-*.whl")))
    _run(env.python, "-m", "pip", "install", "--quiet", *sorted(wheels.glob("*.whl")))
    yield env


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """An application directory whose tierkit.toml places the plugin between memory and file."""
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "tierkit.toml").write_text(TOML)
    return directory


def tutorial_blocks(title: str | None = None, lang: str | None = None) -> list[Block]:
    """The tutorial's fenced blocks, in page order, with that title and/or language."""
    return [
        block
        for section in parse_page("plugins/tutorial.md")
        for block in section.blocks
        if (title is None or block.title == title) and (lang is None or block.lang == lang)
    ]


def _paragraphs(text: str) -> str:
    """``text`` with runs of blank lines as one: the page splits a file between blocks at blank lines."""
    return re.sub(r"\n(?:[ \t]*\n)+", "\n\n", text).strip() + "\n"


EXAMPLE_FILES = sorted(
    path.relative_to(EXAMPLE).as_posix()
    for path in [EXAMPLE / "pyproject.toml", *EXAMPLE.rglob("*.py")]
    if "__pycache__" not in path.parts
)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_the_page_shows_each_example_file_in_full(name: str) -> None:
    """The blocks titled with a file of the example, put together, are that file: no drift, no gap."""
    blocks = tutorial_blocks(title=name)
    assert blocks, f"{TUTORIAL.relative_to(ROOT)} does not show {name}"
    shown = "\n\n".join(block.code for block in blocks)
    assert _paragraphs(shown) == _paragraphs((EXAMPLE / name).read_text()), (
        f"the blocks titled {name!r} in {TUTORIAL.relative_to(ROOT)} differ from {EXAMPLE.name}/{name}"
    )


def test_the_page_includes_nothing() -> None:
    """The raw Markdown must read on its own: no ``--8<--`` include stands in for code."""
    assert "--8<--" not in TUTORIAL.read_text()


def test_the_example_passes_its_own_tests() -> None:
    """The example's tests — the conformance suite among them — run and print what step 5 shows."""
    (command,) = [
        line
        for block in tutorial_blocks(lang="bash")
        for line in block.code.splitlines()
        if line.startswith("pytest")
    ]
    assert command == "pytest -q"
    (shown,) = [block.code for block in tutorial_blocks(title="output", lang="text")]
    result = run_module(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        cwd=EXAMPLE,
        timeout=120,
        PYTHONPATH=os.pathsep.join([str(EXAMPLE), *sys.path]),
        PYTHONDONTWRITEBYTECODE="1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout

    def timeless(output: str) -> str:
        return re.sub(r" in [0-9.]+s\b", " in ...s", output.strip())

    checker, flags = doctest.OutputChecker(), doctest.NORMALIZE_WHITESPACE
    assert checker.check_output(timeless(shown), timeless(result.stdout), flags), (
        f"step 5 of {TUTORIAL.relative_to(ROOT)} shows\n{shown}\nbut the example's tests print\n"
        f"{result.stdout}"
    )


@pytest.mark.slow
def test_the_wheel_declares_the_entry_point(installed: Installed) -> None:
    with zipfile.ZipFile(installed.plugin_wheel) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
        declared = wheel.read(name).decode()
    assert "[tierkit.tiers]" in declared
    assert f"{KIND} = {PACKAGE}:DictTier" in declared


@pytest.mark.slow
def test_the_fresh_environment_has_only_what_was_installed(installed: Installed, app: Path) -> None:
    result = installed.run("python", "-c", "import tierkit_session", cwd=app)
    assert result.returncode != 0, "the fresh venv sees this environment's packages"


@pytest.mark.slow
def test_tierkit_tiers_lists_the_plugin(installed: Installed, app: Path) -> None:
    result = installed.run("tierkit", "tiers", "--json", cwd=app)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["group"] == "tierkit.tiers"
    (tier,) = [t for t in report["tiers"] if t["kind"] == KIND]
    assert tier["distribution"] == DISTRIBUTION
    assert tier["version"] == "0.1.0"
    assert tier["valid"] is True and tier["error"] is None
    assert tier["holds"] == "objects"
    assert {"tierkit_get", "tierkit_set", "tierkit_delete", "tierkit_clear"} <= set(tier["hooks"])
    assert "max_entries" in tier["options"]


@pytest.mark.slow
def test_the_chain_reads_through_the_plugin(installed: Installed, app: Path) -> None:
    script = """
import tierkit

cache = tierkit.Cache()
assert cache.tiers == ("memory", "dict", "file"), cache.tiers
cache.set("greeting", {"text": "hello"}, ttl=60, persistent=True)
cache.clear(tiers=["memory"])
assert cache.get("greeting") == {"text": "hello"}
tiers = cache.stats()["tiers"]
assert (tiers["memory"]["hits"], tiers["dict"]["hits"], tiers["file"]["hits"]) == (0, 1, 0), tiers
assert tiers["dict"]["entries"] == 1
cache.close()

later = tierkit.Cache()  # a new cache: memory and dict start empty, the file tier has the entry
assert later.get("greeting") == {"text": "hello"}
assert later.stats()["tiers"]["file"]["hits"] == 1
assert later.get("greeting") == {"text": "hello"}
assert later.stats()["tiers"]["memory"]["hits"] == 1  # copied up by the first read
print("ok")
"""
    result = installed.run("python", "-c", script, cwd=app)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


@pytest.mark.slow
def test_the_tutorial_shows_what_the_commands_print(installed: Installed, app: Path) -> None:
    """The ``$ tierkit …`` sessions on the tutorial page, run in the fresh environment."""
    sessions = [
        session for block in tutorial_blocks(lang="console") for session in console_sessions(block.code)
    ]
    assert sessions, "the tutorial shows no tierkit command"
    checker, flags = doctest.OutputChecker(), doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for command, expected in sessions:
        result = installed.run(*shlex.split(command), cwd=app)
        shown = (result.stdout + result.stderr).strip() + "\n"
        assert checker.check_output(expected, shown, flags), (
            f"`{command}` prints\n{shown}\nbut {TUTORIAL.relative_to(ROOT)} shows\n{expected}"
        )
