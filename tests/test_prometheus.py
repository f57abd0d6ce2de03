"""The Prometheus collector, scraped through a real ``/metrics`` endpoint (prometheus_client's server)."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import tierkit
from tests._tiers import KINDS, DictTier
from tierkit import hookimpl
from tierkit.integrations._metrics import METRICS
from tierkit.integrations.prometheus import TierkitCollector


class Page:
    """A scraped ``/metrics`` page: its text, and per series name the samples as {labels: value}."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.series: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.types[sample.name] = family.type
                self.series.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.series[name][frozenset(labels.items())]

    def label_names(self, name: str) -> set[str]:
        return {label for labels in self.series[name] for label, _ in labels}


@pytest.fixture
def serve() -> Iterator[Callable[..., Callable[[], Page]]]:
    """``serve(*caches, **options)``: a real metrics HTTP server for the caches; returns a scraper."""
    servers: list[Any] = []

    def start(*caches: tierkit.Cache, **options: Any) -> Callable[[], Page]:
        registry = CollectorRegistry()
        registry.register(TierkitCollector(*caches, **options))
        server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_port}/metrics"

        def scrape() -> Page:
            with urllib.request.urlopen(url, timeout=10) as answer:
                assert answer.status == 200
                return Page(answer.read().decode())

        return scrape

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_counters_follow_the_operations_per_tier(serve: Callable[..., Callable[[], Page]]) -> None:
    cache = tierkit.Cache(namespace="shop", order=["memory", "file"])
    scrape = serve(cache)
    cache.set("a", 1, persistent=True)
    cache.get("a")  # memory hit
    cache.get("b")  # miss everywhere
    cache.clear(tiers=["memory"])
    cache.get("a")  # file hit, copied into memory
    cache.delete("a")

    page = scrape()
    memory = {"cache_namespace": "shop", "tier": "memory", "kind": "memory"}
    file = {"cache_namespace": "shop", "tier": "file", "kind": "file"}
    assert page.value("tierkit_cache_gets_total", cache_namespace="shop") == 3
    assert page.value("tierkit_cache_hits_total", cache_namespace="shop") == 2
    assert page.value("tierkit_cache_misses_total", cache_namespace="shop") == 1
    assert [
        page.value(f"tierkit_tier_{c}_total", **memory) for c in ("hits", "misses", "sets", "deletes")
    ] == [
        1,
        2,
        2,
        1,
    ]
    assert [page.value(f"tierkit_tier_{c}_total", **file) for c in ("hits", "misses", "sets", "deletes")] == [
        1,
        1,
        1,
        1,
    ]
    assert page.value("tierkit_tier_errors_total", **file) == 0
    assert page.value("tierkit_tier_entry_count", **file) == 0  # deleted
    assert (
        page.value("tierkit_tier_storage_limit_bytes", **file) == cache.stats()["tiers"]["file"]["max_bytes"]
    )

    cache.get("a")
    assert scrape().value("tierkit_tier_misses_total", **memory) == 3  # read again at each scrape


def test_names_types_and_units_follow_prometheus_conventions(
    serve: Callable[..., Callable[[], Page]],
) -> None:
    scrape = serve(tierkit.Cache(namespace="shop", order=["memory", "file"]))
    page = scrape()
    for name, kind in page.types.items():
        assert name.startswith("tierkit_")
        assert (kind == "counter") == name.endswith("_total"), name
    assert "# TYPE tierkit_tier_storage_usage_bytes gauge" in page.text
    assert "# TYPE tierkit_tier_hits_total counter" in page.text
    assert page.label_names("tierkit_tier_hits_total") == {"cache_namespace", "tier", "kind"}
    assert page.label_names("tierkit_tier_breaker_state") == {"cache_namespace", "tier", "kind", "state"}
    assert page.label_names("tierkit_cache_gets_total") == {"cache_namespace"}
    # every metric of the mapping is exposed by a memory + file chain, and nothing else
    assert set(page.series) == {metric.prometheus_name for metric in METRICS}


def test_evictions_and_limits_of_a_bounded_memory_tier(serve: Callable[..., Callable[[], Page]]) -> None:
    cache = tierkit.Cache(
        namespace="small", order=["memory"], tiers={"memory": {"options": {"max_entries": 2}}}
    )
    scrape = serve(cache)
    for i in range(5):
        cache.set(f"k{i}", i)
    page = scrape()
    labels = {"cache_namespace": "small", "tier": "memory", "kind": "memory"}
    assert page.value("tierkit_tier_entry_count", **labels) == 2
    assert page.value("tierkit_tier_entry_limit", **labels) == 2
    assert page.value("tierkit_tier_evictions_total", **labels) == 3
    assert "tierkit_tier_storage_usage_bytes" not in page.series  # not counted without max_bytes


def test_memory_bytes_are_exposed_when_the_tier_counts_them(serve: Callable[..., Callable[[], Page]]) -> None:
    cache = tierkit.Cache(
        namespace="sized", order=["memory"], tiers={"memory": {"options": {"max_bytes": 1_000_000}}}
    )
    scrape = serve(cache)
    cache.set("k", "x" * 1000)
    page = scrape()
    labels = {"cache_namespace": "sized", "tier": "memory", "kind": "memory"}
    assert (
        page.value("tierkit_tier_storage_usage_bytes", **labels) == cache.stats()["tiers"]["memory"]["bytes"]
    )
    assert page.value("tierkit_tier_storage_usage_bytes", **labels) >= 1000
    assert page.value("tierkit_tier_storage_limit_bytes", **labels) == 1_000_000


def test_a_failing_tier_shows_errors_an_open_breaker_and_down(
    serve: Callable[..., Callable[[], Page]],
) -> None:
    cache = tierkit.Cache(
        namespace="flaky",
        order=["memory", "remote"],
        tiers={"remote": {"options": {"fail": True}}},
        kinds=KINDS,
    )
    scrape = serve(cache)
    for i in range(5):
        cache.get(f"k{i}")
    cache.delete("k0")  # cannot reach the remote tier: remembered for when it is back
    page = scrape()
    remote = {"cache_namespace": "flaky", "tier": "remote", "kind": "remote"}
    assert page.value("tierkit_tier_pending_invalidations", **remote) == 2  # the key and its stale copy
    assert page.value("tierkit_tier_contract_errors_total", **remote) == 0
    assert page.value("tierkit_tier_errors_total", **remote) == 3  # then the breaker skips it
    assert page.value("tierkit_tier_breaker_state", **remote, state="open") == 1
    assert page.value("tierkit_tier_breaker_state", **remote, state="closed") == 0
    assert page.value("tierkit_tier_status", **remote, state="down") == 1
    assert page.value("tierkit_cache_status", cache_namespace="flaky", state="down") == 1
    assert page.value("tierkit_cache_status", cache_namespace="flaky", state="ok") == 0


class LyingTier(DictTier):
    """Answers a get with what the contract forbids: a str instead of an Entry or None."""

    @hookimpl
    def tierkit_get(self, key: str) -> Any:
        return "not an entry"


def test_a_tier_that_breaks_its_contract_is_counted(serve: Callable[..., Callable[[], Page]]) -> None:
    cache = tierkit.Cache(namespace="lies", order=["memory", "liar"], kinds={"liar": LyingTier})
    scrape = serve(cache)
    assert cache.get("k") is None
    page = scrape()
    liar = {"cache_namespace": "lies", "tier": "liar", "kind": "liar"}
    assert page.value("tierkit_tier_contract_errors_total", **liar) == 1
    assert page.value("tierkit_tier_errors_total", **liar) == 1


def test_a_skipped_tier_has_a_status_and_no_counters(serve: Callable[..., Callable[[], Page]]) -> None:
    scrape = serve(tierkit.Cache(namespace="plain"))  # default order: no Redis URL, no session
    page = scrape()
    redis = {"cache_namespace": "plain", "tier": "redis", "kind": "redis"}
    assert page.value("tierkit_tier_status", **redis, state="skipped") == 1
    assert frozenset(redis.items()) not in page.series["tierkit_tier_hits_total"]


def test_session_figures_are_left_out_outside_a_session(serve: Callable[..., Callable[[], Page]]) -> None:
    cache = tierkit.Cache(namespace="web", order=["memory", "session"])
    scrape = serve(cache)
    page = scrape()
    session = frozenset({"cache_namespace": "web", "tier": "session", "kind": "session"}.items())
    assert session in page.series["tierkit_tier_hits_total"]  # the chain's counters are there
    assert session not in page.series["tierkit_tier_entry_count"]  # a scrape has no session


def test_one_collector_serves_several_namespaces(serve: Callable[..., Callable[[], Page]]) -> None:
    shop, blog = (tierkit.Cache(namespace=n, order=["memory"]) for n in ("shop", "blog"))
    scrape = serve(shop, blog)
    shop.get("x")
    blog.set("y", 1)
    blog.get("y")
    page = scrape()
    assert page.value("tierkit_cache_misses_total", cache_namespace="shop") == 1
    assert page.value("tierkit_cache_hits_total", cache_namespace="blog") == 1


def test_caches_are_checked_when_the_collector_is_made() -> None:
    with pytest.raises(ValueError, match="two caches share the namespace 'shop'"):
        TierkitCollector(*(tierkit.Cache(namespace="shop", order=["memory"]) for _ in range(2)))
    with pytest.raises(TypeError, match=r"at least one tierkit\.Cache"):
        TierkitCollector()
    with pytest.raises(TypeError, match=r"expected tierkit\.Cache instances, got dict"):
        TierkitCollector({})  # type: ignore[arg-type]


def test_a_registry_takes_one_collector_for_all_its_caches() -> None:
    registry = CollectorRegistry()
    registry.register(TierkitCollector(tierkit.Cache(namespace="a", order=["memory"])))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(TierkitCollector(tierkit.Cache(namespace="b", order=["memory"])))


class CountingTier(DictTier):
    """Counts the broadcasts that reach it: a scrape must cost one stats() and nothing per get."""

    seen: ClassVar[dict[str, int]] = {}

    @hookimpl
    def tierkit_stats(self) -> Mapping[str, Any]:
        self.seen["stats"] = self.seen.get("stats", 0) + 1
        return {"entries": len(self.data)}


def test_the_caches_are_read_at_scrape_time_only(serve: Callable[..., Callable[[], Page]]) -> None:
    CountingTier.seen.clear()
    DictTier.stores.pop("counting", None)  # the test tiers keep their entries by tier name
    cache = tierkit.Cache(namespace="count", order=["counting"], kinds={"counting": CountingTier})
    get_before = cache.get
    scrape = serve(cache, health=False)
    assert CountingTier.seen == {}  # registering describes the metrics without reading the cache
    for _ in range(100):
        cache.get("k")
    assert CountingTier.seen == {}
    assert cache.get == get_before  # the hit path is the cache's own
    page = scrape()
    assert CountingTier.seen == {"stats": 1}
    assert (
        page.value("tierkit_tier_entry_count", cache_namespace="count", tier="counting", kind="counting") == 0
    )
    assert "tierkit_tier_status" not in page.series  # health=False: no backend checks per scrape
    assert "tierkit_cache_status" not in page.series


def test_no_secret_reaches_the_metrics(serve: Callable[..., Callable[[], Page]]) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = tierkit.Cache(
        namespace="secret",
        order=["memory", "redis"],
        tiers={"redis": {"options": {"url": f"redis://app:hunter2-very-secret@127.0.0.1:{port}/0"}}},
    )
    scrape = serve(cache)
    cache.get("k")
    page = scrape()
    assert "hunter2" not in page.text
    redis = {"cache_namespace": "secret", "tier": "redis", "kind": "redis"}
    assert page.value("tierkit_tier_errors_total", **redis) == 1
    assert page.value("tierkit_tier_status", **redis, state="down") == 1


def test_sampled_latency_histograms_per_tier_and_operation(
    serve: Callable[..., Callable[[], Page]], tmp_path: Any
) -> None:
    options = {"file": {"options": {"directory": str(tmp_path)}}}
    cache = tierkit.Cache(namespace="timed", order=["memory", "file"], tiers=options, latency_sampling=2)
    untimed = tierkit.Cache(namespace="untimed", order=["memory", "file"], tiers=options)
    scrape = serve(cache, untimed)
    for n in range(20):
        cache.set(f"k{n}", n, persistent=True)
        untimed.set(f"k{n}", n, persistent=True)
    cache.clear(tiers=["memory"])
    for n in range(20):
        cache.get(f"k{n}")  # memory misses, file hits: timed; the memory front door never is
    report = cache.stats()["tiers"]["file"]["latency"]
    assert report["set"]["count"] == 10 and report["get"]["count"] == 10  # one call in 2, from the first
    assert "get" not in cache.stats()["tiers"]["memory"].get("latency", {})
    assert "latency" not in untimed.stats()["tiers"]["file"]
    page = scrape()
    name = "tierkit_tier_operation_duration_seconds"
    labels = {"cache_namespace": "timed", "tier": "file", "kind": "file", "operation": "get"}
    assert page.types[f"{name}_count"] == "histogram"
    assert page.value(f"{name}_count", **labels) == 10
    assert page.value(f"{name}_bucket", **labels, le="+Inf") == 10
    assert 0 < page.value(f"{name}_sum", **labels) < 10
    assert not any(dict(key)["cache_namespace"] == "untimed" for key in page.series[f"{name}_count"])
