"""Completing a job inside the handler's own transaction, on real PostgreSQL, through
the public API and an in-process worker: ``ctx.complete(conn)`` on each kind of
connection, ``@app.job(transactional=True)``, and what the worker does when the
handler's transaction committed, rolled back, or raced another attempt. Whole
processes (SIGKILL around the commit, SIGSTOP zombies) are in
tests/acceptance/test_complete_in_tx_process.py."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import asyncpg
import psycopg
import pytest

from soniq import JobContext, Soniq, SoniqError
from soniq.errors import (
    COMPLETE_NEEDS_TRANSACTION,
    COMPLETE_OUTSIDE_HANDLER,
    COMPLETE_TWICE,
    INVALID_ARGUMENT,
    INVALID_JOB_OPTION,
    JOB_LEASE_LOST,
    NOT_SAME_DATABASE,
)
from tests.helpers import wait_for


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)


BUSINESS = "CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, paid boolean NOT NULL)"


async def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def job_row(app: Soniq, job_id: str) -> tuple[Any, ...]:
    url = app.settings.database_url
    assert url is not None
    [row] = await sql(url, "SELECT status, attempts, result FROM soniq_jobs WHERE id = %s", job_id)
    return row


@pytest.fixture
async def url(app: Soniq) -> str:
    assert app.settings.database_url is not None
    await sql(app.settings.database_url, BUSINESS)
    return app.settings.database_url


async def test_complete_commits_done_with_the_handlers_writes(app: Soniq, url: str) -> None:
    @app.job(name="orders.charge")
    async def charge(order_id: int, ctx: JobContext) -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await ctx.complete(conn, result={"charged": order_id})
            await conn.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))

    job_id = await app.enqueue(charge, order_id=7)
    assert await app.run_worker(run_once=True)
    assert await job_row(app, job_id) == ("done", 1, {"charged": 7})
    assert await sql(url, "SELECT id, paid FROM orders") == [(7, True)]
    assert await app.get_result(job_id) == {"charged": 7}


async def test_a_rolled_back_completion_is_retried_never_acknowledged(app: Soniq, url: str) -> None:
    attempts: list[int] = []

    @app.job(name="orders.flaky", retries=1, retry_delay=3600)
    async def flaky(order_id: int, ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await ctx.complete(conn)
            await conn.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))
            await conn.rollback()  # swallowed: the handler returns normally

    job_id = await app.enqueue(flaky, order_id=1)
    assert await app.run_worker(run_once=True)
    status, tries, _ = await job_row(app, job_id)
    assert (status, tries) == ("queued", 1)
    [(error,)] = await sql(url, "SELECT last_error FROM soniq_jobs WHERE id = %s", job_id)
    assert "did not commit" in error
    await sql(url, "UPDATE soniq_jobs SET scheduled_at = now() WHERE id = %s", job_id)
    assert await app.run_worker(run_once=True)
    assert attempts == [1, 2]
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "dead_letter"
    assert await sql(url, "SELECT count(*) FROM orders") == [(0,)]


async def test_a_handler_that_raises_after_its_commit_leaves_the_job_done(
    app: Soniq, url: str
) -> None:
    errors: list[str] = []
    app.on_error(lambda *args: errors.append(str(args)))

    @app.job(name="orders.late_raise")
    async def late(order_id: int, ctx: JobContext) -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await ctx.complete(conn, result="ok")
            await conn.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))
        raise RuntimeError("after the commit")

    job_id = await app.enqueue(late, order_id=3)
    worker = app.worker()
    assert await worker.run_once()
    assert await job_row(app, job_id) == ("done", 1, "ok")
    assert errors == []  # on_error is not told: the job did not fail
    assert worker.outcomes["done"] == 1 and worker.outcomes["retried"] == 0
    assert await sql(url, "SELECT count(*) FROM orders") == [(1,)]


async def test_a_stale_attempt_is_refused_before_it_writes(app: Soniq, url: str) -> None:
    seen: list[str] = []

    @app.job(name="orders.stale")
    async def stale(order_id: int, ctx: JobContext) -> None:
        # Another attempt took the job over meanwhile (as stale recovery and a
        # re-claim would): this attempt's fence no longer matches.
        await sql(url, "UPDATE soniq_jobs SET attempts = attempts + 1 WHERE id = %s", ctx.job_id)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            try:
                async with conn.transaction():
                    await ctx.complete(conn)
                    await conn.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))
            except SoniqError as exc:
                seen.append(exc.code)
                raise

    job_id = await app.enqueue(stale, order_id=4)
    assert await app.run_worker(run_once=True)
    assert seen == [JOB_LEASE_LOST]
    assert await sql(url, "SELECT count(*) FROM orders") == [(0,)]
    status, tries, _ = await job_row(app, job_id)
    assert (status, tries) == ("processing", 2)  # left to the attempt that holds it


async def test_another_database_is_refused_and_nothing_is_written(
    app: Soniq, url: str, empty_database_url: str
) -> None:
    other = Soniq(database_url=empty_database_url)
    await other.setup()  # a Soniq database too, with an instance id of its own
    await other.close()
    seen: list[str] = []

    @app.job(name="orders.elsewhere")
    async def elsewhere(ctx: JobContext) -> None:
        for target in (empty_database_url,):
            async with await psycopg.AsyncConnection.connect(target) as conn:
                try:
                    async with conn.transaction():
                        await ctx.complete(conn)
                except SoniqError as exc:
                    seen.append(exc.code)

    job_id = await app.enqueue(elsewhere)
    assert await app.run_worker(run_once=True)
    assert seen == [NOT_SAME_DATABASE]
    # Nothing was written elsewhere; the handler swallowed the error and returned
    # without completing, which is an ordinary success.
    assert await job_row(app, job_id) == ("done", 1, None)


async def test_a_database_without_soniq_is_refused_too(
    app: Soniq, url: str, empty_database_url: str
) -> None:
    seen: list[str] = []

    @app.job(name="orders.bare", retry_delay=3600)
    async def bare(ctx: JobContext) -> None:
        async with await psycopg.AsyncConnection.connect(empty_database_url) as conn:
            try:
                async with conn.transaction():
                    await ctx.complete(conn)
            except SoniqError as exc:
                seen.append(exc.code)
                raise

    job_id = await app.enqueue(bare)
    assert await app.run_worker(run_once=True)
    assert seen == [NOT_SAME_DATABASE]
    assert (await job_row(app, job_id))[0] == "queued"


async def test_a_second_call_is_a_no_op_on_the_same_transaction_and_refused_on_another(
    app: Soniq, url: str
) -> None:
    seen: list[str] = []

    @app.job(name="orders.twice")
    async def twice(ctx: JobContext) -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await ctx.complete(conn, result=1)
            await ctx.complete(conn, result=2)  # same transaction: nothing more
            async with await psycopg.AsyncConnection.connect(url) as other, other.transaction():
                try:
                    await ctx.complete(other)
                except SoniqError as exc:
                    seen.append(exc.code)

    job_id = await app.enqueue(twice)
    assert await app.run_worker(run_once=True)
    assert seen == [COMPLETE_TWICE]
    assert await job_row(app, job_id) == ("done", 1, 1)


async def test_an_autocommit_connection_and_a_bad_result_are_refused(app: Soniq, url: str) -> None:
    seen: list[str] = []

    @app.job(name="orders.autocommit")
    async def autocommit(ctx: JobContext) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for result in (None, {1, 2}):
                try:
                    await ctx.complete(conn, result=result)
                except SoniqError as exc:
                    seen.append(exc.code)

    job_id = await app.enqueue(autocommit)
    assert await app.run_worker(run_once=True)
    assert seen == [COMPLETE_NEEDS_TRANSACTION, INVALID_ARGUMENT]
    assert await job_row(app, job_id) == ("done", 1, None)  # nothing written by either


async def test_complete_outside_a_running_handler_is_refused(app: Soniq, url: str) -> None:
    kept: list[JobContext] = []

    @app.job(name="orders.kept")
    async def keep(ctx: JobContext) -> None:
        kept.append(ctx)

    await app.enqueue(keep)
    assert await app.run_worker(run_once=True)
    by_hand = JobContext(job_id="x", job_name="y", attempt=1, max_attempts=1, queue="default")
    for ctx in (kept[0], by_hand):
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            with pytest.raises(SoniqError) as err:
                await ctx.complete(conn)
            assert err.value.code == COMPLETE_OUTSIDE_HANDLER
    with pytest.raises(SoniqError) as err:
        _ = by_hand.connection
    assert err.value.code == INVALID_ARGUMENT


async def test_complete_through_asyncpg_and_sqlalchemy(app: Soniq, url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url.replace("postgresql://", "postgresql+psycopg://"))

    @app.job(name="orders.asyncpg")
    async def via_asyncpg(order_id: int, ctx: JobContext) -> None:
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                await ctx.complete(conn, result="asyncpg")
                await conn.execute("INSERT INTO orders VALUES ($1, true)", order_id)
        finally:
            await conn.close()

    @app.job(name="orders.sqlalchemy")
    async def via_sqlalchemy(order_id: int, ctx: JobContext) -> None:
        from sqlalchemy import text

        async with engine.begin() as conn:
            await ctx.complete(conn, result="sqlalchemy")
            await conn.execute(text("INSERT INTO orders VALUES (:i, true)"), {"i": order_id})

    a = await app.enqueue(via_asyncpg, order_id=1)
    b = await app.enqueue(via_sqlalchemy, order_id=2)
    assert await app.run_worker(run_once=True)
    await engine.dispose()
    assert await job_row(app, a) == ("done", 1, "asyncpg")
    assert await job_row(app, b) == ("done", 1, "sqlalchemy")
    assert await sql(url, "SELECT id FROM orders ORDER BY id") == [(1,), (2,)]


async def test_complete_sync_from_a_sync_handler(app: Soniq, url: str) -> None:
    @app.job(name="orders.sync")
    def sync_charge(order_id: int, ctx: JobContext) -> None:
        with psycopg.connect(url) as conn, conn.transaction():
            ctx.complete_sync(conn, result={"thread": threading.current_thread().name})
            conn.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))

    job_id = await app.enqueue(sync_charge, order_id=5)
    assert await app.run_worker(run_once=True)
    status, tries, result = await job_row(app, job_id)
    assert (status, tries) == ("done", 1) and result["thread"].startswith("soniq-job")
    assert await sql(url, "SELECT id FROM orders") == [(5,)]


async def test_transactional_jobs_commit_done_and_result_with_their_writes(
    app: Soniq, url: str
) -> None:
    @app.job(name="orders.managed", transactional=True)
    async def managed(order_id: int, ctx: JobContext) -> dict[str, Any]:
        await ctx.connection.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))
        cur = await ctx.connection.execute("SHOW synchronous_commit")
        return {"sync": (await cur.fetchone())[0]}

    @app.job(name="orders.managed_sync", transactional=True)
    def managed_sync(order_id: int, ctx: JobContext) -> str:
        ctx.connection.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))
        return "sync"

    a = await app.enqueue(managed, order_id=1)
    b = await app.enqueue(managed_sync, order_id=2)
    assert await app.run_worker(run_once=True)
    # The handler's connection keeps the server's durability (the worker's own pool
    # does not wait for the WAL flush).
    assert await job_row(app, a) == ("done", 1, {"sync": "on"})
    assert await job_row(app, b) == ("done", 1, "sync")
    assert await sql(url, "SELECT id FROM orders ORDER BY id") == [(1,), (2,)]


async def test_a_transactional_job_that_raises_rolls_back_and_is_retried(
    app: Soniq, url: str
) -> None:
    runs: list[int] = []

    @app.job(name="orders.managed_fail", transactional=True, retries=1, retry_delay=3600)
    async def fail(order_id: int, ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        await ctx.connection.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")

    job_id = await app.enqueue(fail, order_id=9)
    assert await app.run_worker(run_once=True)
    assert (await job_row(app, job_id))[:2] == ("queued", 1)
    assert await sql(url, "SELECT count(*) FROM orders") == [(0,)]  # rolled back
    await sql(url, "UPDATE soniq_jobs SET scheduled_at = now() WHERE id = %s", job_id)
    assert await app.run_worker(run_once=True)
    assert runs == [1, 2]
    assert (await job_row(app, job_id))[:2] == ("done", 2)
    assert await sql(url, "SELECT count(*) FROM orders") == [(1,)]


async def test_a_transactional_job_that_times_out_rolls_back(app: Soniq, url: str) -> None:
    @app.job(name="orders.managed_slow", transactional=True, timeout=0.2, retries=0)
    async def slow(order_id: int, ctx: JobContext) -> None:
        await ctx.connection.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))
        await asyncio.sleep(30)

    job_id = await app.enqueue(slow, order_id=11)
    assert await app.run_worker(run_once=True)
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "dead_letter"
    assert await sql(url, "SELECT count(*) FROM orders") == [(0,)]


def test_bad_transactional_options_are_refused() -> None:
    app = Soniq(database_url="postgresql://localhost/unused")
    cases: list[dict[str, Any]] = [
        {"transactional": "yes"},
        {"transactional": 1},
        {"transactional": True, "using": "default"},
        {"transactional": "django", "using": 3},
    ]
    for options in cases:
        with pytest.raises(SoniqError) as err:

            @app.job(name="bad.options", **options)
            def handler(ctx: JobContext) -> None: ...

        assert err.value.code == INVALID_JOB_OPTION, options
    with pytest.raises(SoniqError) as err:

        @app.job(name="bad.noctx", transactional=True)
        async def no_ctx() -> None: ...

    assert err.value.code == INVALID_JOB_OPTION
    with pytest.raises(SoniqError) as err:

        @app.job(name="bad.asyncdjango", transactional="django")
        async def async_django(ctx: JobContext) -> None: ...

    assert err.value.code == INVALID_JOB_OPTION


async def test_transactional_jobs_are_dead_lettered_by_a_local_worker(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = Soniq(database_url=f"sqlite:///{tmp_path}/jobs.db")

    @app.job(name="orders.local", transactional=True)
    async def local(ctx: JobContext) -> None: ...

    await app.setup()
    job_id = await app.enqueue(local)
    assert await app.run_worker(run_once=True)
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "dead_letter"
    assert "only a PostgreSQL worker" in caplog.text
    await app.close()


async def test_complete_sync_through_a_sqlalchemy_session(app: Soniq, url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))

    @app.job(name="orders.session")
    def via_session(order_id: int, ctx: JobContext) -> None:
        with Session(engine) as session, session.begin():
            ctx.complete_sync(session, result="session")
            session.execute(text("INSERT INTO orders VALUES (:i, true)"), {"i": order_id})

    job_id = await app.enqueue(via_session, order_id=6)
    assert await app.run_worker(run_once=True)
    engine.dispose()
    assert await job_row(app, job_id) == ("done", 1, "session")
    assert await sql(url, "SELECT id FROM orders") == [(6,)]


@pytest.mark.parametrize("mode", ["managed", "explicit"])
async def test_a_timeout_around_the_commit_leaves_done_with_effects_or_failed_without(
    app: Soniq, url: str, mode: str
) -> None:
    """200 jobs whose handler runs for about as long as their timeout, so that the
    timeout lands before, during or after the commit: each job ends either done with
    its one business row, or dead-lettered with none, never anything in between."""
    import random

    @app.job(name="fuzz.managed", transactional=True, timeout=0.05, retries=0)
    async def managed(order_id: int, pause: float, ctx: JobContext) -> int:
        await ctx.connection.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))
        await asyncio.sleep(pause)
        return order_id

    @app.job(name="fuzz.explicit", timeout=0.05, retries=0)
    async def explicit(order_id: int, pause: float, ctx: JobContext) -> int:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await ctx.complete(conn, result=order_id)
            await conn.execute("INSERT INTO orders VALUES (%s, true)", (order_id,))
            await asyncio.sleep(pause)
        return order_id

    rng = random.Random(17)
    handler = managed if mode == "managed" else explicit
    ids = await app.enqueue_many(
        handler, [{"order_id": i, "pause": rng.uniform(0.03, 0.07)} for i in range(200)]
    )
    assert await app.run_worker(concurrency=16, run_once=True)
    ends = await sql(
        url,
        """SELECT coalesce(j.status, 'dead_letter'), count(o.id)
           FROM unnest(%s::uuid[]) WITH ORDINALITY AS t(id, n)
           LEFT JOIN soniq_jobs j ON j.id = t.id
           LEFT JOIN orders o ON o.id = t.n - 1
           GROUP BY t.id, j.status""",
        ids,
    )
    assert len(ends) == 200
    outcomes = {(status, rows) for status, rows in ends}
    assert outcomes <= {("done", 1), ("dead_letter", 0)}, outcomes
    assert outcomes == {("done", 1), ("dead_letter", 0)}  # both happened: not vacuous
    dead = await sql(url, "SELECT count(*) FROM soniq_dead_letter_jobs")
    assert dead[0][0] == sum(1 for status, _ in ends if status == "dead_letter")


async def test_cancel_while_a_completion_commits_reports_finishing_without_hanging(
    app: Soniq, url: str
) -> None:
    from soniq.errors import JOB_NOT_CANCELLABLE

    holding = asyncio.Event()
    release = asyncio.Event()

    @app.job(name="orders.slow_commit")
    async def slow_commit(ctx: JobContext) -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await ctx.complete(conn, result="kept")
            holding.set()
            await release.wait()

    job_id = await app.enqueue(slow_commit)
    worker = asyncio.ensure_future(app.run_worker(run_once=True))
    await asyncio.wait_for(holding.wait(), 30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SoniqError) as err:
        await app.cancel_job(job_id)
    assert err.value.code == JOB_NOT_CANCELLABLE
    assert err.value.details["status"] == "finishing"
    assert loop.time() - started < 10  # the 2 s lock wait, not the transaction's length
    release.set()
    assert await worker
    assert await job_row(app, job_id) == ("done", 1, "kept")  # completion wins
    assert await app.cancel_job(job_id) is False  # finished: nothing to cancel


async def test_handlers_holding_transactions_never_starve_claims_and_acks(
    database_url: str, url: str
) -> None:
    """Five transactional jobs hold their transactions open while fifty plain jobs
    pass through the same worker, whose own pool has two connections: the handler
    transactions are on a pool of their own, so claims and acknowledgements go on."""
    app = Soniq(database_url=database_url, pool_max_size=2, pool_min_size=1)
    release = asyncio.Event()
    holding: list[str] = []
    ran: list[int] = []

    @app.job(name="orders.hold", transactional=True)
    async def hold(ctx: JobContext) -> None:
        await ctx.connection.execute("SELECT 1")
        holding.append(ctx.job_id)
        await release.wait()

    @app.job(name="orders.plain")
    async def plain(i: int) -> None:
        ran.append(i)

    async def count(name: str) -> int:
        [(n,)] = await sql(
            url, "SELECT count(*) FROM soniq_jobs WHERE job_name = %s AND status = 'done'", name
        )
        return int(n)

    try:
        await app.enqueue_many(hold, [{}] * 5)
        worker = app.worker()
        run = asyncio.ensure_future(worker.run(concurrency=10))
        await wait_for(lambda: len(holding) == 5, 30, message="five held transactions")
        await app.enqueue_many(plain, [{"i": i} for i in range(50)])
        # Claimed, run and acknowledged while the five still hold their transactions.
        await wait_for(lambda: count("orders.plain"), 30, message="plain jobs acknowledged")
        await wait_for(
            lambda: _equals(count("orders.plain"), 50), 30, message="all 50 acknowledged"
        )
        assert len(ran) == 50 and not release.is_set() and await count("orders.hold") == 0
        release.set()
        await wait_for(lambda: _equals(count("orders.hold"), 5), 30, message="the held five")
        worker.stop()
        await asyncio.wait_for(run, 30)
    finally:
        await app.close()


async def test_progress_reported_before_the_completion_commits_with_it(
    app: Soniq, url: str
) -> None:
    @app.job(name="orders.reported")
    async def reported(ctx: JobContext) -> None:
        await ctx.progress(current=3, total=3, message="all pages")
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await ctx.complete(conn, result="ok")

    job_id = await app.enqueue(reported)
    assert await app.run_worker(run_once=True)
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "done"
    assert job["progress"]["current"] == 3 and job["progress"]["message"] == "all pages"


async def test_a_wait_on_a_job_completed_in_its_transaction_hears_the_commit(
    database_url: str, url: str
) -> None:
    """With a safety poll of a minute, only the event sent in the handler's own
    transaction (delivered at its commit) can end the wait in time."""
    app = Soniq(database_url=database_url, wait_poll=60)
    release = asyncio.Event()

    @app.job(name="orders.watched")
    async def watched(ctx: JobContext) -> None:
        await release.wait()
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await ctx.complete(conn, result="heard")

    try:
        job_id = await app.enqueue(watched, watch=True)
        worker = app.worker()
        run = asyncio.ensure_future(worker.run(concurrency=2))
        waiting = asyncio.ensure_future(app.handle(job_id).result(timeout=20))
        await wait_for(
            lambda: _equals(_status(url, job_id), "processing"), 20, message="the job to start"
        )
        release.set()
        assert await waiting == "heard"
        worker.stop()
        await asyncio.wait_for(run, 30)
    finally:
        await app.close()


async def _status(url: str, job_id: str) -> Any:
    [(status,)] = await sql(url, "SELECT status FROM soniq_jobs WHERE id = %s", job_id)
    return status
