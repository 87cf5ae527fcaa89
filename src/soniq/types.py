"""Small public value types: job status, the context a handler can ask for, Snooze."""

from __future__ import annotations

import enum
import math
from collections.abc import Set as AbstractSet
from dataclasses import FrozenInstanceError, dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from soniq.errors import COMPLETE_OUTSIDE_HANDLER, INVALID_ARGUMENT, SoniqError


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

    ``cancel_requested`` turns True once ``cancel_job`` has asked this run to stop;
    ``progress`` (``progress_sync`` in sync handlers) reports how far it has got.
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
    # Likewise: the attempt's soniq.worker.completion.Completion, bound by the worker
    # on PostgreSQL (bind_completion); None: ctx.complete refuses.
    _completion: ClassVar[Any] = None

    @property
    def cancel_requested(self) -> bool:
        """Whether this job's cancellation was requested while it runs.

        An async handler is interrupted with ``asyncio.CancelledError`` anyway; a sync
        handler cannot be, so long-running sync handlers should check this now and
        then and return (or raise) when it turns True.
        """
        return self.job_id in self._cancel_requests

    async def complete(self, conn: object, result: Any = None) -> None:
        """Mark this job done inside ``conn``'s open transaction, with ``result``.

        The job's "done" then commits with the handler's own writes on ``conn``, or
        rolls back with them: exactly once for writes to Soniq's own database. Call
        it first in the transaction: a stale attempt then fails
        (``SONIQ_JOB_LEASE_LOST``) before it writes anything, and the job's row stays
        locked until the commit, so recovery cannot hand it to another worker. Takes
        the connections ``enqueue(connection=)`` takes (psycopg, asyncpg, SQLAlchemy).
        A second call on the same transaction does nothing.
        """
        await self._completer().complete(conn, result)

    def complete_sync(self, conn: object, result: Any = None) -> None:
        """:meth:`complete` for a sync handler, on a blocking connection (psycopg,
        psycopg2, SQLAlchemy ``Session``, Django's connection)."""
        self._completer().complete_sync(conn, result)

    @property
    def connection(self) -> Any:
        """The connection of a ``@app.job(transactional=True)`` job, in the
        transaction that commits the job's "done" with the handler's writes."""
        completion = self._completion
        if completion is None or completion.connection is None:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"ctx.connection is only set while a job declared with "
                f"@app.job(transactional=True) runs, and {self.job_name!r} is not one "
                "(or its handler returned). Declare it transactional, or open a "
                "transaction of your own and call ctx.complete(conn).",
            )
        return completion.connection

    def _completer(self) -> Any:
        completion = self._completion
        if completion is None:
            raise SoniqError(
                COMPLETE_OUTSIDE_HANDLER,
                "ctx.complete() works only inside a handler that a PostgreSQL worker "
                "runs; this context was built by hand or by a backend that cannot "
                "complete in a caller's transaction (SQLite, memory).",
            )
        return completion

    # -- progress (see soniq.worker.progress) ------------------------------------------
    # Not a field either: the worker's progress writer, bound with report_progress.
    # None on a context built by hand, whose progress calls raise.
    _report_progress: ClassVar[ProgressReport | None] = None

    async def progress(
        self,
        current: float | None = None,
        total: float | None = None,
        message: str | None = None,
        data: Any = None,
    ) -> None:
        """Report how far the job has got; the latest report wins.

        ``current`` and ``total`` are numbers >= 0 (``total`` > 0; ``current`` may pass
        it), ``message`` a string, ``data`` any JSON value. Each call replaces the
        previous value in memory at once; the worker writes the latest one to the job's
        row at most once per SONIQ_PROGRESS_INTERVAL, and before the job's outcome.
        Bad input raises ``SoniqError(SONIQ_INVALID_ARGUMENT)``.
        """
        self.progress_sync(current, total, message, data)

    def progress_sync(
        self,
        current: float | None = None,
        total: float | None = None,
        message: str | None = None,
        data: Any = None,
    ) -> None:
        """:meth:`progress` for sync handlers: the same, callable from any thread."""
        report = self._report_progress
        if report is None:
            raise SoniqError(
                INVALID_ARGUMENT,
                "ctx.progress() works only on the JobContext a worker gives a running "
                "handler; this one was built by hand. Run the job through a worker (in "
                "tests: soniq.testing's drain) to record its progress.",
                job_id=self.job_id,
            )
        report(self.job_id, self.attempt, current, total, message, data)


class ProgressReport(Protocol):
    """What a context hands each progress report to (the worker's progress writer),
    from the worker's event loop or any of its threads."""

    def __call__(
        self, job_id: str, attempt: int, current: Any, total: Any, message: Any, data: Any, /
    ) -> None: ...


def report_progress(ctx: JobContext, report: ProgressReport) -> JobContext:
    """Make ``ctx.progress`` hand its values to ``report``; return ctx (the worker's)."""
    object.__setattr__(ctx, "_report_progress", report)
    return ctx


def bind_completion(ctx: JobContext, completion: object) -> JobContext:
    """Give ``ctx`` its attempt's completion (``ctx.complete``, ``ctx.connection``)."""
    object.__setattr__(ctx, "_completion", completion)
    return ctx


def watch_cancel_requests(ctx: JobContext, requests: AbstractSet[str]) -> JobContext:
    """Make ``ctx.cancel_requested`` read ``requests`` (a live set of job ids); return ctx.

    The worker calls this; the set is shared, not copied, so a request that arrives
    while the handler runs shows at once, from any thread.
    """
    object.__setattr__(ctx, "_cancel_requests", requests)
    return ctx


class Snooze(Exception):
    """Return (or raise) ``Snooze(seconds, reason=None)`` to run the job again later.

    A snoozed job goes back to the queue without spending an attempt, due in
    ``seconds`` (a negative delay counts as 0; SONIQ_SNOOZE_MAX_SECONDS caps it).
    Its ``last_error`` reads ``SNOOZE``, or ``SNOOZE: <reason>``. The value is frozen
    and compares by its fields, like a frozen dataclass; it is an exception too, so
    that code deep inside a handler can raise it.
    """

    __match_args__ = ("seconds", "reason")
    seconds: float
    reason: str | None

    def __init__(self, seconds: float, reason: str | None = None) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or math.isnan(seconds)
        ):
            raise SoniqError(
                INVALID_ARGUMENT,
                f"Snooze(seconds) takes a number of seconds, got {seconds!r}. "
                "Pass an int or float, such as Snooze(30).",
            )
        if reason is not None and not isinstance(reason, str):
            raise SoniqError(
                INVALID_ARGUMENT,
                f"Snooze(reason=) takes a string or None, got {type(reason).__name__}. "
                "Pass the reason as text.",
            )
        super().__init__(seconds, reason)
        object.__setattr__(self, "seconds", float(seconds))
        object.__setattr__(self, "reason", reason)

    def __setattr__(self, name: str, value: object) -> None:
        # Python itself sets __traceback__, __context__ ... on raise: only the fields
        # are frozen.
        if name in ("seconds", "reason"):
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in ("seconds", "reason"):
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super().__delattr__(name)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Snooze)
        return (self.seconds, self.reason) == (other.seconds, other.reason)

    def __hash__(self) -> int:
        return hash((self.seconds, self.reason))

    def __repr__(self) -> str:
        return f"Snooze(seconds={self.seconds!r}, reason={self.reason!r})"

    def __str__(self) -> str:
        return self.last_error

    def __reduce__(self) -> tuple[Any, ...]:
        return (Snooze, (self.seconds, self.reason))

    @property
    def last_error(self) -> str:
        """What the job's ``last_error`` reads while it waits: ``SNOOZE[: reason]``."""
        return "SNOOZE" if self.reason is None else f"SNOOZE: {self.reason}"

    def delay(self, cap: float) -> float:
        """The seconds the job waits: ``seconds``, at least 0 and at most ``cap``."""
        return min(max(self.seconds, 0.0), cap)
