"""Running ``python -m MODULE`` as a real subprocess with the test's environment."""

from __future__ import annotations

import os
import subprocess
import sys


def run_module(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` with this test's environment plus ``env``, output captured as UTF-8."""
    environ = os.environ.copy()
    environ.update(env, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=environ,
        timeout=timeout,
        check=False,
    )
