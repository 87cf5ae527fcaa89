"""Which scheduler leads: a lock that its holder keeps until its process ends.

On PostgreSQL the lock is a session advisory lock on a connection of the scheduler's
own: when the leader's connection ends (crash, kill -9, network), the server drops
the lock and another scheduler takes over at its next try. A SQLite file gets an
exclusive ``flock`` on a file beside it, which the operating system drops with the
process. The memory backend lives in one process, whose scheduler always leads.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Protocol

import psycopg

from soniq.storage.backend import PostgresBackend, StorageBackend, connect
from soniq.storage.queries import QUERIES
from soniq.storage.urls import require_sqlite_path

logger = logging.getLogger("soniq.scheduler")

#: The advisory lock key of scheduler leadership ("soniqsc" in ASCII); distinct from
#: the migrations' key.
LEADER_LOCK_KEY = 0x736F6E69717363


class Leadership(Protocol):
    """A lock one scheduler at a time may hold."""

    async def hold(self) -> bool:
        """True while this process holds the lock (tried once if it does not)."""

    async def release(self) -> None:
        """Let the lock go (another scheduler may then take it)."""


def leadership_for(backend: StorageBackend) -> Leadership:
    """The leader lock that suits ``backend``."""
    if isinstance(backend, PostgresBackend):
        return AdvisoryLock(backend)
    if backend.kind == "sqlite":
        return FileLock(require_sqlite_path(backend.settings) + ".scheduler-lock")
    return SoleProcess()


class AdvisoryLock:
    """A PostgreSQL session advisory lock on a connection of its own."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        self.held = False
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def hold(self) -> bool:
        """Check the session (if leading) or try the lock once."""
        timeout = self.backend.settings.connect_timeout
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self.backend.url, self.backend.settings)
            self.held = False
        if self.held:
            # The lock lives as long as the session: a live session means we still lead.
            await asyncio.wait_for(self._conn.execute(QUERIES["scheduler_ping"].psycopg), timeout)
            return True
        cur = await asyncio.wait_for(
            self._conn.execute(QUERIES["scheduler_try_lead"].psycopg, {"key": LEADER_LOCK_KEY}),
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
                logger.debug("closing the leader connection failed: %s", exc)


class FileLock:
    """An exclusive ``flock`` on ``path``, kept open while leading."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    async def hold(self) -> bool:
        """Take the lock if it is free; True if this process holds it."""
        if self._fd is not None:
            return True
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def release(self) -> None:
        """Close the file, which drops the lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class SoleProcess:
    """Leadership where only one process can see the jobs: always held."""

    async def hold(self) -> bool:
        """Always True."""
        return True

    async def release(self) -> None:
        """Nothing to release."""
