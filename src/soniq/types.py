"""Small public value types: job status and the context a handler can ask for."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class JobStatus(str, enum.Enum):
    """The states a ``soniq_jobs`` row moves through.

    Jobs that run out of attempts leave the table for ``soniq_dead_letter_jobs``.
    """

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class JobContext:
    """Facts about the running job, given to a handler parameter annotated with it."""

    job_id: str
    job_name: str
    attempt: int
    max_attempts: int
    queue: str
    worker_id: str | None = None
    scheduled_at: datetime | None = None
    created_at: datetime | None = None


class Snooze(Exception):
    """Raise (or return) ``Snooze(seconds)`` to run the job again later.

    A snoozed job goes back to the queue without spending an attempt.
    """

    def __init__(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"Snooze needs seconds >= 0, got {seconds!r}")
        super().__init__(f"snoozed for {seconds}s")
        self.seconds = float(seconds)
