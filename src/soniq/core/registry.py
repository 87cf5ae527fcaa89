"""``from soniq.core.registry import JobRegistry``, the path the worker docs use."""

from soniq.registry import JobRegistry, JobSpec

__all__ = ["JobRegistry", "JobSpec"]
