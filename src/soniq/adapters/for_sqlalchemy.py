"""SQLAlchemy connections and sessions (asyncio extension), on any PostgreSQL driver.

Queries go through SQLAlchemy itself, so they join the transaction SQLAlchemy
manages (and begin it, if the session has not yet). ``soniq_sync/adapters/
for_sqlalchemy.py`` is generated from this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text

from soniq.adapters.base import AsyncAdapter
from soniq.adapters.copy_format import Row, Shared, bulk_insert_params
from soniq.storage.queries import Query
from soniq.storage.records import BulkStatements


class SQLAlchemyAsyncAdapter(AsyncAdapter):
    """A SQLAlchemy ``AsyncConnection`` or ``AsyncSession``."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, query: Query, params: dict[str, Any]) -> list[Row]:
        result = await self.conn.execute(text(query.colon), params)
        return [tuple(row) for row in result.fetchall()]

    async def execute(self, query: Query, params: dict[str, Any]) -> None:
        await self.conn.execute(text(query.colon), params)

    async def copy_jobs(
        self, bulk: BulkStatements, ids: Sequence[str], args: Sequence[str], shared: Shared
    ) -> None:
        # No COPY through SQLAlchemy: one multi-row INSERT, still a single statement.
        await self.conn.execute(text(bulk.insert.colon), bulk_insert_params(ids, args, shared))
