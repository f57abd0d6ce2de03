"""The one mapping from ``Cache.stats()`` / ``Cache.health()`` to metrics, shared by every exporter.

Prometheus (:mod:`tierkit.integrations.prometheus`), OpenTelemetry
(:mod:`tierkit.integrations.otel`) and ``tierkit stats --watch`` read the same :data:`METRICS`,
so a metric's name, type, unit, labels and source figure are defined here once.  Names are
OpenTelemetry's (dotted); :attr:`Metric.prometheus_name` is what OpenTelemetry's own
Prometheus exporter would make of them (``_bytes`` for the unit ``By``, ``_total`` for a
counter), so both routes give the same series.

Everything is read at collection time from the public reports: nothing is added to the hit path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tierkit._cache import Cache

CACHE_LABELS = ("cache_namespace",)
TIER_LABELS = ("cache_namespace", "tier", "kind")
BREAKER_STATES = ("closed", "open", "half-open")
CACHE_STATUSES = ("ok", "degraded", "down")
TIER_STATUSES = ("ok", "degraded", "down", "skipped")

LabelValues = tuple[str, ...]
Reading = dict["Metric", list[tuple[LabelValues, float]]]


@dataclass(frozen=True)
class Metric:
    """One instrument: where its value comes from and how each convention names it.

    ``figures`` are the keys of the stats report that feed it (the first one a tier reports
    wins: the memory tier says ``expired``, the file tier ``expired_removed``); a metric with a
    ``state`` label is an enum instead: one series per state, 1 for the current one.
    """

    name: str
    kind: Literal["counter", "gauge"]
    unit: str
    description: str
    labels: tuple[str, ...]
    figures: tuple[str, ...]
    states: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The figure's name in a stats report (``hits``, ``entries``, ``breaker``, ``status`` …)."""
        return self.figures[0]

    @property
    def prometheus_name(self) -> str:
        """The exposed series name: ``tierkit_tier_hits_total``, ``tierkit_tier_storage_usage_bytes``."""
        name = self.name.replace(".", "_")
        if self.unit == "By":
            name += "_bytes"
        return name + "_total" if self.kind == "counter" else name

    @property
    def prometheus_labels(self) -> tuple[str, ...]:
        return (*self.labels, "state") if self.states else self.labels


def _counter(name: str, unit: str, description: str, figure: str, labels: tuple[str, ...]) -> Metric:
    return Metric(name, "counter", unit, description, labels, (figure,))


METRICS: tuple[Metric, ...] = (
    _counter(
        "tierkit.cache.gets",
        "{get}",
        "Values asked for (get, get_many keys, decorated calls).",
        "gets",
        CACHE_LABELS,
    ),
    _counter("tierkit.cache.hits", "{hit}", "Values found in some tier.", "hits", CACHE_LABELS),
    _counter("tierkit.cache.misses", "{miss}", "Values found in no tier.", "misses", CACHE_LABELS),
    _counter(
        "tierkit.cache.stale_served",
        "{value}",
        "Stale values served because recomputing raised or passed soft_timeout.",
        "stale_served",
        CACHE_LABELS,
    ),
    _counter(
        "tierkit.cache.early_refreshes",
        "{refresh}",
        "Background recomputations started by a hit late in its entry's life.",
        "early_refreshes",
        CACHE_LABELS,
    ),
    _counter(
        "tierkit.cache.lock_timeouts",
        "{wait}",
        "Waits for another process's computation that gave up after lock_timeout.",
        "lock_timeouts",
        CACHE_LABELS,
    ),
    Metric(
        "tierkit.cache.status",
        "gauge",
        "1",
        "Overall health of the cache (1 for the current status).",
        CACHE_LABELS,
        ("status",),
        CACHE_STATUSES,
    ),
    _counter("tierkit.tier.hits", "{hit}", "Reads this tier answered.", "hits", TIER_LABELS),
    _counter("tierkit.tier.misses", "{miss}", "Reads this tier could not answer.", "misses", TIER_LABELS),
    _counter(
        "tierkit.tier.sets",
        "{set}",
        "Entries written to this tier (writes and copies of lower hits).",
        "sets",
        TIER_LABELS,
    ),
    _counter("tierkit.tier.deletes", "{delete}", "Delete calls this tier received.", "deletes", TIER_LABELS),
    _counter(
        "tierkit.tier.errors",
        "{error}",
        "Calls that failed and were skipped, and values not decodable here.",
        "errors",
        TIER_LABELS,
    ),
    _counter(
        "tierkit.tier.corrupt",
        "{entry}",
        "Damaged entries the chain found in this tier and removed.",
        "corrupt",
        TIER_LABELS,
    ),
    _counter(
        "tierkit.tier.contract_errors",
        "{error}",
        "Of the errors: hook results the tier contract forbids (a bug in the tier).",
        "contract_errors",
        TIER_LABELS,
    ),
    Metric(
        "tierkit.tier.pending_invalidations",
        "gauge",
        "{invalidation}",
        "Invalidations that could not reach the tier yet; it serves nothing until they are applied.",
        TIER_LABELS,
        ("pending_invalidations",),
    ),
    Metric(
        "tierkit.tier.breaker.state",
        "gauge",
        "1",
        "Circuit breaker state (1 for the current state).",
        TIER_LABELS,
        ("breaker",),
        BREAKER_STATES,
    ),
    Metric(
        "tierkit.tier.status",
        "gauge",
        "1",
        "Health of the tier (1 for the current status).",
        TIER_LABELS,
        ("status",),
        TIER_STATUSES,
    ),
    Metric(
        "tierkit.tier.entry.count", "gauge", "{entry}", "Entries the tier holds.", TIER_LABELS, ("entries",)
    ),
    Metric(
        "tierkit.tier.entry.limit",
        "gauge",
        "{entry}",
        "Most entries the tier holds before evicting.",
        TIER_LABELS,
        ("max_entries",),
    ),
    Metric(
        "tierkit.tier.storage.usage", "gauge", "By", "Bytes the tier's entries take.", TIER_LABELS, ("bytes",)
    ),
    Metric(
        "tierkit.tier.storage.limit",
        "gauge",
        "By",
        "Most bytes the tier holds before evicting.",
        TIER_LABELS,
        ("max_bytes",),
    ),
    _counter("tierkit.tier.evictions", "{entry}", "Entries evicted to make room.", "evictions", TIER_LABELS),
    Metric(
        "tierkit.tier.expired",
        "counter",
        "{entry}",
        "Entries removed because their TTL had passed.",
        TIER_LABELS,
        ("expired", "expired_removed"),
    ),
    _counter(
        "tierkit.tier.corrupt_removed",
        "{entry}",
        "Damaged entries the tier itself found and removed.",
        "corrupt_removed",
        TIER_LABELS,
    ),
)


def as_number(value: Any) -> float | None:
    """A figure as a metric value (an int stays an int); ``None`` for ``None``, flags and text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def figure(figures: Mapping[str, Any], metric: Metric) -> float | None:
    """The value of ``metric`` in a stats report, from the first of its figures that is a number."""
    for key in metric.figures:
        value = as_number(figures.get(key))
        if value is not None:
            return value
    return None


def _states(metric: Metric, labels: LabelValues, current: str) -> list[tuple[LabelValues, float]]:
    return [((*labels, state), 1 if state == current else 0) for state in metric.states]


CHAIN_COUNTERS = (
    "hits",
    "misses",
    "sets",
    "deletes",
    "errors",
    "corrupt",
    "contract_errors",
    "pending_invalidations",
)
"""What the chain counts for each tier, in the process (the rest of a tier's figures are its own)."""


def _context_free(figures: Mapping[str, Any]) -> Mapping[str, Any]:
    """The figures that describe the tier as a whole.

    The session tier reports the entries of the session bound to the calling thread; a
    collection runs outside any session (``active_session`` false), where its own figures
    describe nothing: only the chain's counters are kept.
    """
    if figures.get("active_session") is False:
        return {key: figures[key] for key in CHAIN_COUNTERS if key in figures}
    return figures


def _tier_samples(
    metric: Metric, labels: LabelValues, figures: Mapping[str, Any], status: str | None
) -> list[tuple[LabelValues, float]]:
    if metric.key == "status":
        return _states(metric, labels, status) if status is not None else []
    if metric.states:
        return _states(metric, labels, str(figures["breaker"])) if "breaker" in figures else []
    value = figure(_context_free(figures), metric)
    return [(labels, value)] if value is not None else []


def ordered_tiers(cache: Cache, stats: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The tiers of a stats report in the configured order (skipped ones in their place)."""
    order = {name: i for i, name in enumerate(cache.settings.tier_names())}
    return sorted(stats["tiers"].items(), key=lambda item: order.get(item[0], len(order)))


def read_cache(cache: Cache, health: bool = True) -> Reading:
    """One cache's samples (label values in the metric's label order), every metric present.

    ``health=False`` leaves out the two status metrics, whose checks reach the backends
    (a Redis ``PING``); ``stats()`` alone costs one ``INFO`` and one SQLite query.
    """
    reading: Reading = {metric: [] for metric in METRICS}
    stats = cache.stats()
    namespace = str(stats["namespace"])
    report = cache.health() if health else None
    statuses = {name: tier.status for name, tier in report.tiers.items()} if report is not None else {}
    tiers = [
        ((namespace, str(tier), str(figures["kind"])), figures, statuses.get(tier))
        for tier, figures in ordered_tiers(cache, stats)
    ]
    for metric in METRICS:
        if metric.labels == TIER_LABELS:
            for labels, figures, status in tiers:
                reading[metric] += _tier_samples(metric, labels, figures, status)
        elif metric.states:
            if report is not None:
                reading[metric] = _states(metric, (namespace,), report.status)
        else:
            value = figure(stats, metric)
            reading[metric] = [((namespace,), value)] if value is not None else []
    return reading


def read(caches: Sequence[Cache], health: bool = True) -> Reading:
    """:func:`read_cache` of each cache, merged (one series per namespace)."""
    reading: Reading = {metric: [] for metric in METRICS}
    for cache in caches:
        for metric, samples in read_cache(cache, health).items():
            reading[metric] += samples
    return reading


LATENCY_NAME = "tierkit_tier_operation_duration_seconds"
LATENCY_HELP = (
    "Sampled duration of tier calls by operation (latency_sampling setting; front-door hits untimed)."
)
LATENCY_LABELS = (*TIER_LABELS, "operation")


def latency_histograms(caches: Sequence[Cache]) -> list[tuple[LabelValues, Mapping[str, Any]]]:
    """Each timed operation's histogram report, labelled; empty for caches that sample nothing."""
    found: list[tuple[LabelValues, Mapping[str, Any]]] = []
    for cache in caches:
        if not cache.settings.latency_sampling:
            continue
        stats = cache.stats()
        for tier, figures in ordered_tiers(cache, stats):
            for operation, histogram in figures.get("latency", {}).items():
                labels = (str(stats["namespace"]), str(tier), str(figures["kind"]), operation)
                found.append((labels, histogram))
    return found


def check_caches(caches: Iterable[Cache]) -> tuple[Cache, ...]:
    """The caches one exporter serves: at least one, and no namespace twice (their series would clash)."""
    chosen = tuple(caches)
    if not chosen:
        raise TypeError("pass at least one tierkit.Cache to export")
    for cache in chosen:
        if not isinstance(cache, Cache):
            raise TypeError(f"expected tierkit.Cache instances, got {type(cache).__name__}")
    namespaces = [cache.settings.namespace for cache in chosen]
    twice = sorted({n for n in namespaces if namespaces.count(n) > 1})
    if twice:
        raise ValueError(
            f"two caches share the namespace {', '.join(map(repr, twice))}: their series would clash"
        )
    return chosen
