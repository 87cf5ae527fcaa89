"""Which answers are retried, and after how long.

Retried: a 5xx status, 429, a connection error and a timeout. Not retried: any
other status outside 2xx (the request itself is refused; sending it again would be
refused the same way). The delay before attempt ``n + 1`` is
``min(SONIQ_WEBHOOK_RETRY_MAX_DELAY, SONIQ_WEBHOOK_RETRY_DELAY * 2 ** (n - 1))``,
scaled by a random factor between 0.5 and 1 (jitter, so that many deliveries
failing together do not all come back at once), unless the answer had a
``Retry-After`` header, which is honoured as it is (up to a day).
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from datetime import datetime, timezone

#: The longest ``Retry-After`` honoured, in seconds; a longer one is cut to this.
MAX_RETRY_AFTER = 86400.0


def is_success(status: int) -> bool:
    """Whether ``status`` means the receiver took the event (any 2xx)."""
    return 200 <= status < 300


def is_retryable(status: int) -> bool:
    """Whether a failed ``status`` is worth another attempt (5xx and 429)."""
    return status >= 500 or status == 429


def backoff(
    attempt: int,
    base: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based), with jitter."""
    delay = min(cap, base * 2.0 ** min(attempt - 1, 60))
    return delay * (0.5 + 0.5 * rand())


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """The seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date),
    or None when it is missing or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) <= 12:
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
