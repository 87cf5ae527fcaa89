"""Writing job outcomes: finished jobs in batches, the rarer outcomes one by one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from soniq.storage.records import Completion
from soniq.storage.store import Store
from soniq.worker.runner import Bury, Cancelled, ClaimedJob, Done, Outcome, Requeue, Retry
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")

#: Most completions written by one statement; a longer backlog takes several.
MAX_BATCH = 500


class Acknowledger:
    """Records outcomes. ``Done`` goes into a batch written by one UPDATE per flush.

    While a flush is in flight, newly finished jobs wait for the next one, so batches
    grow with load on their own and an idle worker acknowledges at once.
    """

    def __init__(
        self,
        store: Store,
        retry_delay: float,
        on_delayed: Callable[[float], None] | None = None,
        on_freed: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.retry_delay = retry_delay
        #: Told the delay of each retry or snooze written for later (the promoter).
        self.on_delayed = on_delayed
        #: Told when an outcome written freed a limited job's slot (the worker claims).
        self.on_freed = on_freed
        #: Starts limited jobs in the slots that a written batch freed, told how many
        #: it freed; returns how many it started (a long-running worker sets it).
        #: Slots it refilled need no wake-up, here or in the fleet.
        self.refill: Callable[[int], Awaitable[int]] | None = None
        #: Whether a queue has limits of its own: its jobs' ends free its slots too.
        self.gated: Callable[[str], bool] = lambda queue: False
        self._done: list[Completion] = []
        #: The limited jobs in ``_done``, by id, and their queues.
        self._limited: dict[str, str] = {}
        #: Queues of limited jobs whose freed slots nobody refilled: their workers are
        #: woken once the queued completions are written.
        self._freed: set[str] = set()
        #: How many times limited jobs' slots were freed by an outcome written here and
        #: left for a claim (not refilled).
        self.freed = 0
        self._pending = asyncio.Event()
        # One flush at a time: a caller that flushes also waits for the one in flight.
        self._flushing = asyncio.Lock()

    def done(self, job: ClaimedJob, result: str | None) -> None:
        """Queue a finished job for the next batch."""
        self._done.append((job.id, job.attempt, result))
        if job.limit_key is not None or self.gated(job.queue):
            self._limited[job.id] = job.queue
        self._pending.set()

    async def committed(self, job: ClaimedJob) -> None:
        """``job`` was marked done by its handler's own transaction: nothing to write,
        but a limited job's slot is free (the worker and the fleet are woken)."""
        if job.limit_key is not None or self.gated(job.queue):
            await self._freed_slots({job.queue})

    async def _freed_slots(self, queues: set[str]) -> None:
        """Limited jobs of ``queues`` left 'processing': wake this worker and the others
        (idle ones wait for this, not for their poll interval)."""
        self.freed += 1
        if self.on_freed is not None:
            self.on_freed()
        try:
            await self.store.jobs.wake(sorted(queues))
        except self.store.unavailable as exc:
            logger.warning("could not wake workers for freed limit slots (%s)", exc)

    async def run(self, closing: asyncio.Event) -> None:
        """Flush batches until ``closing`` (a background task; see :meth:`wake`)."""
        while not closing.is_set():
            await self._pending.wait()
            self._pending.clear()
            await self.flush(closing)

    def wake(self) -> None:
        """Make :meth:`run` look at ``closing`` now (after it finishes a flush)."""
        self._pending.set()

    async def flush(self, closing: asyncio.Event, give_up_after: float | None = None) -> None:
        """Write every queued completion, retrying through database outages.

        Once ``closing`` is set, retries stop after ``give_up_after`` seconds; unwritten
        completions are then left to stale-worker recovery (the jobs run again).
        """
        loop = asyncio.get_running_loop()
        deadline = None if give_up_after is None else loop.time() + give_up_after
        async with self._flushing:
            try:
                await self._flush(closing, loop, deadline)
            finally:
                if self._freed and not self._done:
                    freed, self._freed = self._freed, set()
                    await self._freed_slots(freed)

    async def _flush(
        self, closing: asyncio.Event, loop: asyncio.AbstractEventLoop, deadline: float | None
    ) -> None:
        while self._done:
            batch, self._done = self._done[:MAX_BATCH], self._done[MAX_BATCH:]
            try:
                written, watched = await self.store.jobs.complete(batch)
            except self.store.unavailable as exc:
                self._done[:0] = batch  # keep them: nothing finished is forgotten
                if deadline is not None and loop.time() >= deadline:
                    logger.error("giving up acknowledging %d jobs: %s", len(batch), exc)
                    return
                if closing.is_set() and deadline is None:
                    return  # the shutdown path flushes again, with a deadline
                logger.warning(
                    "could not acknowledge %d jobs (%s); retrying in %.1fs",
                    len(batch),
                    str(exc).strip(),
                    self.retry_delay,
                )
                await nap(closing if deadline is None else asyncio.Event(), self.retry_delay)
            except self.store.errors as exc:
                # A value the server refuses (results are checked when dumped, so this is
                # a last resort) must not stall every later completion: write the batch
                # again without results. Without results it cannot fail on data; if it
                # does, the jobs are left to stale-worker recovery.
                if all(result is None for _, _, result in batch):
                    logger.error("could not acknowledge %d jobs: %s", len(batch), exc)
                    for job_id, _, _ in batch:
                        self._limited.pop(job_id, None)  # still running: no slot freed
                    continue
                logger.error(
                    "could not store the results of %d jobs (%s); marking them done "
                    "without results",
                    len(batch),
                    str(exc).strip(),
                )
                self._done[:0] = [(job_id, attempt, None) for job_id, attempt, _ in batch]
            except BaseException:
                self._done[:0] = batch  # cancelled: keep them for the shutdown flush
                raise
            else:
                if watched:  # after the commit: the waiters re-read the rows
                    await self.store.jobs.send_events([("d", job_id) for job_id in watched])
                if written < len(batch):
                    logger.warning(
                        "%d finished job(s) had been taken over by another worker (this "
                        "one was presumed dead); their completions were dropped",
                        len(batch) - written,
                    )
                if self._limited:
                    await self._written_limited(batch)

    async def _written_limited(self, batch: list[Completion]) -> None:
        """``batch`` is written: the slots of its limited jobs are free. Refill them at
        once if the worker can; the queues of those left free get their wake-up."""
        limited = self._limited
        queues = [limited.pop(job_id) for job_id, _, _ in batch if job_id in limited]
        if not queues:
            return
        freed = len(queues)
        refilled = 0 if self.refill is None else await self.refill(freed)
        if refilled < freed:
            self._freed.update(queues)

    async def settle(self, job: ClaimedJob, outcome: Outcome, closing: asyncio.Event) -> None:
        """Write a non-batched outcome (retry, dead-letter, requeue, cancel) for ``job``.

        Retries through outages until written, or until ``closing``: then the row is
        left to stale-worker recovery.
        """
        if isinstance(outcome, Done):
            if outcome.committed:
                await self.committed(job)  # written by the handler's own transaction
            else:
                self.done(job, outcome.result)
            return
        name = _NAMES[type(outcome)]
        attempts = 0
        while attempts == 0 or not closing.is_set():
            attempts += 1
            try:
                written = await self._write(job, outcome)
            except self.store.unavailable as exc:
                logger.warning(
                    "could not record %s for job %s (%s); retrying in %.1fs",
                    name,
                    job.id,
                    str(exc).strip(),
                    self.retry_delay,
                    extra=job.log_extra(),
                )
                await nap(closing, self.retry_delay)
                continue
            if (
                written
                and isinstance(outcome, (Retry, Requeue))
                and outcome.delay > 0
                and self.on_delayed is not None
            ):
                self.on_delayed(outcome.delay)
            if written and (job.limit_key is not None or self.gated(job.queue)):
                await self._freed_slots({job.queue})
            if not written:
                logger.warning(
                    "job %s attempt %d was taken over by another worker; its %s was dropped",
                    job.id,
                    job.attempt,
                    name,
                    extra=job.log_extra(),
                )
            elif isinstance(outcome, Bury):
                logger.error(
                    "job %s moved to the dead-letter queue: %s %s",
                    job.job_name,
                    outcome.reason,
                    outcome.error or "",
                    extra=job.log_extra(),
                )
            elif isinstance(outcome, Cancelled):
                logger.info(
                    "job %s %s cancelled on request", job.job_name, job.id, extra=job.log_extra()
                )
            return

    async def _write(self, job: ClaimedJob, outcome: Outcome) -> bool:
        """Record one rare outcome; False if the attempt was no longer this worker's."""
        jobs = self.store.jobs
        if isinstance(outcome, Retry):
            return await jobs.retry(job, outcome.delay, _storable(outcome.error))
        if isinstance(outcome, Requeue):
            if outcome.block is not None and job.limit_key is not None:
                # Before the requeue, so that no worker takes the job back in between.
                await self.store.limits.block(job.limit_key, outcome.block)
            return await jobs.requeue(job, outcome.delay, _storable(outcome.error))
        if isinstance(outcome, Cancelled):
            return await jobs.cancelled(job)
        if isinstance(outcome, Bury):
            return await jobs.bury(
                job,
                _storable(outcome.reason),
                _storable(outcome.error),
                _storable(outcome.traceback),
            )
        raise AssertionError(f"unexpected outcome {outcome!r}")


#: How the logs name each rare outcome.
_NAMES: dict[type[Outcome], str] = {
    Retry: "retry_job",
    Requeue: "snooze_job",
    Cancelled: "cancel_running_job",
    Bury: "dead_letter_job",
}


def _storable(text: str | None) -> str | None:
    """Error text a PostgreSQL text column accepts: NUL, which it refuses, is escaped."""
    return text.replace("\x00", "\\x00") if text is not None and "\x00" in text else text
