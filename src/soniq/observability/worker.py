"""What the worker reports about each job when metrics or tracing are on.

The worker holds a :class:`JobInstruments` only when one of them is on; otherwise it
skips all of this (one ``is None`` test at the start and at the end of a job). Per
job, :meth:`JobInstruments.start` returns a :class:`JobProbe` that ends with the
job's outcome. Nothing here touches the database per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from soniq.observability.metrics import MetricsServer, SoniqMetrics, get_metrics
from soniq.observability.tracing import ConsumerTracing, JobSpan, consumer_tracing
from soniq.settings import SoniqSettings
from soniq.storage.records import ClaimedJob
from soniq.storage.store import Store
from soniq.worker.outcomes import Bury, Cancelled, Done, Outcome, Requeue, Retry
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")


def job_instruments(settings: SoniqSettings) -> JobInstruments | None:
    """The instruments these settings turn on for a worker, or None.

    Raises SONIQ_METRICS_UNAVAILABLE or SONIQ_TRACING_UNAVAILABLE when a setting asks
    for something whose package is not installed.
    """
    metrics = get_metrics() if settings.metrics_enabled else None
    tracing = consumer_tracing(settings)
    if metrics is None and tracing is None:
        return None
    return JobInstruments(metrics, tracing)


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

    def end(self, outcome: Outcome) -> None:
        """Count the outcome, observe the duration, close the span.

        A failure here is logged and never stops the outcome from being recorded.
        """
        try:
            self._end(outcome)
        except Exception:
            logger.exception("could not end the job's metrics or span", extra=self.job.log_extra())

    def _end(self, outcome: Outcome) -> None:
        job = self.job
        metrics = self.instruments.metrics
        if metrics is not None:
            series = metrics.series(job.job_name, job.queue)
            if not isinstance(outcome, Requeue):
                series.duration.observe(time.perf_counter() - self.started)
            if isinstance(outcome, Done):
                series.succeeded.inc()
            elif isinstance(outcome, (Retry, Bury)):
                series.failed.inc()
                if isinstance(outcome, Bury):
                    series.dead_lettered.inc()
        if self.span is not None:
            self.span.end(*_describe(outcome))


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
    """Metrics and tracing for one worker run."""

    def __init__(self, metrics: SoniqMetrics | None, tracing: ConsumerTracing | None) -> None:
        self.metrics = metrics
        self.tracing = tracing

    def start(self, job: ClaimedJob) -> JobProbe | None:
        """Count the start and open the span; call in the job's own task.

        A failure here is logged and never stops the job (None: nothing to end).
        """
        try:
            if self.metrics is not None:
                self.metrics.series(job.job_name, job.queue).started.inc()
            return JobProbe(self, job)
        except Exception:
            logger.exception("could not start the job's metrics or span", extra=job.log_extra())
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
