"""The ``soniq scheduler`` loop: lead through an advisory lock, enqueue due runs.

Many schedulers may run; the one holding the leader lock (see ``leadership``: a
PostgreSQL session advisory lock) leads, the others retry it every
``SONIQ_SCHEDULER_POLL_INTERVAL``. When the leader's process or connection ends, the
lock goes with it and another scheduler takes over at its next try.

Each due run is claimed in one transaction that moves ``next_run_at`` on from the
value read (a conditional UPDATE) and inserts the job, so a run is enqueued at most
once even if two schedulers believe they lead for a moment.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from soniq.adapters.base import AsyncAdapter
from soniq.enqueue.plan import JobPlan, JobRow
from soniq.errors import SoniqError
from soniq.recurring.leadership import LEADER_LOCK_KEY, Leadership, leadership_for
from soniq.recurring.recurrence import PeriodicJob, decide, from_row
from soniq.recurring.service import Scheduler
from soniq.settings import SoniqSettings
from soniq.storage.backend import StorageBackend
from soniq.storage.store import Store
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.scheduler")

__all__ = ["LEADER_LOCK_KEY", "SchedulerHost", "SchedulerProcess"]

# Due schedules read per query, and runs handled per tick before sleeping (so a large
# catch-up cannot keep the loop from noticing a stop or a lost lock).
_BATCH = 100
_MAX_RUNS_PER_TICK = 1000


class SchedulerHost(Protocol):
    """What a scheduler needs of its app: a ``soniq.Soniq`` is one."""

    @property
    def settings(self) -> SoniqSettings: ...
    @property
    def backend(self) -> StorageBackend: ...
    @property
    def periodic_jobs(self) -> Mapping[str, PeriodicJob]: ...

    store: Store
    scheduler: Scheduler

    async def ensure_initialized(self) -> None: ...
    def _plan(self, *args: Any, **kwargs: Any) -> JobPlan: ...
    async def _insert_row(self, adapter: AsyncAdapter, row: JobRow) -> str: ...


class SchedulerProcess:
    """One scheduler: syncs declarations, contends for leadership, fires due runs.

    ``app`` supplies the connection pool, settings and registry; ``declarations`` are
    the ``@app.periodic`` jobs to write into ``soniq_recurring_jobs`` at start.
    ``poll_interval`` (seconds) overrides ``SONIQ_SCHEDULER_POLL_INTERVAL``.
    """

    def __init__(
        self,
        app: SchedulerHost,
        declarations: Iterable[PeriodicJob] = (),
        *,
        poll_interval: float | None = None,
    ) -> None:
        self.app = app
        self.declarations = list(declarations)
        self.poll_interval = poll_interval
        self.stopping = asyncio.Event()
        self.leading = False
        self._lock: Leadership | None = None

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current step."""
        self.stopping.set()

    async def sync_declarations(self) -> None:
        """Write every ``@app.periodic`` schedule (re-adding keeps status and next run)."""
        for decl in self.declarations:
            rule = decl.rule
            await self.app.scheduler.add(
                name=decl.name,
                cron=rule.cron,
                every=rule.interval,
                timezone=rule.timezone,
                catch_up=decl.catch_up,
            )
            logger.info(
                "schedule %s: %s", decl.name, rule.describe(), extra={"job_name": decl.name}
            )

    async def run(self, *, handle_signals: bool = True) -> None:
        """Sync declarations, then lead or wait to lead until :meth:`stop` (or a signal)."""
        await self.prepare()
        await self.serve(handle_signals=handle_signals)

    async def prepare(self) -> None:
        """Connect, check the schema and write the declarations (errors raise here)."""
        await self.app.ensure_initialized()
        await self.sync_declarations()

    async def serve(self, *, handle_signals: bool = True) -> None:
        """After :meth:`prepare`: lead or wait to lead until :meth:`stop` (or a signal)."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        interval = self.poll_interval or self.app.settings.scheduler_poll_interval
        failures: tuple[type[Exception], ...] = (
            *self.app.backend.errors,
            OSError,
            SoniqError,
            TimeoutError,
        )
        logger.info("scheduler started; %d declared schedule(s)", len(self.declarations))
        try:
            while not self.stopping.is_set():
                pause = interval
                try:
                    if await self.step():
                        pause = await self._seconds_to_next(interval)
                except failures as exc:
                    logger.warning("scheduler step failed, retrying: %s", exc)
                    await self._resign()
                await nap(self.stopping, pause)
        finally:
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            await self._resign()
            logger.info("scheduler stopped")

    async def step(self) -> bool:
        """Check or take leadership; as leader, fire the due runs. True if leading."""
        if not await self.lead():
            return False
        await self.tick()
        return True

    async def lead(self) -> bool:
        """True while this process holds the leader lock (tried once if it does not)."""
        if self._lock is None:
            self._lock = leadership_for(self.app.backend)
        was_leading = self.leading
        self.leading = await self._lock.hold()
        if self.leading and not was_leading:
            logger.info("leading: this scheduler now fires the due runs")
        return self.leading

    async def tick(self) -> int:
        """Handle every due run (up to a bound); return how many jobs were enqueued."""
        enqueued = handled = 0
        while handled < _MAX_RUNS_PER_TICK and not self.stopping.is_set():
            due = await self.app.store.schedules.due(_BATCH)
            if not due:
                break
            for row in due:
                enqueued += await self._fire(row)
                handled += 1
        return enqueued

    async def _fire(self, row: dict[str, Any]) -> int:
        """Advance one due schedule and enqueue its run, in one transaction."""
        name: str = row["name"]
        decision = decide(
            from_row(row),
            row["next_run_at"],
            row["now"],
            grace=self.app.settings.scheduler_misfire_grace,
            catch_up=row["catch_up"],
        )
        job: JobRow | None = None
        if decision.fire_at is not None:
            try:
                plan = self.app._plan(
                    name,
                    row["args"],
                    {},
                    row["priority"],
                    row["queue"],
                    decision.fire_at,
                    None,
                    stored_name=True,  # checked by scheduler.add; may be module-derived
                )
                job = plan.row(row["args"])
            except SoniqError as exc:
                logger.error(
                    "schedule %s: run at %s skipped, cannot build its job: %s",
                    name,
                    decision.fire_at.isoformat(),
                    exc,
                    extra={"job_name": name},
                )
        else:
            logger.info(
                "schedule %s: runs missed since %s skipped; next at %s",
                name,
                row["next_run_at"].isoformat(),
                decision.next_run_at.isoformat(),
                extra={"job_name": name},
            )
        store = self.app.store
        async with store.transaction() as tx:
            fired_at = decision.fire_at if job is not None else None
            if not await store.schedules.advance(
                tx, name, row["next_run_at"], decision.next_run_at, fired_at
            ):
                return 0  # paused, removed or fired by another scheduler meanwhile
            if job is None:
                return 0
            job_id = await self.app._insert_row(tx, job)
        logger.info(
            "schedule %s: enqueued the run at %s",
            name,
            job.scheduled_at.isoformat() if job.scheduled_at else "now",
            extra={"job_id": job_id, "job_name": name, "queue": job.queue},
        )
        return 1

    async def _seconds_to_next(self, longest: float) -> float:
        seconds = await self.app.store.schedules.seconds_to_next()
        if seconds is None:
            return longest
        return min(longest, max(0.01, seconds))

    async def _resign(self) -> None:
        """Let the leader lock go."""
        lock, self._lock = self._lock, None
        if self.leading:
            logger.info("no longer leading")
        self.leading = False
        if lock is not None:
            await lock.release()
