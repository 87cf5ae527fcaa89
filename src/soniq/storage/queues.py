"""``store.queues``: the rows of ``soniq_queues``, the fleet-wide pause of a queue and
its own limits (PostgreSQL only). ``soniq_sync/storage/queues.py`` is generated from this file.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soniq.storage.area import StoreAccess

Record = dict[str, Any]


class Queues:
    """Pause, resume, limit and list queues."""

    def __init__(self, store: StoreAccess) -> None:
        self._store = store

    async def _fetch(self, name: str, params: Mapping[str, Any]) -> builtins.list[Record]:
        backend = await self._store.ready()
        return await backend.fetch(backend.dialect.queries[name], params)

    async def pause(
        self, name: str, until: datetime | None, reason: str | None, by: str | None
    ) -> Record:
        """Pause ``name`` (``'*'``: every queue) until ``until`` (None: until resumed);
        the row as written."""
        params = {"name": name, "until": until, "reason": reason, "by": by}
        row = (await self._fetch("queue_pause", params))[0]
        row.pop("_notified", None)
        return row

    async def resume(self, name: str) -> bool:
        """Lift the pause of ``name``; False if it was not paused."""
        return bool(await self._fetch("queue_resume", {"name": name}))

    async def list(self) -> builtins.list[Record]:
        """Queues with jobs queued or running, paused, or with limits: name, paused,
        paused_at, paused_until, paused_reason, paused_by, concurrency, rate_limit,
        rate_period, burst, queued, processing."""
        return await self._fetch("queue_list", {})

    async def set_limits(
        self,
        name: str,
        concurrency: int | None,
        rate_limit: int | None,
        rate_period: float | None,
        burst: int,
    ) -> Record:
        """Give queue ``name`` limits of its own (both replaced); the row as written."""
        params = {
            "name": name,
            "concurrency": concurrency,
            "rate_limit": rate_limit,
            "rate_period": rate_period,
            "burst": burst,
        }
        row = (await self._fetch("queue_set_limits", params))[0]
        row.pop("_control", None)
        row.pop("_woken", None)
        return row

    async def clear_limits(self, name: str) -> bool:
        """Drop queue ``name``'s own limits; False if it had none."""
        return bool(await self._fetch("queue_clear_limits", {"name": name}))

    async def control(self) -> Record:
        """What a worker caches: ``version`` (the latest control version), ``names``
        (the queues paused now), ``remaining`` (seconds each pause has left, None:
        until resumed), ``gated`` (the queues with limits of their own) and
        ``queue_index``."""
        return (await self._fetch("queue_control", {}))[0]

    async def seen(self, worker_id: str, version: int) -> None:
        """Record that ``worker_id`` has applied control version ``version``."""
        await self._fetch("worker_control_seen", {"id": worker_id, "version": version})

    async def unconfirmed(self, version: int, timeout: float) -> builtins.list[Record]:
        """Live workers (heartbeat within ``timeout`` s) that have not applied
        ``version`` yet: id, hostname, pid."""
        return await self._fetch("queue_unconfirmed", {"version": version, "timeout": timeout})

    async def limited(self) -> builtins.list[Record]:
        """The queues with limits of their own: name, concurrency, rate_limit,
        rate_period, burst."""
        return await self._fetch("queue_limited", {})

    async def paused(self) -> builtins.list[Record]:
        """The pauses in force now: name, paused_at, paused_until, paused_reason,
        paused_by."""
        return await self._fetch("queue_paused", {})

    # -- the optional index by queue (see claim_jobs_by_queue) -------------------------

    async def index_state(self) -> Record:
        """``present`` and ``valid``: whether soniq_jobs_queue_claim_idx exists, and
        whether it is usable (a build that failed leaves it invalid)."""
        return (await self._fetch("queue_index_state", {}))[0]

    async def add_index(self) -> bool:
        """Build the index (CONCURRENTLY: jobs go on meanwhile), first dropping an
        invalid one left by a failed build, and tell the workers; False if it was
        already there and valid."""
        state = await self.index_state()
        if state["valid"]:
            return False
        if state["present"]:
            await self._fetch("queue_index_drop", {})
        await self._fetch("queue_index_add", {})
        await self._fetch("queue_index_announce", {})
        return True

    async def drop_index(self) -> bool:
        """Drop the index (CONCURRENTLY) and tell the workers; False if it was not there."""
        if not (await self.index_state())["present"]:
            return False
        await self._fetch("queue_index_drop", {})
        await self._fetch("queue_index_announce", {})
        return True
