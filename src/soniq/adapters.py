"""Writing job rows on a caller's own connection, whatever driver it came from.

Each adapter runs Soniq's named queries in the driver's placeholder style, inside
whatever transaction the caller has open. Soniq never begins, commits or rolls back
a caller's transaction.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from soniq.errors import UNSUPPORTED_CONNECTION, SoniqError
from soniq.sql import QUERIES, Query

Row = tuple[Any, ...]

#: Columns written by ``enqueue_many``'s COPY: per row an id and its args, then the
#: values every row of the batch shares (``scheduled_at`` only when given).
COPY_COLUMNS = ("id", "args", "job_name", "queue", "priority", "max_attempts", "scheduled_at")

#: What the rows of one batch share: job_name, queue, priority, max_attempts[, scheduled_at].
Shared = tuple[Any, ...]


class AsyncAdapter(ABC):
    """Runs Soniq's queries on one async connection owned by someone else."""

    @abstractmethod
    async def fetch(self, query: Query, params: dict[str, Any]) -> list[Row]:
        """Execute ``query``, which returns rows, and return them as tuples."""

    @abstractmethod
    async def execute(self, query: Query, params: dict[str, Any]) -> None:
        """Execute ``query`` and ignore whatever it returns."""

    @abstractmethod
    async def copy_jobs(self, ids: Sequence[str], args: Sequence[str], shared: Shared) -> None:
        """Bulk-write one row per (id, args JSON), each with the ``shared`` values.

        Without a ``scheduled_at`` in ``shared``, rows take the server's clock.
        """


class PsycopgAsyncAdapter(AsyncAdapter):
    """A psycopg 3 ``AsyncConnection`` (the caller's, or one from Soniq's pool)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def fetch(self, query: Query, params: dict[str, Any]) -> list[Row]:
        # A cursor of our own keeps the caller's row_factory out of it.
        async with self.conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(query.psycopg, params)
            return await cur.fetchall()

    async def execute(self, query: Query, params: dict[str, Any]) -> None:
        await self.conn.execute(query.psycopg, params)

    async def copy_jobs(self, ids: Sequence[str], args: Sequence[str], shared: Shared) -> None:
        async with (
            self.conn.cursor() as cur,
            cur.copy(_copy_query(shared).psycopg) as copy,
        ):
            # One buffer in COPY's text format instead of an await per row.
            await copy.write(copy_text(ids, args, shared))


class AsyncpgAdapter(AsyncAdapter):
    """An asyncpg ``Connection`` or pooled connection proxy (extra ``soniq[asyncpg]``)."""

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


# COPY text format: backslash, tab, newline and carriage return are escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: object) -> str:
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text.translate(_COPY_ESCAPES)


def copy_text(ids: Sequence[str], args: Sequence[str], shared: Shared) -> bytes:
    """COPY text-format bytes for ``copy_jobs``: the shared tail is escaped once."""
    tail = "\t" + "\t".join(_copy_field(v) for v in shared) + "\n"
    # json.dumps output has no raw control characters; only backslashes need escaping.
    body = "".join(
        f"{i}\t{a.replace(chr(92), chr(92) * 2) if chr(92) in a else a}{tail}"
        for i, a in zip(ids, args, strict=True)
    )
    return body.encode()


def _copy_query(shared: Shared) -> Query:
    return QUERIES["copy_jobs_scheduled" if len(shared) == 5 else "copy_jobs"]


def async_adapter(conn: object) -> AsyncAdapter:
    """The adapter for ``conn``, or a SoniqError saying what to pass instead."""
    if isinstance(conn, psycopg.AsyncConnection):
        return PsycopgAsyncAdapter(conn)
    if _is_asyncpg(conn):
        return AsyncpgAdapter(conn)
    if isinstance(conn, psycopg.Connection):
        raise SoniqError(
            UNSUPPORTED_CONNECTION,
            "connection= is a blocking psycopg Connection, but this is the async API. "
            "Use soniq_sync for blocking code, or pass a psycopg AsyncConnection.",
            connection_type=_type_name(conn),
        )
    raise SoniqError(
        UNSUPPORTED_CONNECTION,
        f"connection= got a {_type_name(conn)}, which Soniq cannot write through. Pass a "
        "psycopg AsyncConnection or an asyncpg Connection in an open transaction.",
        connection_type=_type_name(conn),
    )


def _is_asyncpg(conn: object) -> bool:
    module = type(conn).__module__
    if not module.startswith("asyncpg"):
        return False
    try:
        import asyncpg
        from asyncpg.pool import PoolConnectionProxy
    except ImportError:  # pragma: no cover - the object came from somewhere
        return False
    return isinstance(conn, (asyncpg.Connection, PoolConnectionProxy))


def _type_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
