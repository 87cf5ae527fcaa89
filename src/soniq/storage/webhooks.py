"""``store.webhooks``: the rows of ``soniq_webhook_endpoints`` and
``soniq_webhook_deliveries``, for ``app.webhooks`` and its delivery job (PostgreSQL
only). ``soniq_sync/storage/webhooks.py`` is generated from this file.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from soniq.adapters.base import AsyncAdapter

if TYPE_CHECKING:
    from soniq.storage.area import StoreAccess

Record = dict[str, Any]

#: Columns holding JSON, returned as text by the queries and decoded here.
_JSON_COLUMNS = ("events", "headers")


class Webhooks:
    """Endpoints (register, remove, list) and deliveries (create, attempt, record)."""

    def __init__(self, store: StoreAccess) -> None:
        self._store = store

    async def _fetch(self, name: str, params: Mapping[str, Any]) -> builtins.list[Record]:
        backend = await self._store.ready()
        return [_decoded(row) for row in await backend.fetch(backend.dialect.queries[name], params)]

    async def add_endpoint(self, params: Mapping[str, Any]) -> None:
        """Insert an endpoint (``id``, ``url``, ``secret``, ``events`` and ``headers`` as
        JSON text, ``active``, ``max_retries``, ``timeout_seconds``)."""
        await self._fetch("webhook_endpoint_insert", params)

    async def remove_endpoint(self, endpoint_id: str) -> bool:
        """Delete an endpoint and its deliveries; False if there was none."""
        return bool(await self._fetch("webhook_endpoint_delete", {"id": endpoint_id}))

    async def endpoints(self) -> builtins.list[Record]:
        """Every endpoint, oldest first (without its secret: ``signed`` says if it has one)."""
        return await self._fetch("webhook_endpoint_list", {})

    async def endpoint(self, endpoint_id: str) -> Record | None:
        """One endpoint, or None."""
        rows = await self._fetch("webhook_endpoint_get", {"id": endpoint_id})
        return rows[0] if rows else None

    async def targets(
        self, tx: AsyncAdapter, event: str, endpoint_id: str | None
    ) -> builtins.list[tuple[str, int]]:
        """In ``tx``, ``(id, max_retries)`` of the active endpoints that take ``event``,
        locked until ``tx`` ends."""
        params = {"event": event, "endpoint_id": endpoint_id}
        rows = await tx.fetch(tx.dialect.queries["webhook_endpoints_for_event"], params)
        return [(str(row[0]), int(row[1])) for row in rows]

    async def create_deliveries(
        self,
        tx: AsyncAdapter,
        event: str,
        body: str,
        deliveries: Sequence[tuple[str, str, str, int]],
    ) -> None:
        """In ``tx``, one pending delivery per ``(id, endpoint_id, job_id, max_attempts)``."""
        params = {
            "event": event,
            "body": body,
            "ids": _array(d[0] for d in deliveries),
            "endpoint_ids": _array(d[1] for d in deliveries),
            "job_ids": _array(d[2] for d in deliveries),
            "max_attempts": _array(str(d[3]) for d in deliveries),
        }
        await tx.fetch(tx.dialect.queries["webhook_deliveries_insert"], params)

    async def begin_attempt(self, delivery_id: str, job_id: str) -> Record | None:
        """Count one more attempt at a pending delivery, made by job ``job_id`` (a failed
        one made by a new job starts over); it and its endpoint (``url``, ``secret``,
        ``timeout_seconds``, ``headers``...), or None if there is nothing to send
        (delivered, failed by this job, or gone with its endpoint)."""
        rows = await self._fetch("webhook_delivery_begin", {"id": delivery_id, "job_id": job_id})
        return rows[0] if rows else None

    async def record(self, delivery_id: str, status: str, **outcome: Any) -> None:
        """Store an attempt's outcome: ``status`` and the ``last_error``,
        ``response_status``, ``response_body``, ``duration_ms`` and ``retry_in``
        (seconds to the next attempt; None: no next attempt) given."""
        params = {
            "id": delivery_id,
            "status": status,
            "last_error": None,
            "response_status": None,
            "response_body": None,
            "duration_ms": None,
            "retry_in": None,
            **outcome,
        }
        await self._fetch("webhook_delivery_record", params)

    async def delivery(self, delivery_id: str) -> Record | None:
        """One delivery's record, or None."""
        rows = await self._fetch("webhook_delivery_get", {"id": delivery_id})
        return rows[0] if rows else None

    async def deliveries(
        self, endpoint_id: str | None, status: str | None, limit: int
    ) -> builtins.list[Record]:
        """Deliveries, newest first, optionally of one endpoint or status."""
        params = {"endpoint_id": endpoint_id, "status": status, "limit": limit}
        return await self._fetch("webhook_delivery_list", params)

    async def stats(self, seconds: float) -> Record:
        """Counts by status and the mean duration of deliveries made in the last
        ``seconds``."""
        return (await self._fetch("webhook_delivery_stats", {"seconds": seconds}))[0]


def _array(values: Any) -> str:
    """A PostgreSQL array literal of ids Soniq made (no quoting needed)."""
    return "{" + ",".join(values) + "}"


def _decoded(row: Mapping[str, Any]) -> Record:
    record = dict(row)
    for column in _JSON_COLUMNS:
        value = record.get(column)
        if isinstance(value, str):
            record[column] = json.loads(value)
    return record
