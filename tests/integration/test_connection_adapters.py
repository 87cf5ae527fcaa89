"""``connection=`` through every driver the adapters accept, on real PostgreSQL.

Each driver case opens a transaction the way an application using that driver would,
writes an order row of its own, and enqueues through Soniq on the same connection or
session. Leaving the block cleanly commits; raising rolls back. A separate psycopg
connection then checks what is visible: the job and the order together, or neither.

The cases are the sync adapters (``soniq_sync``: psycopg, psycopg2, SQLAlchemy
Connection/Session/scoped_session on psycopg and psycopg2) and the async ones
(``soniq``: psycopg, asyncpg, SQLAlchemy AsyncConnection/AsyncSession/
async_scoped_session on asyncpg and psycopg). SQLAlchemy routes Soniq's queries
through ``text()`` with ``(:name)::type`` placeholders, array parameters and a
multi-row INSERT instead of COPY, so its cases also run the deduplicating and
scheduled paths with awkward text.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import psycopg
import psycopg2
import pytest
from sqlalchemy import Integer, create_engine, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_scoped_session,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    scoped_session,
    sessionmaker,
)

import soniq
import soniq_sync
from soniq.errors import UNSUPPORTED_CONNECTION

RECORD = "adapters.record"
#: What every row this process enqueues carries by default (SONIQ_PRODUCER_ID unset).
PRODUCER = f"{socket.gethostname()}:{os.getpid()}"

#: Text that has tripped up SQL layers before: percent signs (pyformat drivers),
#: colons that look like bind parameters (SQLAlchemy's text()), casts, COPY's
#: escapes (backslash, tab, newline), quotes and non-ASCII.
AWKWARD = "50% off, 100%% sure; %(x)s :name (:n)::text \\ \t \n \r 'q' \"dq\" ünï €"


class Boom(Exception):
    """Raised inside a transaction block to make the driver roll it back."""


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def url(database_url: str) -> str:
    """The test database, with an ``orders`` table for the application's own writes."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id integer PRIMARY KEY)")
    return database_url


@pytest.fixture
def sync_app(url: str) -> Iterator[soniq_sync.Soniq]:
    app = soniq_sync.Soniq(database_url=url)

    @app.job(name=RECORD)
    def record(n: int, note: str = "") -> None: ...

    try:
        yield app
    finally:
        app.close()


@pytest.fixture
async def async_app(url: str) -> AsyncIterator[soniq.Soniq]:
    app = soniq.Soniq(database_url=url)

    @app.job(name=RECORD)
    async def record(n: int, note: str = "") -> None: ...

    try:
        yield app
    finally:
        await app.close()


def jobs(url: str) -> dict[str, dict[str, Any]]:
    """Committed job rows by id, read on a connection of their own."""
    with (
        psycopg.connect(url, autocommit=True) as conn,
        conn.cursor(row_factory=psycopg.rows.dict_row) as cur,
    ):
        cur.execute(
            "SELECT id::text AS id, job_name, args, queue, scheduled_at, producer_id "
            "FROM soniq_jobs"
        )
        return {row["id"]: row for row in cur.fetchall()}


def orders(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM orders ORDER BY id")]


def sqlalchemy_url(url: str, driver: str) -> str:
    """``url`` with SQLAlchemy's dialect+driver scheme, e.g. ``postgresql+asyncpg``."""
    return make_url(url).set(drivername=f"postgresql+{driver}").render_as_string(False)


# --------------------------------------------------------------------------- sync drivers


@dataclass
class SyncTx:
    """What a sync driver case hands the test: the ``connection=`` object and a way to
    write an order row in the same transaction."""

    conn: Any
    add_order: Callable[[int], object]


SyncDriver = Callable[[str], AbstractContextManager[SyncTx]]


@contextmanager
def psycopg_transaction(url: str) -> Iterator[SyncTx]:
    """psycopg 3 in autocommit mode, with an explicit ``conn.transaction()`` block."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        yield SyncTx(conn, lambda n: conn.execute("INSERT INTO orders VALUES (%s)", (n,)))


@contextmanager
def psycopg_implicit(url: str) -> Iterator[SyncTx]:
    """psycopg 3 with autocommit off (its default): the first statement begins."""
    with psycopg.connect(url) as conn:
        try:
            yield SyncTx(conn, lambda n: conn.execute("INSERT INTO orders VALUES (%s)", (n,)))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


@contextmanager
def psycopg2_connection(url: str) -> Iterator[SyncTx]:
    conn = psycopg2.connect(url)

    def add_order(n: int) -> None:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO orders VALUES (%s)", (n,))

    try:
        yield SyncTx(conn, add_order)
    except BaseException:
        conn.rollback()
        raise
    else:
        conn.commit()
    finally:
        conn.close()


def sqlalchemy_connection(driver: str) -> SyncDriver:
    @contextmanager
    def begin(url: str) -> Iterator[SyncTx]:
        engine = create_engine(sqlalchemy_url(url, driver))
        try:
            with engine.begin() as conn:
                yield SyncTx(
                    conn, lambda n: conn.execute(text("INSERT INTO orders VALUES (:n)"), {"n": n})
                )
        finally:
            engine.dispose()

    return begin


def sqlalchemy_session(driver: str) -> SyncDriver:
    @contextmanager
    def begin(url: str) -> Iterator[SyncTx]:
        engine = create_engine(sqlalchemy_url(url, driver))
        try:
            with Session(engine) as session, session.begin():
                yield SyncTx(session, lambda n: session.add(Order(id=n)))
        finally:
            engine.dispose()

    return begin


@contextmanager
def sqlalchemy_session_autobegin(url: str) -> Iterator[SyncTx]:
    """A Session without ``begin()``: Soniq's INSERT is its first statement (the ORM
    row is only flushed at commit), so the session's transaction starts with it."""
    engine = create_engine(sqlalchemy_url(url, "psycopg"))
    try:
        with Session(engine) as session:
            try:
                yield SyncTx(session, lambda n: session.add(Order(id=n)))
            except BaseException:
                session.rollback()
                raise
            session.commit()
    finally:
        engine.dispose()


@contextmanager
def sqlalchemy_scoped_session(url: str) -> Iterator[SyncTx]:
    """The ``scoped_session`` registry itself is passed, as Flask-SQLAlchemy's db.session."""
    engine = create_engine(sqlalchemy_url(url, "psycopg2"))
    registry = scoped_session(sessionmaker(engine))
    try:
        with registry.begin():
            yield SyncTx(registry, lambda n: registry.add(Order(id=n)))
    finally:
        registry.remove()
        engine.dispose()


SYNC_DRIVERS: dict[str, SyncDriver] = {
    "psycopg-transaction": psycopg_transaction,
    "psycopg-autocommit-off": psycopg_implicit,
    "psycopg2": psycopg2_connection,
    "sqlalchemy-connection-psycopg": sqlalchemy_connection("psycopg"),
    "sqlalchemy-connection-psycopg2": sqlalchemy_connection("psycopg2"),
    "sqlalchemy-session-psycopg": sqlalchemy_session("psycopg"),
    "sqlalchemy-session-psycopg2": sqlalchemy_session("psycopg2"),
    "sqlalchemy-session-autobegin": sqlalchemy_session_autobegin,
    "sqlalchemy-scoped-session": sqlalchemy_scoped_session,
}

sync_drivers = pytest.mark.parametrize(
    "driver", list(SYNC_DRIVERS.values()), ids=list(SYNC_DRIVERS)
)


# --------------------------------------------------------------------------- async drivers


@dataclass
class AsyncTx:
    conn: Any
    add_order: Callable[[int], Awaitable[object]]


AsyncDriver = Callable[[str], AbstractAsyncContextManager[AsyncTx]]


@asynccontextmanager
async def psycopg_async(url: str) -> AsyncIterator[AsyncTx]:
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
        conn.transaction(),
    ):
        yield AsyncTx(conn, lambda n: conn.execute("INSERT INTO orders VALUES (%s)", (n,)))


@asynccontextmanager
async def asyncpg_connection(url: str) -> AsyncIterator[AsyncTx]:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            yield AsyncTx(conn, lambda n: conn.execute("INSERT INTO orders VALUES ($1)", n))
    finally:
        await conn.close()


@asynccontextmanager
async def asyncpg_pool(url: str) -> AsyncIterator[AsyncTx]:
    async with (
        asyncpg.create_pool(url, min_size=1, max_size=1) as pool,
        pool.acquire() as conn,
        conn.transaction(),
    ):
        yield AsyncTx(conn, lambda n: conn.execute("INSERT INTO orders VALUES ($1)", n))


async def _json_codec(conn: asyncpg.Connection) -> None:
    """The jsonb codec many asyncpg apps install: text format, encoding with json.dumps.

    Soniq hands over args already as JSON text; it must not be encoded a second time.
    """
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
    )


@asynccontextmanager
async def asyncpg_pool_with_json_codec(url: str) -> AsyncIterator[AsyncTx]:
    async with (
        asyncpg.create_pool(url, min_size=1, max_size=1, init=_json_codec) as pool,
        pool.acquire() as conn,
        conn.transaction(),
    ):
        yield AsyncTx(conn, lambda n: conn.execute("INSERT INTO orders VALUES ($1)", n))


def sqlalchemy_async_connection(driver: str) -> AsyncDriver:
    @asynccontextmanager
    async def begin(url: str) -> AsyncIterator[AsyncTx]:
        engine = create_async_engine(sqlalchemy_url(url, driver))
        try:
            async with engine.begin() as conn:
                yield AsyncTx(
                    conn, lambda n: conn.execute(text("INSERT INTO orders VALUES (:n)"), {"n": n})
                )
        finally:
            await engine.dispose()

    return begin


async def _add(session: AsyncSession | async_scoped_session[AsyncSession], n: int) -> None:
    session.add(Order(id=n))


def sqlalchemy_async_session(driver: str) -> AsyncDriver:
    @asynccontextmanager
    async def begin(url: str) -> AsyncIterator[AsyncTx]:
        engine = create_async_engine(sqlalchemy_url(url, driver))
        try:
            async with AsyncSession(engine) as session, session.begin():
                yield AsyncTx(session, lambda n: _add(session, n))
        finally:
            await engine.dispose()

    return begin


@asynccontextmanager
async def sqlalchemy_async_scoped_session(url: str) -> AsyncIterator[AsyncTx]:
    engine = create_async_engine(sqlalchemy_url(url, "asyncpg"))
    registry = async_scoped_session(async_sessionmaker(engine), scopefunc=asyncio.current_task)
    try:
        async with registry.begin():
            yield AsyncTx(registry, lambda n: _add(registry, n))
    finally:
        await registry.remove()
        await engine.dispose()


ASYNC_DRIVERS: dict[str, AsyncDriver] = {
    "psycopg": psycopg_async,
    "asyncpg": asyncpg_connection,
    "asyncpg-pool": asyncpg_pool,
    "asyncpg-json-codec": asyncpg_pool_with_json_codec,
    "sqlalchemy-connection-asyncpg": sqlalchemy_async_connection("asyncpg"),
    "sqlalchemy-connection-psycopg": sqlalchemy_async_connection("psycopg"),
    "sqlalchemy-session-asyncpg": sqlalchemy_async_session("asyncpg"),
    "sqlalchemy-session-psycopg": sqlalchemy_async_session("psycopg"),
    "sqlalchemy-scoped-session": sqlalchemy_async_scoped_session,
}

async_drivers = pytest.mark.parametrize(
    "driver", list(ASYNC_DRIVERS.values()), ids=list(ASYNC_DRIVERS)
)


# --------------------------------------------------------------------------- commit and rollback


@sync_drivers
def test_sync_commit_makes_the_job_visible_with_the_order(
    driver: SyncDriver, sync_app: soniq_sync.Soniq, url: str
) -> None:
    with driver(url) as tx:
        tx.add_order(1)
        job_id = sync_app.enqueue(RECORD, args={"n": 1, "note": AWKWARD}, connection=tx.conn)
        assert jobs(url) == {}, "the job is visible before its transaction committed"
    found = jobs(url)
    assert list(found) == [job_id]
    assert found[job_id]["job_name"] == RECORD
    assert found[job_id]["args"] == {"n": 1, "note": AWKWARD}
    assert found[job_id]["producer_id"] == PRODUCER
    assert orders(url) == [1]


@sync_drivers
def test_sync_rollback_leaves_neither_job_nor_order(
    driver: SyncDriver, sync_app: soniq_sync.Soniq, url: str
) -> None:
    with pytest.raises(Boom), driver(url) as tx:
        tx.add_order(1)
        sync_app.enqueue(RECORD, args={"n": 1}, connection=tx.conn)
        sync_app.enqueue_many(RECORD, [{"n": 2}, {"n": 3}], connection=tx.conn)
        raise Boom
    assert jobs(url) == {}
    assert orders(url) == []


@async_drivers
async def test_async_commit_makes_the_job_visible_with_the_order(
    driver: AsyncDriver, async_app: soniq.Soniq, url: str
) -> None:
    async with driver(url) as tx:
        await tx.add_order(1)
        job_id = await async_app.enqueue(RECORD, args={"n": 1, "note": AWKWARD}, connection=tx.conn)
        assert jobs(url) == {}, "the job is visible before its transaction committed"
    found = jobs(url)
    assert list(found) == [job_id]
    assert found[job_id]["args"] == {"n": 1, "note": AWKWARD}
    assert found[job_id]["producer_id"] == PRODUCER
    assert orders(url) == [1]


@async_drivers
async def test_async_rollback_leaves_neither_job_nor_order(
    driver: AsyncDriver, async_app: soniq.Soniq, url: str
) -> None:
    with pytest.raises(Boom):
        async with driver(url) as tx:
            await tx.add_order(1)
            await async_app.enqueue(RECORD, args={"n": 1}, connection=tx.conn)
            await async_app.enqueue_many(RECORD, [{"n": 2}, {"n": 3}], connection=tx.conn)
            raise Boom
    assert jobs(url) == {}
    assert orders(url) == []


# --------------------------------------------------------------------------- batches and dedup

BATCH = [{"n": i, "note": f"{AWKWARD} #{i}"} for i in range(5)]


@sync_drivers
def test_sync_enqueue_many_plain_scheduled_and_deduplicated(
    driver: SyncDriver, sync_app: soniq_sync.Soniq, url: str
) -> None:
    """COPY (psycopg, psycopg2) or one multi-row INSERT (SQLAlchemy), with and without a
    run time; then the deduplicating INSERT and its lookup of queued duplicates."""
    later = datetime(2100, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    with driver(url) as tx:
        plain = sync_app.enqueue_many(RECORD, BATCH, connection=tx.conn)
        scheduled = sync_app.enqueue_many(
            RECORD, BATCH, scheduled_at=later, queue="later", connection=tx.conn
        )
        first = sync_app.enqueue_many(RECORD, BATCH[:3], unique=True, connection=tx.conn)
        # Same transaction: the first batch's rows are visible to the second call.
        second = sync_app.enqueue_many(RECORD, BATCH[1:], unique=True, connection=tx.conn)
        keyed = sync_app.enqueue(RECORD, args={"n": 9}, dedup_key="k:%s", connection=tx.conn)
        again = sync_app.enqueue(RECORD, args={"n": 10}, dedup_key="k:%s", connection=tx.conn)
    assert_batches(jobs(url), plain, scheduled, first, second, later)
    assert keyed == again


@async_drivers
async def test_async_enqueue_many_plain_scheduled_and_deduplicated(
    driver: AsyncDriver, async_app: soniq.Soniq, url: str
) -> None:
    later = datetime(2100, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    async with driver(url) as tx:
        plain = await async_app.enqueue_many(RECORD, BATCH, connection=tx.conn)
        scheduled = await async_app.enqueue_many(
            RECORD, BATCH, scheduled_at=later, queue="later", connection=tx.conn
        )
        first = await async_app.enqueue_many(RECORD, BATCH[:3], unique=True, connection=tx.conn)
        second = await async_app.enqueue_many(RECORD, BATCH[1:], unique=True, connection=tx.conn)
        keyed = await async_app.enqueue(RECORD, args={"n": 9}, dedup_key="k:%s", connection=tx.conn)
        again = await async_app.enqueue(
            RECORD, args={"n": 10}, dedup_key="k:%s", connection=tx.conn
        )
    assert_batches(jobs(url), plain, scheduled, first, second, later)
    assert keyed == again


def assert_batches(
    found: dict[str, dict[str, Any]],
    plain: list[str],
    scheduled: list[str],
    first: list[str],
    second: list[str],
    later: datetime,
) -> None:
    # 5 + 5 + 3 + 2 new (the other 2 were already queued) + 1 keyed.
    assert len(found) == 16
    for ids in (plain, scheduled):
        assert [found[i]["args"] for i in ids] == BATCH
    assert {found[i]["queue"] for i in scheduled} == {"later"}
    assert {found[i]["scheduled_at"] for i in scheduled} == {later}
    assert all(found[i]["scheduled_at"] < later - timedelta(days=365) for i in plain)
    assert second[:2] == first[1:], "queued duplicates should return the existing ids"
    assert [found[i]["args"] for i in first + second[2:]] == BATCH
    # Every path (COPY, multi-row INSERT, dedup INSERT) stamps this process.
    assert {row["producer_id"] for row in found.values()} == {PRODUCER}


# --------------------------------------------------------------------------- refusals


def assert_refused(info: pytest.ExceptionInfo[soniq.SoniqError], *advice: str) -> None:
    err = info.value
    assert err.code == UNSUPPORTED_CONNECTION
    for words in advice:
        assert words in err.message, err.message


@pytest.mark.parametrize(
    "driver",
    [
        SYNC_DRIVERS["psycopg-transaction"],
        SYNC_DRIVERS["psycopg2"],
        SYNC_DRIVERS["sqlalchemy-connection-psycopg"],
        SYNC_DRIVERS["sqlalchemy-session-psycopg"],
        SYNC_DRIVERS["sqlalchemy-scoped-session"],
    ],
    ids=["psycopg", "psycopg2", "sqlalchemy-connection", "sqlalchemy-session", "scoped-session"],
)
async def test_blocking_connection_to_the_async_api_is_refused(
    driver: SyncDriver, async_app: soniq.Soniq, url: str
) -> None:
    with driver(url) as tx:
        with pytest.raises(soniq.SoniqError) as info:
            await async_app.enqueue(RECORD, args={"n": 1}, connection=tx.conn)
        assert_refused(info, "blocking", "soniq_sync")
        with pytest.raises(soniq.SoniqError):
            await async_app.enqueue_many(RECORD, [{"n": 2}], connection=tx.conn)
        tx.add_order(1)  # the transaction is untouched and still usable
    assert jobs(url) == {}
    assert orders(url) == [1]


@pytest.mark.parametrize(
    "driver",
    [
        ASYNC_DRIVERS["psycopg"],
        ASYNC_DRIVERS["asyncpg"],
        ASYNC_DRIVERS["asyncpg-pool"],
        ASYNC_DRIVERS["sqlalchemy-connection-asyncpg"],
        ASYNC_DRIVERS["sqlalchemy-session-psycopg"],
        ASYNC_DRIVERS["sqlalchemy-scoped-session"],
    ],
    ids=[
        "psycopg",
        "asyncpg",
        "asyncpg-pool",
        "sqlalchemy-connection",
        "sqlalchemy-session",
        "scoped-session",
    ],
)
async def test_async_connection_to_the_blocking_api_is_refused(
    driver: AsyncDriver, sync_app: soniq_sync.Soniq, url: str
) -> None:
    async with driver(url) as tx:
        with pytest.raises(soniq.SoniqError) as info:
            sync_app.enqueue(RECORD, args={"n": 1}, connection=tx.conn)
        assert_refused(info, "async", "soniq.Soniq")
        with pytest.raises(soniq.SoniqError):
            sync_app.enqueue_many(RECORD, [{"n": 2}], connection=tx.conn)
        await tx.add_order(1)
    assert jobs(url) == {}
    assert orders(url) == [1]


@pytest.mark.parametrize(
    "conn", [object(), "postgresql://localhost/app", 42], ids=["object", "url", "int"]
)
async def test_unknown_objects_are_refused_by_both_apis(
    conn: object, async_app: soniq.Soniq, sync_app: soniq_sync.Soniq, url: str
) -> None:
    with pytest.raises(soniq.SoniqError) as info:
        await async_app.enqueue(RECORD, args={"n": 1}, connection=conn)
    assert_refused(info, "cannot write through", "AsyncConnection")
    with pytest.raises(soniq.SoniqError) as info:
        sync_app.enqueue(RECORD, args={"n": 1}, connection=conn)
    assert_refused(info, "cannot write through", "Session")
    assert jobs(url) == {}


@pytest.mark.parametrize("factory", ["engine", "sessionmaker"])
async def test_engines_and_session_factories_are_refused_with_a_pointer(
    factory: str, async_app: soniq.Soniq, sync_app: soniq_sync.Soniq, url: str
) -> None:
    """An engine or a sessionmaker makes connections but has no transaction: the error
    says to pass the connection from ``begin()`` or a session instead."""
    engine = create_engine(sqlalchemy_url(url, "psycopg"))
    async_engine = create_async_engine(sqlalchemy_url(url, "asyncpg"))
    given: list[object] = (
        [engine, async_engine]
        if factory == "engine"
        else [sessionmaker(engine), async_sessionmaker(async_engine)]
    )
    try:
        for conn in given:
            with pytest.raises(soniq.SoniqError) as info:
                sync_app.enqueue(RECORD, args={"n": 1}, connection=conn)
            assert_refused(info, type(conn).__name__, "with engine.begin()", "Session")
            with pytest.raises(soniq.SoniqError) as info:
                await async_app.enqueue(RECORD, args={"n": 1}, connection=conn)
            assert_refused(info, type(conn).__name__, "async with engine.begin()", "AsyncSession")
    finally:
        engine.dispose()
        await async_engine.dispose()
    assert jobs(url) == {}


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_missing_schema_through_sqlalchemy_is_schema_missing(
    empty_database_url: str, driver: str
) -> None:
    engine = create_engine(sqlalchemy_url(empty_database_url, driver))
    app = soniq_sync.Soniq(database_url=empty_database_url, enqueue_validation="none")
    try:
        with engine.begin() as conn, pytest.raises(soniq.SoniqError) as caught:
            app.enqueue("a.b", args={}, connection=conn)
        assert caught.value.code == "SONIQ_SCHEMA_MISSING"
    finally:
        app.close()
        engine.dispose()


async def test_missing_schema_through_sqlalchemy_async_is_schema_missing(
    empty_database_url: str,
) -> None:
    engine = create_async_engine(sqlalchemy_url(empty_database_url, "asyncpg"))
    app = soniq.Soniq(database_url=empty_database_url, enqueue_validation="none")
    try:
        async with engine.begin() as conn:
            with pytest.raises(soniq.SoniqError) as caught:
                await app.enqueue("a.b", args={}, connection=conn)
        assert caught.value.code == "SONIQ_SCHEMA_MISSING"
    finally:
        await app.close()
        await engine.dispose()
