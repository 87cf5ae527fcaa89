"""The SQLite and in-memory backends, for local development and tests.

Both run the SQLite versions of Soniq's named queries on a ``soniq.storage.sqlite_engine``
(stdlib ``sqlite3``): the SQLite backend on a file, the memory backend on a private
``:memory:`` database that lives as long as its app. Their limits, by design: one
writer at a time, workers poll (no LISTEN/NOTIFY), and no transactional enqueue
(``connection=`` raises). They create their tables on first use.
``soniq_sync/storage/local.py`` is generated from this file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from soniq.adapters.base import AsyncAdapter
from soniq.adapters.copy_format import Shared
from soniq.settings import SoniqSettings
from soniq.storage.backend import Row, StorageBackend
from soniq.storage.dialect import SQLITE
from soniq.storage.migration_sources import MigrationSource, skip_plugin_migrations
from soniq.storage.queries import Query
from soniq.storage.records import BulkStatements
from soniq.storage.sqlite_engine import SqliteSession, SqliteStore, StoreBusy
from soniq.storage.urls import require_sqlite_path


class SqliteSessionAdapter(AsyncAdapter):
    """Runs the SQLite dialect's queries inside one open SQLite transaction."""

    dialect = SQLITE

    def __init__(self, session: SqliteSession) -> None:
        self.session = session

    async def fetch(self, query: Query, params: dict[str, Any]) -> list[Row]:
        return self.session.rows(query, params)

    async def execute(self, query: Query, params: dict[str, Any]) -> None:
        self.session.rows(query, params)

    async def copy_jobs(
        self, bulk: BulkStatements, ids: Sequence[str], args: Sequence[str], shared: Shared
    ) -> None:
        self.session.copy_jobs(bulk.copy, ids, args, shared)


class SQLiteBackend(StorageBackend):
    """Jobs in a SQLite file: ``Soniq(database_url="sqlite:///jobs.db")``.

    Several processes may share the file (a worker and the app that enqueues), but
    writes take turns: fine for development, not for production load.
    """

    kind = "sqlite"
    transactional = False
    notifies = False
    unavailable = (StoreBusy,)
    errors = (sqlite3.Error,)
    duplicate = (sqlite3.IntegrityError,)
    dialect = SQLITE

    def __init__(self, settings: SoniqSettings, store: SqliteStore | None = None) -> None:
        self.settings = settings
        self._store = store

    @property
    def store(self) -> SqliteStore:
        """The open database, opened on first use."""
        if self._store is None:
            self._store = SqliteStore(require_sqlite_path(self.settings))
        return self._store

    def describe(self) -> str:
        """``SQLite file <path>``."""
        return f"SQLite file {require_sqlite_path(self.settings)}"

    async def prepare(self, sources: Sequence[MigrationSource] = ()) -> list[str]:
        """Create or upgrade the tables (cheap when they are current); nothing is pending.

        Plugin migration ``sources`` are PostgreSQL-only and not applied here."""
        self.store.setup()
        return []

    async def open(self) -> None:
        """Open the file, creating or upgrading the tables if needed."""
        self.store.setup()

    async def close(self) -> None:
        """Close the file; it reopens on next use."""
        store, self._store = self._store, None
        if store is not None:
            store.close()

    async def setup(
        self, sources: Sequence[MigrationSource] = (), *, create_database: bool = False
    ) -> list[str]:
        """Create or upgrade the tables; return the versions applied (the file, or the
        memory database, is made whatever ``create_database`` says). Plugin migration
        ``sources`` are PostgreSQL-only: they are skipped, with a warning."""
        skip_plugin_migrations(sources, self.kind)
        return self.store.setup()

    async def migration_status(self, sources: Sequence[MigrationSource] = ()) -> dict[str, Any]:
        """The SQLite schema's migrations."""
        return self.store.migration_status()

    async def fetch(self, query: Query, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run ``query`` (a SQLite dialect query); dict rows."""
        return self.store.fetch(query, params)

    async def rows(self, query: Query, params: Mapping[str, Any]) -> list[Row]:
        """Run ``query`` (a SQLite dialect query); tuple rows."""
        return self.store.rows(query, params)

    async def named_rows(
        self, query: Query, params: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], list[Row]]:
        """Run ``query`` (a SQLite dialect query); column names and tuple rows."""
        return self.store.named_rows(query, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncAdapter]:
        """One SQLite write transaction behind an adapter."""
        # The store's lock is re-entrant per thread, so the body must not suspend (no
        # awaiting real I/O): another task of this event loop could otherwise slip its
        # statements into the transaction. Soniq's own bodies only run store queries,
        # which never suspend.
        with self.store.transaction() as session:
            yield SqliteSessionAdapter(session)

    def for_worker(self) -> StorageBackend:
        """A connection of the worker's own to the same file."""
        return SQLiteBackend(self.settings)

    async def prune_batch(self, cutoff: datetime, limit: int, *, exclusive: bool) -> int | None:
        """One batch; writes take turns anyway, so ``exclusive`` needs no lock."""
        query = self.dialect.queries["prune_finished_jobs"]
        deleted = self.store.rows(query, {"cutoff": cutoff, "limit": limit})
        return int(deleted[0][0]) if deleted else 0


class MemoryBackend(SQLiteBackend):
    """Jobs in memory: ``Soniq(backend="memory")``. Gone when the app is.

    For tests and trying things out: the app's workers run in its own process, and
    nothing is written to disk.
    """

    kind = "memory"

    def __init__(self, settings: SoniqSettings, store: SqliteStore | None = None) -> None:
        super().__init__(settings, SqliteStore(":memory:") if store is None else store)

    @property
    def store(self) -> SqliteStore:
        """The in-memory database: the app's (its runtime makes it once), or this
        backend's own when made without one."""
        assert self._store is not None  # close() keeps it
        return self._store

    def describe(self) -> str:
        """``memory``."""
        return "memory (this process only)"

    async def close(self) -> None:
        """Nothing to release: closing would lose the jobs, which live as long as the app."""

    def for_worker(self) -> StorageBackend:
        """This backend: the worker must see the same database."""
        return self
