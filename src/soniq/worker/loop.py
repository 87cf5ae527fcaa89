"""The worker: claim a batch, run it, acknowledge, repeat.

One process, one event loop, up to ``concurrency`` jobs in flight. Background tasks
keep the worker's heartbeat, listen for new jobs and write completions (and the
handlers' progress) in batches; the loop below only decides when to claim (sized by
:class:`ClaimAhead`), and :meth:`Worker._fill` is the one place that starts jobs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from soniq.core.middleware import Middleware
from soniq.core.registry import JobRegistry, is_builtin_task
from soniq.core.retry import RetryPolicy, check_retry_policy
from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.observability.log_context import CURRENT_JOB
from soniq.observability.sinks import MetricsSink, check_metrics_sink
from soniq.observability.worker import (
    JobInstruments,
    QueueGauges,
    job_instruments,
    metrics_endpoint,
)
from soniq.settings import SoniqSettings
from soniq.storage.backend import PostgresBackend, StorageBackend
from soniq.storage.handler_pools import HandlerPools
from soniq.storage.store import Store
from soniq.worker.acks import Acknowledger
from soniq.worker.cancels import CancelPoller
from soniq.worker.claim_ahead import ClaimAhead
from soniq.worker.completion import Completions
from soniq.worker.deadlines import Deadlines
from soniq.worker.limited import LimitedClaims
from soniq.worker.liveness import Liveness
from soniq.worker.outcomes import CANCELLED, KINDS, Done, Outcome, Requeue, failure_outcome
from soniq.worker.pauses import PausedQueues
from soniq.worker.progress import ProgressWriter
from soniq.worker.promotion import Promoter
from soniq.worker.runner import ClaimedJob, JobRunner
from soniq.worker.stats import OutcomeStats
from soniq.worker.stopping import nap, wait_set
from soniq.worker.task_registry import TaskAdvertiser
from soniq.worker.wakeup import Listener

logger = logging.getLogger("soniq.worker")

#: The longest poll interval of a worker on a backend without LISTEN/NOTIFY (seconds).
LOCAL_POLL_INTERVAL = 0.5


class _Session:
    """What one run of a worker holds, from its start to its shutdown."""

    __slots__ = (
        "acks",
        "ahead",
        "claiming",
        "concurrency",
        "db",
        "ending",
        "freed_before_claim",
        "giving_back",
        "instruments",
        "limited",
        "paused",
        "progress",
        "promoter",
        "ready",
        "runner",
        "running",
        "settling",
        "slot_wanted",
        "stats",
    )

    def __init__(
        self,
        concurrency: int,
        db: Store,
        runner: JobRunner,
        acks: Acknowledger,
        promoter: Promoter,
        stats: OutcomeStats,
        instruments: JobInstruments | None,
        progress: ProgressWriter,
    ) -> None:
        self.concurrency = concurrency
        #: The store over the worker's own backend for claims and outcomes
        #: (see StorageBackend.for_worker).
        self.db = db
        self.runner = runner
        self.acks = acks
        self.promoter = promoter
        self.stats = stats
        #: The latest ``ctx.progress`` of running jobs, written in batches.
        self.progress = progress
        #: Metrics and tracing of each job; None when both are off.
        self.instruments = instruments
        self.ahead = ClaimAhead(concurrency, asyncio.get_running_loop().time)
        #: Running job tasks and the job each one runs.
        self.running: dict[asyncio.Task[None], ClaimedJob] = {}
        #: Claimed jobs waiting for a free slot, in claim order (see ClaimAhead.ahead).
        #: They hold their attempt like running ones: a crash leaves them to
        #: stale-worker recovery, a shutdown requeues them.
        self.ready: collections.deque[ClaimedJob] = collections.deque()
        #: Outcome writes (rare outcomes only: retry, dead-letter, requeue, cancelled)
        #: by job id, until their task finishes; kept for a task cancelled mid-write,
        #: whose write goes on behind the shield (see Worker._shutdown).
        self.settling: dict[str, asyncio.Future[None]] = {}
        #: Is the loop waiting for slots to free up?
        self.slot_wanted = False
        #: Has the shutdown begun (no claim may start from then on)?
        self.ending = False
        #: The fleet's queue pauses as this worker knows them (PostgreSQL), else None.
        self.paused: PausedQueues | None = None
        #: Held while a claim is in flight: a pause waits for it (see _paused_changed).
        self.claiming = asyncio.Lock()
        #: Requeue writes of claimed, unstarted jobs of paused queues, until written.
        self.giving_back: set[asyncio.Future[None]] = set()
        #: The claim of limited jobs (PostgreSQL), else None.
        self.limited: LimitedClaims | None = None
        #: ``acks.freed`` when the last claim started (see Worker._limited_freed).
        self.freed_before_claim = 0

    def held(self) -> int:
        """Jobs claimed and not finished: running, or ready to start."""
        return len(self.running) + len(self.ready)


class Worker:
    """Runs the jobs in ``registry`` from the database behind ``backend``.

    ``retry_policy`` decides the delay after each failure (default: each job's own
    retry options); ``metrics_sink`` is told of each attempt's start and end (default:
    Prometheus when SONIQ_METRICS is on, else nothing).
    """

    def __init__(
        self,
        backend: StorageBackend,
        registry: JobRegistry,
        settings: SoniqSettings | None = None,
        hooks: Mapping[str, Sequence[Callable[..., Any]]] | None = None,
        middleware: Sequence[Middleware] = (),
        *,
        retry_policy: RetryPolicy | None = None,
        metrics_sink: MetricsSink | None = None,
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.settings = settings or backend.settings
        self.hooks = hooks or {}
        #: Job middleware, outermost first (``@app.middleware``); copied at each start.
        self.middleware = tuple(middleware)
        self.retry_policy = check_retry_policy(retry_policy)
        self.metrics_sink = check_metrics_sink(metrics_sink)
        self.id = str(uuid.uuid4())
        #: Jobs claimed over this worker's life (each run counts from where it is).
        self.processed = 0
        #: How the attempts this worker ran ended, by kind: "done", "retried",
        #: "dead_lettered", "snoozed" (also a shutdown's requeue), "cancelled".
        self.outcomes: collections.Counter[str] = collections.Counter()
        #: The current run's LISTEN/NOTIFY listener (PostgreSQL, when enabled), or None.
        self.listener: Listener | None = None
        # Ids of held jobs (running or ready) whose cancellation was requested; shared
        # with the runner and every JobContext (ctx.cancel_requested reads it).
        self._cancel_requests: set[str] = set()
        self._nudge = asyncio.Event()
        self._stopping = asyncio.Event()  # stop claiming (stop(), a signal)
        self._closing = asyncio.Event()  # background tasks wind down (end of a session)
        # What the current run holds (see _session); None between runs.
        self._live: _Session | None = None
        # How long a shutdown waits for running jobs; stop(timeout=) overrides it.
        self._grace = self.settings.shutdown_timeout

    @property
    def poll_interval(self) -> float:
        """Seconds between looks at an empty queue: SONIQ_POLL_INTERVAL, capped at
        ``LOCAL_POLL_INTERVAL`` on backends without LISTEN/NOTIFY, where polling is the
        only wake-up."""
        if self.backend.notifies:
            return self.settings.poll_interval
        return min(self.settings.poll_interval, LOCAL_POLL_INTERVAL)

    def stop(self, timeout: float | None = None) -> None:
        """Ask the worker to shut down: stop claiming, give running jobs up to
        ``timeout`` seconds (default ``SONIQ_SHUTDOWN_TIMEOUT``) to finish, requeue
        the async ones still running, leave. Sync ones are always waited for."""
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                timeout = math.nan
            if not 0 <= timeout < math.inf:
                raise SoniqError(
                    INVALID_ARGUMENT,
                    f"stop(timeout=) takes seconds >= 0 (0: requeue running async jobs at "
                    f"once), got {timeout!r}.",
                )
            self._grace = float(timeout)
        self._stopping.set()
        self._nudge.set()

    async def run(
        self, concurrency: int = 4, run_once: bool = False, queues: list[str] | None = None
    ) -> bool:
        """Process jobs until stopped (or, with ``run_once``, until none are left).

        Returns True if any job was processed.
        """
        return await self._loop(concurrency, queues, once=run_once)

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
        return await self._loop(concurrency, queues, once=True, max_jobs=max_jobs)

    async def _loop(
        self,
        concurrency: int,
        queues: list[str] | None,
        *,
        once: bool,
        max_jobs: int | None = None,
    ) -> bool:
        """Claim jobs as slots free up until stopped; ``once``: until no job is left, or
        ``max_jobs`` were claimed and have finished. True if any job was claimed."""
        start = self.processed
        async with (
            self._signals(),
            self._observed() as instruments,
            # A long run promotes delayed jobs in the background; a single run as it goes.
            self._session(concurrency, queues, instruments, listen=not once) as live,
        ):
            if once:
                await self._promote_due(live)  # delayed jobs due by now are runnable now too
            sizing = live.ahead
            while not self._stopping.is_set():
                # Cleared before the claim, never after: a wake-up (a new job, a stop)
                # that arrives while the claim is in flight must not be lost.
                self._nudge.clear()
                idle = not live.running and not live.ready
                cap = None if max_jobs is None else max_jobs - (self.processed - start)
                want = sizing.size(live.held(), cap)
                if not want:
                    if idle:
                        break  # max_jobs claimed, and all of them finished
                    await self._wait_for_slots(live)
                    continue
                claimed = await self._claim(want, queues, live)
                if sizing.backlog:
                    continue
                if not once:  # the queue is drained for now
                    limited = live.limited
                    await self._wait(
                        self.poll_interval if limited is None else limited.wait(self.poll_interval)
                    )
                elif idle and not claimed:
                    if await self._promote_due(live):
                        continue  # a retry delay or schedule ran out meanwhile
                    if await self._limited_freed(live):
                        continue  # a key's slot came free after the claim looked
                    break  # nothing ran while this claim looked: no job is left
                else:
                    # Let the running jobs finish (one may requeue itself), then look again.
                    await self._drain(live)
        return self.processed > start

    async def _promote_due(self, live: _Session) -> int:
        """Promote the delayed jobs due now (see soniq.worker.promotion); how many."""
        try:
            moved, _ = await live.promoter.promote_due()
        except live.db.errors as exc:
            await self._after_db_error("cannot promote delayed jobs", exc)
            return 0
        return moved

    async def _limited_freed(self, live: _Session) -> bool:
        """For ``run_once``: whether a limited job's slot was freed since the last
        claim started. Finished jobs are acknowledged in the background, so a claim
        made once every job here has finished may still have seen their rows running
        and held their keys back; this writes what is left and tells."""
        if live.limited is None:
            return False
        await live.acks.flush(self._closing)
        return live.acks.freed != live.freed_before_claim

    async def _wait_for_slots(self, live: _Session) -> None:
        """Sleep until enough slots are free to claim (see _finished), or a nudge."""
        live.slot_wanted = True
        try:
            await self._wait(timeout=None)
        finally:
            live.slot_wanted = False

    async def _drain(self, live: _Session) -> None:
        """Wait until every claimed job has finished, or a stop is asked for (then the
        shutdown deals with the jobs still running, as after run())."""
        while live.running and not self._stopping.is_set():
            running: asyncio.Future[object] = asyncio.ensure_future(
                asyncio.gather(*list(live.running), return_exceptions=True)
            )
            stop: asyncio.Future[object] = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait([running, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            # A task can be finished while its done callback (_finished, which takes it
            # out of running) still waits in the loop's queue, and on Python 3.12+
            # gather over finished tasks completes without yielding: yield once, or
            # this loop would spin forever.
            await asyncio.sleep(0)

    async def _claim(self, limit: int, queues: list[str] | None, live: _Session) -> int:
        """Claim up to ``limit`` jobs and start what the free slots allow; how many."""
        live.ahead.claim_started()
        live.freed_before_claim = live.acks.freed
        async with live.claiming:
            try:
                limited = live.limited
                share = 0
                if limited is not None and await limited.wanted():
                    share = limited.share(live.concurrency - live.held(), limit)
                if share:
                    got, more = await self._claim_both(limit, share, queues, live)
                else:
                    claimed = await self._claim_unlimited(live, queues, limit)
                    more = len(claimed) == limit
                    if limited is not None:
                        limited.others_waiting = more
                    got = self._take(live, claimed)
            except live.db.unavailable as exc:
                live.ahead.claim_failed()
                await self._after_db_error("cannot claim jobs", exc)
                return 0
            live.ahead.claim_ended(limit, got, more)
        return got

    async def _refill(self, live: _Session, freed: int) -> int:
        """The acknowledger wrote completions that freed ``freed`` limited slots: claim
        limited jobs for the free slots now, from there, rather than wake the loop
        (whose claim would run the global claim too) and the fleet. A key at its
        limit then takes its next job one round trip after the last one's
        acknowledgement. How many jobs were started (0: leave it to the loop)."""
        limited = live.limited
        if limited is None or self._stopping.is_set() or live.ending:
            return 0
        if live.claiming.locked():
            return 0  # a claim in flight may not have seen the slots: the loop's turn
        share = limited.share(live.concurrency - live.held(), freed)
        if share <= 0:
            return 0
        async with live.claiming:
            try:
                if not await limited.wanted():
                    return 0
                jobs = await limited.claim(share)
            except live.db.errors as exc:
                logger.warning("cannot refill limited slots (%s)", str(exc).strip())
                return 0
            got = self._take(live, jobs)
        if limited.eligible_at is not None:
            self._nudge.set()  # the loop's sleep may end later than a key's next start
        return got

    def _claim_unlimited(
        self, live: _Session, queues: list[str] | None, limit: int
    ) -> Awaitable[list[ClaimedJob]]:
        """The global claim; by queue when this worker serves only some queues (its
        --queues, or all but the paused and gated ones) and the index by queue is there."""
        paused = live.paused
        by_queue = (
            paused is not None
            and paused.queue_index
            and (bool(queues) or paused.any or bool(paused.gated))
        )
        return live.db.jobs.claim(self.id, queues, limit, by_queue=by_queue)

    def _take(self, live: _Session, claimed: list[ClaimedJob]) -> int:
        """Start (or hold ready) the jobs a claim returned; how many were kept."""
        if live.paused is not None and live.paused.any:
            # A claim that started before a pause committed can return its jobs.
            claimed = self._give_back(live, claimed)
        live.ready.extend(claimed)
        self._fill(live)
        self.processed += len(claimed)
        return len(claimed)

    async def _claim_both(
        self, limit: int, share: int, queues: list[str] | None, live: _Session
    ) -> tuple[int, bool]:
        """The limited claim for ``share`` jobs beside the global one for the rest, at
        the same time, each claim's jobs started as soon as it returns; how many were
        kept, and whether either claim may have left more behind. When one claim
        fails, the other's jobs are kept (they are this worker's now)."""
        limited = live.limited
        assert limited is not None
        others_wanted = max(limit - share, 1)
        mine = asyncio.ensure_future(limited.claim(share))
        others = asyncio.ensure_future(self._claim_unlimited(live, queues, others_wanted))
        got, failure = 0, None
        for done in asyncio.as_completed((mine, others)):
            try:
                jobs = await done
            except Exception as exc:  # the other claim's jobs must still be taken
                failure = failure or exc
                continue
            got += self._take(live, jobs)
        more = _returned(mine) and len(mine.result()) == share
        if _returned(others):
            limited.others_waiting = len(others.result()) == others_wanted
            more = more or limited.others_waiting
        if failure is not None:
            if not got:
                raise failure
            logger.error("cannot claim jobs (%s)", str(failure).strip())
        return got, more

    def _give_back(self, live: _Session, jobs: Sequence[ClaimedJob]) -> list[ClaimedJob]:
        """Requeue (attempt refunded) those of ``jobs`` whose queue is paused; the rest."""
        paused = live.paused
        assert paused is not None
        keep: list[ClaimedJob] = []
        for job in jobs:
            if not paused.holds(job.queue):
                keep.append(job)
                continue
            write = asyncio.ensure_future(live.acks.settle(job, Requeue(0.0), self._stopping))
            live.giving_back.add(write)
            write.add_done_callback(live.giving_back.discard)
        return keep

    async def _paused_changed(self, live: _Session) -> None:
        """The pauses changed (see soniq.worker.pauses): give back the claimed jobs of
        paused queues that have not started, then wait for a claim in flight (it gives
        back its own) and for the requeues to be written. After this, no job of a
        queue paused by then starts here."""
        unstarted = list(live.ready)
        for task, job in live.running.items():
            if _not_started(task):
                unstarted.append(job)
        keep = self._give_back(live, unstarted)
        if len(keep) < len(unstarted):
            kept = {job.id for job in keep}
            for task, job in list(live.running.items()):
                if job.id not in kept and _not_started(task):
                    task.cancel()  # never runs a step: nothing to record
            live.ready = collections.deque(job for job in live.ready if job.id in kept)
            self.processed -= len(unstarted) - len(keep)
            self._nudge.set()  # slots are free for other queues' jobs
        async with live.claiming:
            pass
        if live.giving_back:
            await asyncio.gather(*list(live.giving_back), return_exceptions=True)

    def _fill(self, live: _Session) -> None:
        """Start ready jobs, in claim order, while slots are free: the one place that
        starts jobs (after a claim, and as each job finishes)."""
        ready, running = live.ready, live.running
        while ready and len(running) < live.concurrency:
            job = ready.popleft()
            task = asyncio.create_task(self._execute(job, live), name=f"soniq-job-{job.id}")
            running[task] = job
            task.add_done_callback(self._finished)

    async def _execute(self, job: ClaimedJob, live: _Session) -> None:
        CURRENT_JOB.set(job)  # this task's log records are about the job (log_context)
        probe = None
        started = time.perf_counter()
        try:
            # Inside the try: a shutdown that interrupts a slow metrics sink here is a
            # requeue like any other, never a row left 'processing'.
            if live.instruments is not None:
                probe = await live.instruments.start(job)
            outcome = await live.runner.run(job)
        except asyncio.CancelledError:
            if job.id in self._cancel_requests:
                outcome = CANCELLED  # interrupted on request (see _cancel_request)
                task = asyncio.current_task()
                if sys.version_info >= (3, 11) and task is not None:
                    task.uncancel()  # handled: the task goes on to record the outcome
            else:
                # Interrupted by shutdown: not the job's fault.
                outcome = Requeue(0.0, by_shutdown=True)
        except Exception as exc:
            # The runner turns handler errors into outcomes; this is anything else. The
            # row must not stay 'processing' under a live worker, so count it a failure.
            logger.exception("running job %s failed", job.id, extra=job.log_extra())
            error = f"Worker error: {type(exc).__name__}: {exc}"
            outcome = failure_outcome(
                job.attempt,
                job.max_attempts,
                error,
                delay=self.settings.error_retry_delay,
                reason=error,
            )
        kind = KINDS[type(outcome)]
        self.outcomes[kind] += 1
        live.stats.record(job, kind, time.perf_counter() - started)
        if (
            isinstance(outcome, Done)
            and not outcome.committed
            and not live.progress.holds(job.id, job.attempt)
        ):
            live.acks.done(job, outcome.result)  # batched: no I/O here
        else:
            # Shielded so that a shutdown arriving mid-write cannot lose the outcome.
            write = asyncio.ensure_future(self._record(job, outcome, live))
            live.settling[job.id] = write  # dropped in _finished, kept if cancelled
            await asyncio.shield(write)
        # After the outcome is recorded: a sink interrupted by shutdown loses a metric,
        # never the job's outcome.
        if probe is not None:
            await probe.end(outcome)

    async def _record(self, job: ClaimedJob, outcome: Outcome, live: _Session) -> None:
        """Write a job's outcome, after its last progress (which the row would no
        longer take once the outcome is written)."""
        if live.progress.holds(job.id, job.attempt):
            await live.progress.settle(job.id, job.attempt)
        await live.acks.settle(job, outcome, self._stopping)

    def _finished(self, task: asyncio.Task[None]) -> None:
        live = self._live
        if live is None:
            return
        job = live.running.pop(task, None)
        if live.settling and not task.cancelled() and job is not None:
            live.settling.pop(job.id, None)
        if self._cancel_requests and job is not None:
            self._cancel_requests.discard(job.id)
        live.ahead.finished()
        if live.ready:
            self._fill(live)
        # A freed slot matters only when the loop waits for enough of them.
        if live.slot_wanted and live.ahead.size(live.held()):
            self._nudge.set()
        if not task.cancelled() and task.exception() is not None:
            extra = job.log_extra() if job is not None else None
            logger.error("job task crashed", exc_info=task.exception(), extra=extra)

    def _announced(self) -> None:
        """New jobs may be claimable (a NOTIFY, or a limited job's slot freed here)."""
        live = self._live
        if live is not None and live.limited is not None:
            live.limited.announced()
        self._nudge.set()

    def _cancel_request(self, job_id: str) -> None:
        """``cancel_job`` asked to stop ``job_id`` (NOTIFY or poll); act if it is ours.

        The id is noted, which ``ctx.cancel_requested`` shows and which keeps a job
        that has not started from starting. An async handler that is running is
        interrupted (its task gets ``CancelledError``); a sync one runs on in its
        thread, free to look at ``ctx.cancel_requested``.
        """
        live = self._live
        if live is None or job_id in self._cancel_requests:
            return
        for task, job in live.running.items():
            if job.id == job_id:
                self._cancel_requests.add(job_id)
                logger.info("cancel requested for job %s", job_id, extra=job.log_extra())
                if self._interruptible(job):
                    # Only while the handler itself runs (armed in the watchdog): a
                    # job in its hooks or recording its outcome is left alone.
                    live.runner.deadlines.interrupt(task)
                return
        if any(job.id == job_id for job in live.ready):
            self._cancel_requests.add(job_id)  # the runner won't start it

    def _busy(self) -> bool:
        return self._live is not None and self._live.held() > 0

    async def _wait(self, timeout: float | None) -> None:
        """Sleep until nudged (a job announced, slots freed, a stop) or ``timeout``."""
        await wait_set(self._nudge, timeout)

    @contextlib.asynccontextmanager
    async def _session(
        self,
        concurrency: int,
        queues: list[str] | None,
        instruments: JobInstruments | None,
        *,
        listen: bool,
    ) -> AsyncIterator[_Session]:
        """Everything a running worker needs, set up in order and torn down in reverse."""
        settings = self.settings
        self._check_transactional()
        executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="soniq-job")
        deadlines = Deadlines()
        # The worker's own claims and outcomes go through a backend of their own (for
        # PostgreSQL, a pool that does not wait for the WAL flush; see for_worker).
        db = Store(self.backend.for_worker())
        progress = ProgressWriter(db, settings.progress_interval, settings.error_retry_delay)
        runner = JobRunner(
            self.registry,
            self.hooks,
            default_timeout=settings.job_timeout,
            snooze_max=settings.snooze_max_seconds,
            worker_id=self.id,
            executor=executor,
            deadlines=deadlines,
            on_failure=None if instruments is None else instruments.failed,
            cancel_requests=self._cancel_requests,
            middleware=self.middleware,
            retry_policy=self.retry_policy,
            progress=progress.report,
        )
        promoter = Promoter(db, self.poll_interval, settings.error_retry_delay, self._announced)
        acks = Acknowledger(
            db, settings.error_retry_delay, on_delayed=promoter.expect, on_freed=self._announced
        )
        stats = OutcomeStats(db)
        liveness = Liveness(db, settings, self.id, queues, concurrency)
        live = _Session(concurrency, db, runner, acks, promoter, stats, instruments, progress)
        self._live = live
        self._cancel_requests.clear()
        if isinstance(self.backend, PostgresBackend):  # the backend that can pause
            live.paused = PausedQueues(
                db,
                self.id,
                asyncio.get_running_loop().time,
                lambda: self._paused_changed(live),
                settings.error_retry_delay,
            )
            liveness.on_control = live.paused.heard
            live.limited = LimitedClaims(
                db,
                self.registry,
                self.id,
                queues,
                keys_per_claim=settings.limit_keys_per_claim,
                poll_interval=self.poll_interval,
                clock=asyncio.get_running_loop().time,
            )
            paused = live.paused
            live.limited.gated = lambda: paused.gated_among(queues)
            acks.gated = lambda queue: queue in paused.gated
        await self._until_connected(db, db.open)
        pools = await self._completions(db, runner, concurrency, progress)
        await self._until_connected(db, liveness.register)
        if live.paused is not None:
            await self._until_connected(db, live.paused.reload)
        if live.limited is not None:
            await self._until_connected(db, live.limited.declare)
        elif self.registry.limit_groups():
            logger.warning(
                "this backend does not enforce concurrency or rate limits: limited jobs "
                "run as if unlimited (limits need PostgreSQL)"
            )
        advertiser = TaskAdvertiser(
            db, self.registry, self.id, queues, settings.task_registry_interval
        )
        await advertiser.publish()
        # Soniq's own jobs (soniq.webhooks.deliver) are always there; the app's count.
        if all(is_builtin_task(name) for name in self.registry.names()):
            logger.warning(
                "no jobs are registered: every job this worker claims will be dead-lettered "
                "as not registered. Check SONIQ_JOBS_MODULES."
            )
        self._closing.clear()
        background = [
            asyncio.create_task(acks.run(self._closing)),
            asyncio.create_task(liveness.run(self._closing)),
            asyncio.create_task(deadlines.run(self._closing)),
            asyncio.create_task(stats.run(self._closing)),
            asyncio.create_task(progress.run(self._closing)),
            asyncio.create_task(advertiser.run(self._closing)),
            asyncio.create_task(
                CancelPoller(
                    db, self.id, settings.heartbeat_interval, self._busy, self._cancel_request
                ).run(self._closing)
            ),
        ]
        if listen:
            background.append(asyncio.create_task(promoter.run(self._closing)))
        if live.paused is not None:
            background.append(asyncio.create_task(live.paused.run(self._closing)))
        if live.limited is not None:
            if listen:  # a long run; run_once's claims see freed slots at its end
                acks.refill = lambda freed: self._refill(live, freed)
            prune = live.limited.run(
                self._closing, settings.limit_key_idle_ttl, settings.cleanup_interval
            )
            background.append(asyncio.create_task(prune))
        if listen and settings.listen_notify and isinstance(self.backend, PostgresBackend):
            self.listener = Listener(
                db,
                queues,
                self._announced,
                settings.error_retry_delay,
                settings.poll_interval,
                on_cancel=self._cancel_request,
                on_delayed=promoter.expect,
                on_ready=promoter.poke,
                on_control=None if live.paused is None else live.paused.heard,
            )
            background.append(asyncio.create_task(self.listener.run(self._closing)))
            if live.limited is not None:
                listener = self.listener
                live.limited.listening = lambda: listener.mode == "listen"
        elif listen:
            logger.info(
                "%s; polling every %gs",
                "LISTEN/NOTIFY disabled" if self.backend.notifies else "polling backend",
                self.poll_interval,
            )
        if instruments is not None and instruments.gauges is not None:
            gauges = QueueGauges(db, instruments.gauges, queues, settings.metrics_interval)
            background.append(asyncio.create_task(gauges.run(self._closing)))
        logger.info(
            "worker %s started: concurrency %d, queues %s, %d task(s) registered",
            self.id,
            concurrency,
            ",".join(queues) if queues else "all",
            len(self.registry),
        )
        grace = 0.0  # a cancelled or failed run stops at once
        try:
            yield live
            grace = self._grace
        finally:
            try:
                await self._shutdown(live, liveness, background, grace)
            finally:
                executor.shutdown(wait=False, cancel_futures=True)
                if pools is not None:
                    await pools.close()
                await db.close()
                self._live = None

    def _check_transactional(self) -> None:
        if isinstance(self.backend, PostgresBackend):
            return
        for name in self.registry.transactional():
            logger.warning(
                "task %s is transactional, and only a PostgreSQL worker can commit a "
                "job with its handler's writes: on %s its jobs are dead-lettered",
                name,
                self.backend.describe(),
            )

    async def _completions(
        self, db: Store, runner: JobRunner, concurrency: int, progress: ProgressWriter
    ) -> HandlerPools | None:
        """Let handlers complete their jobs in their own transactions (PostgreSQL):
        ``ctx.complete``, and the handler pools of transactional jobs."""
        if not isinstance(self.backend, PostgresBackend):
            return None
        settings = self.settings
        instance: list[str] = []

        async def read() -> None:
            instance.append(await db.jobs.instance_id())

        await self._until_connected(db, read)
        size = settings.handler_pool_max_size or concurrency
        if size < concurrency and self.registry.transactional():
            logger.warning(
                "SONIQ_HANDLER_POOL_MAX_SIZE is %d, below the worker's concurrency of %d: "
                "transactional jobs beyond %d at once wait for a connection, and fail "
                "after SONIQ_CONNECT_TIMEOUT",
                size,
                concurrency,
                size,
            )
        pools = HandlerPools(self.backend.url, settings, size)
        runner.completions = Completions(
            db,
            instance[0],
            pools,
            progress,
            wait=(settings.job_timeout or 300.0),
            retry_delay=settings.error_retry_delay,
            closing=self._closing,
        )
        return pools

    @contextlib.asynccontextmanager
    async def _observed(self) -> AsyncIterator[JobInstruments | None]:
        """Metrics and tracing for this run, as the settings ask (and /metrics if a port);
        None when both are off."""
        instruments = job_instruments(self.settings, self.metrics_sink)
        async with metrics_endpoint(self.settings):
            yield instruments

    async def _shutdown(
        self,
        live: _Session,
        liveness: Liveness,
        background: list[asyncio.Task[None]],
        grace: float,
    ) -> None:
        # A refill (claimed from the acknowledger, see _refill) in flight lands first,
        # and none starts after: also for a cancelled run, which never set _stopping.
        async with live.claiming:
            live.ending = True
        # Jobs that never started go back to the queue as they are, at once: the
        # ready ones (taken first, so that no finishing job starts one of them), and
        # those whose task has not taken its first step (a stop that lands while a claim
        # is in flight), which the cancellation keeps from ever starting.
        unstarted = list(live.ready)
        live.ready.clear()
        running = dict(live.running)
        started: list[asyncio.Task[None]] = []
        for task, job in running.items():
            if _not_started(task):
                task.cancel()
                unstarted.append(job)
            elif not task.done():
                started.append(task)
        requeues = [
            asyncio.ensure_future(live.acks.settle(job, Requeue(0.0), self._stopping))
            for job in unstarted
        ]
        cancelled = False
        if grace > 0 and started:
            logger.info(
                "waiting up to %gs for %d running job(s) to finish (signal again to force exit)",
                grace,
                len(started),
            )
            try:
                await asyncio.wait(started, timeout=grace)
            except asyncio.CancelledError:
                cancelled = True  # the caller gave up waiting: interrupt now, then re-raise
        sync_running = False
        for task in started:
            job = running[task]
            if task.done():
                continue
            if not self._interruptible(job):
                sync_running = True
            elif not live.runner.deadlines.interrupt(task):
                # A running handler is interrupted through the watchdog, so the runner
                # knows the CancelledError for the worker's own (not the handler's);
                # a job in its hooks or its outcome write is cancelled directly.
                task.cancel()
        if sync_running:
            logger.info("waiting for running sync jobs to finish (signal again to force exit)")
        # Shielded: a second cancellation must not lose the requeue writes.
        await asyncio.shield(asyncio.gather(*running, *requeues, return_exceptions=True))
        # A task cancelled while its outcome was being written, and jobs of a paused
        # queue being given back: let the writes finish.
        if live.giving_back:
            await asyncio.shield(asyncio.gather(*live.giving_back, return_exceptions=True))
        if live.settling:
            await asyncio.shield(asyncio.gather(*live.settling.values(), return_exceptions=True))
        self._closing.set()
        live.acks.wake()
        ack_task, others = background[0], background[1:]
        for task in others:
            task.cancel()
        # The acknowledger is not cancelled: it finishes the batch in hand and stops.
        await asyncio.gather(ack_task, *others, return_exceptions=True)
        await live.progress.close(give_up_after=self.settings.error_retry_delay)
        await live.acks.flush(self._closing, give_up_after=self.settings.error_retry_delay * 2)
        await live.stats.flush()
        with contextlib.suppress(*live.db.unavailable):
            await liveness.deregister()
        logger.info("worker %s stopped after %d job(s)", self.id, self.processed)
        if cancelled:
            raise asyncio.CancelledError

    def _interruptible(self, job: ClaimedJob) -> bool:
        """Whether shutdown may cancel ``job``. A sync handler runs in a thread that
        cannot be interrupted: cancelling its task would requeue the job while the
        thread goes on, so the job would run twice."""
        spec = self.registry.get(job.job_name)
        return spec is None or spec.is_async

    async def _until_connected(self, db: Store, action: Callable[[], Any]) -> None:
        while not self._stopping.is_set():
            try:
                await action()
                return
            except db.unavailable as exc:
                await self._after_db_error("database unavailable at start", exc)

    async def _after_db_error(self, what: str, exc: Exception) -> None:
        """Log a database error and pause before the caller tries again."""
        delay = self.settings.error_retry_delay
        logger.error("%s (%s); retrying in %gs", what, str(exc).strip(), delay)
        await nap(self._stopping, delay)

    @contextlib.asynccontextmanager
    async def _signals(self) -> AsyncIterator[None]:
        """First SIGINT, SIGTERM or SIGHUP: graceful stop. Second: exit at once."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []

        def on_signal(sig: signal.Signals) -> None:
            if self._stopping.is_set():
                logger.warning("second %s: exiting immediately", sig.name)
                os._exit(128 + sig.value)
            logger.info("%s received: shutting down (send again to force)", sig.name)
            self.stop()

        for sig in _STOP_SIGNALS:
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


#: The signals that start a graceful shutdown (SIGHUP: a closed terminal, or a
#: process manager's reload, is a stop, not a crash).
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _returned(future: asyncio.Future[list[ClaimedJob]]) -> bool:
    """Whether a claim came back with jobs (rather than an error)."""
    return not future.cancelled() and future.exception() is None


def _not_started(task: asyncio.Task[None]) -> bool:
    """Whether ``task`` has yet to take its first step (cancelled now, it never runs)."""
    coro = task.get_coro()
    return inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
