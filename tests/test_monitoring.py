"""The monitoring integrations stay optional, and the Monitoring page says what they really export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tierkit
from tierkit.integrations._metrics import LATENCY_NAME, METRICS
from tierkit.integrations.prometheus import TierkitCollector

PAGE = Path(__file__).resolve().parent.parent / "docs" / "monitoring.md"
OPTIONAL = ("prometheus_client", "opentelemetry", "rich")


def imported_after(code: str) -> list[str]:
    """The optional libraries in ``sys.modules`` after running ``code`` in a new interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert "tierkit" in loaded
    return sorted(loaded & set(OPTIONAL))


def test_tierkit_and_its_cli_import_no_monitoring_library() -> None:
    code = (
        "import tierkit, tierkit.cli, tierkit.integrations, tierkit.integrations._metrics\n"
        "c = tierkit.Cache(order=['memory']); c.set('k', 1); c.get('k'); c.stats(); c.health()\n"
        "tierkit.cli.main(['--order', 'memory', 'stats', '--json'])"
    )
    assert imported_after(code) == []


def test_watch_without_an_endpoint_needs_neither_prometheus_nor_opentelemetry() -> None:
    code = (
        "import tierkit.cli\ntierkit.cli.main(['--order', 'memory', 'stats', '--watch', '--iterations', '1'])"
    )
    assert imported_after(code) == []  # piped: the plain table, no rich


@pytest.mark.parametrize(
    ("module", "library", "extra"),
    [("prometheus", "prometheus_client", "prometheus"), ("otel", "opentelemetry", "otel")],
)
def test_a_missing_library_names_the_extra_to_install(module: str, library: str, extra: str) -> None:
    hide = f"import sys\nsys.modules[{library!r}] = None  # as if it were not installed\n"
    code = f"{hide}import tierkit.integrations.{module}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert f"ImportError: tierkit.integrations.{module} needs" in result.stderr
    assert f"pip install 'tierkit[{extra}]'" in result.stderr


# -- the page -------------------------------------------------------------------------------------


def page_table() -> dict[str, tuple[str, str, set[str]]]:
    """The metric table of the page: Prometheus name -> (OpenTelemetry name, type, labels)."""
    rows = {}
    for line in PAGE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`tierkit_"):
            labels = set(re.findall(r"`(\w+)`", cells[3]))
            rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2], labels)
    return rows


def test_the_metric_table_is_what_a_scrape_exposes() -> None:
    """Every series a memory + file chain exposes is in the table, with its type and labels, and no other."""
    registry = CollectorRegistry()
    registry.register(TierkitCollector(tierkit.Cache(namespace="doc", order=["memory", "file"])))
    scraped: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            scraped[sample.name] = (family.type, set(sample.labels))
    table = page_table()
    assert set(table) == set(scraped)
    for name, (kind, labels) in scraped.items():
        assert table[name][1:] == (kind, labels), name
    otel_names = {metric.prometheus_name: metric.name for metric in METRICS}
    assert {name: row[0] for name, row in table.items()} == otel_names


def test_every_metric_the_page_names_exists() -> None:
    histogram = {LATENCY_NAME + suffix for suffix in ("", "_bucket", "_sum", "_count")}
    known = {metric.prometheus_name for metric in METRICS} | histogram
    named = set(re.findall(r"\btierkit_(?:cache|tier)_\w+", PAGE.read_text()))
    assert named - known == set()


def grafana_panels() -> list[dict[str, object]]:
    text = PAGE.read_text()
    return [json.loads(block) for block in re.findall(r"^```json\n(.*?)^```", text, re.M | re.S)]


def test_the_grafana_panel_is_json_that_queries_real_series() -> None:
    (panel,) = grafana_panels()
    assert panel["type"] == "timeseries"
    targets = panel["targets"]
    assert isinstance(targets, list) and targets
    known = {metric.prometheus_name for metric in METRICS}
    labels = {label for metric in METRICS for label in metric.prometheus_labels}
    for target in targets:
        expr = target["expr"]
        assert set(re.findall(r"\btierkit_\w+", expr)) <= known, expr
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            assert {g.strip() for g in grouping.split(",")} <= labels, expr
        assert expr.count("(") == expr.count(")"), expr
        assert set(re.findall(r"\{\{(\w+)\}\}", target["legendFormat"])) <= labels


def test_watch_from_an_endpoint_without_prometheus_client_names_the_extra() -> None:
    code = (
        "import sys\nsys.modules['prometheus_client'] = None  # as if it were not installed\n"
        "from tierkit.cli import main\n"
        "sys.exit(main(['stats', '--watch', '--from', 'http://127.0.0.1:1/metrics']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "pip install 'tierkit[watch]'" in result.stderr
