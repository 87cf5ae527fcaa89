"""asyncpg connections (the ``soniq[asyncpg]`` extra)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from soniq.adapters.base import AsyncAdapter
from soniq.adapters.copy_format import COPY_COLUMNS, Row, Shared
from soniq.sql import Query


class AsyncpgAdapter(AsyncAdapter):
    """An asyncpg ``Connection``, or a connection proxy from an asyncpg pool."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, query: Query, params: dict[str, Any]) -> list[Row]:
        records = await self.conn.fetch(query.dollar, *query.positional(params))
        return [tuple(record) for record in records]

    async def execute(self, query: Query, params: dict[str, Any]) -> None:
        await self.conn.execute(query.dollar, *query.positional(params))

    async def copy_jobs(self, ids: Sequence[str], args: Sequence[str], shared: Shared) -> None:
        # asyncpg's binary COPY wants real UUIDs.
        records = [(uuid.UUID(i), a, *shared) for i, a in zip(ids, args, strict=True)]
        await self.conn.copy_records_to_table(
            "soniq_jobs", records=records, columns=list(COPY_COLUMNS[: 2 + len(shared)])
        )
