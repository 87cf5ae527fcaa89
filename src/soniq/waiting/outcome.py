"""What a wait for a job gives back, worked out from the job's row; no I/O.

A :class:`JobState` is one reading of a job's row (``watch_jobs``/``job_states``);
:func:`outcome_of` turns a final one into the :class:`JobOutcome` a wait returns, and
:func:`events_between` turns two successive readings into the :class:`JobEvent` items
``handle.events()`` yields. Events are derived from the rows, not from the
notifications: a notification only says which rows to read again, so a lost one, or
a poll instead of LISTEN, yields the same events (perhaps fewer ``progress`` steps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from soniq.errors import (
    INVALID_ARGUMENT,
    WAIT_IN_HANDLER,
    JobCancelled,
    JobFailed,
    JobGone,
    SoniqError,
)
from soniq.observability.log_context import CURRENT_JOB

#: The statuses a wait ends on.
FINAL = frozenset({"done", "cancelled", "dead_letter"})

#: What ``JobEvent.kind`` may be.
EventKind = Literal["started", "progress", "retrying", "done", "cancelled", "dead_letter"]


@dataclass(frozen=True, slots=True)
class JobState:
    """One reading of a job's row (or its dead letter's)."""

    job_id: str
    status: str
    result: Any
    error: str | None
    attempts: int
    progress: Any
    finished_at: datetime | None
    #: Done longer ago than SONIQ_RESULT_TTL: its result is no longer kept.
    expired: bool = False

    @property
    def final(self) -> bool:
        """Whether the job has ended (done, cancelled or dead-lettered)."""
        return self.status in FINAL

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobState:
        """A ``watch_jobs`` / ``job_states`` row."""
        return cls(
            job_id=str(row["id"]),
            status=str(row["status"]),
            result=row["result"],
            error=row["last_error"],
            attempts=int(row["attempts"]),
            progress=row["progress"],
            finished_at=row["finished_at"],
            expired=bool(row["expired"]),
        )


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a job ended, as ``handle.wait()`` returns it.

    ``status`` is ``'done'``, ``'cancelled'`` or ``'dead_letter'``; ``result`` the
    handler's return value (done jobs; None otherwise); ``error`` the last error text
    (dead letters, and jobs that failed before they were cancelled); ``attempts`` how
    many attempts were made; ``finished_at`` when it ended.
    """

    job_id: str
    status: Literal["done", "cancelled", "dead_letter"]
    result: Any
    error: str | None
    attempts: int
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One step of a job, as ``handle.events()`` yields it.

    ``kind`` is ``'started'`` (an attempt began; ``attempt`` is its number),
    ``'progress'`` (``progress`` holds what the handler last reported), ``'retrying'``
    (an attempt failed and the job goes back to the queue), or the final ``'done'``,
    ``'cancelled'`` or ``'dead_letter'``, which carry the ``outcome``.
    """

    kind: EventKind
    job_id: str
    attempt: int
    progress: Any = None
    outcome: JobOutcome | None = None


def gone(job_id: str) -> JobGone:
    """The error for a job whose outcome can't be known any more."""
    return JobGone(
        f"Job {job_id} is gone: no job or dead letter has this id (it was pruned or "
        "deleted, or it never existed; an id enqueued with connection= exists only once "
        "that transaction commits), or it finished longer ago than SONIQ_RESULT_TTL. "
        "Wait sooner after enqueueing, or keep results longer (SONIQ_RESULT_TTL, "
        "SONIQ_FINISHED_JOB_RETENTION).",
        job_id=job_id,
    )


def outcome_of(state: JobState | None, job_id: str) -> JobOutcome:
    """The outcome of a job read in a final state; JobGone for no row or an expired one."""
    if state is None or state.expired:
        raise gone(job_id)
    assert state.final, state
    status: Literal["done", "cancelled", "dead_letter"] = state.status  # type: ignore[assignment]
    return JobOutcome(
        job_id=state.job_id,
        status=status,
        result=state.result if status == "done" else None,
        error=state.error,
        attempts=state.attempts,
        finished_at=state.finished_at,
    )


def result_of(outcome: JobOutcome) -> Any:
    """A done job's result; JobFailed for a dead letter, JobCancelled for a cancel."""
    if outcome.status == "dead_letter":
        raise JobFailed(
            f"Job {outcome.job_id} failed after {outcome.attempts} attempt(s) and is in "
            f"the dead-letter queue: {outcome.error or 'no error text'}. Inspect it with "
            "app.dead_letter.get(job_id); replay it with app.retry_job(job_id).",
            job_id=outcome.job_id,
            error=outcome.error,
            outcome=outcome,
        )
    if outcome.status == "cancelled":
        raise JobCancelled(
            f"Job {outcome.job_id} was cancelled, so it has no result. Requeue it with "
            "app.retry_job(job_id) if it should run after all.",
            job_id=outcome.job_id,
            outcome=outcome,
        )
    return outcome.result


def events_between(previous: JobState | None, current: JobState) -> list[JobEvent]:
    """The events that take a job from ``previous`` (None: nothing seen yet) to
    ``current``. Steps between two readings that left no trace in the row (a progress
    value overwritten in between) are told as far as the row shows them; attempts are
    counted, so one that started and failed in between is still told as ``retrying``.
    """
    events: list[JobEvent] = []
    job_id = current.job_id
    before_status = previous.status if previous is not None else "queued"
    before_attempts = previous.attempts if previous is not None else 0
    if not current.final:
        running_before = 1 if before_status == "processing" else 0
        running_now = 1 if current.status == "processing" else 0
        # Attempts spent between the readings without ending the job: they failed.
        failed = current.attempts - before_attempts + running_before - running_now
        if failed > 0:
            events.append(JobEvent("retrying", job_id, current.attempts - running_now))
        if running_now and (not running_before or current.attempts > before_attempts):
            events.append(JobEvent("started", job_id, current.attempts))
    progress_before = previous.progress if previous is not None else None
    if current.progress is not None and current.progress != progress_before:
        events.append(JobEvent("progress", job_id, current.attempts, progress=current.progress))
    if current.final:
        outcome = outcome_of(current, job_id)
        events.append(JobEvent(outcome.status, job_id, current.attempts, current.progress, outcome))
    return events


def check_wait(timeout: object, allow_in_handler: object, call: str) -> float | None:
    """A wait's ``timeout`` (None, or finite seconds >= 0) and its place: refused inside
    a running handler (SONIQ_WAIT_IN_HANDLER) unless ``allow_in_handler``."""
    if not isinstance(allow_in_handler, bool):
        raise SoniqError(
            INVALID_ARGUMENT,
            f"allow_in_handler= must be True or False, got {allow_in_handler!r}.",
        )
    if timeout is not None:
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise SoniqError(
                INVALID_ARGUMENT,
                f"{call} timeout= must be None (no limit) or a finite number of seconds, "
                f"0 or more, got {timeout!r}.",
            )
        timeout = float(timeout)
    job = CURRENT_JOB.get()
    if job is not None and not allow_in_handler:
        raise SoniqError(
            WAIT_IN_HANDLER,
            f"{call} was called inside the running handler of job "
            f"{job.log_extra().get('job_id')}: the awaited job may need the worker slot "
            "this handler holds, so on a small pool the wait deadlocks. Enqueue the "
            "follow-up work as its own job, or pass allow_in_handler=True if the awaited "
            "job runs on workers this one does not occupy.",
        )
    return timeout


def check_return_when(return_when: object) -> bool:
    """``wait_many(return_when=)``: True for ``"first"``, False for ``"all"``."""
    if return_when in ("all", "first"):
        return return_when == "first"
    raise SoniqError(
        INVALID_ARGUMENT,
        f"return_when= must be 'all' or 'first', got {return_when!r}.",
    )
