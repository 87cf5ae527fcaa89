"""``app.handle(job_id)``: a :class:`JobHandle`, to wait for one job's outcome.

``soniq_sync/waiting/handle.py`` is generated from this file by
``tools/async_to_sync.py``; the hub it talks to is each app's own
(:mod:`soniq.waiting.hub`, and its blocking face :mod:`soniq_sync.waiting.hub`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from soniq.waiting.hub import WaitHub
from soniq.waiting.outcome import (
    JobEvent,
    JobOutcome,
    JobState,
    check_wait,
    events_between,
    gone,
    outcome_of,
    result_of,
)


class JobHandle:
    """One job's outcome, to wait for: ``await app.handle(job_id).result(timeout=30)``.

    Making a handle does no I/O. Each wait marks the job watched (so that its events
    are sent from then on) and subscribes before it looks at the job, so a job that
    ends at any moment is seen. Waits are refused inside a running handler
    (SONIQ_WAIT_IN_HANDLER) unless ``allow_in_handler=True``.
    """

    def __init__(
        self,
        hub: WaitHub,
        job_id: str,
        validate: Callable[[Any, str], Any] | None = None,
    ) -> None:
        self._hub = hub
        self._validate = validate
        #: The job's id, as the queries take it.
        self.id = job_id

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    async def wait(
        self, timeout: float | None = None, *, allow_in_handler: bool = False
    ) -> JobOutcome:
        """Wait until the job ends; its :class:`~soniq.waiting.JobOutcome` (done,
        cancelled or dead-lettered). At once if it has ended already.

        ``timeout`` (seconds; None: no limit) raises the builtin ``TimeoutError``,
        and the job goes on. ``JobGone`` if no job has this id any more (pruned or
        deleted), or it finished longer ago than SONIQ_RESULT_TTL.
        """
        limit = check_wait(timeout, allow_in_handler, "handle.wait()")
        states = await self._hub.wait([self.id], limit, False)
        return outcome_of(states.get(self.id), self.id)

    async def result(self, timeout: float | None = None, *, allow_in_handler: bool = False) -> Any:
        """Wait until the job ends and return its result (validated as the handle's
        ``result_model``, if it has one).

        Raises ``JobFailed`` (dead-lettered; ``err.error`` is its last error),
        ``JobCancelled``, ``JobGone`` or ``TimeoutError``, as :meth:`wait` does.
        """
        limit = check_wait(timeout, allow_in_handler, "handle.result()")
        states = await self._hub.wait([self.id], limit, False)
        value = result_of(outcome_of(states.get(self.id), self.id))
        if self._validate is None or value is None:
            return value
        return self._validate(value, self.id)

    async def events(self, *, allow_in_handler: bool = False) -> AsyncIterator[JobEvent]:
        """The job's events as they happen: ``started``, ``progress``, ``retrying``, and
        last one of ``done``, ``cancelled`` or ``dead_letter``, after which the
        iteration ends. Events come from the job's row: steps that left no trace
        between two readings (progress overwritten in between) are not repeated.
        ``JobGone`` if the job disappears meanwhile.
        """
        check_wait(None, allow_in_handler, "handle.events()")
        previous: JobState | None = None
        ahead: list[JobEvent] = []  # events of the last reading, not yet yielded
        stream = self._hub.stream(self.id)
        try:
            while ahead or previous is None or not previous.final:
                if ahead:
                    yield ahead.pop(0)
                    continue
                state = await stream.next()
                if state is None:
                    raise gone(self.id)
                ahead = events_between(previous, state)
                previous = state
        finally:
            stream.close()
