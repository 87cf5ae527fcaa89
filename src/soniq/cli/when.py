"""Reading the times the ``soniq`` commands take: ``--since``/``--until`` of a listing,
and the ``--for``/``--until`` end of a pause or a block (:func:`parse_end`).

Two forms: an ISO 8601 date or time (``2024-05-01``, ``2024-05-01T09:30``,
``2024-05-01 09:30:00+02:00``, ``...Z``), read as UTC when it has no offset; or a
duration back from now: a number and a unit, ``s``, ``m``, ``h``, ``d`` or ``w``,
possibly several (``90s``, ``30m``, ``2h``, ``7d``, ``1h30m``).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from soniq.cli.durations import parse_duration
from soniq.errors import INVALID_ARGUMENT, SoniqError

# A duration back from now: every number has its unit (a bare number is no time).
_RELATIVE = re.compile(r"(?:\d+[smhdw])+")


def parse_when(text: str | None, option: str, now: datetime | None = None) -> datetime | None:
    """``text`` as an aware UTC datetime (None stays None), or SONIQ_INVALID_ARGUMENT."""
    if text is None:
        return None
    value = text.strip().lower()
    now = now or datetime.now(timezone.utc)
    if _RELATIVE.fullmatch(value):
        try:
            return now - timedelta(seconds=parse_duration(value, option))
        except (OverflowError, SoniqError):
            pass  # reported below, like any other bad value
    else:
        iso = value.upper()
        if iso.endswith("Z"):  # Python 3.10's fromisoformat does not read Z
            iso = iso[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(iso)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.astimezone(timezone.utc)
    raise SoniqError(
        INVALID_ARGUMENT,
        f"{option} {text!r} is not a time. Give an ISO 8601 date or time (2024-05-01, "
        "2024-05-01T09:30:00+02:00; UTC when no offset is given) or a duration back "
        "from now such as 90s, 30m, 2h, 7d or 1h30m.",
    )


def parse_end(for_: str | None, until: str | None) -> float | datetime | None:
    """When something ``--for DURATION`` or ``--until ISO`` ends: seconds from now, an
    aware datetime (an ISO 8601 time with its offset), or None when neither is given;
    SONIQ_INVALID_ARGUMENT for both, or for a value it cannot read."""
    if for_ is not None and until is not None:
        raise SoniqError(INVALID_ARGUMENT, "Give --for or --until, not both.")
    if for_ is not None:
        return parse_duration(for_, "--for")
    if until is None:
        return None
    try:
        end = datetime.fromisoformat(until)
    except ValueError:
        raise SoniqError(
            INVALID_ARGUMENT,
            f"--until takes an ISO 8601 time with its offset, e.g. 2026-12-01T18:00:00+00:00, "
            f"got {until!r}.",
        ) from None
    if end.tzinfo is None:
        raise SoniqError(
            INVALID_ARGUMENT, f"--until {until!r} has no offset; add one, e.g. +00:00."
        )
    return end
