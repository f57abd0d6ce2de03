"""The OpenTelemetry instruments, collected by the SDK's in-memory reader and its Prometheus exporter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, InMemoryMetricReader, Sum
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tierkit
from tests._tiers import DictTier
from tierkit import hookimpl
from tierkit.integrations._metrics import METRICS, read
from tierkit.integrations.otel import instrument
from tierkit.integrations.prometheus import TierkitCollector

Points = dict[str, dict[frozenset[tuple[str, Any]], float]]


def collect(reader: InMemoryMetricReader) -> tuple[Points, dict[str, Any]]:
    """Each instrument's points ({attributes: value}) and the instruments themselves, by name."""
    data = reader.get_metrics_data()
    assert data is not None
    points: Points = {}
    found: dict[str, Any] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "tierkit"
            assert scope.scope.version == tierkit.__version__
            for metric in scope.metrics:
                found[metric.name] = metric
                points[metric.name] = {
                    frozenset(point.attributes.items()): point.value for point in metric.data.data_points
                }
    return points, found


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


def test_instruments_report_the_counters(reader: InMemoryMetricReader) -> None:
    cache = tierkit.Cache(namespace="shop", order=["memory", "file"])
    instrument(cache, meter_provider=MeterProvider(metric_readers=[reader]))
    cache.set("a", 1, persistent=True)
    cache.get("a")
    cache.get("b")

    points, found = collect(reader)
    memory = frozenset({"cache_namespace": "shop", "tier": "memory", "kind": "memory"}.items())
    file = frozenset({"cache_namespace": "shop", "tier": "file", "kind": "file"}.items())
    assert points["tierkit.cache.gets"] == {frozenset({("cache_namespace", "shop")}): 2}
    assert points["tierkit.tier.hits"] == {memory: 1, file: 0}
    assert points["tierkit.tier.misses"] == {memory: 1, file: 1}
    assert points["tierkit.tier.entry.count"][file] == 1
    open_memory = frozenset({*memory, ("state", "open")})
    assert points["tierkit.tier.breaker.state"][open_memory] == 0

    hits = found["tierkit.tier.hits"]
    assert isinstance(hits.data, Sum) and hits.data.is_monotonic
    assert hits.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    assert isinstance(found["tierkit.tier.entry.count"].data, Gauge)
    assert found["tierkit.tier.storage.usage"].unit == "By"
    assert found["tierkit.tier.hits"].description == "Reads this tier answered."

    cache.get("a")
    points, _ = collect(reader)
    assert points["tierkit.tier.hits"][memory] == 2  # observed again at each collection


def test_every_metric_is_an_instrument_with_the_prometheus_values(reader: InMemoryMetricReader) -> None:
    """Both exporters read the one mapping: the same series, the same values."""
    cache = tierkit.Cache(namespace="shop", order=["memory", "file"])
    instrument(cache, meter_provider=MeterProvider(metric_readers=[reader]))
    cache.set("a", 1, persistent=True)
    cache.get("a")
    points, found = collect(reader)
    expected = read([cache])
    assert set(found) == {metric.name for metric in METRICS}
    for metric in METRICS:
        assert found[metric.name].unit == metric.unit
        want = {
            frozenset(zip(metric.prometheus_labels, labels, strict=True)): value
            for labels, value in expected[metric]
        }
        assert points[metric.name] == want, metric.name


def series(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample a registry exposes, without the scope labels OpenTelemetry's exporter adds."""
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels = frozenset((k, v) for k, v in sample.labels.items() if not k.startswith("otel_scope_"))
            if sample.name.startswith("tierkit_"):
                found[sample.name, labels] = sample.value
    return found


def test_through_opentelemetrys_prometheus_exporter_the_series_are_the_collectors() -> None:
    """The Prometheus names of the docs are what OpenTelemetry's exporter makes of the instruments."""
    cache = tierkit.Cache(namespace="shop", order=["memory", "file"])
    via_otel, native = CollectorRegistry(), CollectorRegistry()
    instrument(
        cache, meter_provider=MeterProvider(metric_readers=[PrometheusMetricReader(registry=via_otel)])
    )
    native.register(TierkitCollector(cache))
    cache.set("a", 1, persistent=True)
    cache.get("a")
    cache.get("b")
    exported = series(via_otel)
    assert exported == series(native)
    assert {name for name, _ in exported} == {metric.prometheus_name for metric in METRICS}


class CountingTier(DictTier):
    """Counts its stats broadcasts: one per collection, not one per instrument."""

    calls: ClassVar[int] = 0

    @hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        CountingTier.calls += 1
        return {"entries": len(self.data)}


def test_one_reading_per_collection_shared_by_the_instruments(reader: InMemoryMetricReader) -> None:
    CountingTier.calls = 0
    DictTier.stores.pop("counting", None)  # the test tiers keep their entries by tier name
    cache = tierkit.Cache(namespace="count", order=["counting"], kinds={"counting": CountingTier})
    instrument(cache, meter_provider=MeterProvider(metric_readers=[reader]))
    assert CountingTier.calls == 0  # nothing is read until a collection
    collect(reader)
    assert CountingTier.calls == 1
    cache.set("k", 1)
    points, _ = collect(reader)
    assert CountingTier.calls == 2
    labels = frozenset({"cache_namespace": "count", "tier": "counting", "kind": "counting"}.items())
    assert points["tierkit.tier.entry.count"][labels] == 1
    assert points["tierkit.tier.sets"][labels] == 1


def test_health_false_observes_no_status(reader: InMemoryMetricReader) -> None:
    cache = tierkit.Cache(namespace="quiet", order=["memory"])
    instrument(cache, meter_provider=MeterProvider(metric_readers=[reader]), health=False)
    points, _ = collect(reader)
    assert "tierkit.tier.status" not in points and "tierkit.cache.status" not in points
    assert points["tierkit.tier.hits"]


def test_instrument_checks_its_caches() -> None:
    with pytest.raises(TypeError, match=r"at least one tierkit\.Cache"):
        instrument()
    with pytest.raises(ValueError, match="share the namespace 'x'"):
        instrument(*(tierkit.Cache(namespace="x", order=["memory"]) for _ in range(2)))


def test_sampled_latency_is_an_opentelemetry_histogram(reader: InMemoryMetricReader, tmp_path: Any) -> None:
    options = {"file": {"options": {"directory": str(tmp_path)}}}
    cache = tierkit.Cache(namespace="timed", order=["memory", "file"], tiers=options, latency_sampling=1)
    instrument(cache, meter_provider=MeterProvider(metric_readers=[reader]))
    for n in range(5):
        cache.set(f"k{n}", n, persistent=True)
    data = reader.get_metrics_data()
    assert data is not None
    [histogram] = [
        metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "tierkit.tier.operation.duration"
    ]
    assert histogram.unit == "s"
    points = {
        dict(p.attributes)["tier"]: p
        for p in histogram.data.data_points
        if p.attributes["operation"] == "set"
    }
    assert points["file"].count == 5 and points["memory"].count == 5
    assert points["file"].sum > 0
