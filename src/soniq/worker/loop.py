"""The worker: claim a batch, run it, acknowledge, repeat.

One process, one event loop, up to ``concurrency`` jobs in flight. Background tasks
keep the worker's heartbeat, listen for new jobs and write completions in batches;
the loop below only decides when to claim.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from soniq.log_context import CURRENT_JOB
from soniq.registry import JobRegistry
from soniq.settings import SoniqSettings
from soniq.storage.backend import PostgresBackend, StorageBackend
from soniq.storage.store import Store
from soniq.worker.acks import Acknowledger
from soniq.worker.cancels import CancelPoller
from soniq.worker.deadlines import Deadlines
from soniq.worker.instruments import JobInstruments, QueueGauges, job_instruments, metrics_endpoint
from soniq.worker.liveness import Liveness
from soniq.worker.promotion import Promoter
from soniq.worker.runner import (
    CANCELLED,
    Bury,
    Cancelled,
    ClaimedJob,
    Done,
    JobRunner,
    Requeue,
    Retry,
)
from soniq.worker.stats import OutcomeStats
from soniq.worker.stopping import nap
from soniq.worker.wakeup import Listener

logger = logging.getLogger("soniq.worker")

#: The longest poll interval of a worker on a backend without LISTEN/NOTIFY (seconds).
LOCAL_POLL_INTERVAL = 0.5

_OUTCOME_KINDS: dict[type, str] = {
    Done: "done",
    Retry: "retried",
    Bury: "dead_lettered",
    Requeue: "snoozed",
    Cancelled: "cancelled",
}


class Worker:
    """Runs the jobs in ``registry`` from the database behind ``backend``."""

    def __init__(
        self,
        backend: StorageBackend,
        registry: JobRegistry,
        settings: SoniqSettings | None = None,
        hooks: Mapping[str, Sequence[Callable[..., Any]]] | None = None,
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.settings = settings or backend.settings
        self.hooks = hooks or {}
        self.id = str(uuid.uuid4())
        #: Jobs claimed over this worker's life (each run counts from where it is).
        self.processed = 0
        #: How the attempts this worker ran ended, by kind: "done", "retried",
        #: "dead_lettered", "snoozed" (also a shutdown's requeue), "cancelled".
        self.outcomes: collections.Counter[str] = collections.Counter()
        # Running job tasks and the job each one runs.
        self._running: dict[asyncio.Task[None], ClaimedJob] = {}
        # Ids of held jobs (running or ready) whose cancellation was requested; shared
        # with the runner and every JobContext (ctx.cancel_requested reads it).
        self._cancel_requests: set[str] = set()
        # Outcome writes (rare outcomes only: retry, dead-letter, requeue, cancelled) by
        # job id, until their task finishes; kept for a task cancelled mid-write, whose
        # write goes on behind the shield (see _shutdown).
        self._settling: dict[str, asyncio.Future[None]] = {}
        self._nudge = asyncio.Event()
        self._stopping = asyncio.Event()  # stop claiming (stop(), a signal)
        self._closing = asyncio.Event()  # background tasks wind down (end of a session)
        self.listener: Listener | None = None
        # Claimed jobs waiting for a free slot, in claim order (see _ahead).
        self._ready: collections.deque[ClaimedJob] = collections.deque()
        self._acks: Acknowledger | None = None
        self._slot_wanted = False  # is the loop waiting for slots to free up?
        self._backlog = False  # did the last claim get every row it asked for?
        self._concurrency = self._refill_at = 1
        # For _ahead: jobs finished so far, and the claim round trip and the rate at
        # which slots free up, both smoothed over recent claims.
        self._finished_count = 0
        self._claim_seconds = 0.0
        self._rate = 0.0
        self._rate_mark = (0.0, 0)
        # Metrics and tracing of each job; None when both are off (see _observed).
        self.instruments: JobInstruments | None = None
        # Per session: outcome counts for soniq_stats, and the promoter of delayed jobs.
        self._stats: OutcomeStats | None = None
        self._promoter: Promoter | None = None

    @property
    def poll_interval(self) -> float:
        """Seconds between looks at an empty queue: SONIQ_POLL_INTERVAL, capped at
        ``LOCAL_POLL_INTERVAL`` on backends without LISTEN/NOTIFY, where polling is the
        only wake-up."""
        if self.backend.notifies:
            return self.settings.poll_interval
        return min(self.settings.poll_interval, LOCAL_POLL_INTERVAL)

    def stop(self) -> None:
        """Ask the worker to shut down: stop claiming, requeue running jobs, leave."""
        self._stopping.set()
        self._nudge.set()

    async def run(
        self, concurrency: int = 4, run_once: bool = False, queues: list[str] | None = None
    ) -> bool:
        """Process jobs until stopped (or, with ``run_once``, until none are left).

        Returns True if any job was processed.
        """
        if run_once:
            return await self.run_once(queues, concurrency=concurrency)
        start = self.processed
        async with (
            self._signals(),
            self._observed(),
            self._session(concurrency, queues, listen=True) as acks,
        ):
            while not self._stopping.is_set():
                # Cleared before the claim, never after: a wake-up (a new job, a stop)
                # that arrives while the claim is in flight must not be lost.
                self._nudge.clear()
                want = self._wanted()
                if want < self._threshold():
                    await self._wait_for_slots()
                    continue
                claimed = await self._claim(want, queues, acks)
                self._backlog = claimed == want
                if not self._backlog:  # the queue is drained for now
                    await self._wait(timeout=self.poll_interval)
        return self.processed > start

    async def run_once(
        self,
        queues: list[str] | None = None,
        max_jobs: int | None = None,
        *,
        concurrency: int = 4,
    ) -> bool:
        """Process the jobs that are runnable now, then return; True if any ran.

        ``max_jobs`` caps the jobs this call claims (a worker may be run again). In the
        main thread, SIGINT and SIGTERM stop it as they stop :meth:`run`.
        """
        start = self.processed
        async with (
            self._signals(),
            self._observed(),
            self._session(concurrency, queues, listen=False) as acks,
        ):
            await self._promote_due()  # delayed jobs due by now are runnable now too
            while not self._stopping.is_set():
                self._nudge.clear()
                want = self._wanted()
                if max_jobs is not None:
                    want = min(want, max_jobs - (self.processed - start))
                idle = not self._running and not self._ready
                if want <= 0 and idle:
                    break  # max_jobs claimed, and all of them finished
                if want < self._threshold():
                    await self._wait_for_slots()
                    continue
                claimed = await self._claim(want, queues, acks)
                self._backlog = claimed == want
                if not self._backlog:
                    if idle and not claimed:
                        if await self._promote_due():
                            continue  # a retry delay or schedule ran out meanwhile
                        break  # nothing ran while this claim looked: no job is left
                    # Let the running jobs finish (one may requeue itself), then look again.
                    await self._drain()
            await self._drain()
        return self.processed > start

    async def _promote_due(self) -> int:
        """Promote the delayed jobs due now (see soniq.worker.promotion); how many."""
        assert self._promoter is not None
        try:
            moved, _ = await self._promoter.promote_due()
        except self.db.errors as exc:
            await self._after_db_error("cannot promote delayed jobs", exc)
            return 0
        return moved

    def _threshold(self) -> int:
        # While jobs are waiting, claim only once a quarter of the slots are free:
        # one claim of 16 rows costs about what a claim of 1 does.
        return self._refill_at if self._backlog else 1

    async def _wait_for_slots(self) -> None:
        """Sleep until enough slots are free to claim (see _finished), or a nudge."""
        self._slot_wanted = True
        try:
            await self._wait(timeout=None)
        finally:
            self._slot_wanted = False

    async def _drain(self) -> None:
        """Wait until every claimed job has finished, or a stop is asked for (then the
        shutdown deals with the jobs still running, as after run())."""
        while self._running and not self._stopping.is_set():
            running: asyncio.Future[object] = asyncio.ensure_future(
                asyncio.gather(*list(self._running), return_exceptions=True)
            )
            stop: asyncio.Future[object] = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait([running, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            # A task can be finished while its done callback (_finished, which takes it
            # out of _running) still waits in the loop's queue, and on Python 3.12+
            # gather over finished tasks completes without yielding: yield once, or
            # this loop would spin forever.
            await asyncio.sleep(0)

    def _wanted(self) -> int:
        """How many jobs to claim now: free slots, plus the jobs to hold ready."""
        return self._concurrency + self._ahead() - len(self._running) - len(self._ready)

    def _ahead(self) -> int:
        """Jobs to claim beyond the free slots, to be started as slots free up.

        About the number of jobs this worker finishes during two claim round trips,
        at most twice the concurrency: then short jobs never leave slots idle while a
        claim is in flight, and long jobs (which free few slots per round trip) are
        not claimed before a slot is free, where another worker might run them sooner.
        Claimed jobs waiting here hold their attempt like running ones: a crash
        leaves them to stale-worker recovery, a shutdown requeues them.
        """
        return min(2 * self._concurrency, int(self._rate * self._claim_seconds * 2.0))

    async def _claim(self, limit: int, queues: list[str] | None, acks: Acknowledger) -> int:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            claimed = await self.db.jobs.claim(self.id, queues, limit)
        except self.db.unavailable as exc:
            await self._after_db_error("cannot claim jobs", exc)
            return 0
        now = loop.time()
        self._measure(started, now)
        ready = self._ready
        ready.extend(claimed)
        free = self._concurrency - len(self._running)
        while ready and free > 0:
            self._start(ready.popleft(), acks)
            free -= 1
        self.processed += len(claimed)
        return len(claimed)

    def _measure(self, started: float, now: float) -> None:
        """Update the smoothed claim round trip and job completion rate (for _ahead)."""
        self._claim_seconds = (self._claim_seconds + (now - started)) / 2.0
        since, count = self._rate_mark
        if now - since >= 0.01:
            rate = (self._finished_count - count) / (now - since)
            self._rate = (self._rate + rate) / 2.0
            self._rate_mark = (now, self._finished_count)

    def _start(self, job: ClaimedJob, acks: Acknowledger) -> None:
        task = asyncio.create_task(self._execute(job, acks), name=f"soniq-job-{job.id}")
        self._running[task] = job
        task.add_done_callback(self._finished)

    async def _execute(self, job: ClaimedJob, acks: Acknowledger) -> None:
        CURRENT_JOB.set(job)  # this task's log records are about the job (log_context)
        probe = None if self.instruments is None else self.instruments.start(job)
        started = time.perf_counter()
        try:
            outcome = await self.runner.run(job)
        except asyncio.CancelledError:
            if job.id in self._cancel_requests:
                outcome = CANCELLED  # interrupted on request (see _cancel_request)
                task = asyncio.current_task()
                if sys.version_info >= (3, 11) and task is not None:
                    task.uncancel()  # handled: the task goes on to record the outcome
            else:
                outcome = Requeue(0.0)  # interrupted by shutdown: not the job's fault
        except Exception as exc:
            # The runner turns handler errors into outcomes; this is anything else. The
            # row must not stay 'processing' under a live worker, so count it a failure.
            logger.exception("running job %s failed", job.id, extra=job.log_extra())
            error = f"Worker error: {type(exc).__name__}: {exc}"
            outcome = (
                Retry(self.settings.error_retry_delay, error)
                if job.attempt < job.max_attempts
                else Bury(error, error)
            )
        if probe is not None:
            probe.end(outcome)
        kind = _OUTCOME_KINDS[type(outcome)]
        self.outcomes[kind] += 1
        if self._stats is not None:
            self._stats.record(job, kind, time.perf_counter() - started)
        if isinstance(outcome, Done):
            acks.done(job, outcome.result)  # batched: no I/O here
        else:
            # Shielded so that a shutdown arriving mid-write cannot lose the outcome.
            write = asyncio.ensure_future(acks.settle(job, outcome, self._stopping))
            self._settling[job.id] = write  # dropped in _finished, kept if cancelled
            await asyncio.shield(write)

    def _finished(self, task: asyncio.Task[None]) -> None:
        job = self._running.pop(task, None)
        if self._settling and not task.cancelled() and job is not None:
            self._settling.pop(job.id, None)
        if self._cancel_requests and job is not None:
            self._cancel_requests.discard(job.id)
        self._finished_count += 1
        if self._ready and self._acks is not None:
            self._start(self._ready.popleft(), self._acks)
        # A freed slot matters only when the loop waits for enough of them.
        if self._slot_wanted and self._wanted() >= self._threshold():
            self._nudge.set()
        if not task.cancelled() and task.exception() is not None:
            extra = job.log_extra() if job is not None else None
            logger.error("job task crashed", exc_info=task.exception(), extra=extra)

    def _cancel_request(self, job_id: str) -> None:
        """``cancel_job`` asked to stop ``job_id`` (NOTIFY or poll); act if it is ours.

        The id is noted, which ``ctx.cancel_requested`` shows and which keeps a job
        that has not started from starting. An async handler that is running is
        interrupted (its task gets ``CancelledError``); a sync one runs on in its
        thread, free to look at ``ctx.cancel_requested``.
        """
        if job_id in self._cancel_requests:
            return
        for task, job in self._running.items():
            if job.id == job_id:
                self._cancel_requests.add(job_id)
                logger.info("cancel requested for job %s", job_id, extra=job.log_extra())
                if self._interruptible(job):
                    # Only while the handler itself runs (armed in the watchdog): a
                    # job in its hooks or recording its outcome is left alone.
                    self.runner.deadlines.interrupt(task)
                return
        if any(job.id == job_id for job in self._ready):
            self._cancel_requests.add(job_id)  # the runner won't start it

    def _busy(self) -> bool:
        return bool(self._running or self._ready)

    async def _wait(self, timeout: float | None) -> None:
        """Sleep until nudged (a job announced, slots freed, a stop) or ``timeout``."""
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(self._nudge.wait(), timeout)

    @contextlib.asynccontextmanager
    async def _session(
        self, concurrency: int, queues: list[str] | None, *, listen: bool
    ) -> AsyncIterator[Acknowledger]:
        """Everything a running worker needs, set up in order and torn down in reverse."""
        settings = self.settings
        executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="soniq-job")
        deadlines = Deadlines()
        self.runner = JobRunner(
            self.registry,
            self.hooks,
            default_timeout=settings.job_timeout,
            worker_id=self.id,
            executor=executor,
            deadlines=deadlines,
            instruments=self.instruments,
            cancel_requests=self._cancel_requests,
        )
        # The worker's own claims and outcomes go through a backend of their own (for
        # PostgreSQL, a pool that does not wait for the WAL flush; see for_worker).
        self.db = Store(self.backend.for_worker())
        promoter = Promoter(
            self.db, self.poll_interval, settings.error_retry_delay, self._nudge.set
        )
        self._promoter = promoter
        acks = Acknowledger(self.db, settings.error_retry_delay, on_delayed=promoter.expect)
        self._acks = acks
        self._stats = OutcomeStats(self.db)
        self._concurrency, self._refill_at = concurrency, max(1, concurrency // 4)
        self._ready.clear()
        self._cancel_requests.clear()
        self._settling.clear()
        self._backlog = False
        liveness = Liveness(self.db, settings, self.id, queues, concurrency)
        await self._until_connected(self.db.open)
        await self._until_connected(liveness.register)
        if not len(self.registry):
            logger.warning(
                "no jobs are registered: every job this worker claims will be dead-lettered "
                "as not registered. Check SONIQ_JOBS_MODULES."
            )
        self._closing.clear()
        background = [
            asyncio.create_task(acks.run(self._closing)),
            asyncio.create_task(liveness.run(self._closing)),
            asyncio.create_task(deadlines.run(self._closing)),
            asyncio.create_task(self._stats.run(self._closing)),
            asyncio.create_task(
                CancelPoller(
                    self.db, self.id, settings.heartbeat_interval, self._busy, self._cancel_request
                ).run(self._closing)
            ),
        ]
        if listen:  # a long run promotes in the background; run_once as it goes
            background.append(asyncio.create_task(promoter.run(self._closing)))
        if listen and settings.listen_notify and isinstance(self.backend, PostgresBackend):
            self.listener = Listener(
                self.db,
                queues,
                self._nudge.set,
                settings.error_retry_delay,
                settings.poll_interval,
                on_cancel=self._cancel_request,
                on_delayed=promoter.expect,
                on_ready=promoter.poke,
            )
            background.append(asyncio.create_task(self.listener.run(self._closing)))
        elif listen:
            logger.info(
                "%s; polling every %gs",
                "LISTEN/NOTIFY disabled" if self.backend.notifies else "polling backend",
                self.poll_interval,
            )
        if self.instruments is not None and self.instruments.metrics is not None:
            gauges = QueueGauges(
                self.db, self.instruments.metrics, queues, settings.metrics_interval
            )
            background.append(asyncio.create_task(gauges.run(self._closing)))
        logger.info(
            "worker %s started: concurrency %d, queues %s, %d task(s) registered",
            self.id,
            concurrency,
            ",".join(queues) if queues else "all",
            len(self.registry),
        )
        try:
            yield acks
        finally:
            await self._shutdown(acks, liveness, background)
            executor.shutdown(wait=False, cancel_futures=True)
            await self.db.close()

    @contextlib.asynccontextmanager
    async def _observed(self) -> AsyncIterator[None]:
        """Metrics and tracing for this run, as the settings ask (and /metrics if a port)."""
        self.instruments = job_instruments(self.settings)
        async with metrics_endpoint(self.settings):
            yield

    async def _shutdown(
        self, acks: Acknowledger, liveness: Liveness, background: list[asyncio.Task[None]]
    ) -> None:
        # Claimed jobs that never started go back to the queue as they are. (Taken
        # first, so that no finishing job starts one of them.)
        waiting = [acks.settle(job, Requeue(0.0), self._stopping) for job in self._ready]
        self._ready.clear()
        running = dict(self._running)
        for task, job in running.items():
            # A running handler is interrupted through the watchdog, so the runner
            # knows the CancelledError for the worker's own (not the handler's).
            if self._interruptible(job) and not self.runner.deadlines.interrupt(task):
                task.cancel()
        if not all(self._interruptible(job) for job in running.values()):
            logger.info("waiting for running sync jobs to finish (signal again to force exit)")
        # Shielded: a second cancellation must not lose the requeue writes.
        await asyncio.shield(asyncio.gather(*running, *waiting, return_exceptions=True))
        # A task cancelled while its outcome was being written: let the write finish.
        written = set(self._settling)
        if written:
            await asyncio.shield(asyncio.gather(*self._settling.values(), return_exceptions=True))
        # A task cancelled before its first step never reached _execute's handler (a
        # stop that lands while a claim is in flight): requeue its job here. One that
        # was cancelled during its outcome write has already written it (above).
        unstarted = [
            acks.settle(job, Requeue(0.0), self._stopping)
            for task, job in running.items()
            if task.cancelled() and job.id not in written
        ]
        if unstarted:
            await asyncio.shield(asyncio.gather(*unstarted, return_exceptions=True))
        self._closing.set()
        acks.wake()
        ack_task, others = background[0], background[1:]
        for task in others:
            task.cancel()
        # The acknowledger is not cancelled: it finishes the batch in hand and stops.
        await asyncio.gather(ack_task, *others, return_exceptions=True)
        await acks.flush(self._closing, give_up_after=self.settings.error_retry_delay * 2)
        if self._stats is not None:
            await self._stats.flush()
        with contextlib.suppress(*self.db.unavailable):
            await liveness.deregister()
        logger.info("worker %s stopped after %d job(s)", self.id, self.processed)

    def _interruptible(self, job: ClaimedJob) -> bool:
        """Whether shutdown may cancel ``job``. A sync handler runs in a thread that
        cannot be interrupted: cancelling its task would requeue the job while the
        thread goes on, so the job would run twice."""
        spec = self.registry.get(job.job_name)
        return spec is None or spec.is_async

    async def _until_connected(self, action: Callable[[], Any]) -> None:
        while not self._stopping.is_set():
            try:
                await action()
                return
            except self.db.unavailable as exc:
                await self._after_db_error("database unavailable at start", exc)

    async def _after_db_error(self, what: str, exc: Exception) -> None:
        """Log a database error and pause before the caller tries again."""
        delay = self.settings.error_retry_delay
        logger.error("%s (%s); retrying in %gs", what, str(exc).strip(), delay)
        await nap(self._stopping, delay)

    @contextlib.asynccontextmanager
    async def _signals(self) -> AsyncIterator[None]:
        """First SIGINT/SIGTERM: graceful stop. Second: exit at once."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []

        def on_signal(sig: signal.Signals) -> None:
            if self._stopping.is_set():
                logger.warning("second %s: exiting immediately", sig.name)
                os._exit(128 + sig.value)
            logger.info("%s received: shutting down (send again to force)", sig.name)
            self.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or no signal support: the caller stops us
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
