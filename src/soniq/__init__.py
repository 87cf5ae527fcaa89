"""Soniq: a background-job queue whose only infrastructure is your PostgreSQL."""

from soniq.app import Soniq
from soniq.core.retry import ExponentialBackoff, RetryPolicy
from soniq.enqueue.task_ref import TaskRef, task_ref
from soniq.errors import SoniqError
from soniq.recurring.schedules import cron, daily, every, monthly, weekly
from soniq.types import JobContext, JobStatus, Snooze

__all__ = [
    "ExponentialBackoff",
    "JobContext",
    "JobStatus",
    "RetryPolicy",
    "Snooze",
    "Soniq",
    "SoniqError",
    "TaskRef",
    "cron",
    "daily",
    "every",
    "monthly",
    "task_ref",
    "weekly",
]
from soniq.version import __version__ as __version__
