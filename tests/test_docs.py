"""The documentation: every hook has a section, and the examples on the pages run.

Example pages are split into sections at their headings and content tabs.  In each section, in page order:

* a fenced block with ``title="<path>"`` (other than ``text``) is written to that path,
  relative to an empty working directory, before the section's script runs — ``tierkit.toml``, ``.env.local``,
  ``.streamlit/secrets.toml`` … exactly as the page shows them;
* ``export NAME=value`` lines of ``bash`` blocks are set in the environment;
* on the pages of ``OUTPUT_CHECKED``, a ``text`` block titled ``output`` is what the section's
  script prints (``...`` matches anything);
* ``console`` blocks hold ``$ tierkit …`` commands and their output: after the script, each
  command runs there and its output must match the page (doctest rules: runs of spaces are
  equal, ``...`` matches anything; a lone ``...`` as output only checks it does not crash);
* the ``python`` blocks are joined into one script (its line numbers are the page's), run
  with this interpreter in that
  directory (the autouse ``isolated_config`` fixture clears ``TIERKIT_…`` / ``REDIS_URL``
  and gives the run a private cache directory and home).

Markers, as HTML comments the rendered page does not show:

* ``<!-- docs-test: skip <reason> -->`` before a block leaves it out (code that needs
  Streamlit or a web framework, placeholders such as ``<password>``);
* ``<!-- docs-test: file <reason> -->`` before a ``python`` block writes it to its path without running it
  as part of the section's script (an app that another block runs its own way, e.g. Streamlit's ``AppTest``);
* ``<!-- docs-test: needs flask -->`` in a section skips it unless the module imports
  (framework examples; optional dependencies are not installed for the test suite);
* ``<!-- docs-test: redis -->`` in a section runs it against a real Redis: a private
  ``redis-server`` (or ``$TIERKIT_TEST_REDIS_URL``), with ``localhost:6379`` in the
  section's blocks pointed at it.  Without one the section is skipped, and under
  ``CI=true`` it fails instead.  ``<!-- docs-test: redis private -->`` always starts a
  private server: for examples that change the server (``ACL SETUSER``).
"""

from __future__ import annotations

import argparse
import ast
import doctest
import importlib
import importlib.util
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

import tierkit.hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HOOKS_PAGE = DOCS / "plugins" / "hooks.md"
EXAMPLE_PAGES = (
    "getting-started.md",
    "cli.md",
    "configuration.md",
    "tiers/memory.md",
    "tiers/file.md",
    "tiers/session.md",
    "tiers/redis.md",
    "monitoring.md",
    "plugins/testing.md",
    "plugins/hooks.md",
    "async.md",
    "keys.md",
    "values.md",
    "stampede.md",
    "django.md",
    "flask.md",
    "fastapi.md",
    "streamlit.md",
    "coherence.md",
)
OUTPUT_CHECKED = {"getting-started.md", "configuration.md", "keys.md", "coherence.md"}
"""Pages whose ``output`` blocks are compared with what their examples print (the others' are not yet
up to date: monitoring.md, tiers/file.md and tiers/redis.md show older output or log lines)."""
IN_CI = os.environ.get("CI", "").lower() == "true"
SHELLS = {"bash", "sh", "shell"}
NOT_FILES = {"text", "output"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)(?P<attrs>.*)$")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')
_HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<what>skip|redis|needs|file)\b\s*(?P<reason>.*?)\s*-->\s*$")
_TAB = re.compile(r'^\s*===\+?\s+"(?P<title>[^"]+)"\s*$')
_EXPORT = re.compile(r"^(?:\$\s+)?export\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


# -- the hooks reference -----------------------------------------------------------------


def hookspec_names() -> list[str]:
    """The functions of ``tierkit.hookspecs`` that carry the ``@hookspec`` marker."""
    marker = f"{tierkit.hookspecs.PROJECT_NAME}_spec"
    return sorted(
        name
        for name, value in vars(tierkit.hookspecs).items()
        if name.startswith("tierkit_") and hasattr(value, marker)
    )


def test_every_hookspec_is_documented() -> None:
    """The hooks page renders each hookspec's docstring: a new hook needs a section there."""
    page = HOOKS_PAGE.read_text()
    rendered = set(re.findall(r"^::: tierkit\.hookspecs\.(\w+)\s*$", page, re.M))
    missing = [name for name in hookspec_names() if name not in rendered]
    assert not missing, f"hookspecs without a section in {HOOKS_PAGE.relative_to(ROOT)}: {missing}"
    unknown = sorted(rendered - set(hookspec_names()))
    assert not unknown, f"{HOOKS_PAGE.name} renders hooks that do not exist: {unknown}"


def test_every_hookspec_has_a_docstring() -> None:
    for name in hookspec_names():
        doc = getattr(tierkit.hookspecs, name).__doc__ or ""
        assert doc.strip(), f"{name} has no docstring: the hooks page would render nothing"
        assert "Required" in doc or "Optional" in doc, f"{name}: say whether a tier must implement it"


def test_required_hooks_are_listed_on_the_hooks_page() -> None:
    page = HOOKS_PAGE.read_text()
    for name in tierkit.hookspecs.REQUIRED_HOOKS:
        assert re.search(rf"\|\s*`{name}`\s*\|\s*required", page), f"{name} is not marked required"


def test_hooks_page_documents_exactly_the_attributes_of_tier() -> None:
    """ "The tier class" lists every public attribute of ``tierkit.Tier`` but its hooks, and no other."""
    page = HOOKS_PAGE.read_text()
    section = page.split("\n## The tier class\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\|\s*`(\w+)[(`]", section, re.M))
    public = {
        name for name in vars(tierkit.Tier) if not name.startswith("_") and not name.startswith("tierkit_")
    }
    assert documented - public == set(), f"{HOOKS_PAGE.name} documents what tierkit.Tier lacks"
    assert public - documented == set(), f"{HOOKS_PAGE.name} does not document these tierkit.Tier attributes"


def test_hooks_page_settings_source_example_is_a_valid_declaration(tmp_path: Path) -> None:
    """The page's example tier declares its configuration validly, and its source reads and skips."""
    from tierkit._contract import check_tier_class

    (block,) = [
        b for s in parse_page("plugins/hooks.md") for b in s.blocks if b.title == "declared_configuration.py"
    ]
    example: dict[str, object] = {"__name__": "declared_configuration"}
    exec(compile(block.code, str(HOOKS_PAGE), "exec"), example)
    tier, source = example["MemcachedTier"], example["SecretFiles"]
    problems = check_tier_class(tier)
    assert problems and all(p.startswith("missing @tierkit.hookimpl methods") for p in problems), problems
    (tmp_path / "MEMCACHED_SERVERS").write_text("cache1:11211\n")
    assert source(str(tmp_path))() == {"MEMCACHED_SERVERS": "cache1:11211"}  # type: ignore[operator]
    assert tier.settings_sources() == (source(),)  # type: ignore[attr-defined,operator]


def test_testing_page_describes_every_conformance_test_and_flag() -> None:
    from tierkit.testing import TierConformance

    page = (DOCS / "plugins" / "testing.md").read_text()
    names = [name for name in dir(TierConformance) if name.startswith("test_")]
    names += ["supports_ttl", "supports_batch", "persistent", "shared"]
    names += ["clock", "tier", "reopen", "second_instance", "make_tier", "broken_tier"]
    missing = [name for name in names if f"`{name}`" not in page]
    assert not missing, f"plugins/testing.md does not describe: {missing}"


# -- promises of configuration.md that its examples cannot show ---------------------------------


@pytest.fixture
def running_streamlit(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Stand-in ``streamlit`` modules, as during a script run (the session plugin reads two attributes)."""
    streamlit = ModuleType("streamlit")
    streamlit.session_state = {}  # type: ignore[attr-defined]
    streamlit.secrets = {"REDIS_URL": "redis://from-st-secrets:6379/0"}  # type: ignore[attr-defined]
    scriptrunner = ModuleType("streamlit.runtime.scriptrunner")
    scriptrunner.get_script_run_ctx = lambda suppress_warning=False: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "streamlit", streamlit)
    monkeypatch.setitem(sys.modules, "streamlit.runtime.scriptrunner", scriptrunner)
    return streamlit


def test_streamlit_secrets_come_from_st_secrets_under_a_running_script(
    running_streamlit: ModuleType, isolated_config: Path
) -> None:
    from tierkit import load_settings

    (isolated_config / ".streamlit").mkdir()
    (isolated_config / ".streamlit" / "secrets.toml").write_text('REDIS_URL = "redis://from-file:6379/0"\n')
    settings = load_settings(order=["memory", "redis"])  # no session tier: the source serves every variable
    assert settings.tiers["redis"].options["url"] == "redis://from-st-secrets:6379/0"


def test_an_unreadable_streamlit_secrets_file_is_skipped_with_a_warning(
    isolated_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tierkit import load_settings

    (isolated_config / ".streamlit" / "secrets.toml").mkdir(parents=True)  # unreadable, even for root
    with caplog.at_level("WARNING", logger="tierkit"):
        settings = load_settings()
    assert "redis" not in settings.tiers
    assert any("cannot read Streamlit secrets" in r.getMessage() for r in caplog.records)


def test_plain_variables_are_read_for_the_kinds_of_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from tierkit import load_settings

    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    assert load_settings().tiers["redis"].options["url"] == "redis://localhost:6379/0"  # default order
    assert "redis" not in load_settings(order=["memory", "file"]).tiers


# -- generated parts: the CLI help and the options tables --------------------------------------


def generated_module() -> ModuleType:
    """``docs/_ext/generated.py``, the MkDocs hook that renders the markers."""
    spec = importlib.util.spec_from_file_location("docs_generated", DOCS / "_ext" / "generated.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_page_renders_every_public_name() -> None:
    import tierkit

    page = (DOCS / "api.md").read_text()
    rendered = set(re.findall(r"^::: tierkit\.(\w+)\s*$", page, re.M))
    missing = sorted(set(tierkit.__all__) - rendered - {"__version__"})
    assert not missing, f"api.md has no section for: {missing}"
    cache_section = page.split("::: tierkit.Cache\n", 1)[1].split(":::", 1)[0]
    listed = set(re.findall(r"^ +- (\w+)$", cache_section, re.M))
    public = {name for name in vars(tierkit.Cache) if not name.startswith("_")}
    assert public - listed == set(), f"api.md does not render these Cache members: {public - listed}"


def test_cli_reference_has_every_command() -> None:
    page = (DOCS / "cli.md").read_text()
    assert re.search(r"^<!-- cli-help -->$", page, re.M), "cli.md lacks the top-level help"
    for command in generated_module().commands():
        assert f"<!-- cli-help: {command} -->" in page, f"cli.md does not document `tierkit {command}`"
        assert re.search(rf"^## tierkit .*\b{command}\b", page, re.M), f"no heading for {command}"


@pytest.mark.parametrize("command", [None, *generated_module().commands()])
def test_cli_reference_shows_what_help_prints(command: str | None) -> None:
    """The help rendered into the page is what ``tierkit [command] --help`` prints."""
    argv = [sys.executable, "-m", "tierkit", *([command] if command else []), "--help"]
    result = subprocess.run(
        argv, capture_output=True, text=True, env=dict(os.environ, COLUMNS="100"), check=True
    )
    assert generated_module().cli_help(command) == result.stdout


def test_cli_reference_mentions_only_real_options() -> None:
    from tierkit.cli import build_parser

    known = {"--help", "--version"}
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            known.update(s for s in action.option_strings if s.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                parsers += action.choices.values()
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", (DOCS / "cli.md").read_text()))
    assert not mentioned - known, f"cli.md mentions options tierkit does not have: {mentioned - known}"


def test_configuration_page_lists_every_setting() -> None:
    from tierkit import Settings, TierSettings

    page = (DOCS / "configuration.md").read_text()
    fields = [*Settings.model_fields, *TierSettings.model_fields]
    missing = [name for name in fields if not re.search(rf"^\| `{name}` +\|", page, re.M)]
    assert not missing, f"configuration.md's settings tables lack: {missing}"


OPTION_TABLES = {
    "tiers/memory.md": "tierkit.tiers.memory:MemoryTier",
    "tiers/file.md": "tierkit.tiers.file:FileTier",
    "tiers/session.md": "tierkit_session:SessionTier",
    "tiers/redis.md": "tierkit_redis:RedisTier",
}


@pytest.mark.parametrize(("page", "target"), OPTION_TABLES.items())
def test_tier_pages_render_their_options(page: str, target: str) -> None:
    text = (DOCS / page).read_text()
    assert f"<!-- options-table: {target} -->" in text
    rendered = generated_module().render(text)
    module, _, name = target.partition(":")
    options = getattr(importlib.import_module(module), name).Options
    for field_name in options.model_fields:
        assert f"| `{field_name}` |" in rendered, f"{page}: option {field_name} missing from the table"


# -- executable examples -------------------------------------------------------------------


@dataclass
class Block:
    lang: str
    title: str | None
    code: str
    line: int
    skip: str | None = None
    file_only: bool = False


@dataclass
class Section:
    page: str
    heading: str
    line: int
    blocks: list[Block] = field(default_factory=list)
    needs_redis: bool = False
    private_redis: bool = False
    needs_modules: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{self.page}::{slug}"

    @property
    def runs(self) -> bool:
        return any(b.lang in ("python", "console") and b.skip is None for b in self.blocks)


def parse_page(page: str) -> list[Section]:
    """The page's sections (split at headings) and their fenced blocks, with markers applied."""
    lines = (DOCS / page).read_text().splitlines()
    sections = [Section(page, "(top)", 1)]
    heading_text = "(top)"
    pending_skip: str | None = None
    pending_file = False
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        marker = _MARKER.match(line)
        heading = _HEADING.match(line)
        tab = _TAB.match(line)
        if marker:
            if marker["what"] == "skip":
                pending_skip = marker["reason"] or "marked skip"
            elif marker["what"] == "file":
                pending_file = True
            elif marker["what"] == "needs":
                sections[-1].needs_modules += marker["reason"].split()
            else:
                sections[-1].needs_redis = True
                sections[-1].private_redis = marker["reason"] == "private"
        elif heading:
            heading_text = heading["text"]
            sections.append(Section(page, heading_text, i + 1))
        elif tab:  # each content tab is an example of its own
            sections.append(Section(page, f"{heading_text} / {tab['title']}", i + 1))
        elif fence:
            indent, close, start = fence["indent"], fence["fence"], i + 1
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != close:
                body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
                i += 1
            title = _TITLE.search(fence["attrs"])
            sections[-1].blocks.append(
                Block(
                    lang=fence["lang"].lower(),
                    title=title["title"] if title else None,
                    code="\n".join(body) + "\n",
                    line=start,
                    skip=pending_skip,
                    file_only=pending_file,
                )
            )
            pending_skip, pending_file = None, False
        i += 1
    return sections


def example_sections() -> list[Section]:
    return [section for page in EXAMPLE_PAGES for section in parse_page(page) if section.runs]


def test_example_pages_have_examples() -> None:
    for page in EXAMPLE_PAGES:
        assert any(s.runs for s in parse_page(page)), f"{page} has no example that runs"


@pytest.mark.parametrize("page", EXAMPLE_PAGES)
def test_every_example_file_is_exercised(page: str) -> None:
    """A configuration file shown on a page is written by a section that also runs python."""
    for section in parse_page(page):
        for block in section.blocks:
            if block.skip is None and block.title and block.lang not in NOT_FILES | {"python"}:
                assert section.runs, (
                    f"docs/{page}:{block.line}: {block.title!r} is shown in section "
                    f"{section.heading!r}, which runs nothing: nothing tests it"
                )


@pytest.mark.parametrize("page", EXAMPLE_PAGES)
def test_toml_and_python_blocks_parse(page: str) -> None:
    """Even the blocks that are not run are valid TOML / Python."""
    for section in parse_page(page):
        for block in section.blocks:
            where = f"docs/{page}:{block.line}"
            if block.lang == "toml" and "<" not in block.code:
                tomllib.loads(block.code)
            elif block.lang == "python":
                ast.parse(block.code, where)


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI, where the Redis examples must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the Redis examples must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[Callable[[bool], str]]:
    """``redis_url(private)``: ``$TIERKIT_TEST_REDIS_URL`` unless ``private``, else a new server."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(private: bool) -> str:
        if importlib.util.find_spec("tierkit_redis") is None:
            unavailable("tierkit-redis is not installed: pip install -e plugins/tierkit-redis")
        url = os.environ.get("TIERKIT_TEST_REDIS_URL")
        if url and not private:
            return url
        server = shutil.which("redis-server")
        if server is None:
            unavailable(
                "no redis-server on PATH for this example (nor TIERKIT_TEST_REDIS_URL, if it may share)"
            )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        workdir = tmp_path / f"redis{len(processes)}"
        workdir.mkdir()
        args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = subprocess.Popen([*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL)
        processes.append(process)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return f"redis://127.0.0.1:{port}/0"
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("redis-server did not start", pytrace=False)
                time.sleep(0.02)

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def console_sessions(code: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a ``console`` block: ``$ `` lines and what follows."""
    sessions: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            sessions.append((line[2:], []))
        elif sessions:
            sessions[-1][1].append(line)
    return [(command, "\n".join(output).strip() + "\n") for command, output in sessions]


def check_console(block: Block, section: Section, cwd: Path) -> None:
    """Run each ``$ tierkit …`` command and compare its output (``...`` matches anything)."""
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    env = dict(os.environ, COLUMNS="100")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for command, expected in console_sessions(block.code):
        argv = shlex.split(command)
        assert argv[0] == "tierkit", f"docs/{section.page}:{block.line}: only tierkit commands are run"
        result = subprocess.run(
            [sys.executable, "-m", "tierkit", *argv[1:]],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            check=False,
        )
        shown = result.stdout.strip() + "\n"
        if expected.strip() == "...":
            continue  # the page shows no output for it: running without a crash is enough
        assert checker.check_output(expected, shown, flags), (
            f"docs/{section.page}:{block.line}: `{command}` printed\n{shown}\nbut the page shows\n{expected}"
        )
        assert "Traceback" not in shown, shown


@pytest.mark.parametrize("section", example_sections(), ids=lambda s: s.id)
def test_example_runs(
    section: Section, isolated_config: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    for module in section.needs_modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}, which is not installed")
    replace: dict[str, str] = {}
    if section.needs_redis:
        url = request.getfixturevalue("redis_url")(section.private_redis)
        replace["localhost:6379"] = urlsplit(url).netloc.rpartition("@")[2]
    script: list[str] = []  # padded so that its line numbers are the page's
    consoles: list[Block] = []
    for block in section.blocks:
        if block.skip is not None:
            continue
        code = block.code
        for old, new in replace.items():
            code = code.replace(old, new)
        if block.lang == "console":
            consoles.append(block)
        elif block.lang in SHELLS:
            for line in code.splitlines():
                export = _EXPORT.match(line.strip())
                if export:
                    (value,) = shlex.split(export["value"]) or [""]
                    monkeypatch.setenv(export["name"], value)
            continue
        if block.title and block.lang not in NOT_FILES | {"console"}:
            path = isolated_config / block.title
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
        if block.lang == "python" and not block.file_only:
            script += [""] * (block.line - len(script))
            script += code.splitlines()
    if script:
        (isolated_config / "_docs_example.py").write_text("\n".join(script) + "\n")
        result = subprocess.run(
            [sys.executable, "_docs_example.py"],
            cwd=isolated_config,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (
            f"the example of docs/{section.page}, section {section.heading!r} (line {section.line}) "
            f"failed; line numbers below are the page's:\n{result.stderr}\n--- stdout ---\n{result.stdout}"
        )
        check_output(section, result.stdout)
    for block in consoles:
        check_console(block, section, isolated_config)


def check_output(section: Section, printed: str) -> None:
    """A section's ``text title="output"`` block is what its script prints (``...`` matches anything)."""
    shown = [b for b in section.blocks if b.lang == "text" and b.title == "output" and b.skip is None]
    if not shown or section.page not in OUTPUT_CHECKED:
        return
    expected = "".join(block.code for block in shown)
    checker, flags = doctest.OutputChecker(), doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    assert checker.check_output(expected, printed, flags), (
        f"docs/{section.page}:{shown[0].line}: the example prints\n{printed}\nbut the page shows\n{expected}"
    )
