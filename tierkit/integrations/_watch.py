"""``tierkit stats --watch``: a live view of each tier, refreshed every interval.

A separate process cannot see an application's counters: hits, misses, sets, errors and the
breaker live in the application's memory.  So the view has two sources, and says which:

* an application's metrics endpoint (``--from URL``, served by
  :class:`~tierkit.integrations.prometheus.TierkitCollector`): everything the application's
  cache counts, for that one process;
* else a cache built here from the same configuration: the figures the shared tiers keep in
  their stores (the file tier's entries, bytes, evictions and expiries, for every process),
  the raw figures a tier reports about its server (Redis ``INFO``: server-wide), and the tiers'
  health as seen from this host.  The in-process tiers (memory, session) are the watcher's own,
  empty, and shown as not visible.

Rendered with ``rich`` on a terminal when it is installed, else as plain text tables, one per
refresh (a pipe, a log, ``--iterations``).
"""

from __future__ import annotations

import base64
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from tierkit._cache import Cache
from tierkit._config import redact
from tierkit._discovery import load_tier_class
from tierkit.integrations._metrics import (
    CHAIN_COUNTERS,
    METRICS,
    TIER_LABELS,
    Metric,
    as_number,
    figure,
    ordered_tiers,
)

Figures = dict[str, Any]
Reading = dict[tuple[str, str], Figures]  # (namespace, tier) -> figures, with "kind"

HEADERS = (
    "TIER",
    "KIND",
    "HIT %",
    "READS/S",
    "WRITES/S",
    "ERRORS/S",
    "ERRORS",
    "BREAKER",
    "STATUS",
    "ENTRIES",
    "BYTES",
    "EVICTIONS/S",
)
_TIER_METRICS = tuple(m for m in METRICS if m.labels == TIER_LABELS)
_MAPPED = {key for metric in _TIER_METRICS for key in metric.figures} | {"kind", "status", "reason"}
_FETCH_LIMIT = 8 * 1024 * 1024  # a metrics page is kilobytes; refuse to hold an unbounded answer


class WatchError(Exception):
    """A source could not be read (the message says which and why, without secrets)."""


class Source(Protocol):
    """Where a frame's figures come from."""

    description: str

    def read(self) -> Reading: ...


def _printable(text: str) -> str:
    """``text`` without control characters: what an endpoint sends must not drive the terminal."""
    return "".join(char if char.isprintable() else "?" for char in text)


def _in_process(kind: str) -> bool:
    """Whether tiers of ``kind`` hold objects in the process's memory (memory, session)."""
    return getattr(load_tier_class(kind), "holds", None) != "bytes"


class CacheSource:
    """A cache built in this process: what the shared tiers hold, and their health from here."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self.description = (
            f"namespace {cache.settings.namespace!r}, read from the shared tiers by this process: "
            "the application's own counters need its metrics endpoint (--from URL)"
        )

    def read(self) -> Reading:
        stats = self._cache.stats()
        report = self._cache.health()
        namespace = str(stats["namespace"])
        reading: Reading = {}
        for tier, figures in ordered_tiers(self._cache, stats):
            kind = str(figures["kind"])
            row: Figures = {
                "kind": kind,
                "status": report.tiers[tier].status if tier in report.tiers else None,
            }
            if "breaker" in figures and _in_process(kind):
                row["scope"] = "in-process: the application's own, not visible from here"
            elif "breaker" in figures:
                for metric in _TIER_METRICS:
                    value = figure(figures, metric)
                    if value is not None and metric.key not in CHAIN_COUNTERS:
                        row[metric.key] = value
                row["extra"] = {
                    k: v for k, v in figures.items() if k not in _MAPPED and as_number(v) is not None
                }
            reading[namespace, str(tier)] = row
        return reading


class EndpointSource:
    """An application's Prometheus endpoint, served by ``TierkitCollector``: its counters, one process."""

    def __init__(self, url: str, namespace: str | None = None, timeout: float = 2.0) -> None:
        """Check ``url``; ``ValueError`` if it cannot work (not http, or prometheus_client missing)."""
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            raise ValueError(
                "--from reads a Prometheus endpoint with prometheus_client: pip install 'tierkit[watch]'"
            ) from None
        self._parse = text_string_to_metric_families
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--from needs an http:// or https:// URL, got {redact(url)!r}")
        self._where = redact(url)
        # urllib ignores user:password in a URL: send them as Basic authentication instead
        netloc = parts.netloc.rpartition("@")[2]
        self._request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._request.add_unredirected_header("Authorization", f"Basic {token}")
        self._namespace = namespace
        self._timeout = timeout
        self.description = f"{self._where}: the counters of the process serving it"

    def _fetch(self) -> str:
        try:
            with urllib.request.urlopen(self._request, timeout=self._timeout) as answer:
                body: bytes = answer.read(_FETCH_LIMIT + 1)
        except urllib.error.HTTPError as exc:
            raise WatchError(f"{self._where} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WatchError(f"cannot read {self._where}: {_printable(redact(str(reason)))}") from None
        if len(body) > _FETCH_LIMIT:
            raise WatchError(f"{self._where} answered more than {_FETCH_LIMIT} bytes: not a metrics page")
        return body.decode("utf-8", errors="replace")

    def read(self) -> Reading:
        text = self._fetch()
        by_name: dict[str, Metric] = {metric.prometheus_name: metric for metric in _TIER_METRICS}
        reading: Reading = {}
        try:
            samples = [s for family in self._parse(text) for s in family.samples]
        except ValueError as exc:
            raise WatchError(
                f"{self._where} is not in the Prometheus text format: {_printable(str(exc))}"
            ) from None
        for sample in samples:
            metric = by_name.get(sample.name)
            labels = {name: _printable(value) for name, value in sample.labels.items()}
            if metric is None or not all(name in labels for name in metric.prometheus_labels):
                continue
            namespace = labels["cache_namespace"]
            if self._namespace is not None and namespace != self._namespace:
                continue
            row = reading.setdefault((namespace, labels["tier"]), {"kind": labels["kind"]})
            if not metric.states:
                row[metric.key] = sample.value
            elif sample.value == 1:
                row[metric.key] = labels["state"]
        if not reading:
            wanted = f" for namespace {self._namespace!r}" if self._namespace is not None else ""
            raise WatchError(
                f"no tierkit metrics{wanted} at {self._where}: does the application register "
                "tierkit.integrations.prometheus.TierkitCollector?"
            )
        return reading


# -- frames -------------------------------------------------------------------------------------


@dataclass
class Frame:
    """One refresh: a title, the table and notes under it (or the error that replaced the table)."""

    title: str
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""


def _delta(now: Figures, before: Figures | None, key: str) -> float | None:
    """Growth of a counter since the previous frame (a restart resets it: then its whole value)."""
    current = as_number(now.get(key))
    previous = as_number(before.get(key)) if before is not None else None
    if current is None or previous is None:
        return None
    grown = current - previous
    return grown if grown >= 0 else current


def _rate(now: Figures, before: Figures | None, keys: tuple[str, ...], elapsed: float) -> str:
    deltas = [_delta(now, before, key) for key in keys]
    if any(d is None for d in deltas) or elapsed <= 0:
        return "-"
    return f"{sum(d for d in deltas if d is not None) / elapsed:.1f}"


def _hit_ratio(now: Figures, before: Figures | None) -> str:
    """Over the last interval; in parentheses since the counters started, when it saw no reads."""
    total_hits, total_misses = as_number(now.get("hits")), as_number(now.get("misses"))
    if total_hits is None or total_misses is None:
        return "-"
    hits, misses = _delta(now, before, "hits"), _delta(now, before, "misses")
    if hits is not None and misses is not None and hits + misses:
        return f"{100 * hits / (hits + misses):.1f}"
    total = total_hits + total_misses
    return f"({100 * total_hits / total:.1f})" if total else "-"


def _bytes(value: Any) -> str:
    size = as_number(value)
    if size is None:
        return "-"
    if size < 1024:
        return f"{size:.0f} B"
    exponent = min(int(math.log(size, 1024)), 3)
    return f"{size / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


def _count(value: Any) -> str:
    number = as_number(value)
    return f"{number:.0f}" if number is not None else "-"


def _text(value: Any) -> str:
    return str(value) if value is not None else "-"


def _row(label: str, now: Figures, before: Figures | None, elapsed: float) -> tuple[str, ...]:
    return (
        label,
        now["kind"],
        _hit_ratio(now, before),
        _rate(now, before, ("hits", "misses"), elapsed),
        _rate(now, before, ("sets", "deletes"), elapsed),
        _rate(now, before, ("errors",), elapsed),
        _count(now.get("errors")),
        _text(now.get("breaker")),
        _text(now.get("status")),
        _count(now.get("entries")),
        _bytes(now.get("bytes")),
        _rate(now, before, ("evictions",), elapsed),
    )


def _extra(now: Mapping[str, Any], before: Mapping[str, Any] | None, elapsed: float) -> str:
    parts = []
    for key, value in now.items():
        text = f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
        previous = as_number((before or {}).get(key))
        if previous is not None and value > previous and elapsed > 0:
            text += f" (+{(value - previous) / elapsed:.1f}/s)"
        parts.append(text)
    return "  ".join(parts)


def frame(title: str, now: Reading, before: Reading | None, elapsed: float) -> Frame:
    """The table of ``now``, with rates over ``elapsed`` seconds since ``before``."""
    namespaces = {namespace for namespace, _ in now}
    result = Frame(title)
    for (namespace, tier), figures in now.items():
        previous = before.get((namespace, tier)) if before is not None else None
        label = tier if len(namespaces) == 1 else f"{namespace}/{tier}"
        result.rows.append(_row(label, figures, previous, elapsed))
        if "scope" in figures:
            result.notes.append(f"{label}: {figures['scope']}")
        if figures.get("extra"):
            extra = _extra(figures["extra"], (previous or {}).get("extra"), elapsed)
            result.notes.append(f"{label} reports (its own scope; a server's are server-wide): {extra}")
    return result


# -- the loop -----------------------------------------------------------------------------------


def _plain(frame: Frame, table: Callable[..., str]) -> str:
    lines = [frame.title]
    if frame.error:
        lines.append(f"error: {frame.error}")
    if frame.rows:
        lines.append(table(frame.rows, HEADERS))
    lines += frame.notes
    return "\n".join(lines) + "\n"


def _rich(frame: Frame) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    grid = Table(title=frame.title, title_justify="left", expand=False)
    for i, header in enumerate(HEADERS):  # never cut a cell: a narrow terminal crops whole columns
        width = max([len(header), *(len(row[i]) for row in frame.rows)])
        numeric = header not in ("TIER", "KIND", "BREAKER", "STATUS")
        grid.add_column(header, justify="right" if numeric else "left", no_wrap=True, min_width=width)
    for row in frame.rows:
        styled = [
            Text(cell, style="red")
            if cell in ("open", "down") or (header == "ERRORS/S" and cell not in ("-", "0.0"))
            else Text(cell)
            for header, cell in zip(HEADERS, row, strict=True)
        ]
        grid.add_row(*styled)
    parts: list[Any] = [grid]
    if frame.error:
        parts.append(Text(f"error: {frame.error}", style="bold red"))
    parts += [Text(note, style="dim") for note in frame.notes]
    parts.append(Text("Ctrl-C to stop", style="dim"))
    return Group(*parts)


def _can_use_rich(stream: TextIO) -> bool:
    if not stream.isatty():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _title(source: Source) -> str:
    return f"tierkit stats --watch  {time.strftime('%H:%M:%S')}\n{source.description}"


def watch(
    source: Source, interval: float, iterations: int | None, table: Callable[..., str], stream: TextIO
) -> None:
    """Show ``source`` every ``interval`` seconds, ``iterations`` times (``None``: until Ctrl-C).

    The first read must succeed (a wrong URL is an error, not an empty screen); a later
    failure is shown in place of the table while the view keeps trying.
    """
    now, now_at = source.read(), time.monotonic()  # raises WatchError: nothing to show yet
    before: Reading | None = None
    before_at = now_at
    error = ""
    live: Any = None
    if _can_use_rich(stream):
        from rich.console import Console
        from rich.live import Live

        live = Live(console=Console(file=stream), auto_refresh=False)
        live.start()
    try:
        shown = 0
        while True:
            if error:
                current = Frame(_title(source), error=error)
            else:
                current = frame(_title(source), now, before, now_at - before_at)
            if live is not None:
                live.update(_rich(current), refresh=True)
            else:
                print(_plain(current, table), file=stream, flush=True)
            shown += 1
            if iterations is not None and shown >= iterations:
                return
            time.sleep(interval)
            try:
                latest = source.read()
            except WatchError as exc:
                error = str(exc)
                continue
            error = ""
            before, before_at = now, now_at
            now, now_at = latest, time.monotonic()
    except KeyboardInterrupt:
        return
    finally:
        if live is not None:
            live.stop()
