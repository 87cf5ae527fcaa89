"""Waiting for a job's outcome: ``app.handle(job_id)``, ``app.wait_many(ids)``.

:class:`JobHandle` waits for one job (``wait``, ``result``, ``events``), through the
app's one :class:`~soniq.waiting.hub.WaitHub`. What a wait returns is a
:class:`JobOutcome`; what ``events()`` yields, :class:`JobEvent` items.
"""

from soniq.waiting.handle import JobHandle
from soniq.waiting.outcome import JobEvent, JobOutcome

__all__ = ["JobEvent", "JobHandle", "JobOutcome"]
