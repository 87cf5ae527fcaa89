"""Where the worker reports each job's start and end: the metrics sink.

A sink is any object with the two async methods of :class:`MetricsSink`. Give one to
the app (``Soniq(metrics_sink=...)`` or ``app.metrics_sink = ...`` before it is
initialised) and every worker of the app calls it for each attempt. Without one, the
worker calls :class:`PrometheusMetricsSink` when ``SONIQ_METRICS`` (or a metrics port)
is on, and nothing at all otherwise: :class:`NoopMetricsSink` costs no call per job.

The statuses an attempt ends with are :data:`STATUSES`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.observability.metrics import SoniqMetrics, get_metrics

#: How an attempt can end, as ``record_job_end(status=...)`` says: it succeeded; it
#: failed and will be retried; it was moved to the dead-letter queue (after a failure,
#: or because it could not run at all); it snoozed; a worker shutdown put it back in
#: the queue; it stopped after ``cancel_job``.
STATUSES = ("done", "failed", "dead_letter", "snoozed", "requeued", "cancelled")


@runtime_checkable
class MetricsSink(Protocol):
    """Receives each job attempt's start and end from the worker.

    Both methods are awaited in the job's own task, so they delay the job while they
    run: record in memory and return (hand anything slow to a task of your own). An
    exception from either is logged and does not affect the job.
    """

    async def record_job_start(
        self, *, job_id: str, job_name: str, queue: str, attempt: int
    ) -> None:
        """An attempt is about to run (``attempt`` counts from 1)."""
        ...

    async def record_job_end(
        self,
        *,
        job_id: str,
        job_name: str,
        queue: str,
        status: str,
        duration_s: float,
        error: str | None = None,
    ) -> None:
        """The attempt ended with ``status`` (one of :data:`STATUSES`) after
        ``duration_s`` seconds; ``error`` is the failure's text for ``failed`` and
        ``dead_letter``, else None."""
        ...


class NoopMetricsSink:
    """A sink that records nothing: the default. The worker skips it entirely."""

    async def record_job_start(
        self, *, job_id: str, job_name: str, queue: str, attempt: int
    ) -> None:
        """Do nothing."""

    async def record_job_end(
        self,
        *,
        job_id: str,
        job_name: str,
        queue: str,
        status: str,
        duration_s: float,
        error: str | None = None,
    ) -> None:
        """Do nothing."""


class PrometheusMetricsSink:
    """Soniq's Prometheus series (see the observability guide), as a sink.

    With no arguments it records into the series in prometheus_client's default
    registry, the ones ``SONIQ_METRICS=true`` turns on and ``/metrics`` serves. Give
    it a ``registry`` of your own (and a ``prefix`` replacing ``soniq`` in the series
    names) to keep them apart. Needs ``soniq[metrics]``: SONIQ_METRICS_UNAVAILABLE
    otherwise.
    """

    def __init__(self, registry: Any = None, prefix: str = "soniq") -> None:
        #: The series recorded into.
        self.metrics: SoniqMetrics = (
            get_metrics()
            if registry is None and prefix == "soniq"
            else SoniqMetrics(registry, prefix)
        )

    async def record_job_start(
        self, *, job_id: str, job_name: str, queue: str, attempt: int
    ) -> None:
        """Count the attempt in ``soniq_jobs_started_total``."""
        self.metrics.series(job_name, queue).started.inc()

    async def record_job_end(
        self,
        *,
        job_id: str,
        job_name: str,
        queue: str,
        status: str,
        duration_s: float,
        error: str | None = None,
    ) -> None:
        """Count the outcome and observe the duration (not for a snooze or a requeue)."""
        if status in ("snoozed", "requeued"):
            return
        series = self.metrics.series(job_name, queue)
        series.duration.observe(duration_s)
        if status == "done":
            series.succeeded.inc()
        elif status == "failed":
            series.failed.inc()
        elif status == "dead_letter":
            series.failed.inc()
            series.dead_lettered.inc()


def check_metrics_sink(sink: object) -> MetricsSink | None:
    """``sink`` if it can serve as a metrics sink (None: the default), else
    SONIQ_INVALID_ARGUMENT."""
    if sink is None:
        return None
    missing = [
        name
        for name in ("record_job_start", "record_job_end")
        if not callable(getattr(sink, name, None))
    ]
    if missing:
        raise SoniqError(
            INVALID_ARGUMENT,
            f"metrics_sink must have async record_job_start(...) and record_job_end(...) "
            f"methods; {sink!r} lacks {' and '.join(missing)}. See "
            "soniq.observability.MetricsSink.",
        )
    return sink  # type: ignore[return-value]  # checked: it has both methods
