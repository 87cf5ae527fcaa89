"""Turning metrics and tracing on and off, and every way that can go wrong (no database)."""

from __future__ import annotations

import socket
import sys
import urllib.request
from collections.abc import Iterator

import prometheus_client
import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter

from soniq import Soniq, SoniqError
from soniq.errors import (
    METRICS_NAME_TAKEN,
    METRICS_PORT_UNAVAILABLE,
    METRICS_UNAVAILABLE,
    TRACING_UNAVAILABLE,
)
from soniq.observability.metrics import MetricsServer, SoniqMetrics
from soniq.observability.tracing import ConsumerTracing, consumer_tracing
from soniq.observability.worker import QueueGauges
from soniq.settings import SoniqSettings
from soniq.storage.backend import PostgresBackend
from soniq.storage.store import Store


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[CollectorRegistry]:
    """A fresh default registry, so that these tests can register Soniq's series again."""
    fresh = CollectorRegistry()
    monkeypatch.setattr(prometheus_client, "REGISTRY", fresh)
    yield fresh


def test_everything_is_off_by_default_except_tracing_auto() -> None:
    s = SoniqSettings.load(environ={})
    assert (s.metrics, s.metrics_port, s.metrics_host, s.metrics_interval) == (
        False,
        None,
        "0.0.0.0",
        5.0,
    )
    assert (s.tracing, s.log_format, s.metrics_enabled) == ("auto", "text", False)
    assert SoniqSettings.load(environ={"SONIQ_METRICS_PORT": "9100"}).metrics_enabled


def test_nothing_is_instrumented_when_both_are_off() -> None:
    assert Soniq(tracing="off")._instruments is None


@pytest.mark.parametrize("setting", [{"metrics": True}, {"metrics_port": 9100}])
def test_metrics_without_prometheus_client_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, setting: dict[str, object]
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    with pytest.raises(SoniqError) as info:
        Soniq(**setting)
    assert info.value.code == METRICS_UNAVAILABLE
    assert "pip install 'soniq[metrics]'" in info.value.message


def test_tracing_on_without_opentelemetry_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(SoniqError) as info:
        Soniq(tracing="on")
    assert info.value.code == TRACING_UNAVAILABLE
    assert "pip install 'soniq[otel]'" in info.value.message
    assert Soniq()._instruments is None  # auto: quietly off


def test_auto_tracing_makes_no_job_spans_without_a_tracer_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    assert consumer_tracing(SoniqSettings.load(environ={})) is None
    on = consumer_tracing(SoniqSettings.load(environ={}, tracing="on"))
    assert isinstance(on, ConsumerTracing)


def test_a_taken_metric_name_is_reported_and_nothing_is_left_registered(
    registry: CollectorRegistry,
) -> None:
    # What the hooks example in the docs registers: it owns soniq_jobs_failed_total.
    Counter("soniq_jobs_failed", "Jobs failed", ["job_name"], registry=registry)
    before = {m.name for m in registry.collect()}
    with pytest.raises(SoniqError) as info:
        SoniqMetrics()
    assert info.value.code == METRICS_NAME_TAKEN
    assert info.value.details["metric"] == "soniq_jobs_failed_total"
    assert {m.name for m in registry.collect()} == before


def test_queue_gauges_drop_to_zero_for_queues_that_emptied(registry: CollectorRegistry) -> None:
    backend = PostgresBackend("postgresql://unused", SoniqSettings.load(environ={}))
    gauges = QueueGauges(Store(backend), SoniqMetrics(), ["c"], 5.0)
    gauges.apply([("a", 3, 12.5), ("b", 1, 0.25)])

    def gauge(name: str, queue: str) -> float | None:
        return registry.get_sample_value(name, {"queue": queue})

    assert gauge("soniq_queue_depth", "a") == 3
    assert gauge("soniq_queue_oldest_job_age_seconds", "a") == 12.5
    assert gauge("soniq_queue_depth", "c") == 0  # served, nothing ready
    gauges.apply([("b", 2, 1.0)])
    assert [gauge("soniq_queue_depth", q) for q in "abc"] == [0, 2, 0]
    assert gauge("soniq_queue_oldest_job_age_seconds", "a") == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_busy_metrics_port_is_reported() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SoniqError) as info:
            MetricsServer.start("127.0.0.1", port)
    assert info.value.code == METRICS_PORT_UNAVAILABLE
    assert f"127.0.0.1:{port}" in info.value.message
    assert "SONIQ_METRICS_PORT" in info.value.message


def test_workers_of_one_process_share_a_metrics_server() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    first = MetricsServer.start("127.0.0.1", port)
    second = MetricsServer.start("127.0.0.1", port)  # the same address: no bind error
    first.close()
    first.close()  # twice is harmless
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
    second.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5)
