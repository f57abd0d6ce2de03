"""OpenTelemetry observable instruments for tierkit caches.

::

    from tierkit.integrations.otel import instrument

    instrument(cache)  # on the global MeterProvider; or instrument(cache, meter_provider=provider)

The instruments are observed when a metric reader collects, from ``Cache.stats()`` and
``Cache.health()``: the cache's hit path gains nothing.  They are the metrics of
:mod:`tierkit.integrations._metrics`, under their OpenTelemetry names (``tierkit.tier.hits``).
Needs ``pip install 'tierkit[otel]'`` (the API; an SDK or a vendor distribution to export).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as exc:
    raise ImportError(
        "tierkit.integrations.otel needs opentelemetry-api: pip install 'tierkit[otel]'"
    ) from exc

from tierkit import __version__
from tierkit._cache import Cache
from tierkit.integrations._metrics import LATENCY_HELP, METRICS, Metric, Reading, check_caches, read

__all__ = ["instrument"]

Instrument = metrics.ObservableCounter | metrics.ObservableGauge | metrics.Histogram


class _Snapshot:
    """One reading per collection, shared by all the instruments.

    A collection asks each instrument once; the first instrument asked a second time means a
    new collection has begun, so the caches are read again.  Every instrument of a collection
    therefore reports the same instant (``hits`` never exceeds ``gets``), with one ``stats()``
    per cache per collection instead of one per instrument.
    """

    def __init__(self, read_now: Callable[[], Reading]) -> None:
        self._read_now = read_now
        self._lock = threading.Lock()
        self._reading: Reading = {}
        self._served: set[Metric] = set()

    def samples(self, metric: Metric) -> Reading:
        with self._lock:
            if not self._reading or metric in self._served:
                self._reading = self._read_now()
                self._served = set()
            self._served.add(metric)
            return self._reading


def _callback(snapshot: _Snapshot, metric: Metric) -> Callable[[CallbackOptions], Iterable[Observation]]:
    labels = metric.prometheus_labels

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, dict(zip(labels, values, strict=True)))
            for values, value in snapshot.samples(metric)[metric]
        ]

    return observe


def instrument(
    *caches: Cache, meter_provider: MeterProvider | None = None, health: bool = True
) -> tuple[Instrument, ...]:
    """Create the observable instruments of ``caches`` on a ``tierkit`` meter; return them.

    ``meter_provider`` defaults to the global one.  ``health=False`` leaves the two status
    instruments without observations: their checks reach the backends at each collection
    (a Redis ``PING``).
    """
    chosen = check_caches(caches)
    meter = metrics.get_meter("tierkit", __version__, meter_provider=meter_provider)
    snapshot = _Snapshot(lambda: read(chosen, health))
    created: list[Instrument] = []
    for metric in METRICS:
        create = (
            meter.create_observable_counter if metric.kind == "counter" else meter.create_observable_gauge
        )
        created.append(
            create(
                metric.name,
                callbacks=[_callback(snapshot, metric)],
                unit=metric.unit,
                description=metric.description,
            )
        )
    if any(cache.settings.latency_sampling for cache in chosen):
        created.append(_latency_histogram(meter, chosen))
    return tuple(created)


def _latency_histogram(meter: metrics.Meter, caches: tuple[Cache, ...]) -> Instrument:
    """A histogram each sampled tier call is recorded into (the ``latency_sampling`` setting)."""
    histogram = meter.create_histogram("tierkit.tier.operation.duration", unit="s", description=LATENCY_HELP)
    for cache in caches:
        for slot in cache.chain.slots:
            if slot.latency is not None:
                labels = {"cache_namespace": cache.settings.namespace, "tier": slot.name, "kind": slot.kind}

                def record(operation: str, seconds: float, labels: dict[str, str] = labels) -> None:
                    histogram.record(seconds, {**labels, "operation": operation})

                slot.latency.listeners.append(record)
    return histogram
