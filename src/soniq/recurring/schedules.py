"""A small builder layer over cron strings, for ``@app.periodic(cron=...)``.

Every terminal call returns a plain cron ``str`` (or, for ``every(n).seconds()``, a
``timedelta`` for ``every=``)::

    every(5).minutes()                  # "*/5 * * * *"
    every(2).hours()                    # "0 */2 * * *"
    every(30).seconds()                 # timedelta(seconds=30)
    daily().at("09:00")                 # "0 9 * * *"
    weekly().on("monday").at("09:00")   # "0 9 * * 1"
    monthly().on_day(15).at("12:00")    # "0 12 15 * *"
    cron("*/15 * * * *")                # "*/15 * * * *"

Bad input raises :class:`~soniq.SoniqError` (``SONIQ_INVALID_CRON``) right where the
schedule is written, not when it first runs. The builders before their terminal call
render as the midnight schedule (``str(daily())`` is ``"0 0 * * *"``).
"""

from __future__ import annotations

import re
from datetime import timedelta

from soniq.errors import INVALID_CRON, SoniqError
from soniq.recurring.recurrence import check_cron

__all__ = ["cron", "daily", "every", "monthly", "weekly"]

_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def cron(expression: str) -> str:
    """Check a 5-field cron expression and return it unchanged (blanks trimmed)."""
    return check_cron(expression)


class _Every:
    """``every(n)``: pick the unit with ``.seconds()``, ``.minutes()`` or ``.hours()``."""

    def __init__(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise SoniqError(INVALID_CRON, f"every(n) takes a whole number n >= 1, got {n!r}.")
        self.n = n

    def seconds(self) -> timedelta:
        """An interval of n seconds (cron cannot count seconds): pass it as ``every=``."""
        return timedelta(seconds=self.n)

    def minutes(self) -> str:
        """Every n minutes of the hour: ``*/n * * * *`` (n from 1 to 59)."""
        if self.n > 59:
            raise SoniqError(
                INVALID_CRON,
                f"every({self.n}).minutes() does not fit cron's minute field (1-59). Use "
                f"every(n).hours(), or every=timedelta(minutes={self.n}) for a plain interval.",
            )
        return f"*/{self.n} * * * *"

    def hours(self) -> str:
        """On the hour, every n hours of the day: ``0 */n * * *`` (n from 1 to 23)."""
        if self.n > 23:
            raise SoniqError(
                INVALID_CRON,
                f"every({self.n}).hours() does not fit cron's hour field (1-23). Use "
                f"daily(), or every=timedelta(hours={self.n}) for a plain interval.",
            )
        return f"0 */{self.n} * * *"


def every(n: int) -> _Every:
    """Start an interval: ``every(5).minutes()``, ``every(2).hours()``, ``every(30).seconds()``."""
    return _Every(n)


class _AtTime:
    """A builder that ends with ``.at("HH:MM")``; the day fields are fixed already."""

    def __init__(self, day_of_month: str = "*", day_of_week: str = "*") -> None:
        self._dom = day_of_month
        self._dow = day_of_week

    def at(self, time: str) -> str:
        """The cron string for ``time`` (24-hour ``"HH:MM"``) on the chosen days."""
        hour, minute = _parse_time(time)
        return check_cron(f"{minute} {hour} {self._dom} * {self._dow}")

    def __str__(self) -> str:
        return self.at("00:00")


class _Weekly:
    """``weekly()``: choose the day with ``.on("monday")``."""

    def on(self, day: str) -> _AtTime:
        """The weekday by English name (``"monday"``) or its first three letters."""
        if isinstance(day, str):
            key = day.strip().lower()
            for number, name in enumerate(_DAYS):
                if key in (name, name[:3]):
                    return _AtTime(day_of_week=str(number))
        raise SoniqError(
            INVALID_CRON,
            f"Unknown weekday {day!r}. Use one of {', '.join(_DAYS)} (or their first three "
            "letters).",
        )

    def __str__(self) -> str:
        return str(self.on("sunday"))


class _Monthly:
    """``monthly()``: choose the day of the month with ``.on_day(15)``."""

    def on_day(self, day: int) -> _AtTime:
        """Day 1-31; a month without that day (``on_day(31)`` in April) has no run."""
        if not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 31:
            raise SoniqError(
                INVALID_CRON, f"monthly().on_day(d) takes a day from 1 to 31, got {day!r}."
            )
        return _AtTime(day_of_month=str(day))

    def __str__(self) -> str:
        return str(self.on_day(1))


def daily() -> _AtTime:
    """Once a day: ``daily().at("09:00")``."""
    return _AtTime()


def weekly() -> _Weekly:
    """Once a week: ``weekly().on("monday").at("09:00")``."""
    return _Weekly()


def monthly() -> _Monthly:
    """Once a month: ``monthly().on_day(15).at("12:00")``."""
    return _Monthly()


def _parse_time(time: object) -> tuple[int, int]:
    match = _TIME.match(time) if isinstance(time, str) else None
    if match is not None:
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour <= 23 and minute <= 59:
            return hour, minute
    raise SoniqError(
        INVALID_CRON,
        f'.at() takes a 24-hour time "HH:MM" from 00:00 to 23:59, got {time!r}.',
    )
