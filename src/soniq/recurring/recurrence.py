"""When a recurring job runs: checking cron, interval and time zone, and the next run.

Pure functions, no I/O: ``@app.periodic``, ``app.scheduler`` and the scheduler
process all go through :func:`recurrence` and :meth:`Recurrence.next_after`.

Cron expressions are evaluated on the wall clock of the schedule's time zone. Across
a daylight-saving change, each wall-clock time fires once: a time the spring-forward
skips runs at the same offset after the jump (02:30 becomes 03:30 in Europe/Berlin),
and a time the fall-back repeats runs on its first occurrence only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from soniq.errors import (
    CRON_OR_EVERY,
    INVALID_CRON,
    INVALID_INTERVAL,
    INVALID_TIMEZONE,
    SoniqTypeValueError,
    SoniqValueError,
)

UTC = timezone.utc

# croniter refuses to look further than this many years ahead.
_PROBE_FROM = datetime(2001, 1, 1)


def check_cron(expression: object) -> str:
    """A valid 5-field cron string (surrounding blanks removed), or SONIQ_INVALID_CRON.

    Anything that is not a ``str`` but renders as one (a ``soniq.schedules`` builder)
    is accepted through ``str()``; a ``timedelta`` is not, it belongs in ``every=``.
    """
    if isinstance(expression, timedelta):
        raise SoniqTypeValueError(
            INVALID_CRON,
            f"cron= got a timedelta ({expression}); an interval goes in every=, e.g. "
            "every=timedelta(seconds=30) or every=every(30).seconds().",
        )
    if isinstance(expression, (int, float)) or expression is None:
        raise SoniqTypeValueError(
            INVALID_CRON,
            f"cron= takes a 5-field cron string such as '*/5 * * * *', got {expression!r}. "
            "For an interval in seconds use every=.",
        )
    text = str(expression).strip()
    fields = text.split()
    if len(fields) != 5:
        raise SoniqValueError(
            INVALID_CRON,
            f"{text!r} is not a 5-field cron expression (minute hour day-of-month month "
            "day-of-week), e.g. '0 9 * * 1'. Seconds fields and @-macros are not supported.",
            cron=text,
        )
    if not croniter.is_valid(text):
        raise SoniqValueError(
            INVALID_CRON,
            f"{text!r} is not a valid cron expression. Check each field's range: minute "
            "0-59, hour 0-23, day 1-31, month 1-12, day-of-week 0-6 (0 = Sunday).",
            cron=text,
        )
    try:
        croniter(text, _PROBE_FROM).get_next(datetime)
    except CroniterBadDateError:
        raise SoniqValueError(
            INVALID_CRON,
            f"{text!r} never fires (no such date, e.g. February 30). Fix the day or month.",
            cron=text,
        ) from None
    return text


def check_every(value: object) -> timedelta:
    """A positive interval from a ``timedelta`` or a number of seconds."""
    if isinstance(value, str):
        raise SoniqTypeValueError(
            INVALID_INTERVAL,
            f"every= got the string {value!r}; a cron string goes in cron=, an interval "
            "in every= as a timedelta or seconds.",
        )
    if isinstance(value, timedelta):
        interval = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise SoniqValueError(INVALID_INTERVAL, f"every= must be finite, got {value!r}.")
        interval = timedelta(seconds=value)
    else:
        raise SoniqTypeValueError(
            INVALID_INTERVAL,
            f"every= takes a timedelta or a number of seconds, got {type(value).__name__}.",
        )
    if interval <= timedelta(0):
        raise SoniqValueError(
            INVALID_INTERVAL, f"every= must be a positive interval, got {interval!r}."
        )
    return interval


def check_timezone(name: object) -> str:
    """An IANA time-zone name that this machine knows, or SONIQ_INVALID_TIMEZONE."""
    if name is None:
        return "UTC"
    if not isinstance(name, str) or not name.strip():
        raise SoniqValueError(
            INVALID_TIMEZONE,
            f"timezone= takes an IANA zone name such as 'Europe/Berlin', got {name!r}.",
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SoniqValueError(
            INVALID_TIMEZONE,
            f"Unknown time zone {name!r}. Use an IANA name such as 'Europe/Berlin' or "
            "'UTC' (install the tzdata package if the system has no zone database).",
            timezone=name,
        ) from None
    return name


@dataclass(frozen=True)
class Recurrence:
    """One checked schedule: a cron string or an interval, and the cron's time zone."""

    cron: str | None
    interval: timedelta | None
    timezone: str = "UTC"

    @property
    def interval_seconds(self) -> float | None:
        """The interval in seconds (as stored), or None for a cron schedule."""
        return None if self.interval is None else self.interval.total_seconds()

    def describe(self) -> str:
        """``cron 0 9 * * * (Europe/Berlin)`` or ``every 30s``, for people."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        assert self.interval_seconds is not None
        return f"every {self.interval_seconds:g}s"

    def next_after(self, instant: datetime, anchor: datetime | None = None) -> datetime:
        """The first run strictly after ``instant`` (aware), as an aware UTC datetime.

        Interval schedules keep their phase: runs fall on ``anchor + k * interval``
        when an anchor (a previous run time) is given, else at ``instant + interval``.
        """
        instant = _aware(instant)
        if self.interval is not None:
            if anchor is None:
                return instant + self.interval
            anchor = _aware(anchor)
            steps = max(1, math.floor((instant - anchor) / self.interval) + 1)
            return anchor + steps * self.interval
        assert self.cron is not None
        return next_cron_run(self.cron, ZoneInfo(self.timezone), instant)


def next_cron_run(expression: str, zone: ZoneInfo, instant: datetime) -> datetime:
    """The first instant after ``instant`` whose wall-clock time in ``zone`` matches.

    croniter walks naive wall-clock times; each candidate is then placed on the time
    line with PEP 495's ``fold=0`` (the first of two repeated times; a skipped time
    shifted by the jump). A candidate that lands at or before ``instant`` (the
    repeated hour, or a skipped time shifted onto one already run) is passed over.
    """
    wall = instant.astimezone(zone).replace(tzinfo=None)
    walker = croniter(expression, wall)
    for _ in range(10_000):
        candidate = walker.get_next(datetime)
        placed = candidate.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if placed > instant:
            return placed
    raise SoniqValueError(INVALID_CRON, f"{expression!r} has no run after {instant.isoformat()}.")


def recurrence(cron: object = None, every: object = None, timezone: object = None) -> Recurrence:
    """Check a ``cron=``/``every=``/``timezone=`` triple; exactly one of cron and every."""
    if (cron is None) == (every is None):
        raise SoniqValueError(
            CRON_OR_EVERY,
            "Pass exactly one of cron= (a cron string, e.g. daily().at('09:00')) or every= "
            "(a timedelta or seconds)"
            + (", not both." if cron is not None else "; neither was given."),
        )
    zone = check_timezone(timezone)
    if cron is not None:
        return Recurrence(check_cron(cron), None, zone)
    return Recurrence(None, check_every(every), zone)


@dataclass(frozen=True)
class TickDecision:
    """What the scheduler does with one due schedule: which run to enqueue, if any."""

    fire_at: datetime | None  # the run to enqueue now; None: skip without enqueueing
    next_run_at: datetime


def decide(
    rule: Recurrence, due: datetime, now: datetime, *, grace: float, catch_up: bool
) -> TickDecision:
    """Handle the run due at ``due`` (<= ``now``).

    A run late by at most ``grace`` seconds is enqueued (a scheduler restart or a
    leader change costs nothing); older runs were missed while no scheduler ran and
    are skipped, the next one counted from now, unless ``catch_up`` asks for each.
    """
    if catch_up or now - due <= timedelta(seconds=grace):
        return TickDecision(due, rule.next_after(due, anchor=due))
    return TickDecision(None, rule.next_after(now, anchor=due))


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def from_row(row: Mapping[str, Any]) -> Recurrence:
    """The rule of a ``soniq_recurring_jobs`` row (already checked when it was written)."""
    seconds = row["interval_seconds"]
    interval = None if seconds is None else timedelta(seconds=seconds)
    return Recurrence(row["cron"], interval, row["timezone"])


@dataclass(frozen=True)
class PeriodicJob:
    """What ``@app.periodic`` recorded: the task, its rule and its catch-up choice."""

    name: str
    rule: Recurrence
    catch_up: bool = False


@dataclass(frozen=True)
class PlannedSchedule:
    """A checked ``app.scheduler.add(...)`` call: one row of ``soniq_recurring_jobs``."""

    name: str
    rule: Recurrence
    args_json: str
    queue: str
    priority: int
    catch_up: bool

    def params(self, next_run_at: datetime) -> dict[str, Any]:
        """The named parameters of the ``schedule_upsert`` query."""
        return {
            "name": self.name,
            "cron": self.rule.cron,
            "interval_seconds": self.rule.interval_seconds,
            "timezone": self.rule.timezone,
            "args": self.args_json,
            "queue": self.queue,
            "priority": self.priority,
            "catch_up": self.catch_up,
            "next_run_at": next_run_at,
        }
