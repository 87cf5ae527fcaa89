"""Storage backends: the one interface to where jobs are kept, and PostgreSQL's.

Every read and write of Soniq's tables is a named query (``soniq/sql/queries.sql``).
A backend runs the :class:`~soniq.storage.queries.Query` objects the store gives it:
PostgreSQL through a psycopg pool here, SQLite and the in-memory backend through
``soniq.storage.local``, each in its own dialect (``soniq.storage.dialect``). The app,
the worker and the scheduler reach it through ``soniq.storage.store.Store``.
``soniq_sync/storage/backend.py`` is generated from this file.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from soniq._acompat import cancels_asked, keep_cancel
from soniq.adapters import AsyncAdapter, PsycopgAsyncAdapter
from soniq.errors import (
    DATABASE_MISSING,
    DATABASE_UNREACHABLE,
    BackendUnsupportedError,
    SoniqError,
)
from soniq.settings import SoniqSettings
from soniq.storage.database import (
    check_database_name,
    database_missing,
    database_name,
    maintenance_url,
)
from soniq.storage.dialect import POSTGRES, Dialect
from soniq.storage.migration_sources import MigrationSource
from soniq.storage.migrations import apply_migrations, migration_status, pending_migrations
from soniq.storage.queries import QUERIES, Query
from soniq.storage.records import Notification
from soniq.storage.urls import describe_server

logger = logging.getLogger("soniq.backend")

Row = tuple[Any, ...]


async def _database_missing(url: str, settings: SoniqSettings, name: str) -> bool:
    """Whether the server behind ``url`` lacks database ``name`` (asked on its
    maintenance database); False when that cannot be asked either."""
    try:
        conn = await connect(maintenance_url(url), settings)
    except SoniqError:
        return False
    async with conn:
        cur = await conn.execute(QUERIES["database_exists"].psycopg, {"name": name})
        return await cur.fetchone() is None


async def _create_database(url: str, settings: SoniqSettings, name: str) -> None:
    """Create database ``name`` on the server of ``url`` (a concurrent setup may win)."""
    statement = QUERIES["create_empty_database"].with_identifiers(database=name)
    async with await connect(maintenance_url(url), settings) as conn:
        try:
            await conn.execute(statement)
        except psycopg.errors.DuplicateDatabase:
            pass
        except psycopg.Error as exc:
            raise SoniqError(
                DATABASE_MISSING,
                f"Database {name!r} does not exist and could not be created: "
                f"{str(exc).strip()}. Ask the server's administrator to run "
                f"CREATE DATABASE {name};, then run setup again.",
                database=name,
            ) from None
    logger.info("created database %s", name)


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


class StorageBackend(ABC):
    """Where an app's jobs live. Its methods run Soniq's named queries.

    Results come back as psycopg gives them from PostgreSQL, whatever the backend:
    aware datetimes, JSON as Python objects. ``PostgresBackend`` is the production
    backend; ``SQLiteBackend`` and ``MemoryBackend`` (``soniq.storage.local``) are
    for local development and tests.
    """

    #: ``"postgres"``, ``"sqlite"`` or ``"memory"``.
    kind: ClassVar[str]
    #: Whether ``enqueue(..., connection=...)`` can write in the caller's transaction.
    transactional: ClassVar[bool]
    #: Whether workers are woken by LISTEN/NOTIFY (else they poll).
    notifies: ClassVar[bool]
    #: Errors meaning the store is unreachable for now: wait and try again.
    unavailable: ClassVar[tuple[type[Exception], ...]]
    #: Any error the store raises for a statement it did not run.
    errors: ClassVar[tuple[type[Exception], ...]]
    #: A unique constraint refused a row.
    duplicate: ClassVar[tuple[type[Exception], ...]]
    #: The queries and encodings of this backend's database.
    dialect: ClassVar[Dialect]

    settings: SoniqSettings

    @abstractmethod
    def describe(self) -> str:
        """The store in words, for logs and messages (never a password)."""

    @abstractmethod
    async def prepare(self, sources: Sequence[MigrationSource] = ()) -> list[str]:
        """Get ready for use; return the migrations still pending (then it is not ready).

        ``sources``: the app's plugin migrations, pending too until applied."""

    @abstractmethod
    async def open(self) -> None:
        """Connect (a worker retries this while the store is unavailable)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections. The backend may be prepared again afterwards."""

    @abstractmethod
    async def setup(
        self, sources: Sequence[MigrationSource] = (), *, create_database: bool = False
    ) -> list[str]:
        """Create or upgrade Soniq's tables, then apply the plugin migration
        ``sources``; return the migration versions applied.

        ``create_database``: on PostgreSQL, create the URL's database first if the
        server lacks it (else SONIQ_DATABASE_MISSING says how to). Files are made anyway.
        """

    @abstractmethod
    async def migration_status(self, sources: Sequence[MigrationSource] = ()) -> dict[str, Any]:
        """``applied``, ``pending`` and ``unknown`` migrations (see ``Soniq.migration_status``)."""

    @abstractmethod
    async def fetch(self, query: Query, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run ``query`` in a transaction of its own; rows as dicts."""

    @abstractmethod
    async def rows(self, query: Query, params: Mapping[str, Any]) -> list[Row]:
        """Run ``query`` in a transaction of its own; rows as tuples (faster)."""

    @abstractmethod
    async def named_rows(
        self, query: Query, params: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], list[Row]]:
        """Run ``query`` in a transaction of its own; its column names and tuple rows."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[AsyncAdapter]:
        """An adapter whose queries share one transaction, committed on a clean exit."""

    def session(self) -> AbstractAsyncContextManager[AsyncAdapter]:
        """An adapter for a statement or two that need no transaction around them.

        One transaction here; PostgreSQL overrides it to run each statement on its own
        (autocommit), which saves the BEGIN and COMMIT round trips.
        """
        return self.transaction()

    @abstractmethod
    def for_worker(self) -> StorageBackend:
        """The backend a worker writes its claims and outcomes through."""

    def for_waits(self) -> StorageBackend:
        """The backend an app's waits for jobs read through (``soniq.waiting.hub``):
        this one, unless the backend has a pool that the app's own calls share."""
        return self

    @abstractmethod
    async def prune_batch(self, cutoff: datetime, limit: int, *, exclusive: bool) -> int | None:
        """Delete up to ``limit`` jobs finished before ``cutoff``, oldest first.

        Returns how many, or None when ``exclusive`` and another worker is deleting.
        """

    def listen(
        self, channels: Sequence[str], application_name: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Notification]]:
        """A connection of its own LISTENing on ``channels`` (backends that notify),
        named ``application_name`` in ``pg_stat_activity`` if given."""
        raise BackendUnsupportedError(
            f"{self.describe()} has no LISTEN/NOTIFY; its workers poll.", backend=self.kind
        )

    def acquire(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """Borrow a PostgreSQL connection (PostgreSQL only: other backends have none)."""
        raise BackendUnsupportedError(
            f"backend.acquire() lends a PostgreSQL connection, and this app stores its "
            f"jobs in {self.describe()}. Use a PostgreSQL database URL for transactional "
            "enqueue and raw connections.",
            backend=self.kind,
        )


def _with_options(url: str, ours: str) -> str:
    """``ours`` after the server options the connection would get without them: those
    of ``url`` (``?options=``), else of the PGOPTIONS environment variable."""
    theirs = conninfo_to_dict(url).get("options") or os.environ.get("PGOPTIONS") or ""
    return f"{theirs} {ours}".strip()


class PostgresBackend(StorageBackend):
    """PostgreSQL through a psycopg pool. ``acquire()`` lends an ``AsyncConnection``."""

    kind = "postgres"
    transactional = True
    notifies = True
    unavailable = (psycopg.OperationalError, psycopg.InterfaceError)
    errors = (psycopg.Error,)
    duplicate = (psycopg.errors.UniqueViolation,)
    dialect = POSTGRES

    def __init__(
        self, url: str, settings: SoniqSettings, *, durable: bool = True, name: str = "soniq"
    ) -> None:
        self.url = url
        self.settings = settings
        self.durable = durable
        self.name = name
        self.pool = self._new_pool()

    def _new_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        kwargs: dict[str, Any] = {"autocommit": True}
        if not self.durable:
            # Commits return before their WAL reaches disk. Only for writes that a
            # server crash may lose without harm (see Worker), never for enqueues.
            # No bitmap scans either: a queue table's statistics are always stale
            # (never analysed yet, or analysed a million jobs ago), and guessing a few
            # due rows the planner would read every queued row by bitmap and sort them
            # on each claim, instead of walking the claim index in order. The worker's
            # other statements are primary-key probes and ordered index walks.
            # No JIT either: the claims' cost estimates grow with the table (a claim
            # by queue behind 200,000 jobs was estimated at 160,000, past
            # jit_above_cost), and compiling then took 40 ms of a 3 ms statement.
            # Added to the caller's own options (the URL's ?options=, else PGOPTIONS),
            # which an options keyword would otherwise replace.
            kwargs["options"] = _with_options(
                self.url, "-c synchronous_commit=off -c enable_bitmapscan=off -c jit=off"
            )
        return AsyncConnectionPool(
            self.url,
            min_size=self.settings.pool_min_size,
            max_size=self.settings.pool_max_size,
            kwargs=kwargs,
            # Waiting for a connection fails after this long, so an outage is
            # reported (and retried) instead of hanging for psycopg's default 30 s.
            timeout=self.settings.connect_timeout,
            open=False,
            name=self.name,
        )

    def describe(self) -> str:
        """``PostgreSQL at host:port/dbname``."""
        return f"PostgreSQL at {describe_server(self.url)}"

    async def prepare(self, sources: Sequence[MigrationSource] = ()) -> list[str]:
        """Check the schema on a connection of its own; if complete, open the pool."""
        async with await connect(self.url, self.settings) as conn:
            pending = await pending_migrations(conn, sources)
        if not pending:
            await self.open()
        return pending

    async def open(self) -> None:
        """Open the pool, waiting until its first connections are up."""
        await self.pool.open(wait=True, timeout=self.settings.connect_timeout)

    async def close(self) -> None:
        """Close every pooled connection; a later :meth:`open` starts a new pool."""
        pool, self.pool = self.pool, self._new_pool()  # a closed psycopg pool can't reopen
        await pool.close()

    async def setup(
        self, sources: Sequence[MigrationSource] = (), *, create_database: bool = False
    ) -> list[str]:
        """Apply pending migrations, on a connection of its own; a missing database is
        created first (``create_database``) or explained (SONIQ_DATABASE_MISSING).
        Plugin migration ``sources`` are applied after Soniq's."""
        try:
            conn = await connect(self.url, self.settings)
        except SoniqError as exc:
            if exc.code != DATABASE_UNREACHABLE:
                raise
            name = database_name(self.url)
            if name is None or not await _database_missing(self.url, self.settings, name):
                raise
            if not create_database:
                raise database_missing(self.url, name) from None
            await _create_database(self.url, self.settings, check_database_name(name))
            conn = await connect(self.url, self.settings)
        async with conn:
            return await apply_migrations(conn, sources)

    async def migration_status(self, sources: Sequence[MigrationSource] = ()) -> dict[str, Any]:
        """Read the migrations table (works before setup ever ran)."""
        async with await connect(self.url, self.settings) as conn:
            return await migration_status(conn, sources)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Borrow an autocommit connection; use ``conn.transaction()`` for a transaction."""
        asked = cancels_asked()
        async with self.pool.connection() as conn:
            keep_cancel(asked)  # a cancel the pool's wait dropped (see keep_cancel)
            yield conn

    async def fetch(self, query: Query, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run ``query`` on a pooled connection; dict rows."""
        async with self.acquire() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query.psycopg, params)
            return await cur.fetchall() if cur.description else []

    async def rows(self, query: Query, params: Mapping[str, Any]) -> list[Row]:
        """Run ``query`` on a pooled connection; tuple rows."""
        async with self.acquire() as conn, conn.cursor() as cur:
            await cur.execute(query.psycopg, params)
            return await cur.fetchall() if cur.description else []

    async def named_rows(
        self, query: Query, params: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], list[Row]]:
        """Run ``query`` on a pooled connection; column names and tuple rows."""
        async with self.acquire() as conn, conn.cursor() as cur:
            await cur.execute(query.psycopg, params)
            described = cur.description
            if not described:
                return (), []
            return tuple([c.name for c in described]), await cur.fetchall()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncAdapter]:
        """A pooled connection in a transaction, behind an adapter."""
        async with self.acquire() as conn, conn.transaction():
            yield PsycopgAsyncAdapter(conn)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncAdapter]:
        """A pooled connection in autocommit, behind an adapter."""
        async with self.acquire() as conn:
            yield PsycopgAsyncAdapter(conn)

    @asynccontextmanager
    async def listen(
        self, channels: Sequence[str], application_name: str | None = None
    ) -> AsyncIterator[AsyncIterator[Notification]]:
        """An autocommit connection of its own, LISTENing; its notifications as they come.

        The connection closes when the block ends. Its errors (a lost connection)
        are in :attr:`unavailable`.
        """
        named: dict[str, Any] = {}
        if application_name is not None:
            named["application_name"] = application_name
        async with await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, **named
        ) as conn:
            listen = self.dialect.queries["listen"]
            for channel in channels:
                await conn.execute(listen.with_identifiers(channel=channel))
            yield _notifications(conn)

    def for_worker(self) -> PostgresBackend:
        """A pool of the worker's own whose commits do not wait for the WAL flush.

        A server crash can then lose the last few milliseconds of claims and
        outcomes, which at-least-once delivery absorbs: a lost claim leaves the job
        queued, a lost outcome leaves it processing until stale-worker recovery, so
        at worst it runs again. Enqueues keep full durability on the app's pool.
        """
        return PostgresBackend(self.url, self.settings, durable=False, name="soniq-worker")

    def for_waits(self) -> PostgresBackend:
        """One connection of the waits' own: their reads never queue behind a burst of
        enqueues for the app's pool, nor hold one of its connections. They run one at
        a time, whatever the number of waits."""
        single = self.settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})
        return PostgresBackend(self.url, single, name="soniq-waits")

    async def prune_batch(self, cutoff: datetime, limit: int, *, exclusive: bool) -> int | None:
        """One batch in a transaction, under the sweep's advisory lock if ``exclusive``.

        The lock is transaction-scoped: a session lock could be released on another
        server connection behind a transaction-mode pooler and stay held for good.
        """
        async with self.transaction() as tx:
            if exclusive:
                locked = await tx.fetch(
                    self.dialect.queries["prune_try_lock"], {"key": SWEEP_LOCK_KEY}
                )
                if not (locked and locked[0][0]):
                    return None
            deleted = await tx.fetch(
                self.dialect.queries["prune_finished_jobs"], {"cutoff": cutoff, "limit": limit}
            )
            return int(deleted[0][0]) if deleted else 0


async def _notifications(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[Notification]:
    async for note in conn.notifies():
        yield Notification(note.channel, note.payload)


#: The workers' sweep lock key ("soniqpr" in ASCII); distinct from setup's and the
#: scheduler's keys.
SWEEP_LOCK_KEY = 0x736F6E69717072
