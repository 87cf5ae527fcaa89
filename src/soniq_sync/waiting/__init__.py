"""Waiting for a job's outcome from blocking code: ``app.handle(job_id).wait()``.

The same as :mod:`soniq.waiting`, blocking; :class:`JobOutcome` and :class:`JobEvent`
are the async package's own.
"""

from soniq.waiting.outcome import JobEvent, JobOutcome
from soniq_sync.waiting.handle import JobHandle

__all__ = ["JobEvent", "JobHandle", "JobOutcome"]
