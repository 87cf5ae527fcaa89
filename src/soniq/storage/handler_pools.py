"""Connections for handler transactions (``@app.job(transactional=True)``).

They are apart from the worker's claim and acknowledgement pool on purpose. That pool
does not wait for the WAL flush (``PostgresBackend.for_worker``), which is right for
claims and acks and wrong for business writes, which keep the durability the
application configured. And a handler holds its connection for as long as it runs:
on the shared pool, handlers could take every connection and starve the claims and
acknowledgements that free them. Each pool opens on first use, so a worker without
transactional tasks (or without sync ones) opens none.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from soniq._acompat import cancels_asked, keep_cancel
from soniq.settings import SoniqSettings
from soniq.storage.backend import _with_options


class HandlerPools:
    """An async and a blocking pool of autocommit connections, for transactions that
    Soniq opens around handlers; ``max_size`` connections each at most."""

    def __init__(self, url: str, settings: SoniqSettings, max_size: int) -> None:
        self.url = url
        idle = settings.handler_tx_idle_timeout
        if idle is None:
            idle = (settings.job_timeout or 300.0) + 30.0
        # A handler stuck between statements cannot hold its job row's lock for ever:
        # the server ends its session, the transaction rolls back, the job is retried.
        # Both pools alike: opened empty, up to max_size, failing a wait for a
        # connection after the connect timeout.
        self._options: dict[str, Any] = {
            "min_size": 0,
            "max_size": max_size,
            "timeout": settings.connect_timeout,
            "open": False,
            "kwargs": {
                "autocommit": True,
                "options": _with_options(
                    url, f"-c idle_in_transaction_session_timeout={int(idle * 1000)}"
                ),
            },
        }
        self._async: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._sync: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._opening = asyncio.Lock()
        self._sync_opening = threading.Lock()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Borrow an async connection (the pool opens on first use)."""
        pool = self._async
        if pool is None:
            async with self._opening:
                pool = self._async
                if pool is None:
                    pool = AsyncConnectionPool(self.url, name="soniq-handlers", **self._options)
                    await pool.open()
                    self._async = pool
        asked = cancels_asked()
        async with pool.connection() as conn:
            keep_cancel(asked)
            yield conn

    @contextlib.contextmanager
    def sync_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a blocking connection, from a sync handler's thread."""
        pool = self._sync
        if pool is None:
            pool = self._open_sync()
        with pool.connection() as conn:
            yield conn

    def _open_sync(self) -> ConnectionPool[psycopg.Connection[Any]]:
        # Handler threads may race to open it: the first one in keeps its pool.
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.url, name="soniq-handlers-sync", **self._options
        )
        pool.open()
        with self._sync_opening:
            if self._sync is None:
                self._sync = pool
                return pool
        pool.close()
        return self._sync

    async def close(self) -> None:
        """Close both pools (a sync pool's close runs in a thread)."""
        pool, self._async = self._async, None
        if pool is not None:
            await pool.close()
        sync, self._sync = self._sync, None
        if sync is not None:
            await asyncio.to_thread(sync.close)
