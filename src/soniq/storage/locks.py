"""Session advisory locks of PostgreSQL, each on a connection of its own (async only:
the scheduler process holds its leadership with one)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg

from soniq.storage.backend import PostgresBackend, connect

logger = logging.getLogger("soniq.scheduler")


class SessionLock:
    """A PostgreSQL session advisory lock on a connection of its own.

    The lock lives as long as the session: when the holder's process or connection
    ends, the server releases it and another holder can take it.
    """

    def __init__(self, backend: PostgresBackend, key: int) -> None:
        self.backend = backend
        self.key = key
        self.held = False
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def hold(self) -> bool:
        """Check the session (if held) or try the lock once; True while held."""
        timeout = self.backend.settings.connect_timeout
        queries = self.backend.dialect.queries
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self.backend.url, self.backend.settings)
            self.held = False
        if self.held:
            # A live session means the lock is still ours.
            await asyncio.wait_for(self._conn.execute(queries["scheduler_ping"].psycopg), timeout)
            return True
        cur = await asyncio.wait_for(
            self._conn.execute(queries["scheduler_try_lead"].psycopg, {"key": self.key}),
            timeout,
        )
        row = await cur.fetchone()
        self.held = bool(row and row[0])
        return self.held

    async def release(self) -> None:
        """Close the lock's connection; the server releases the lock with it."""
        conn, self._conn, self.held = self._conn, None, False
        if conn is not None:
            try:
                await conn.close()
            except Exception as exc:
                logger.debug("closing the lock's connection failed: %s", exc)
