"""The async worker runtime."""

from soniq.worker.loop import Worker

__all__ = ["Worker"]
