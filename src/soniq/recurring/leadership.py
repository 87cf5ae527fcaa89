"""Which scheduler leads: a lock that its holder keeps until its process ends.

On PostgreSQL the lock is a session advisory lock on a connection of the scheduler's
own: when the leader's connection ends (crash, kill -9, network), the server drops
the lock and another scheduler takes over at its next try. A SQLite file gets an
exclusive ``flock`` on a file beside it, which the operating system drops with the
process. The memory backend lives in one process, whose scheduler always leads.
"""

from __future__ import annotations

import os
from typing import Protocol

from soniq.storage.backend import PostgresBackend, StorageBackend
from soniq.storage.locks import SessionLock
from soniq.storage.urls import require_sqlite_path

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
        return SessionLock(backend, LEADER_LOCK_KEY)
    if backend.kind == "sqlite":
        return FileLock(require_sqlite_path(backend.settings) + ".scheduler-lock")
    return SoleProcess()


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
