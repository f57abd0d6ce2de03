"""A ``prometheus_client`` collector for tierkit caches.

::

    from prometheus_client import REGISTRY
    from tierkit.integrations.prometheus import TierkitCollector

    REGISTRY.register(TierkitCollector(cache))

The collector reads ``Cache.stats()`` and ``Cache.health()`` when Prometheus scrapes, so the
cache's hit path gains nothing.  The metrics are those of :mod:`tierkit.integrations._metrics`.
Needs ``pip install 'tierkit[prometheus]'``.
"""

from __future__ import annotations

from collections.abc import Iterator

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:
    raise ImportError(
        "tierkit.integrations.prometheus needs prometheus_client: pip install 'tierkit[prometheus]'"
    ) from exc

from tierkit._cache import Cache
from tierkit.integrations._metrics import (
    LATENCY_HELP,
    LATENCY_LABELS,
    LATENCY_NAME,
    METRICS,
    Reading,
    check_caches,
    latency_histograms,
    read,
)
from tierkit.integrations._metrics import Metric as TierkitMetric

__all__ = ["TierkitCollector"]


def _family(metric: TierkitMetric) -> CounterMetricFamily | GaugeMetricFamily:
    factory = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
    unit = "bytes" if metric.unit == "By" else ""
    return factory(metric.prometheus_name, metric.description, labels=metric.prometheus_labels, unit=unit)


class TierkitCollector(Collector):
    """Exposes each cache's counters and states, labelled by ``cache_namespace``, ``tier`` and ``kind``.

    One collector may serve several caches (of different namespaces).  ``health=False`` leaves
    out ``tierkit_cache_status`` and ``tierkit_tier_status``, whose checks reach the backends on
    every scrape (a Redis ``PING``, bounded by its timeouts).
    """

    def __init__(self, *caches: Cache, health: bool = True) -> None:
        self._caches = check_caches(caches)
        self._health = health

    def describe(self) -> Iterator[Metric]:
        """The metric names, without reading the caches (the registry calls it on ``register``)."""
        for metric in METRICS:
            yield _family(metric)
        yield HistogramMetricFamily(LATENCY_NAME, LATENCY_HELP, labels=LATENCY_LABELS)

    def collect(self) -> Iterator[Metric]:
        reading: Reading = read(self._caches, self._health)
        for metric, samples in reading.items():
            family = _family(metric)
            for labels, value in samples:
                family.add_metric(labels, value)
            yield family
        latency = HistogramMetricFamily(LATENCY_NAME, LATENCY_HELP, labels=LATENCY_LABELS)
        for labels, histogram in latency_histograms(self._caches):
            latency.add_metric(labels, list(histogram["buckets"].items()), histogram["sum"])
        yield latency
