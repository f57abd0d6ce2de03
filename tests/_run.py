"""Running ``python -m MODULE`` as a real subprocess with the test's environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_module(
    *args: str, timeout: float = 60, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` (in ``cwd``) with this test's environment plus ``env``, output as UTF-8."""
    environ = os.environ.copy()
    environ.update(env, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=environ,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
