"""``store.tasks``: the fleet's task registry, ``soniq_task_registry``.

Workers write the tasks they serve; ``soniq tasks-check`` reads them. Nothing on the
enqueue path reads this table.
``soniq_sync/storage/tasks.py`` is generated from this file.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soniq.storage.area import StoreAccess

Record = dict[str, Any]


class Tasks:
    """What workers say they serve, and what is read back about it."""

    def __init__(self, store: StoreAccess) -> None:
        self._store = store

    async def register(
        self,
        worker_id: str,
        hostname: str,
        worker_queues: Sequence[str] | None,
        rows_json: str,
    ) -> None:
        """Write or refresh one worker's rows, ``last_seen_at`` now.

        ``rows_json`` is a JSON array of ``{task_name, queue, args_schema,
        args_model_repr}`` (``args_schema``: the schema as JSON text, or null);
        ``worker_queues`` None means the worker claims from every queue.
        """
        backend = self._store.backend
        await backend.rows(
            backend.dialect.queries["register_tasks"],
            {
                "worker_id": worker_id,
                "hostname": hostname,
                "worker_queues": None if worker_queues is None else list(worker_queues),
                "rows": rows_json,
            },
        )

    async def served(self, max_age: float) -> builtins.list[Record]:
        """Rows refreshed in the last ``max_age`` seconds, by task name, newest first."""
        backend = await self._store.ready()
        return await backend.fetch(backend.dialect.queries["served_tasks"], {"max_age": max_age})
