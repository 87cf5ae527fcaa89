"""What differs between backends, on purpose.

SQLite and memory have no transactional enqueue (``connection=`` is refused with
``SONIQ_NOT_SUPPORTED_BY_BACKEND``, also a ``ValueError``); a memory store lives and
dies with its app; SQLite apps on one file share it; PostgreSQL keeps its
transactional enqueue. ``setup()`` is optional and idempotent everywhere.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from soniq import Soniq, SoniqError
from soniq.errors import NOT_SUPPORTED_BY_BACKEND
from tests.behaviour.conftest import MEMORY, NOT_POSTGRES, ONLY_POSTGRES, SQLITE


async def test_setup_is_optional_and_idempotent(make_app: Callable[..., Soniq]) -> None:
    fresh = make_app()

    @fresh.job(name="limits.noop")
    async def noop() -> None: ...

    job_id = await fresh.enqueue(noop)  # no setup() first: the schema is there or made
    assert await fresh.get_job(job_id) is not None

    app = make_app()
    await app.setup()
    assert await app.setup() == []  # nothing left to apply
    assert await fresh.setup() == []


@pytest.mark.parametrize("backend", NOT_POSTGRES)
async def test_connection_argument_is_refused(
    backend_app: Soniq, tmp_path: Path, backend: str
) -> None:
    app = backend_app

    @app.job(name="limits.tx")
    async def tx(n: int) -> None: ...

    conn = sqlite3.connect(tmp_path / "caller.db")
    try:
        for call in (
            lambda: app.enqueue(tx, n=1, connection=conn),
            lambda: app.schedule(tx, 60, n=1, connection=conn),
            lambda: app.enqueue_many(tx, [{"n": 1}], connection=conn),
        ):
            with pytest.raises(ValueError) as info:
                await call()
            assert isinstance(info.value, SoniqError)
            assert info.value.code == NOT_SUPPORTED_BY_BACKEND
            assert "connection" in info.value.message
    finally:
        conn.close()
    assert await app.list_jobs() == []


@pytest.mark.parametrize("backend", [MEMORY])
async def test_memory_jobs_vanish_with_the_app(
    make_app: Callable[..., Soniq], backend: str
) -> None:
    first = make_app()

    @first.job(name="limits.gone")
    async def gone() -> None: ...

    job_id = await first.enqueue(gone)
    assert await first.get_job(job_id) is not None
    await first.close()
    # Closing releases nothing the jobs live in: the app still has them...
    assert [job["id"] for job in await first.list_jobs()] == [job_id]
    # ...and no other app, even one with the same settings, ever sees them.
    second = make_app()
    assert await second.list_jobs() == []
    assert await second.get_job(job_id) is None


@pytest.mark.parametrize("backend", [SQLITE])
async def test_sqlite_apps_on_one_file_share_it(
    make_app: Callable[..., Soniq], tmp_path: Path, backend: str
) -> None:
    producer = make_app(enqueue_validation="none")  # sqlite:///<tmp>/jobs.db; no handlers
    consumer = make_app()
    by_path = Soniq(database_url=str(tmp_path / "jobs.db"))  # a plain path ending .db
    try:

        @consumer.job(name="limits.shared")
        async def shared(n: int) -> int:
            return n + 1

        job_id = await producer.enqueue("limits.shared", args={"n": 1})
        seen = await consumer.get_job(job_id)
        assert seen is not None and seen["args"] == {"n": 1}
        assert await consumer.run_worker(run_once=True) is True
        assert await producer.get_result(job_id) == 2
        assert [j["id"] for j in await by_path.list_jobs(status="done")] == [job_id]
    finally:
        await by_path.close()


@pytest.mark.parametrize("backend", ONLY_POSTGRES)
async def test_postgres_enqueue_follows_the_callers_transaction(
    backend_app: Soniq, backend: str
) -> None:
    app = backend_app

    @app.job(name="limits.outbox")
    async def outbox(n: int) -> None: ...

    class Rollback(Exception):
        pass

    await app.ensure_initialized()
    with pytest.raises(Rollback):
        async with app.backend.acquire() as conn, conn.transaction():
            rolled_back = await app.enqueue(outbox, n=1, connection=conn)
            raise Rollback
    async with app.backend.acquire() as conn, conn.transaction():
        committed = await app.enqueue(outbox, n=2, connection=conn)

    assert await app.get_job(rolled_back) is None
    assert [j["id"] for j in await app.list_jobs()] == [committed]


@pytest.mark.parametrize("backend", NOT_POSTGRES)
async def test_queue_pause_needs_postgres(backend_app: Soniq, backend: str) -> None:
    app = backend_app
    for call in (
        lambda: app.queues.pause("emails"),
        lambda: app.queues.resume("emails"),
        lambda: app.queues.list(),
    ):
        with pytest.raises(ValueError) as info:
            await call()
        assert isinstance(info.value, SoniqError)
        assert info.value.code == NOT_SUPPORTED_BY_BACKEND
        assert "PostgreSQL" in info.value.message
    assert (await app.status())["paused_queues"] == []
