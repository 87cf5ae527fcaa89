"""The SQLite store: the storage engine of the SQLite and in-memory backends.

Every storage operation is a named query of ``soniq/sql/sqlite/queries.sql``, the
SQLite twin of the PostgreSQL query of the same name: the same parameters, the same
output column names. The store is synchronous; the async and blocking backends wrap
it, and the storage layer hands it the :class:`~soniq.storage.queries.Query` to run.

One ``sqlite3.Connection`` serves every thread, guarded by a re-entrant lock, with
explicit transactions: a query that writes runs under ``BEGIN IMMEDIATE``, so two
processes on one file take turns (waiting up to the busy timeout) instead of failing
when a reader tries to become a writer. ``":memory:"`` is the in-memory backend: one
private database that lives as long as the store.

Parameters, as the PostgreSQL queries take them, are encoded here:

* every statement also gets ``now``: the store's clock in Unix seconds, rounded to the
  microsecond (timestamptz's precision), one value per transaction like ``now()``;
* a ``datetime`` becomes Unix seconds (a naive one is read as UTC); ``list``/``tuple``
  and ``dict`` become JSON text; ``bool`` becomes 0/1; ``uuid.UUID`` its text;
* a parameter the query names but the mapping lacks is NULL; extra keys are ignored.

Results are decoded so callers see what psycopg gives them from PostgreSQL. Decoding
goes by output column name, because the schema gives each name one meaning everywhere
(a per-query table would have to be kept in step with 60 queries by hand):

* times, :data:`TIME_COLUMNS`: aware UTC ``datetime``;
* JSON, :data:`JSON_COLUMNS`: Python objects (SQL NULL stays None);
* booleans, :data:`BOOL_COLUMNS`: ``bool``; :data:`FLOAT_COLUMNS`: ``float``;
* a column the query aliases ``"name [uuid]"``: ``uuid.UUID`` under ``name``. Ids are
  text, as ``id::text`` gives them, except where the PostgreSQL query returns a bare
  uuid column; the tag marks those few in the SQL itself.

A named query may hold several statements separated by ``;``, run in order in one
transaction. **Its result is the rows of its last statement**; earlier statements hand
rows on through ``temp.soniq_scratch``, a table private to the store's connection.

Errors: a file that cannot be opened or is not a SQLite database raises
``SoniqError(DATABASE_UNREACHABLE)``. A unique violation surfaces as
``sqlite3.IntegrityError``, a lock still held after the busy timeout as
``sqlite3.OperationalError`` ("database is locked").
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from soniq.errors import DATABASE_UNREACHABLE, SQLITE_TOO_OLD, SoniqError
from soniq.storage.queries import SQLITE_QUERIES, Query, migration_report

#: Output columns holding a time (REAL Unix seconds in SQLite, ``datetime`` out).
TIME_COLUMNS = frozenset(
    {
        "scheduled_at",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "cancel_requested_at",
        "original_created_at",
        "dead_lettered_at",
        "last_resurrected_at",
        "next_run_at",
        "last_run_at",
        "last_heartbeat",
        "last_seen_at",
        "applied_at",
        "now",
        "cutoff",
    }
)
#: Output columns holding JSON text (Python objects out).
JSON_COLUMNS = frozenset(
    {"args", "result", "headers", "queues", "worker_queues", "args_schema", "progress"}
)
#: Output columns holding a REAL that SQLite may hand back as an int (a RETURNING
#: clause skips the column's REAL affinity for whole numbers).
FLOAT_COLUMNS = frozenset({"interval_seconds"})
#: Output columns holding 0/1 (``bool`` out).
BOOL_COLUMNS = frozenset({"catch_up", "stale", "watched", "expired"})

BUSY_TIMEOUT = 5.0  # seconds a statement waits for another process's write lock

#: The oldest SQLite the queries run on: FULL JOIN (3.39), the ->> operator (3.38),
#: STRICT tables (3.37) and RETURNING (3.35).
MIN_SQLITE_VERSION = (3, 39, 0)


class StoreBusy(sqlite3.OperationalError):
    """Another connection held the database's lock for longer than the busy timeout.

    The one SQLite error that means "try again later" (a worker waits and retries, as
    after a lost PostgreSQL connection); every other ``sqlite3`` error is a real one.
    """


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


def _current_task() -> object | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop running in this thread
        return None


_WRITE_WORDS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE")


def _has_sql(text: str) -> bool:
    return any(ln.strip() and not ln.strip().startswith("--") for ln in text.splitlines())


def split_statements(text: str) -> list[str]:
    """The statements of ``text``, split at the semicolons that end one."""
    statements: list[str] = []
    buffer = ""
    for piece in text.split(";"):
        buffer += piece
        if sqlite3.complete_statement(buffer + ";"):
            if _has_sql(buffer):
                statements.append(buffer.strip())
            buffer = ""
        else:
            buffer += ";"
    if _has_sql(buffer):
        statements.append(buffer.strip())
    return statements


@dataclass(frozen=True)
class _Compiled:
    statements: tuple[str, ...]
    params: tuple[str, ...]
    writes: bool


@cache
def compiled(query: Query) -> _Compiled:
    """``query`` split into statements in sqlite3's ``:name`` style (cached)."""
    upper = query.text.upper()
    return _Compiled(
        tuple(split_statements(query.colon)),
        tuple(p for p in query.param_names if p != "now"),
        any(word in upper.split() for word in _WRITE_WORDS),
    )


def sqlite_migration_files() -> list[tuple[str, str]]:
    """``(version, sql)`` for every SQLite migration file, in order."""
    folder = resources.files("soniq.sql").joinpath("sqlite").joinpath("migrations")
    found = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return [(name.removesuffix(".sql"), text) for name, text in found]


def _json_default(value: object) -> object:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _epoch(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def encode(value: object) -> object:
    """One parameter value as SQLite stores it (see the module docstring)."""
    if value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return _epoch(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=_json_default)
    return value  # sqlite3 refuses what it cannot bind, naming the type


def _iso_epoch(text: str | None) -> float | None:
    # dead_letter_import's times: ISO 8601 with an offset, as soniq.ops.dead_letter_file checks.
    if text is None:
        return None
    return round(_epoch(datetime.fromisoformat(text)), 6)


def _lower(text: str | None) -> str | None:
    # ILIKE folds case beyond ASCII; SQLite's LIKE and lower() do not.
    return None if text is None else text.lower()


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value, timezone.utc)
    except (ValueError, OverflowError):
        # Near the end of year 9999 a float can't hold the microseconds, and rounding
        # may carry past datetime's range: such a time is "never" either way.
        return datetime.max.replace(tzinfo=timezone.utc)


def _json(value: Any) -> Any:
    return None if value is None else json.loads(value)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


Decoder = Callable[[Any], Any] | None


@lru_cache(maxsize=256)
def _decoders(columns: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[Decoder, ...]]:
    names: list[str] = []
    decoders: list[Decoder] = []
    for column in columns:
        name, _, tag = column.partition(" [")
        names.append(name)
        if tag == "uuid]":
            decoders.append(_uuid)
        elif name in TIME_COLUMNS:
            decoders.append(_time)
        elif name in JSON_COLUMNS:
            decoders.append(_json)
        elif name in BOOL_COLUMNS:
            decoders.append(_bool)
        elif name in FLOAT_COLUMNS:
            decoders.append(_float)
        else:
            decoders.append(None)
    return tuple(names), tuple(decoders)


def _unreachable(path: str, exc: sqlite3.Error) -> SoniqError:
    return SoniqError(
        DATABASE_UNREACHABLE,
        f"Cannot open the SQLite database at {path!r}: {exc}. Check that its directory "
        "exists and is writable, and that the file, if it exists, is a SQLite database "
        "(a path to a new file creates one).",
        path=path,
    )


class SqliteStore:
    """Soniq's tables in one SQLite database file, or in memory for ``":memory:"``.

    Thread-safe: one connection shared under a lock. Use :meth:`fetch` / :meth:`rows`
    for one named query in its own transaction, :meth:`transaction` for several in one.
    """

    def __init__(self, path: str) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            needed = ".".join(map(str, MIN_SQLITE_VERSION))
            raise SoniqError(
                SQLITE_TOO_OLD,
                f"Soniq's SQLite and memory backends need SQLite {needed} or newer, and "
                f"this Python links SQLite {sqlite3.sqlite_version}. Use a Python built "
                "with a newer SQLite (python.org's and uv's builds are), or PostgreSQL "
                "(pip install 'soniq[embedded]' and soniq dev, for a local one).",
                found=sqlite3.sqlite_version,
                needed=needed,
            )
        self.path = path
        self.in_memory = path == ":memory:" or path == ""
        self._lock = threading.RLock()
        self._now: float | None = None  # the open transaction's clock
        self._owner: object | None = None  # the asyncio task that opened it, if any
        try:
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _unreachable(path, exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            if not self.in_memory:
                conn.execute("PRAGMA journal_mode = WAL").fetchall()
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _unreachable(path, exc) from None
        conn.create_function("soniq_epoch", 1, _iso_epoch, deterministic=True)
        conn.create_function("soniq_lower", 1, _lower, deterministic=True)
        self._conn = conn
        self._run_statements(SQLITE_QUERIES["store_scratch"], {}, time.time())

    def close(self) -> None:
        """Close the connection (an in-memory database is gone after this)."""
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def _transaction(self, writes: bool) -> Iterator[float]:
        try:
            with self._lock:
                if self._conn.in_transaction and self._now is not None:
                    if _current_task() is not self._owner:
                        # The lock is this thread's, but the transaction is another
                        # task's, suspended inside it: joining would mix our writes
                        # into a transaction that may yet roll back.
                        raise RuntimeError(
                            "another asyncio task of this thread has a SQLite transaction "
                            "open and is suspended inside it; a transaction body must "
                            "not await anything that suspends"
                        )
                    yield self._now  # this task's (or thread's) session: join it
                    return
                self._conn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
                self._now, self._owner = round(time.time(), 6), _current_task()
                try:
                    yield self._now
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
                finally:
                    self._now = self._owner = None
        except sqlite3.OperationalError as exc:
            if _is_busy(exc) and not isinstance(exc, StoreBusy):
                raise StoreBusy(str(exc)) from exc
            raise

    def transaction(self) -> AbstractContextManager[SqliteSession]:
        """A write transaction (``BEGIN IMMEDIATE``) for several statements.

        Committed when the block ends, rolled back if it raises. Other threads wait
        for it; queries this thread runs on the store meanwhile join it.
        """
        return self._session()

    @contextmanager
    def _session(self) -> Iterator[SqliteSession]:
        with self._transaction(writes=True) as now:
            yield SqliteSession(self, now)

    # ------------------------------------------------------------------ queries

    def _run_statements(
        self, named: Query, params: Mapping[str, Any], now: float
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        query = compiled(named)
        bound = {p: encode(params.get(p)) for p in query.params}
        bound["now"] = now
        columns: tuple[str, ...] = ()
        found: list[tuple[Any, ...]] = []
        for statement in query.statements:
            cur = self._conn.execute(statement, bound)
            found = cur.fetchall()
            columns = tuple(d[0] for d in cur.description or ())
        return columns, found

    def _decoded(
        self, query: Query, params: Mapping[str, Any], now: float
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        columns, found = self._run_statements(query, params, now)
        names, decoders = _decoders(columns)
        if any(decoders):
            found = [
                tuple(v if f is None else f(v) for f, v in zip(decoders, row, strict=True))
                for row in found
            ]
        return names, found

    def rows(self, query: Query, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run ``query`` in its own transaction; its rows as tuples."""
        with self._transaction(compiled(query).writes) as now:
            return self._decoded(query, params, now)[1]

    def named_rows(
        self, query: Query, params: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Run ``query`` in its own transaction; its column names and tuple rows."""
        with self._transaction(compiled(query).writes) as now:
            return self._decoded(query, params, now)

    def fetch(self, query: Query, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run ``query`` in its own transaction; its rows as dicts."""
        with self._transaction(compiled(query).writes) as now:
            names, found = self._decoded(query, params, now)
        return [dict(zip(names, row, strict=True)) for row in found]

    # ------------------------------------------------------------------ migrations

    def setup(self) -> list[str]:
        """Apply the pending SQLite migrations in one transaction; the versions applied.

        Idempotent. ``BEGIN IMMEDIATE`` makes a concurrent run (another process) wait,
        then find the versions recorded and apply nothing.
        """
        applied: list[str] = []
        with self._transaction(writes=True) as now:
            self._run_statements(SQLITE_QUERIES["store_migrations_table"], {}, now)
            applied_query = SQLITE_QUERIES["store_migrations_applied"]
            done = {row[0] for row in self._run_statements(applied_query, {}, now)[1]}
            for version, text in sqlite_migration_files():
                if version in done:
                    continue
                for statement in split_statements(text):
                    self._conn.execute(statement)
                self._run_statements(
                    SQLITE_QUERIES["store_migration_record"], {"version": version}, now
                )
                applied.append(version)
        return applied

    def _applied(self) -> list[dict[str, Any]]:
        with self._transaction(writes=False) as now:
            if not self._run_statements(SQLITE_QUERIES["store_has_migrations"], {}, now)[1][0][0]:
                return []
            names, found = self._decoded(SQLITE_QUERIES["store_migrations_applied"], {}, now)
        return [dict(zip(names, row, strict=True)) for row in found]

    def pending_migrations(self) -> list[str]:
        """Versions not yet applied (all of them on an empty database)."""
        done = {entry["version"] for entry in self._applied()}
        return [version for version, _ in sqlite_migration_files() if version not in done]

    def migration_status(self) -> dict[str, Any]:
        """``applied`` (``version``, ``applied_at``), ``pending`` and ``unknown`` versions.

        The shape of :func:`soniq.storage.migrations.migration_status`.
        """
        shipped = [version for version, _ in sqlite_migration_files()]
        return migration_report(self._applied(), shipped)


class SqliteSession:
    """Named queries inside one open transaction of a :class:`SqliteStore`."""

    def __init__(self, store: SqliteStore, now: float) -> None:
        self._store = store
        self._now = now

    def rows(self, query: Query, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run ``query`` in this transaction; its rows as tuples."""
        return self._store._decoded(query, params, self._now)[1]

    def fetch(self, query: Query, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run ``query`` in this transaction; its rows as dicts."""
        names, found = self._store._decoded(query, params, self._now)
        return [dict(zip(names, row, strict=True)) for row in found]

    def copy_jobs(
        self, query: Query, ids: Sequence[str], args: Sequence[str], shared: tuple[object, ...]
    ) -> None:
        """Bulk-insert jobs with ``query`` (one row's INSERT, run for each): per row an id
        and its args JSON text, then what all share.

        ``shared`` is ``(job_name, queue, priority, max_attempts, producer_id[,
        scheduled_at, delayed])`` as :mod:`soniq.adapters.copy_format` defines it; without
        ``scheduled_at`` the rows are due now. ``delayed`` is not needed: the store works
        it out on its own clock.
        """
        job_name, queue, priority, max_attempts, producer_id, *rest = shared
        common = {
            "producer_id": producer_id,
            "job_name": job_name,
            "queue": queue,
            "priority": encode(priority),
            "max_attempts": encode(max_attempts),
            "scheduled_at": encode(rest[0]) if rest and rest[0] is not None else self._now,
            "now": self._now,
        }
        (statement,) = compiled(query).statements
        self._store._conn.executemany(
            statement,
            ({**common, "id": i, "args": a} for i, a in zip(ids, args, strict=True)),
        )
