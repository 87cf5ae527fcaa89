"""``store.schedules``: the rows of ``soniq_recurring_jobs``, for ``app.scheduler`` and
the scheduler process. ``soniq_sync/storage/schedules.py`` is generated from this file.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from soniq.adapters.base import AsyncAdapter

if TYPE_CHECKING:
    from soniq.storage.area import StoreAccess

Record = dict[str, Any]


class Schedules:
    """Recurring schedules: upsert, pause, resume, remove, list, and firing due runs."""

    def __init__(self, store: StoreAccess) -> None:
        self._store = store

    async def _fetch(self, name: str, params: Mapping[str, Any]) -> builtins.list[Record]:
        backend = await self._store.ready()
        return await backend.fetch(backend.dialect.queries[name], params)

    async def upsert(self, params: Mapping[str, Any]) -> Record:
        """Create or update a schedule (``PlannedSchedule.params``); its record."""
        return (await self._fetch("schedule_upsert", params))[0]

    async def pause(self, name: str) -> bool:
        """Pause it; False if there is no such schedule."""
        return bool(await self._fetch("schedule_pause", {"name": name}))

    async def resume(self, name: str, next_run_at: datetime) -> bool:
        """Resume it from ``next_run_at``; False if there is no such schedule."""
        return bool(
            await self._fetch("schedule_resume", {"name": name, "next_run_at": next_run_at})
        )

    async def remove(self, name: str) -> bool:
        """Delete it; False if there was none."""
        return bool(await self._fetch("schedule_remove", {"name": name}))

    async def list(self, status: str | None) -> builtins.list[Record]:
        """Every schedule by name, or those of one status."""
        return await self._fetch("schedule_list", {"status": status})

    async def get(self, name: str) -> Record | None:
        """One schedule's record, or None."""
        rows = await self._fetch("schedule_get", {"name": name})
        return rows[0] if rows else None

    async def now(self) -> datetime:
        """The database's clock."""
        now: datetime = (await self._fetch("scheduler_now", {}))[0]["now"]
        return now

    async def due(self, limit: int) -> builtins.list[Record]:
        """Up to ``limit`` active schedules whose next run has come, with ``now``."""
        return await self._fetch("scheduler_due", {"limit": limit})

    async def advance(
        self,
        tx: AsyncAdapter,
        name: str,
        due: datetime,
        next_run_at: datetime,
        fired_at: datetime | None,
    ) -> bool:
        """In ``tx``, move the schedule's next run from ``due`` on to ``next_run_at``;
        False if it was paused, removed or fired by another scheduler meanwhile."""
        params = {"name": name, "due": due, "next_run_at": next_run_at, "fired_at": fired_at}
        return bool(await tx.fetch(tx.dialect.queries["scheduler_advance"], params))

    async def seconds_to_next(self) -> float | None:
        """Seconds until the next active schedule is due (None: there is none)."""
        rows = await self._fetch("scheduler_seconds_to_next", {})
        seconds = rows[0]["seconds"] if rows else None
        return None if seconds is None else float(seconds)
