"""Durations as people type and read them on the command line: ``90``, ``15m``, ``1h30m``."""

from __future__ import annotations

import math
import re

from soniq.errors import INVALID_DURATION, SoniqError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


def parse_duration(text: str, option: str) -> float:
    """Seconds in ``text``: a number (seconds) or number-unit pairs such as ``1h30m``.

    Units: s, m, h, d, w. Anything else is SONIQ_INVALID_DURATION naming ``option``.
    """
    compact = text.strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    matched = "".join(number + unit for number, unit in parts)
    if not compact or matched != compact or (len(parts) > 1 and not all(u for _, u in parts)):
        raise SoniqError(
            INVALID_DURATION,
            f"{option}: cannot read {text!r} as a duration. Use seconds (90) or numbers "
            "with units s, m, h, d or w (90s, 15m, 2h, 7d, 1h30m).",
        )
    seconds = sum(float(number) * _UNITS[unit or "s"] for number, unit in parts)
    if not math.isfinite(seconds):
        raise SoniqError(INVALID_DURATION, f"{option}: {text!r} is too long a duration.")
    return seconds


def format_duration(seconds: float | None) -> str:
    """``seconds`` for a table: ``42s``, ``3m05s``, ``2h10m``, ``3d4h``; ``-`` for None."""
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"
