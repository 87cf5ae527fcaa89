"""psycopg2 connections: the caller's own, or the one under Django's psycopg2 backend."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from soniq.adapters.copy_format import Row, Shared, copy_text
from soniq.storage.queries import Query
from soniq.storage.records import BulkStatements
from soniq_sync.adapters.base import SyncAdapter


class Psycopg2Adapter(SyncAdapter):
    """A psycopg2 connection; Soniq's queries already use its ``%(name)s`` style."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def fetch(self, query: Query, params: dict[str, Any]) -> list[Row]:
        with self.conn.cursor() as cur:
            cur.execute(query.text, params)
            return [tuple(row) for row in cur.fetchall()]

    def execute(self, query: Query, params: dict[str, Any]) -> None:
        with self.conn.cursor() as cur:
            cur.execute(query.text, params)

    def copy_jobs(
        self, bulk: BulkStatements, ids: Sequence[str], args: Sequence[str], shared: Shared
    ) -> None:
        with self.conn.cursor() as cur:
            cur.copy_expert(bulk.copy.text, io.BytesIO(copy_text(ids, args, shared)))
