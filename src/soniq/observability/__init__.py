"""Seeing what Soniq does: log context, metrics, tracing, and their wiring into
enqueue and the worker.

The metrics sink protocol and its two implementations are importable from here.
"""

from soniq.observability.sinks import MetricsSink, NoopMetricsSink, PrometheusMetricsSink

__all__ = ["MetricsSink", "NoopMetricsSink", "PrometheusMetricsSink"]
