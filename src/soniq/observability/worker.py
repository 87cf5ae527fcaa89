"""What the worker reports about each job when a metrics sink or tracing is on.

The worker holds a :class:`JobInstruments` only when one of them is on; otherwise it
skips all of this (one ``is None`` test at the start and at the end of a job). Per
job, :meth:`JobInstruments.start` returns a :class:`JobProbe` that ends with the
job's outcome. Nothing here touches the database per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from soniq.observability.metrics import MetricsServer, SoniqMetrics, get_metrics
from soniq.observability.sinks import MetricsSink, NoopMetricsSink, PrometheusMetricsSink
from soniq.observability.tracing import ConsumerTracing, JobSpan, consumer_tracing
from soniq.settings import SoniqSettings
from soniq.storage.records import ClaimedJob
from soniq.storage.store import Store
from soniq.worker.outcomes import Bury, Cancelled, Done, Outcome, Requeue, Retry
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")


def job_instruments(
    settings: SoniqSettings, sink: MetricsSink | None = None
) -> JobInstruments | None:
    """The instruments for a worker with these settings and the app's ``sink``, or None.

    The sink called per job is the app's own, unless it is None or a
    :class:`NoopMetricsSink`; then the Prometheus one when metrics are on; else none.
    The queue gauges are kept whenever metrics are on. Raises
    SONIQ_METRICS_UNAVAILABLE or SONIQ_TRACING_UNAVAILABLE when a setting asks for
    something whose package is not installed.
    """
    if isinstance(sink, NoopMetricsSink):
        sink = None
    gauges: SoniqMetrics | None = None
    if settings.metrics_enabled:
        gauges = sink.metrics if isinstance(sink, PrometheusMetricsSink) else get_metrics()
        if sink is None:
            sink = PrometheusMetricsSink()
    tracing = consumer_tracing(settings)
    if sink is None and tracing is None:
        return None
    return JobInstruments(sink, tracing, gauges)


#: The sink's status for each kind of outcome (a Requeue is a snooze or a shutdown's).
_STATUS: dict[type, str] = {
    Done: "done",
    Retry: "failed",
    Bury: "dead_letter",
    Requeue: "snoozed",
    Cancelled: "cancelled",
}


class JobProbe:
    """One job's measurements: its start time, its span."""

    __slots__ = ("instruments", "job", "span", "started")

    def __init__(self, instruments: JobInstruments, job: ClaimedJob) -> None:
        self.instruments = instruments
        self.job = job
        self.started = time.perf_counter()
        self.span: JobSpan | None = None
        if instruments.tracing is not None:
            self.span = instruments.tracing.start(
                job_id=job.id,
                job_name=job.job_name,
                queue=job.queue,
                attempt=job.attempt,
                headers=job.headers,
            )

    async def end(self, outcome: Outcome) -> None:
        """Tell the sink how the attempt ended, close the span.

        A failure here is logged and never stops the outcome from being recorded.
        """
        sink = self.instruments.sink
        if sink is not None:
            try:
                await self._report(sink, outcome)
            except Exception:
                logger.exception("the metrics sink failed", extra=self.job.log_extra())
        if self.span is not None:
            try:
                self.span.end(*_describe(outcome))
            except Exception:
                logger.exception("could not end the job's span", extra=self.job.log_extra())

    async def _report(self, sink: MetricsSink, outcome: Outcome) -> None:
        job = self.job
        shutdown = isinstance(outcome, Requeue) and outcome.by_shutdown
        error: str | None = None
        if isinstance(outcome, Retry):
            error = outcome.error
        elif isinstance(outcome, Bury):
            error = outcome.error or outcome.reason
        await sink.record_job_end(
            job_id=job.id,
            job_name=job.job_name,
            queue=job.queue,
            status="requeued" if shutdown else _STATUS[type(outcome)],
            duration_s=time.perf_counter() - self.started,
            error=error,
        )
        emit = getattr(sink, "emit", None) if shutdown else None
        if emit is not None:
            # The original Soniq's optional hook for a job its shutdown put back.
            result = emit("shutdown_nack", job_id=job.id, job_name=job.job_name, queue=job.queue)
            if inspect.isawaitable(result):
                await result


def _describe(outcome: Outcome) -> tuple[str, str | None]:
    """The span's ``soniq.job.outcome`` and error text for ``outcome``."""
    if isinstance(outcome, Done):
        return "succeeded", None
    if isinstance(outcome, Retry):
        return "retried", outcome.error
    if isinstance(outcome, Bury):
        return "dead_lettered", outcome.error or outcome.reason
    if isinstance(outcome, Cancelled):
        return "cancelled", None
    return "requeued", None


class JobInstruments:
    """The metrics sink and tracing of one worker run, and the Prometheus series the
    queue gauges go to (None when metrics are off)."""

    def __init__(
        self,
        sink: MetricsSink | None,
        tracing: ConsumerTracing | None,
        gauges: SoniqMetrics | None = None,
    ) -> None:
        self.sink = sink
        self.tracing = tracing
        self.gauges = gauges

    async def start(self, job: ClaimedJob) -> JobProbe | None:
        """Tell the sink and open the span; call in the job's own task.

        A failure here is logged and never stops the job (None: nothing to end).
        """
        if self.sink is not None:
            try:
                await self.sink.record_job_start(
                    job_id=job.id, job_name=job.job_name, queue=job.queue, attempt=job.attempt
                )
            except Exception:
                logger.exception("the metrics sink failed", extra=job.log_extra())
        try:
            return JobProbe(self, job)
        except Exception:
            logger.exception("could not start the job's span", extra=job.log_extra())
            return None

    def failed(self, exc: BaseException) -> None:
        """Record the handler's exception on the running job's span (the current one)."""
        if self.tracing is not None:
            from opentelemetry import trace

            with contextlib.suppress(Exception):
                trace.get_current_span().record_exception(exc)


class QueueGauges:
    """Refreshes the queue depth and oldest-job-age gauges with one query per interval."""

    def __init__(
        self,
        store: Store,
        metrics: SoniqMetrics,
        queues: Sequence[str] | None,
        interval: float,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.queues = list(queues) if queues else None
        self.interval = interval
        # Queues this reader has reported; the served ones are reported from the start.
        self.known: set[str] = set(self.queues or ())

    async def refresh(self) -> None:
        """Read the gauges once."""
        self.apply(await self.store.workers.queue_gauges(self.queues))

    def apply(self, rows: Sequence[Sequence[Any]]) -> None:
        """Set the gauges from ``(queue, depth, oldest age)`` rows.

        A queue reported before but missing from ``rows`` has nothing ready now: its
        gauges drop to 0 instead of keeping a stale value.
        """
        seen = set()
        for queue, depth, oldest_age in rows:
            self.metrics.set_queue(queue, depth, float(oldest_age or 0.0))
            seen.add(queue)
        for queue in self.known - seen:
            self.metrics.set_queue(queue, 0, 0.0)
        self.known |= seen

    async def run(self, closing: asyncio.Event) -> None:
        """Refresh every ``interval`` seconds until ``closing`` (a background task)."""
        while not closing.is_set():
            try:
                await self.refresh()
            except self.store.errors as exc:  # an outage or not: try again next interval
                logger.warning("cannot read the queue gauges (%s)", str(exc).strip())
            await nap(closing, self.interval)


@contextlib.asynccontextmanager
async def metrics_endpoint(settings: SoniqSettings) -> AsyncIterator[None]:
    """Serve ``/metrics`` on SONIQ_METRICS_HOST:SONIQ_METRICS_PORT while in the block."""
    if settings.metrics_port is None:
        yield
        return
    server = MetricsServer.start(settings.metrics_host, settings.metrics_port)
    try:
        yield
    finally:
        await asyncio.to_thread(server.close)
