"""Blocking facade over Soniq for code without an event loop (Django, Flask, scripts).

The generated facade is built from the async core; until then this package only
re-exports the names that need no event loop.
"""

from soniq import JobContext, JobStatus, SoniqError, TaskRef, task_ref

__all__ = ["JobContext", "JobStatus", "SoniqError", "TaskRef", "task_ref"]
