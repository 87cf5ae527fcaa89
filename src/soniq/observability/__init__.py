"""Seeing what Soniq does: log context, metrics, tracing, and their wiring into
enqueue and the worker."""
