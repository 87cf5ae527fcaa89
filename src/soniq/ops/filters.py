"""Checking the filters of the listing and bulk methods, before any I/O.

``list_jobs`` and the ``app.dead_letter`` methods filter by name, queue, a time range
and (dead letters) a reason. This module turns what the caller passed into the bound
parameters of the queries, or raises a :class:`~soniq.errors.SoniqError`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from soniq.errors import (
    FILTER_REQUIRED,
    INVALID_ARGUMENT,
    INVALID_JOB_ID,
    NAIVE_DATETIME,
    SoniqError,
)


def aware(label: str, value: object) -> datetime | None:
    """``value`` as an aware UTC datetime, None for None; else SONIQ_NAIVE_DATETIME etc."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise SoniqError(
            INVALID_ARGUMENT,
            f"{label} must be a timezone-aware datetime or None, got {type(value).__name__}.",
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise SoniqError(
            NAIVE_DATETIME,
            f"{label}={value.isoformat()} has no time zone. Pass an aware datetime, e.g. "
            "datetime.now(timezone.utc) - timedelta(hours=2).",
        )
    return value.astimezone(timezone.utc)


def time_range(since: object, until: object) -> tuple[datetime | None, datetime | None]:
    """Check ``since``/``until`` (aware datetimes or None, ``since`` not after ``until``)."""
    start, end = aware("since", since), aware("until", until)
    if start is not None and end is not None and start > end:
        raise SoniqError(
            INVALID_ARGUMENT,
            f"since ({start.isoformat()}) is after until ({end.isoformat()}), so nothing "
            "can match. Swap them.",
        )
    return start, end


def optional_text(label: str, value: object) -> str | None:
    """A name or queue filter: a non-empty string, or None for no filter."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SoniqError(
            INVALID_ARGUMENT, f"{label} must be a non-empty string or None, got {value!r}."
        )
    return value


def like_pattern(text: str) -> str:
    """An ILIKE pattern (``ESCAPE '\\'``) matching ``text`` anywhere, taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class DeadLetterFilter:
    """The filters shared by ``list``, ``count``, ``replay_many``, ``purge`` and ``export``.

    Build it with :meth:`check`; ``params()`` gives the bound parameters of the
    dead-letter queries.
    """

    job_name: str | None = None
    queue: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def check(
        cls,
        job_name: object = None,
        queue: object = None,
        reason: object = None,
        since: object = None,
        until: object = None,
    ) -> DeadLetterFilter:
        """Validate every filter, or raise SONIQ_INVALID_ARGUMENT / SONIQ_NAIVE_DATETIME."""
        start, end = time_range(since, until)
        return cls(
            job_name=optional_text("job_name", job_name),
            queue=optional_text("queue", queue),
            reason=optional_text("reason", reason),
            since=start,
            until=end,
        )

    @property
    def empty(self) -> bool:
        """True when no filter is set (every dead letter matches)."""
        return all(
            v is None for v in (self.job_name, self.queue, self.reason, self.since, self.until)
        )

    def check_purge(self, everything: object) -> None:
        """Refuse a purge that names no filter (unless ``everything``), or both."""
        if not isinstance(everything, bool):
            raise SoniqError(INVALID_ARGUMENT, f"all= must be True or False, got {everything!r}.")
        if everything and not self.empty:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"purge got all=True and filters ({self.describe()}). Pass filters to delete "
                "what matches them, or all=True alone to delete every dead letter.",
            )
        if not everything and self.empty:
            raise SoniqError(
                FILTER_REQUIRED,
                "purge without a filter would delete every dead letter. Pass job_name=, "
                "queue=, reason=, since= or until= (in the CLI: --name, --queue, --reason, "
                "--since, --until), or all=True (--all) if that is what you mean.",
            )

    def params(self) -> dict[str, Any]:
        """Bound parameters for the queries' filter clause."""
        return {
            "job_name": self.job_name,
            "queue": self.queue,
            "reason": None if self.reason is None else like_pattern(self.reason),
            "since": self.since,
            "until": self.until,
        }

    def describe(self) -> str:
        """The filters in words, for messages: ``job_name='x', since=...``."""
        parts = [
            f"{name}={value.isoformat() if isinstance(value, datetime) else repr(value)}"
            for name, value in (
                ("job_name", self.job_name),
                ("queue", self.queue),
                ("reason", self.reason),
                ("since", self.since),
                ("until", self.until),
            )
            if value is not None
        ]
        return ", ".join(parts) or "no filter"


def check_page(limit: object, offset: object) -> None:
    """Reject a ``limit``/``offset`` pair that is not two ints >= 0."""
    for label, value in (("limit", limit), ("offset", offset)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SoniqError(INVALID_ARGUMENT, f"{label} must be an int >= 0, got {value!r}.")


def job_lookup_key(job_id: object) -> str | None:
    """A job id for the lookups (``get_job``, ``get_result``, ``cancel_job``,
    ``delete_job``): None for a string that is not a UUID, since it names no job (as
    in the original Soniq); SONIQ_INVALID_JOB_ID for a value that is not even a
    string or ``uuid.UUID``, a bug in the calling code."""
    if isinstance(job_id, uuid.UUID):
        return str(job_id)
    if not isinstance(job_id, str):
        raise SoniqError(
            INVALID_JOB_ID,
            f"A job id is a UUID string, got {type(job_id).__name__} {job_id!r}. Pass the "
            "id enqueue() returned.",
        )
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        return None


def job_id_param(job_id: object) -> str:
    """A job id as the queries take it, or SONIQ_INVALID_JOB_ID."""
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise SoniqError(
            INVALID_JOB_ID, f"{job_id!r} is not a job id; job ids are UUID strings."
        ) from None
