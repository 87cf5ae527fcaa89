"""``store.workers``: a worker's row in ``soniq_workers``, recovery of silent workers,
cancel requests, the queue gauges and the per-task statistics.
``soniq_sync/storage/workers.py`` is generated from this file.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from soniq.storage.jobs import send_job_events
from soniq.storage.records import QueueGauge, Recovered, records

if TYPE_CHECKING:
    from soniq.storage.area import StoreAccess

Record = dict[str, Any]


class Workers:
    """What workers write about themselves, and what is read about them."""

    def __init__(self, store: StoreAccess) -> None:
        self._store = store

    async def _rows(self, name: str, params: Mapping[str, Any]) -> builtins.list[tuple[Any, ...]]:
        backend = self._store.backend
        return await backend.rows(backend.dialect.queries[name], params)

    async def register(self, identity: Mapping[str, Any]) -> None:
        """Insert or refresh a worker's row (``id``, ``hostname``, ``pid``, ``queues``,
        ``concurrency``)."""
        await self._rows("register_worker", identity)

    async def deregister(self, worker_id: str) -> None:
        """Remove a worker's row."""
        await self._rows("deregister_worker", {"id": worker_id})

    async def heartbeat(self, worker_id: str) -> int | None:
        """Refresh the heartbeat; the latest control version (0 where queues cannot be
        paused), or None if the row is gone (presumed dead)."""
        rows = await self._rows("heartbeat", {"id": worker_id})
        return int(rows[0][1]) if rows else None

    async def recover_stale(self, timeout: float) -> Recovered:
        """Remove workers silent for ``timeout`` s; requeue or dead-letter their jobs."""
        backend = self._store.backend
        columns, rows = await backend.named_rows(
            backend.dialect.queries["recover_stale_workers"], {"timeout": timeout}
        )
        # The events of the watched jobs among those recovered ("kind:id"; usually none).
        events = rows[0][columns.index("events")] or []
        pairs = [item.split(":", 1) for item in events]
        await send_job_events(backend, [(kind, job_id) for kind, job_id in pairs])
        return records(Recovered, columns, rows)[0]

    async def cancel_requests(self, worker_id: str) -> builtins.list[str]:
        """Ids of this worker's running jobs whose cancellation was requested."""
        return [
            str(job_id)
            for (job_id,) in await self._rows("cancel_requests", {"worker_id": worker_id})
        ]

    async def queue_gauges(self, queues: Sequence[str] | None) -> builtins.list[QueueGauge]:
        """Ready depth and oldest ready age of each queue (of ``queues``; None: all)."""
        backend = self._store.backend
        columns, rows = await backend.named_rows(
            backend.dialect.queries["queue_gauges"], {"queues": queues}
        )
        return records(QueueGauge, columns, rows) if rows else []

    async def flush_stats(self, rows_json: str) -> None:
        """Add per-(queue, task) outcome counts and run times (a JSON array of objects)."""
        await self._rows("stats_flush", {"rows": rows_json})

    async def list(self, timeout: float) -> builtins.list[Record]:
        """Every worker row, oldest first; ``stale`` after ``timeout`` s of silence."""
        backend = await self._store.ready()
        return await backend.fetch(backend.dialect.queries["list_workers"], {"timeout": timeout})
