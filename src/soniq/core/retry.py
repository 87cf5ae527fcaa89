"""How long a failed job waits before its next attempt, and who decides it.

By default a job's own ``@app.job()`` options decide (:func:`retry_delay`). An app
may instead be given a :class:`RetryPolicy` (``Soniq(retry_policy=...)``), which the
worker asks after every failed attempt that has attempts left: it returns the delay,
or None to give up and dead-letter the job at once (see ``soniq.worker.retry``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from soniq.core.registry import JobSpec
from soniq.errors import INVALID_ARGUMENT, SoniqError

#: The largest power of two a backoff multiplies its base delay by (2**62 is finite).
MAX_BACKOFF_EXPONENT = 62
#: No retry is scheduled further ahead than this (365 days), whatever computed it:
#: a timestamp beyond the database's range would make the retry impossible to write.
MAX_RETRY_DELAY = 365 * 24 * 3600.0

_rng = random.Random()


def set_rng(rng: random.Random | None) -> None:
    """Draw retry jitter from ``rng`` (a seeded ``random.Random`` makes it repeatable);
    None goes back to a fresh unseeded generator."""
    global _rng
    _rng = random.Random() if rng is None else rng


def compute_retry_delay_seconds(
    attempt: int,
    retry_delay: float | Sequence[float] = 0.0,
    retry_backoff: bool = False,
    retry_max_delay: float | None = None,
    retry_jitter: bool = False,
) -> float:
    """Seconds to wait after attempt number ``attempt`` (1-based) failed.

    A list of delays is indexed by attempt, its last value repeating. With
    ``retry_backoff`` a single delay doubles each attempt (a base of 0 counts as 1 s),
    the exponent capped at :data:`MAX_BACKOFF_EXPONENT`. ``retry_max_delay`` caps the
    result, and so does :data:`MAX_RETRY_DELAY`. With ``retry_jitter`` the delay is
    then drawn uniformly between half of it and all of it, so it never exceeds the cap.
    """
    index = max(attempt - 1, 0)
    if isinstance(retry_delay, (int, float)):
        base = float(retry_delay)
        if retry_backoff:
            base = (base or 1.0) * (2.0 ** min(index, MAX_BACKOFF_EXPONENT))
    else:
        base = float(retry_delay[min(index, len(retry_delay) - 1)])
    if retry_max_delay is not None:
        base = min(base, retry_max_delay)
    base = min(base, MAX_RETRY_DELAY)
    if retry_jitter and base > 0:
        base = _rng.uniform(base / 2, base)
    return base


def retry_delay(spec: JobSpec | None, failed_attempt: int) -> float:
    """The default rule: the delay ``spec``'s ``@app.job()`` options give after attempt
    ``failed_attempt`` (see :func:`compute_retry_delay_seconds`); 0 without a spec."""
    if spec is None:
        return 0.0
    return compute_retry_delay_seconds(
        failed_attempt,
        spec.retry_delay,
        spec.retry_backoff,
        spec.retry_max_delay,
        spec.retry_jitter,
    )


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides what follows a failed attempt that has attempts left.

    Give one to the app (``Soniq(retry_policy=...)`` or ``app.retry_policy = ...``
    before it is initialised). Its ``delay_for`` is called in the worker's event loop
    after each failure, so it must be quick and must not block.
    """

    def delay_for(
        self, *, attempt: int, job_meta: Mapping[str, Any], exc: BaseException
    ) -> float | timedelta | None:
        """Seconds (or a ``timedelta``) to wait before the next attempt, or None to give
        up and dead-letter the job now.

        ``attempt`` is the failed attempt's number (1-based); ``exc`` is what the
        handler raised (a ``TimeoutError`` for a timeout); ``job_meta`` describes the
        job: ``job_id``, ``job_name`` (also ``name``), ``queue``, ``attempt``,
        ``max_attempts``, ``max_retries``, ``args``, ``error`` (the text stored as
        ``last_error``) and the job's ``retry_delay``, ``retry_backoff``,
        ``retry_max_delay``, ``retry_jitter`` and ``timeout`` options.
        """
        ...


class ExponentialBackoff:
    """The default policy as an object: the job's own ``@app.job()`` retry options
    (read from ``job_meta``). A custom policy can delegate to it for the cases it does
    not handle itself."""

    def delay_for(
        self, *, attempt: int, job_meta: Mapping[str, Any], exc: BaseException
    ) -> float | timedelta | None:
        """The delay :func:`compute_retry_delay_seconds` gives for the job's options."""
        return compute_retry_delay_seconds(
            attempt,
            job_meta.get("retry_delay", 0.0),
            bool(job_meta.get("retry_backoff", False)),
            job_meta.get("retry_max_delay"),
            bool(job_meta.get("retry_jitter", False)),
        )


def check_retry_policy(policy: object) -> RetryPolicy | None:
    """``policy`` if it can serve as a retry policy (or None for the default), else
    SONIQ_INVALID_ARGUMENT."""
    if policy is None:
        return None
    if not callable(getattr(policy, "delay_for", None)):
        raise SoniqError(
            INVALID_ARGUMENT,
            f"retry_policy must have a delay_for(*, attempt, job_meta, exc) method "
            f"returning seconds or None, got {policy!r}. See soniq.RetryPolicy.",
        )
    return policy  # type: ignore[return-value]  # checked: it has delay_for
