"""Soniq: a background-job queue whose only infrastructure is your PostgreSQL."""

from soniq.app import Soniq
from soniq.core.limits import Concurrency, RateLimit, RateLimited
from soniq.core.retry import ExponentialBackoff, RetryPolicy
from soniq.enqueue.task_ref import TaskRef, task_ref
from soniq.errors import JobCancelled, JobFailed, JobGone, SoniqError
from soniq.recurring.schedules import cron, daily, every, monthly, weekly
from soniq.types import JobContext, JobStatus, Snooze
from soniq.version import __version__ as __version__
from soniq.waiting import JobEvent, JobHandle, JobOutcome

#: Whether ``soniq.dashboard`` can be imported (the original's flag). Soniq has no
#: dashboard yet, so it is False.
DASHBOARD_AVAILABLE: bool = False

__all__ = [
    "DASHBOARD_AVAILABLE",
    "Concurrency",
    "ExponentialBackoff",
    "JobCancelled",
    "JobContext",
    "JobEvent",
    "JobFailed",
    "JobGone",
    "JobHandle",
    "JobOutcome",
    "JobStatus",
    "RateLimit",
    "RateLimited",
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
