"""The distributions install from built wheels alone: core and plugins, with no index access."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_extras_name_the_plugin_distributions() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["redis"] == ["tierkit-redis>=0.1.0"]
    assert extras["session"] == ["tierkit-session>=0.1.0"]
    assert {"django", "flask", "fastapi", "all"} <= set(extras)
    everything = re.fullmatch(r"tierkit\[(.*)\]", extras["all"][0])
    assert everything is not None
    assert set(everything[1].split(",")) == set(extras) - {"all", "test", "lint", "docs", "bench"}


def test_plugins_depend_on_the_core_distribution() -> None:
    for plugin in ("tierkit-redis", "tierkit-session"):
        project = tomllib.loads((ROOT / "plugins" / plugin / "pyproject.toml").read_text())["project"]
        assert any(re.match(r"tierkit\b(?!-)", dep) for dep in project["dependencies"]), plugin


@pytest.mark.slow
def test_make_dist_installs_with_no_index(tmp_path: Path) -> None:
    """`make dist`, then a fresh venv installs tierkit[redis,session] from dist/ with --no-index."""
    if shutil.which("make") is None:
        pytest.fail("make is needed to build dist/")
    dist = tmp_path / "dist"
    # -o: never reinstall the running .venv, even if pyproject.toml is newer than its stamp
    subprocess.run(
        ["make", "-C", str(ROOT), "-o", ".venv/.installed", "dist", f"DIST={dist}"],
        check=True,
        capture_output=True,
    )
    names = {path.name.split("-")[0] for path in dist.glob("*.whl")}
    assert {"tierkit", "tierkit_redis", "tierkit_session", "pydantic", "redis"} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # No configuration and no PIP_* variables: only dist/ may supply a package.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-index", "--find-links", dist,
         "tierkit[redis,session]"],
        check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    listing = subprocess.run(
        [venv / "bin" / "tierkit", "tiers"], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout
    rows = {line.split()[0]: line.split()[1] for line in listing.splitlines() if line.endswith("Tier")}
    assert rows == {
        "file": "tierkit",
        "memory": "tierkit",
        "redis": "tierkit-redis",
        "session": "tierkit-session",
    }
