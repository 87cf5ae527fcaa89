"""psycopg 3 connections: the caller's, or one from Soniq's own pool.

``soniq_sync/adapters/for_psycopg.py`` is generated from this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from soniq.adapters.base import AsyncAdapter
from soniq.adapters.copy_format import Row, Shared, copy_text
from soniq.storage.queries import Query
from soniq.storage.records import BulkStatements

# Where a connection keeps the cursor that ``execute`` reuses (see there).
_CURSOR = "_soniq_cursor"


class PsycopgAsyncAdapter(AsyncAdapter):
    """A psycopg 3 ``AsyncConnection``."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def fetch(self, query: Query, params: dict[str, Any]) -> list[Row]:
        # A cursor of our own keeps the caller's row_factory out of it.
        async with self.conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(query.psycopg, params)
            return await cur.fetchall()

    async def execute(self, query: Query, params: dict[str, Any]) -> None:
        # Opening a cursor costs about as much as all of Soniq's own Python for one
        # enqueue, so the connection keeps one for execute() to reuse. Nothing reads
        # results from it, and psycopg runs each execute under the connection's lock,
        # so threads or tasks sharing a connection may share it too. The cursor points
        # back at the connection; the cycle collector frees the pair together.
        cur = self.conn.__dict__.get(_CURSOR)
        if cur is None:
            cur = self.conn.__dict__[_CURSOR] = self.conn.cursor()
        await cur.execute(query.psycopg, params)

    async def copy_jobs(
        self, bulk: BulkStatements, ids: Sequence[str], args: Sequence[str], shared: Shared
    ) -> None:
        async with self.conn.cursor() as cur, cur.copy(bulk.copy.psycopg) as copy:
            # One buffer in COPY's text format instead of a call per row.
            await copy.write(copy_text(ids, args, shared))
