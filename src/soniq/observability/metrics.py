"""Prometheus metrics: Soniq's series in the default registry, and an endpoint to scrape.

Used only when metrics are on (``SONIQ_METRICS=true`` or ``SONIQ_METRICS_PORT``); they
need the ``soniq[metrics]`` extra (prometheus-client), imported on first use. The
series live in prometheus_client's default registry, so an application that already
serves ``/metrics`` shows them too. Labels are task names and queues, never job ids.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

from soniq.errors import (
    METRICS_NAME_TAKEN,
    METRICS_PORT_UNAVAILABLE,
    METRICS_UNAVAILABLE,
    SoniqError,
)

logger = logging.getLogger("soniq.metrics")

LABELS = ("job_name", "queue")

#: Bucket bounds of the job duration histogram, in seconds.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip


def require_prometheus() -> ModuleType:
    """The ``prometheus_client`` module, or SONIQ_METRICS_UNAVAILABLE saying what to install."""
    try:
        import prometheus_client
    except ImportError:
        raise SoniqError(
            METRICS_UNAVAILABLE,
            "Metrics are on (SONIQ_METRICS or SONIQ_METRICS_PORT / --metrics-port) but "
            "prometheus-client is not installed. Run `pip install 'soniq[metrics]'`, or "
            "turn metrics off.",
        ) from None
    return prometheus_client


class JobSeries(NamedTuple):
    """The per-job series of one (task name, queue) pair."""

    started: Any
    succeeded: Any
    failed: Any
    dead_lettered: Any
    duration: Any


class SoniqMetrics:
    """Soniq's series in one registry.

    The worker's and enqueue's own are in prometheus_client's default registry, one
    set per process: use :func:`get_metrics`. A ``PrometheusMetricsSink`` given its
    own ``registry`` (and ``prefix``, which replaces ``soniq`` in the names) has its own.
    """

    def __init__(self, registry: Any = None, prefix: str = "soniq") -> None:
        prom = require_prometheus()
        if registry is None:
            registry = prom.REGISTRY
        made: list[Any] = []

        def add(kind: Any, name: str, doc: str, labels: Sequence[str], **kw: Any) -> Any:
            name = prefix + name.removeprefix("soniq")
            try:
                metric = kind(name, doc, labels, registry=registry, **kw)
            except ValueError as exc:  # a series of that name is already registered
                for earlier in made:  # leave the registry as it was
                    registry.unregister(earlier)
                raise SoniqError(
                    METRICS_NAME_TAKEN,
                    f"Cannot register Soniq's metric {name!r} in the Prometheus registry: "
                    f"{exc}. Something in this process (your own metrics, perhaps "
                    "copied from the hooks example) already uses the name: rename or remove "
                    "it, since Soniq now records this series itself.",
                    metric=name,
                ) from None
            made.append(metric)
            return metric

        self.enqueued = add(
            prom.Counter,
            "soniq_jobs_enqueued_total",
            "Jobs enqueued through this process: each job id an enqueue call returned.",
            LABELS,
        )
        self.started = add(
            prom.Counter, "soniq_jobs_started_total", "Job attempts started.", LABELS
        )
        self.succeeded = add(
            prom.Counter, "soniq_jobs_succeeded_total", "Job attempts that succeeded.", LABELS
        )
        self.failed = add(
            prom.Counter,
            "soniq_jobs_failed_total",
            "Job attempts that failed (raised, timed out, or could not run), whether the "
            "job is then retried or dead-lettered.",
            LABELS,
        )
        self.dead_lettered = add(
            prom.Counter,
            "soniq_jobs_dead_lettered_total",
            "Jobs this worker moved to the dead-letter queue.",
            LABELS,
        )
        self.duration = add(
            prom.Histogram,
            "soniq_jobs_duration_seconds",
            "How long job attempts took, from start to outcome (snoozed ones excluded).",
            LABELS,
            buckets=DURATION_BUCKETS,
        )
        self.queue_depth = add(
            prom.Gauge,
            "soniq_queue_depth",
            "Jobs ready to run now, per queue (read by each worker every "
            "SONIQ_METRICS_INTERVAL seconds).",
            ("queue",),
        )
        self.oldest_job_age = add(
            prom.Gauge,
            "soniq_queue_oldest_job_age_seconds",
            "How long the oldest job ready to run has been waiting, per queue (0 when none).",
            ("queue",),
        )
        self._series: dict[tuple[str, str], JobSeries] = {}

    def series(self, job_name: str, queue: str) -> JobSeries:
        """The per-job series for one task name and queue (looked up once, then cached)."""
        key = (job_name, queue)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = JobSeries(
                self.started.labels(job_name, queue),
                self.succeeded.labels(job_name, queue),
                self.failed.labels(job_name, queue),
                self.dead_lettered.labels(job_name, queue),
                self.duration.labels(job_name, queue),
            )
        return found

    def count_enqueued(self, job_name: str, queue: str, count: int) -> None:
        """Add ``count`` written jobs to ``soniq_jobs_enqueued_total``."""
        self.enqueued.labels(job_name, queue).inc(count)

    def set_queue(self, queue: str, depth: int, oldest_age: float) -> None:
        """Set one queue's gauges."""
        self.queue_depth.labels(queue).set(depth)
        self.oldest_job_age.labels(queue).set(max(0.0, oldest_age))


_METRICS: SoniqMetrics | None = None
_LOCK = threading.Lock()


def get_metrics() -> SoniqMetrics:
    """Soniq's series, registered in the default registry on first call."""
    global _METRICS
    require_prometheus()  # also once they exist: the check must not depend on call order
    if _METRICS is None:
        with _LOCK:
            if _METRICS is None:
                _METRICS = SoniqMetrics()
    return _METRICS


@dataclass
class _Served:
    server: Any
    users: int = 0


_SERVERS: dict[tuple[str, int], _Served] = {}


class MetricsServer:
    """``http://host:port/metrics``, served from a daemon thread of this process.

    Workers of one process that ask for the same address share one server; it stops
    when the last of them closes it.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._closed = False

    @classmethod
    def start(cls, host: str, port: int) -> MetricsServer:
        """Serve the default registry on ``host:port``, or SONIQ_METRICS_PORT_UNAVAILABLE."""
        prom = require_prometheus()
        with _LOCK:
            served = _SERVERS.get((host, port))
            if served is None:
                try:
                    server, _thread = prom.start_http_server(port, addr=host)
                except OSError as exc:
                    raise SoniqError(
                        METRICS_PORT_UNAVAILABLE,
                        f"Cannot serve metrics on {host}:{port}: {exc.strerror or exc}. "
                        "Choose a free port with SONIQ_METRICS_PORT (or --metrics-port), "
                        "or an address of this machine with SONIQ_METRICS_HOST.",
                        host=host,
                        port=port,
                    ) from None
                served = _SERVERS[(host, port)] = _Served(server)
                logger.info(
                    "serving metrics on http://%s:%d/metrics",
                    host,
                    port,
                    extra={"metrics_host": host, "metrics_port": port},
                )
            served.users += 1
        return cls(host, port)

    def close(self) -> None:
        """Stop serving, unless another worker of this process still uses the server.

        Blocks for up to half a second while the server thread notices (run it in a
        thread from async code).
        """
        with _LOCK:
            if self._closed:
                return
            self._closed = True
            served = _SERVERS[(self.host, self.port)]
            served.users -= 1
            if served.users:
                return
            del _SERVERS[(self.host, self.port)]
        served.server.shutdown()
        served.server.server_close()
