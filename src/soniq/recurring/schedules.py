"""A small builder layer over cron strings, for ``@app.periodic(cron=...)``.

Every terminal call returns a plain cron ``str`` (or, for ``every(n).seconds()``, a
``timedelta`` for ``every=``)::

    every(5).minutes()                  # "*/5 * * * *"
    every(2).hours()                    # "0 */2 * * *"
    every(3).days()                     # "0 0 */3 * *"
    every(30).seconds()                 # timedelta(seconds=30)
    daily().at("09:00")                 # "0 9 * * *"
    weekly().on("monday").at("09:00")   # "0 9 * * 1"
    weekly().on(1).at("09:00")          # "0 9 * * 1" (0 or 7 is Sunday)
    monthly().on_day(15).at("12:00")    # "0 12 15 * *"
    cron("*/15 * * * *")                # "*/15 * * * *"

Bad input raises :class:`~soniq.SoniqError` (``SONIQ_INVALID_CRON``) right where the
schedule is written, not when it first runs. It is also a ``ValueError`` (and, for a
value of the wrong type, a ``TypeError`` too), as in the original Soniq. The builders
before their terminal call render as the midnight schedule (``str(daily())`` is ``"0 0 * * *"``).
"""

from __future__ import annotations

import re
from datetime import timedelta

from soniq.errors import INVALID_CRON, SoniqTypeValueError, SoniqValueError
from soniq.recurring.recurrence import check_cron

__all__ = ["cron", "daily", "every", "monthly", "weekly"]

_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def cron(expression: str) -> str:
    """Check a 5-field cron expression and return it unchanged (blanks trimmed)."""
    if not isinstance(expression, (str, _AtTime, _Weekly, _Monthly)):
        raise SoniqTypeValueError(
            INVALID_CRON,
            f"cron() takes a 5-field cron string such as '*/5 * * * *', got "
            f"{type(expression).__name__} {expression!r}.",
        )
    return check_cron(expression)


class _Every:
    """``every(n)``: pick the unit with ``.seconds()``, ``.minutes()``, ``.hours()`` or
    ``.days()``."""

    def __init__(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool):
            raise SoniqTypeValueError(
                INVALID_CRON, f"every(n) takes a whole number n >= 1, got {n!r}."
            )
        if n <= 0:
            raise SoniqValueError(INVALID_CRON, f"every(n) takes a whole number n >= 1, got {n}.")
        self.n = n

    def seconds(self) -> timedelta:
        """An interval of n seconds (cron cannot count seconds): pass it as ``every=``."""
        return timedelta(seconds=self.n)

    def minutes(self) -> str:
        """Every n minutes of the hour: ``*/n * * * *`` (n from 1 to 59)."""
        if self.n > 59:
            raise SoniqValueError(
                INVALID_CRON,
                f"every({self.n}).minutes() does not fit cron's minute field (1-59). Use "
                f"every(n).hours(), or every=timedelta(minutes={self.n}) for a plain interval.",
            )
        return f"*/{self.n} * * * *"

    def hours(self) -> str:
        """On the hour, every n hours of the day: ``0 */n * * *`` (n from 1 to 23)."""
        if self.n > 23:
            raise SoniqValueError(
                INVALID_CRON,
                f"every({self.n}).hours() does not fit cron's hour field (1-23). Use "
                f"daily(), or every=timedelta(hours={self.n}) for a plain interval.",
            )
        return f"0 */{self.n} * * *"

    def days(self) -> str:
        """At midnight on every n-th day of the month: ``0 0 */n * *`` (n from 1 to 31).

        Cron counts from the 1st of each month, so the gap at a month's end is shorter;
        for an exact interval use ``every=timedelta(days=n)``.
        """
        if self.n > 31:
            raise SoniqValueError(
                INVALID_CRON,
                f"every({self.n}).days() does not fit cron's day-of-month field (1-31). Use "
                f"every=timedelta(days={self.n}) for a plain interval.",
            )
        return f"0 0 */{self.n} * *"


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
    """``weekly()``: choose the day with ``.on("monday")`` or ``.on(1)``."""

    def on(self, day: str | int) -> _AtTime:
        """The weekday by English name (``"monday"``), its first three letters, or its
        cron number: 0 to 6 from Sunday (1 is Monday, 6 Saturday), and 7 for Sunday too.

        So both cron's numbering (0 = Sunday) and ISO's (1 = Monday ... 7 = Sunday) give
        the day they mean: they differ only in what Sunday is called.
        """
        if isinstance(day, int) and not isinstance(day, bool):
            if 0 <= day <= 7:
                return _AtTime(day_of_week=str(day % 7))
            raise SoniqValueError(
                INVALID_CRON,
                f"weekly().on() takes a weekday number from 0 to 7 (0 and 7 are Sunday, "
                f"1 is Monday), got {day}.",
            )
        if not isinstance(day, str):
            raise SoniqTypeValueError(
                INVALID_CRON,
                f"weekly().on() takes a weekday name such as 'monday' or a number 0-7, got "
                f"{type(day).__name__} {day!r}.",
            )
        key = day.strip().lower()
        for number, name in enumerate(_DAYS):
            if key in (name, name[:3]):
                return _AtTime(day_of_week=str(number))
        raise SoniqValueError(
            INVALID_CRON,
            f"Unknown weekday {day!r}. Use one of {', '.join(_DAYS)} (or their first three "
            "letters), or a number 0-7 (0 and 7 are Sunday).",
        )

    def __str__(self) -> str:
        return str(self.on("sunday"))


class _Monthly:
    """``monthly()``: choose the day of the month with ``.on_day(15)``."""

    def on_day(self, day: int) -> _AtTime:
        """Day 1-31; a month without that day (``on_day(31)`` in April) has no run."""
        if not isinstance(day, int) or isinstance(day, bool):
            raise SoniqTypeValueError(
                INVALID_CRON, f"monthly().on_day(d) takes a day from 1 to 31, got {day!r}."
            )
        if not 1 <= day <= 31:
            raise SoniqValueError(
                INVALID_CRON, f"monthly().on_day(d) takes a day from 1 to 31, got {day}."
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
    if not isinstance(time, str):
        raise SoniqTypeValueError(
            INVALID_CRON,
            f'.at() takes a 24-hour time "HH:MM" as a string, got {type(time).__name__} {time!r}.',
        )
    match = _TIME.match(time)
    if match is not None:
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour <= 23 and minute <= 59:
            return hour, minute
    raise SoniqValueError(
        INVALID_CRON,
        f'.at() takes a 24-hour time "HH:MM" from 00:00 to 23:59, got {time!r}.',
    )
