"""Soniq's own connections: one that fails clearly when unreachable, and the pool."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from soniq.database_url import describe_server
from soniq.errors import DATABASE_UNREACHABLE, SoniqError
from soniq.settings import SoniqSettings

logger = logging.getLogger("soniq.backend")


async def connect(url: str, settings: SoniqSettings) -> psycopg.AsyncConnection[Any]:
    """One autocommit connection, or SONIQ_DATABASE_UNREACHABLE naming the server."""
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=max(1, round(settings.connect_timeout))
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SoniqError(
            DATABASE_UNREACHABLE,
            f"Cannot connect to PostgreSQL at {describe_server(url)}: {reason}. Check that "
            "the server is running and SONIQ_DATABASE_URL is right.",
            server=describe_server(url),
        ) from None


class PostgresBackend:
    """Soniq's connection pool. ``acquire()`` lends a psycopg ``AsyncConnection``."""

    def __init__(
        self, url: str, settings: SoniqSettings, *, durable: bool = True, name: str = "soniq"
    ) -> None:
        self.url = url
        self.settings = settings
        kwargs: dict[str, Any] = {"autocommit": True}
        if not durable:
            # Commits return before their WAL reaches disk. Only for writes that a
            # server crash may lose without harm (see Worker), never for enqueues.
            kwargs["options"] = "-c synchronous_commit=off"
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            kwargs=kwargs,
            # Waiting for a connection fails after this long, so an outage is
            # reported (and retried) instead of hanging for psycopg's default 30 s.
            timeout=settings.connect_timeout,
            open=False,
            name=name,
        )

    async def open(self) -> None:
        """Open the pool, waiting until its first connections are up."""
        await self.pool.open(wait=True, timeout=self.settings.connect_timeout)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.pool.close()

    def acquire(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """Borrow an autocommit connection; use ``conn.transaction()`` for a transaction."""
        return self.pool.connection()
