"""What an enqueue reports when metrics or tracing are on: a span, headers, a count.

An app holds an :class:`EnqueueInstruments` only when one of them is on (see
:func:`enqueue_instruments`); otherwise enqueues skip all of this.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

from soniq.enqueue.plan import JobRow
from soniq.observability.metrics import SoniqMetrics, get_metrics
from soniq.observability.tracing import ProducerSpan, ProducerTracing, producer_tracing
from soniq.settings import SoniqSettings

logger = logging.getLogger("soniq.enqueue")


def enqueue_instruments(settings: SoniqSettings) -> EnqueueInstruments | None:
    """The instruments these settings turn on, or None.

    Raises SONIQ_METRICS_UNAVAILABLE or SONIQ_TRACING_UNAVAILABLE when a setting asks
    for something whose package is not installed.
    """
    metrics = get_metrics() if settings.metrics_enabled else None
    tracing = producer_tracing(settings)
    if metrics is None and tracing is None:
        return None
    return EnqueueInstruments(metrics, tracing)


class EnqueueInstruments:
    """Wraps the write of one enqueue call's rows."""

    def __init__(self, metrics: SoniqMetrics | None, tracing: ProducerTracing | None) -> None:
        self.metrics = metrics
        self.tracing = tracing

    def enqueuing(self, rows: Sequence[JobRow]) -> AbstractContextManager[None]:
        """Around the write of ``rows`` (all of one task and queue).

        Inside an active span: a PRODUCER span, current during the write, whose
        context is stored in each row's ``headers``. After a successful write: the
        rows are counted in ``soniq_jobs_enqueued_total``. A failure of the
        instruments themselves is logged and never fails the enqueue.
        """
        first = rows[0]
        span = None
        if self.tracing is not None:
            try:
                span = self.tracing.start(first.job_name, first.queue, first.id, len(rows))
            except Exception:
                logger.exception("could not start the enqueue's span", extra=_extra(first))
        if span is None and self.metrics is None:
            return _NOTHING  # the common case with tracing on: no span is active
        if span is not None:
            for row in rows:
                row.headers = span.headers
        return _Enqueuing(first, len(rows), span, self.metrics)


_NOTHING = nullcontext()


class _Enqueuing:
    """Ends the producer span and counts the rows, once the write is done."""

    __slots__ = ("count", "first", "metrics", "span")

    def __init__(
        self, first: JobRow, count: int, span: ProducerSpan | None, metrics: SoniqMetrics | None
    ) -> None:
        self.first = first
        self.count = count
        self.span = span
        self.metrics = metrics

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        first = self.first
        try:
            if self.span is not None:
                self.span.end(exc)
            if exc is None and self.metrics is not None:
                self.metrics.count_enqueued(first.job_name, first.queue, self.count)
        except Exception:
            logger.exception("could not record the enqueue's metrics or span", extra=_extra(first))


def _extra(row: JobRow) -> dict[str, str]:
    return {"job_name": row.job_name, "queue": row.queue}
