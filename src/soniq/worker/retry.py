"""What the worker does with a retry policy's answer: the one place it is asked."""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Any

from soniq.core.registry import JobSpec
from soniq.core.retry import MAX_RETRY_DELAY, RetryPolicy, retry_delay
from soniq.storage.records import ClaimedJob

__all__ = ["job_meta", "next_delay", "retry_delay"]

logger = logging.getLogger("soniq.worker")


def job_meta(spec: JobSpec, job: ClaimedJob, error: str) -> dict[str, Any]:
    """What a :class:`RetryPolicy` is told about the failed job."""
    delay = spec.retry_delay
    return {
        "job_id": job.id,
        "job_name": job.job_name,
        "name": job.job_name,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "max_retries": spec.retries,
        "args": dict(job.args),
        "error": error,
        "retry_delay": list(delay) if isinstance(delay, tuple) else delay,
        "retry_backoff": spec.retry_backoff,
        "retry_max_delay": spec.retry_max_delay,
        "retry_jitter": spec.retry_jitter,
        "timeout": spec.timeout,
    }


def next_delay(
    policy: RetryPolicy | None, spec: JobSpec, job: ClaimedJob, exc: BaseException, error: str
) -> float | None:
    """Seconds before the next attempt of ``job``, whose attempt failed with ``exc``;
    None when the policy gives up.

    Without a policy, the job's own options decide. A policy that raises, or returns
    something that is not a number of seconds, is logged and the job's own options
    decide instead: a broken policy must neither crash the worker nor lose the job.
    Negative delays count as 0; none is longer than :data:`MAX_RETRY_DELAY`.
    """
    if policy is None:
        return retry_delay(spec, job.attempt)
    try:
        decided = policy.delay_for(
            attempt=job.attempt, job_meta=job_meta(spec, job, error), exc=exc
        )
    except Exception:
        logger.exception(
            "retry policy %r failed; using the job's own retry options",
            policy,
            extra=job.log_extra(),
        )
        return retry_delay(spec, job.attempt)
    if decided is None:
        return None
    if isinstance(decided, timedelta):
        decided = decided.total_seconds()
    if isinstance(decided, bool) or not isinstance(decided, (int, float)) or math.isnan(decided):
        logger.error(
            "retry policy %r returned %r, not seconds or None; using the job's own retry options",
            policy,
            decided,
            extra=job.log_extra(),
        )
        return retry_delay(spec, job.attempt)
    return min(max(float(decided), 0.0), MAX_RETRY_DELAY)
