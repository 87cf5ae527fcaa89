"""What the store's methods take and return, and rows mapped to them by column name."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

from soniq.storage.queries import Query

#: One finished job for ``store.jobs.complete``: id, the attempt claimed, result JSON
#: text (None: no result). A plain tuple: the worker builds one per job.
Completion = tuple[str, int, str | None]


class ClaimedJob(NamedTuple):
    """A job row this worker holds for one attempt (built straight from the row)."""

    id: str
    job_name: str
    args: dict[str, Any]
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    scheduled_at: datetime | None
    created_at: datetime | None
    #: Propagation headers as the producer stored them (a trace context), or None.
    headers: Any
    #: The concurrency/rate limit key the job counts against, or None: not limited.
    limit_key: str | None = None

    def log_extra(self) -> dict[str, Any]:
        """Fields every log record about this job carries."""
        return {
            "job_id": self.id,
            "job_name": self.job_name,
            "queue": self.queue,
            "attempt": self.attempt,
        }


class BulkStatements(NamedTuple):
    """What an adapter may run to write a batch, as the dialect chose them for it.

    ``copy`` writes the batch's rows in bulk (PostgreSQL's COPY for the batch's
    columns, with or without a shared ``scheduled_at``; SQLite's one-row INSERT, run
    for each row); ``insert`` is the multi-row INSERT for drivers without COPY.
    """

    copy: Query
    insert: Query


class LimitedClaim(NamedTuple):
    """One limited claim: the jobs taken, in how many seconds a key held back by its
    rate or a block becomes eligible (None: none is), and the round-robin cursor to
    start the next claim from."""

    jobs: list[ClaimedJob]
    wake_in: float | None
    cursor: str | None


class Promoted(NamedTuple):
    """One ``promote_due`` batch: jobs moved, queues woken, seconds to the next one due."""

    moved: int
    woke: int
    next_due: float | None


class Recovered(NamedTuple):
    """What recovering stale workers did: workers removed, jobs requeued, dead-lettered."""

    workers: int
    requeued: int
    dead_lettered: int


class QueueGauge(NamedTuple):
    """One queue's ready depth and the age of its oldest ready job (seconds)."""

    queue: str
    depth: int
    oldest_age: float | None


R = TypeVar("R", bound=tuple[Any, ...])


def records(cls: type[R], columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[R]:
    """``rows`` as ``cls`` records, each field taken from the column of its name.

    The columns are matched to the fields once per shape (cached), then each row is
    built positionally: no dict per row. A missing column is a ``LookupError``.
    """
    pick = _picker(cls, columns)
    make = cls._make  # type: ignore[attr-defined]
    if pick is None:
        return [make(row) for row in rows]
    return [make(pick(row)) for row in rows]


@lru_cache(maxsize=128)
def _picker(cls: type[tuple[Any, ...]], columns: tuple[str, ...]) -> itemgetter[Any] | None:
    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    if columns == fields:
        return None  # already in field order
    missing = [f for f in fields if f not in columns]
    if missing:
        raise LookupError(f"{cls.__name__} needs columns {missing}; the query gave {columns}")
    index = [columns.index(f) for f in fields]
    if len(index) == 1:
        only = index[0]
        return itemgetter(slice(only, only + 1))
    return itemgetter(*index)


class Notification(NamedTuple):
    """One NOTIFY heard on a LISTEN connection."""

    channel: str
    payload: str
