"""Soniq: a background-job queue whose only infrastructure is your PostgreSQL."""

from soniq.app import Soniq
from soniq.errors import SoniqError
from soniq.task_ref import TaskRef, task_ref
from soniq.types import JobContext, JobStatus, Snooze

__all__ = ["JobContext", "JobStatus", "Snooze", "Soniq", "SoniqError", "TaskRef", "task_ref"]
__version__ = "0.2.0.dev0"
