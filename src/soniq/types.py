"""Small public value types: job status and the context a handler can ask for."""

from __future__ import annotations

import enum
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar


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
    """Facts about the running job, given to a handler parameter annotated with it.

    ``cancel_requested`` turns True once ``cancel_job`` has asked this run to stop.
    """

    job_id: str
    job_name: str
    attempt: int
    max_attempts: int
    queue: str
    worker_id: str | None = None
    scheduled_at: datetime | None = None
    created_at: datetime | None = None

    # Not a field (the fields are the public contract): the worker's set of job ids
    # with a pending cancel request, shared by every context it hands out and bound
    # with watch_cancel_requests. A context built by hand never sees a request.
    _cancel_requests: ClassVar[AbstractSet[str]] = frozenset()

    @property
    def cancel_requested(self) -> bool:
        """Whether this job's cancellation was requested while it runs.

        An async handler is interrupted with ``asyncio.CancelledError`` anyway; a sync
        handler cannot be, so long-running sync handlers should check this now and
        then and return (or raise) when it turns True.
        """
        return self.job_id in self._cancel_requests


def watch_cancel_requests(ctx: JobContext, requests: AbstractSet[str]) -> JobContext:
    """Make ``ctx.cancel_requested`` read ``requests`` (a live set of job ids); return ctx.

    The worker calls this; the set is shared, not copied, so a request that arrives
    while the handler runs shows at once, from any thread.
    """
    object.__setattr__(ctx, "_cancel_requests", requests)
    return ctx


class Snooze(Exception):
    """Raise (or return) ``Snooze(seconds)`` to run the job again later.

    A snoozed job goes back to the queue without spending an attempt.
    """

    def __init__(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"Snooze needs seconds >= 0, got {seconds!r}")
        super().__init__(f"snoozed for {seconds}s")
        self.seconds = float(seconds)
