"""Soniq: a background-job queue whose only infrastructure is your PostgreSQL."""

from soniq.app import Soniq
from soniq.errors import SoniqError
from soniq.schedules import cron, daily, every, monthly, weekly
from soniq.task_ref import TaskRef, task_ref
from soniq.types import JobContext, JobStatus, Snooze

__all__ = [
    "JobContext",
    "JobStatus",
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
__version__ = "0.2.0.dev0"
