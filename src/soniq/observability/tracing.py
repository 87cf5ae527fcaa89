"""OpenTelemetry: a trace that runs from the code that enqueues a job into its run.

An enqueue made while a span is active gets a PRODUCER span of its own, and the
context of that span (W3C ``traceparent``, ``tracestate`` and any baggage, through
the global propagator) is written into the job row's ``headers`` column. The worker
runs each job inside a CONSUMER span whose parent is the context read back from the
row. Enqueues outside a span write no headers.

Needs ``opentelemetry-api`` (the ``soniq[otel]`` extra), imported only when tracing
is on; exporting spans is the application's business (the OpenTelemetry SDK).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from soniq.errors import TRACING_UNAVAILABLE, SoniqError
from soniq.settings import SoniqSettings

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span

#: The instrumentation scope of Soniq's spans.
TRACER_NAME = "soniq"
#: ``messaging.system`` of every span.
SYSTEM = "soniq"


def otel_importable() -> bool:
    """Whether the OpenTelemetry API can be imported."""
    try:
        import opentelemetry.propagate
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def _wanted(settings: SoniqSettings) -> bool:
    """``SONIQ_TRACING``: off, on (or SONIQ_TRACING_UNAVAILABLE), auto = if importable."""
    if settings.tracing == "off":
        return False
    if otel_importable():
        return True
    if settings.tracing == "on":
        raise SoniqError(
            TRACING_UNAVAILABLE,
            "SONIQ_TRACING=on but the OpenTelemetry API is not installed. Run "
            "`pip install 'soniq[otel]'`, or set SONIQ_TRACING=auto (or off).",
        )
    return False


def producer_tracing(settings: SoniqSettings) -> ProducerTracing | None:
    """Tracing of enqueues under these settings, or None when it is off."""
    return ProducerTracing() if _wanted(settings) else None


def consumer_tracing(settings: SoniqSettings) -> ConsumerTracing | None:
    """Tracing of job runs under these settings, or None when it is off.

    With ``auto``, spans are made only if a tracer provider is configured when the
    worker starts: without one they would all be discarded anyway.
    """
    if not _wanted(settings):
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    unset = isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    if settings.tracing == "auto" and unset:
        return None
    return ConsumerTracing()


def _tracer() -> Any:
    from opentelemetry import trace

    from soniq.version import __version__

    return trace.get_tracer(TRACER_NAME, __version__)


class ProducerSpan:
    """An enqueue's PRODUCER span, current until :meth:`end`; ``headers`` is for the row."""

    __slots__ = ("headers", "span", "token")

    def __init__(self, span: Span, token: Token[Context], headers: str) -> None:
        self.span = span
        self.token = token
        self.headers = headers

    def end(self, error: BaseException | None = None) -> None:
        """Close the span, with ``error`` recorded and status ERROR if the write failed."""
        from opentelemetry import context, trace

        if error is not None:
            self.span.record_exception(error)
            self.span.set_status(trace.Status(trace.StatusCode.ERROR, _describe(error)))
        context.detach(self.token)
        self.span.end()


class ProducerTracing:
    """Starts PRODUCER spans for enqueues made while a span is active."""

    def __init__(self) -> None:
        from opentelemetry import trace

        self.tracer = _tracer()
        # Looked up once: this runs on every enqueue, and most have no span to continue.
        self._current_span = trace.get_current_span

    def start(self, job_name: str, queue: str, first_id: str, count: int) -> ProducerSpan | None:
        """A span for writing ``count`` jobs, or None when no span is active (no headers)."""
        if not self._current_span().get_span_context().is_valid:
            return None
        from opentelemetry import context, propagate, trace

        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "enqueue",
            "messaging.destination.name": queue,
            "soniq.job.name": job_name,
        }
        if count == 1:
            attributes["messaging.message.id"] = first_id
        else:
            attributes["messaging.batch.message_count"] = count
        span = self.tracer.start_span(
            f"soniq.enqueue {job_name}", kind=trace.SpanKind.PRODUCER, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span))
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return ProducerSpan(span, token, json.dumps(carrier, separators=(",", ":")))


class JobSpan:
    """A job's CONSUMER span, current in the job's task until :meth:`end`."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: Token[Context]) -> None:
        self.span = span
        self.token = token

    def end(self, outcome: str, error: str | None) -> None:
        """Close the span: ``outcome`` as an attribute, status ERROR when ``error``."""
        from opentelemetry import context, trace

        self.span.set_attribute("soniq.job.outcome", outcome)
        if error is not None:
            self.span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        context.detach(self.token)
        self.span.end()


class ConsumerTracing:
    """Starts the CONSUMER span of each job run, continuing the producer's trace."""

    def __init__(self) -> None:
        self.tracer = _tracer()

    def start(
        self, *, job_id: str, job_name: str, queue: str, attempt: int, headers: object
    ) -> JobSpan:
        """Start the run's span as the current one, child of the context in ``headers``."""
        from opentelemetry import context, trace

        parent = _parent(headers)
        span = self.tracer.start_span(
            f"soniq.run {job_name}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "run",
                "messaging.destination.name": queue,
                "messaging.message.id": job_id,
                "soniq.job.name": job_name,
                "soniq.job.attempt": attempt,
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        return JobSpan(span, token)


def _parent(headers: object) -> Context:
    """The context carried in a job's headers; an empty one (a new trace) if none."""
    from opentelemetry import propagate
    from opentelemetry.context import Context

    # A fresh Context, not the current one: a worker that runs inside some span of its
    # own must not adopt every job without headers into that trace.
    if isinstance(headers, Mapping) and headers:
        carrier = {str(k): str(v) for k, v in headers.items() if isinstance(v, str)}
        return propagate.extract(carrier, context=Context())
    return Context()


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
