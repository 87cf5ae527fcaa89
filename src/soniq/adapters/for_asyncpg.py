"""asyncpg connections (the ``soniq[asyncpg]`` extra)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from soniq.adapters.base import AsyncAdapter
from soniq.adapters.copy_format import COPY_COLUMNS, Row, Shared, copy_text
from soniq.storage.queries import Query
from soniq.storage.records import BulkStatements


class AsyncpgAdapter(AsyncAdapter):
    """An asyncpg ``Connection``, or a connection proxy from an asyncpg pool."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, query: Query, params: dict[str, Any]) -> list[Row]:
        records = await self.conn.fetch(query.dollar, *query.positional(params))
        return [tuple(record) for record in records]

    async def execute(self, query: Query, params: dict[str, Any]) -> None:
        await self.conn.execute(query.dollar, *query.positional(params))

    async def copy_jobs(
        self, bulk: BulkStatements, ids: Sequence[str], args: Sequence[str], shared: Shared
    ) -> None:
        # asyncpg builds the COPY statement itself from the table and columns.
        # COPY's text format, as for psycopg: binary COPY (copy_records_to_table) would
        # go through the connection's type codecs, and applications often replace the
        # jsonb codec with one that has no binary encoder or that encodes str again.
        await self.conn.copy_to_table(
            "soniq_jobs",
            source=_once(copy_text(ids, args, shared)),
            columns=list(COPY_COLUMNS[: 2 + len(shared)]),
            format="text",
        )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    # An async iterable: asyncpg would take bare bytes for a file path.
    yield data
