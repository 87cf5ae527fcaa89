"""How each database takes Soniq's parameters: its queries and its encodings.

A backend and each connection adapter name their dialect; the store runs the
dialect's version of every named query and lets it encode the parameters that differ
between databases. Rows come back decoded by column name (see ``records.records``;
SQLite's values are decoded by ``sqlite_engine``, also by column name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from soniq.storage.queries import QUERIES, SQLITE_QUERIES, Query
from soniq.storage.records import BulkStatements, Completion


class Dialect:
    """One database's named queries and parameter encodings."""

    #: ``"postgres"`` or ``"sqlite"``.
    name: ClassVar[str]

    def __init__(self, queries: Mapping[str, Query]) -> None:
        self.queries = queries

    def completions(self, batch: Sequence[Completion]) -> dict[str, str]:
        """``complete_jobs`` parameters for ``batch``: ``ids``, ``attempts``, ``results``.

        Three joined strings rather than arrays for the driver to adapt: ids are
        canonical uuid text and results JSON text, so nothing needs escaping, and a
        JSON null stands for "no result" (a handler's None is never stored as JSON).
        """
        raise NotImplementedError

    def bulk_statements(self, scheduled: bool) -> BulkStatements:
        """The statements that write an ``enqueue_many`` batch (``scheduled``: the rows
        share a ``scheduled_at``)."""
        raise NotImplementedError


class PostgresDialect(Dialect):
    """PostgreSQL: array literals of ids and attempts, a JSON array of results."""

    name = "postgres"

    def completions(self, batch: Sequence[Completion]) -> dict[str, str]:
        """``{id,...}``, ``{attempt,...}`` and ``[result,...]``."""
        return {
            "ids": "{" + ",".join([b[0] for b in batch]) + "}",
            "attempts": "{" + ",".join([str(b[1]) for b in batch]) + "}",
            "results": "[" + ",".join(["null" if b[2] is None else b[2] for b in batch]) + "]",
        }

    def bulk_statements(self, scheduled: bool) -> BulkStatements:
        """COPY with or without the ``scheduled_at`` and ``delayed`` columns."""
        copy = self.queries["copy_jobs_scheduled" if scheduled else "copy_jobs"]
        return BulkStatements(copy, self.queries["insert_jobs"])


class SqliteDialect(Dialect):
    """SQLite: three JSON arrays, which ``json_each`` reads."""

    name = "sqlite"

    def completions(self, batch: Sequence[Completion]) -> dict[str, str]:
        """``["id",...]``, ``[attempt,...]`` and ``[result,...]``."""
        return {
            "ids": '["' + '","'.join([b[0] for b in batch]) + '"]',
            "attempts": "[" + ",".join([str(b[1]) for b in batch]) + "]",
            "results": "[" + ",".join(["null" if b[2] is None else b[2] for b in batch]) + "]",
        }

    def bulk_statements(self, scheduled: bool) -> BulkStatements:
        """One prepared INSERT run for each row (a missing time: the store's clock)."""
        return BulkStatements(self.queries["store_copy_job"], self.queries["insert_jobs"])


#: The PostgreSQL dialect (``soniq/sql/queries.sql``).
POSTGRES: Dialect = PostgresDialect(QUERIES)
#: The SQLite dialect of the SQLite and memory backends (``soniq/sql/sqlite/queries.sql``).
SQLITE: Dialect = SqliteDialect(SQLITE_QUERIES)
