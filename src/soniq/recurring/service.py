"""``app.scheduler``: recurring schedules added, paused and removed at run time.

Schedules live in ``soniq_recurring_jobs``, keyed by task name, so every process sees
the same ones; the ``soniq scheduler`` process fires them. ``soniq_sync``'s twin of
this module is generated from it by ``tools/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.recurring.recurrence import PlannedSchedule, from_row
from soniq.storage.store import Store

#: The values ``list(status=...)`` accepts.
STATUSES = ("active", "paused")


class PlanSchedule(Protocol):
    """Checks an ``add(...)`` call without I/O (``AppBase._plan_schedule``)."""

    def __call__(
        self,
        target: object,
        *,
        name: object,
        cron: object,
        every: object,
        timezone: object,
        args: object,
        queue: object,
        priority: object,
        catch_up: object,
    ) -> PlannedSchedule: ...


class SchedulerRunner(Protocol):
    """Runs the scheduler loop inside this process (``app.scheduler.start()``)."""

    @property
    def running(self) -> bool: ...
    async def start(self, check_interval: float | None) -> None: ...
    async def stop(self) -> None: ...


class Scheduler:
    """``app.scheduler``: add, pause, resume, remove and inspect recurring schedules,
    and (``start``/``stop``) fire them from this process.

    Records are dicts with the columns of ``soniq_recurring_jobs``: ``name``,
    ``cron``, ``interval_seconds``, ``timezone``, ``args``, ``queue``, ``priority``,
    ``status`` (``"active"`` or ``"paused"``), ``catch_up``, ``next_run_at``,
    ``last_run_at``, ``created_at`` and ``updated_at``; and the original Soniq's keys:
    ``id`` (the name: schedules are keyed by it), ``schedule_type`` (``"cron"`` or
    ``"interval"``), ``schedule_value`` (the cron string, or the seconds as a string),
    ``max_attempts`` (of the jobs it enqueues), ``next_run``, ``last_run``, and
    ``run_count`` and ``last_job_id``, which are not tracked and are always None.
    """

    def __init__(
        self,
        store: Store,
        plan: PlanSchedule,
        max_attempts: Callable[[str], int],
        runner: Callable[[], SchedulerRunner],
    ) -> None:
        self._store = store
        self._plan = plan
        self._max_attempts = max_attempts
        self._make_runner = runner
        self._runner: SchedulerRunner | None = None

    async def add(
        self,
        target: Any = None,
        *,
        name: str | None = None,
        cron: Any = None,
        every: timedelta | float | None = None,
        args: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        timezone: str | None = None,
        catch_up: bool = False,
    ) -> str:
        """Create the schedule of a task, or update it in place; return its name.

        ``target`` is a ``@app.job()`` function, a task-name string or a TaskRef (or
        give ``name=`` alone). Exactly one of ``cron=`` and ``every=``. ``args`` are
        the job's arguments, checked like ``enqueue``'s. Re-adding keeps a paused
        schedule paused, and keeps the next run unless the timing changed.
        """
        planned = self._plan(
            target,
            name=name,
            cron=cron,
            every=every,
            timezone=timezone,
            args=args,
            queue=queue,
            priority=priority,
            catch_up=catch_up,
        )
        first = planned.rule.next_after(await self._now())
        record = await self._store.schedules.upsert(planned.params(first))
        name_: str = record["name"]
        return name_

    async def pause(self, name: str) -> bool:
        """Stop firing the schedule until :meth:`resume`; False if there is none."""
        return await self._store.schedules.pause(_check_name(name))

    async def resume(self, name: str) -> bool:
        """Fire the schedule again, from its next run after now (missed runs are
        skipped); False if there is none."""
        record = await self._store.schedules.get(_check_name(name))
        if record is None:
            return False
        following = from_row(record).next_after(await self._now())
        return await self._store.schedules.resume(name, following)

    async def remove(self, name: str) -> bool:
        """Delete the schedule; True if there was one. Jobs already queued stay queued.

        A schedule declared by ``@app.periodic`` comes back when a ``soniq scheduler``
        starts with that declaration; pause it, or delete the decorator, to stop it.
        """
        return await self._store.schedules.remove(_check_name(name))

    async def list(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every schedule by name, or only the ``"active"`` or ``"paused"`` ones."""
        if status is not None and status not in STATUSES:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"status must be 'active', 'paused' or None, got {status!r}.",
            )
        return [self._record(row) for row in await self._store.schedules.list(status)]

    async def get(self, name: str) -> dict[str, Any] | None:
        """The schedule's record, or None."""
        row = await self._store.schedules.get(_check_name(name))
        return None if row is None else self._record(row)

    async def start(self, check_interval: float | None = None) -> None:
        """Fire the schedules from this process until :meth:`stop` (or ``close()``).

        Writes the app's ``@app.periodic`` schedules, then runs the ``soniq
        scheduler`` loop as a task on the running event loop and returns. It checks
        for due runs every ``check_interval`` seconds (default
        ``SONIQ_SCHEDULER_POLL_INTERVAL``). Only one scheduler leads at a time, so
        this may run in several processes and next to ``soniq scheduler``. Calling
        it while running does nothing.
        """
        if self._runner is None:
            self._runner = self._make_runner()
        await self._runner.start(check_interval)

    async def stop(self) -> None:
        """Stop the loop :meth:`start` began, after its current step; a no-op if none."""
        if self._runner is not None:
            await self._runner.stop()

    @property
    def running(self) -> bool:
        """Whether :meth:`start` is firing schedules in this process."""
        return self._runner is not None and self._runner.running

    def _record(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row with the original Soniq's keys added (see the class docstring)."""
        interval = row["interval_seconds"]
        return {
            **row,
            "id": row["name"],
            "schedule_type": "cron" if row["cron"] is not None else "interval",
            "schedule_value": row["cron"] if row["cron"] is not None else f"{interval:g}",
            "max_attempts": self._max_attempts(row["name"]),
            "next_run": row["next_run_at"],
            "last_run": row["last_run_at"],
            "run_count": None,
            "last_job_id": None,
        }

    async def _now(self) -> datetime:
        return await self._store.schedules.now()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise SoniqError(INVALID_ARGUMENT, f"A schedule is named by its task name, got {name!r}.")
    return name
