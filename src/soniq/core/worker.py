"""The worker under the original's import path (the code is in soniq.worker)."""

from soniq.worker.loop import Worker

__all__ = ["Worker"]
