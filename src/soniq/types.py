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
