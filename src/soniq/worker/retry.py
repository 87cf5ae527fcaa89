"""How long a failed job waits before its next attempt."""

from __future__ import annotations

from soniq.core.registry import JobSpec


def retry_delay(spec: JobSpec | None, failed_attempt: int) -> float:
    """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed.

    A list of delays is indexed by attempt, its last value repeating. With
    ``retry_backoff`` the delay doubles each attempt (a base of 0 stays 0, so
    backoff without a delay means base 1 s). ``retry_max_delay`` caps the result.
    """
    if spec is None:
        return 0.0
    index = max(failed_attempt - 1, 0)
    if isinstance(spec.retry_delay, tuple):
        base = spec.retry_delay[min(index, len(spec.retry_delay) - 1)]
    else:
        base = spec.retry_delay
    if spec.retry_backoff and not isinstance(spec.retry_delay, tuple):
        base = (base or 1.0) * (2.0**index)
    if spec.retry_max_delay is not None:
        base = min(base, spec.retry_max_delay)
    return base
