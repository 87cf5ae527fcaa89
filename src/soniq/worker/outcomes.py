"""What became of one attempt at a job, and the one rule for an attempt that failed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Done:
    """Finished; ``result`` is the JSON text of the return value (or None).

    ``committed``: the handler's own transaction already wrote it (``ctx.complete``,
    a transactional job), so there is nothing left to write.
    """

    result: str | None
    committed: bool = False


@dataclass(frozen=True)
class Retry:
    """Failed with attempts left; run again after ``delay`` seconds."""

    delay: float
    error: str


@dataclass(frozen=True)
class Bury:
    """Move to the dead-letter queue, for ``reason``."""

    reason: str
    error: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class Requeue:
    """Back to the queue without spending the attempt (snooze, shutdown).

    ``error`` is the ``last_error`` to write (a snooze's ``SNOOZE[: reason]``); None
    keeps the row's.
    """

    delay: float
    #: Put back by a worker shutdown, not by the handler's own snooze.
    by_shutdown: bool = False
    error: str | None = None
    #: Seconds to hold the job's limit key back, fleet-wide (``RateLimited``), or None.
    block: float | None = None


@dataclass(frozen=True)
class Cancelled:
    """Stopped after ``cancel_job`` asked it to: the row ends cancelled, no retry."""


#: The one :class:`Cancelled` (it carries nothing).
CANCELLED = Cancelled()
Outcome = Done | Retry | Bury | Requeue | Cancelled

#: How ``Worker.outcomes`` and ``soniq_stats`` name each kind of outcome.
KINDS: dict[type, str] = {
    Done: "done",
    Retry: "retried",
    Bury: "dead_lettered",
    Requeue: "snoozed",
    Cancelled: "cancelled",
}


def failure_outcome(
    attempt: int,
    max_attempts: int,
    error: str,
    *,
    delay: float,
    reason: str,
    trace: str | None = None,
) -> Retry | Bury:
    """What follows a failed attempt: another one after ``delay`` seconds while
    attempts are left, else the dead-letter queue for ``reason``.

    ``attempt`` is the failed attempt's number (1-based) out of ``max_attempts``;
    ``error`` and ``trace`` describe the failure on the row.
    """
    if attempt < max_attempts:
        return Retry(delay, error)
    return Bury(reason, error, trace)
