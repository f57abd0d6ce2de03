"""What a scenario records, where a run's results go, and how long a scenario may run."""

from __future__ import annotations

import ast
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FAULTS = Path(__file__).resolve().parent
RESULTS = ROOT / "build" / "reliability.json"
"""The results of the last session that ran fault scenarios (``build/`` is not committed)."""
PAGE = ROOT / "docs" / "reliability.md"
IN_CI = os.environ.get("CI", "").lower() == "true"

Figure = int | float | str


def scale(full: int, ci: int) -> int:
    """How much of a long scenario to run: ``full`` normally, ``ci`` under ``CI=true``.

    A scenario is shortened under CI, never skipped.
    """
    return ci if IN_CI else full


@dataclass
class Scenario:
    """One fault scenario's record: filled by the test, its result set from the outcome."""

    id: str
    """``<module file>::<test name>``: how the page and the sync test find it."""
    title: str
    """The first line of the test's docstring."""
    done: list[str] = field(default_factory=list)
    observed: dict[str, Figure] = field(default_factory=dict)
    result: str = "not run"
    seconds: float = 0.0

    def did(self, text: str) -> None:
        """Say what the scenario did (one sentence per call, in order)."""
        self.done.append(text)

    def saw(self, **figures: Figure) -> None:
        """Record observed figures (counts, latencies): ``saw(visible=800, get_max_ms=1.2)``."""
        self.observed.update(figures)


def write_results(scenarios: list[Scenario], run: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = {"run": run, "scenarios": [asdict(s) for s in scenarios]}
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def read_results(path: Path = RESULTS) -> tuple[dict[str, Any], list[Scenario]]:
    data = json.loads(path.read_text())
    return data["run"], [Scenario(**s) for s in data["scenarios"]]


def declared_scenarios() -> dict[str, str]:
    """Every scenario in ``tests/faults`` (id → title), read from the source, not run:
    a ``test_*`` function that takes the ``record`` fixture is one scenario."""
    found: dict[str, str] = {}
    for module in sorted(FAULTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if (
                isinstance(node, ast.FunctionDef)
                and node.name.startswith("test_")
                and any(arg.arg == "record" for arg in node.args.args)
            ):
                doc = ast.get_docstring(node) or node.name
                found[f"{module.name}::{node.name}"] = doc.strip().splitlines()[0]
    return found
