"""``app.scheduler``: recurring schedules added, paused and removed at run time.

Schedules live in ``soniq_recurring_jobs``, keyed by task name, so every process sees
the same ones; the ``soniq scheduler`` process fires them. ``soniq_sync``'s twin of
this module is generated from it by ``tools/async_to_sync.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from soniq.errors import INVALID_ARGUMENT, SCHEDULE_NOT_FOUND, SoniqError
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


class Scheduler:
    """``app.scheduler``: add, pause, resume, remove and inspect recurring schedules.

    Records are dicts with the columns of ``soniq_recurring_jobs``: ``name``,
    ``cron``, ``interval_seconds``, ``timezone``, ``args``, ``queue``, ``priority``,
    ``status`` (``"active"`` or ``"paused"``), ``catch_up``, ``next_run_at``,
    ``last_run_at``, ``created_at`` and ``updated_at``.
    """

    def __init__(self, store: Store, plan: PlanSchedule) -> None:
        self._store = store
        self._plan = plan

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
    ) -> dict[str, Any]:
        """Create the schedule of a task, or update it in place; return its record.

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
        return await self._store.schedules.upsert(planned.params(first))

    async def pause(self, name: str) -> None:
        """Stop firing the schedule until :meth:`resume`; SONIQ_SCHEDULE_NOT_FOUND if none."""
        if not await self._store.schedules.pause(_check_name(name)):
            raise _not_found(name)

    async def resume(self, name: str) -> None:
        """Fire the schedule again, from its next run after now (missed runs are skipped)."""
        record = await self.get(name)
        if record is None:
            raise _not_found(name)
        following = from_row(record).next_after(await self._now())
        if not await self._store.schedules.resume(name, following):
            raise _not_found(name)

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
        return await self._store.schedules.list(status)

    async def get(self, name: str) -> dict[str, Any] | None:
        """The schedule's record, or None."""
        return await self._store.schedules.get(_check_name(name))

    async def _now(self) -> datetime:
        return await self._store.schedules.now()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise SoniqError(INVALID_ARGUMENT, f"A schedule is named by its task name, got {name!r}.")
    return name


def _not_found(name: str) -> SoniqError:
    return SoniqError(
        SCHEDULE_NOT_FOUND,
        f"No schedule named {name!r}. See app.scheduler.list() for the existing ones.",
        name=name,
    )
