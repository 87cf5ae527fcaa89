"""list_jobs, retry_job and cancel_job (with cooperative cancel of running jobs)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

import soniq_sync
from soniq import JobContext, Soniq, SoniqError
from soniq.errors import (
    INVALID_JOB_ID,
    JOB_NOT_FOUND,
    JOB_NOT_RETRYABLE,
    NAIVE_DATETIME,
)
from soniq.worker import Worker
from tests.helpers import wait_for


async def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


async def job(app: Soniq, job_id: str) -> dict[str, Any]:
    found = await app.get_job(job_id)
    assert found is not None
    return found


async def has_status(app: Soniq, job_id: str, status: str) -> bool:
    return (await job(app, job_id))["status"] == status


@asynccontextmanager
async def running(app: Soniq, **run: Any) -> AsyncIterator[Worker]:
    """A worker for ``app`` running in this event loop; stopped on the way out."""
    await app.ensure_initialized()
    worker = app.worker()
    task = asyncio.create_task(worker.run(**run))
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)


# --------------------------------------------------------------------------- list_jobs


async def test_list_jobs_filters_by_creation_time(app: Soniq, database_url: str) -> None:
    @app.job()
    async def noop() -> None: ...

    old, new = await app.enqueue(noop), await app.enqueue(noop)
    await sql(
        database_url,
        "UPDATE soniq_jobs SET created_at = now() - interval '3 days' WHERE id = %s",
        old,
    )
    now = datetime.now(timezone.utc)
    day = timedelta(days=1)
    assert [j["id"] for j in await app.list_jobs(since=now - day)] == [new]
    assert [j["id"] for j in await app.list_jobs(until=now - day)] == [old]
    assert [j["id"] for j in await app.list_jobs(since=now - 4 * day, until=now + day)] == [
        new,
        old,
    ]
    assert await app.list_jobs(since=now - day, status="done") == []
    with pytest.raises(SoniqError) as info:
        await app.list_jobs(since=datetime(2024, 1, 1))
    assert info.value.code == NAIVE_DATETIME


# --------------------------------------------------------------------------- retry_job


async def test_retry_replays_a_dead_lettered_job(app: Soniq) -> None:
    @app.job(retries=0)
    async def broken() -> None:
        raise RuntimeError("boom")

    dead = await app.enqueue(broken)
    await app.run_worker(run_once=True)
    assert (await job(app, dead))["status"] == "dead_letter"
    new_id = await app.retry_job(dead)
    assert new_id != dead
    assert (await job(app, new_id))["status"] == "queued"
    record = await app.dead_letter.get(dead)
    assert record is not None and record["resurrection_count"] == 1


async def test_retry_requeues_a_cancelled_job_in_place(app: Soniq) -> None:
    @app.job()
    async def later() -> str:
        return "ran"

    job_id = await app.schedule(later, 3600)
    assert await app.cancel_job(job_id) is True
    assert (await job(app, job_id))["finished_at"] is not None
    assert await app.retry_job(job_id) == job_id
    row = await job(app, job_id)
    # Never cancelled mid-run: nothing used, nothing to raise.
    assert (row["status"], row["attempts"], row["finished_at"]) == ("queued", 0, None)
    assert row["scheduled_at"] <= datetime.now(timezone.utc)  # due now, not in an hour
    await app.run_worker(run_once=True)
    assert await app.get_result(job_id) == "ran"


async def test_retry_makes_a_job_waiting_out_its_retry_delay_due_now(app: Soniq) -> None:
    calls: list[int] = []

    @app.job(retries=1, retry_delay=3600)
    async def flaky(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first time")

    job_id = await app.enqueue(flaky)
    await app.run_worker(run_once=True)
    row = await job(app, job_id)
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["scheduled_at"] > datetime.now(timezone.utc) + timedelta(minutes=30)
    assert await app.retry_job(job_id) == job_id
    await app.run_worker(run_once=True)
    assert calls == [1, 2]
    assert await has_status(app, job_id, "done")


async def test_retry_refuses_what_it_cannot_retry(app: Soniq, database_url: str) -> None:
    @app.job()
    async def noop() -> None: ...

    done = await app.enqueue(noop)
    await app.run_worker(run_once=True)
    fresh = await app.schedule(noop, 3600)
    running_id = await app.enqueue(noop)
    await sql(
        database_url,
        "UPDATE soniq_jobs SET status = 'processing', attempts = 1 WHERE id = %s",
        running_id,
    )
    for job_id, status in ((done, "done"), (fresh, "queued"), (running_id, "processing")):
        before = await job(app, job_id)
        with pytest.raises(SoniqError) as info:
            await app.retry_job(job_id)
        assert info.value.code == JOB_NOT_RETRYABLE
        assert info.value.details == {"job_id": job_id, "status": status}
        assert await job(app, job_id) == before
    with pytest.raises(SoniqError) as info:
        await app.retry_job(str(uuid.uuid4()))
    assert info.value.code == JOB_NOT_FOUND
    with pytest.raises(SoniqError) as info:
        await app.retry_job("not-an-id")
    assert info.value.code == INVALID_JOB_ID


async def test_retry_of_a_cancelled_job_whose_dedup_key_is_taken(app: Soniq) -> None:
    @app.job()
    async def report(day: str) -> None: ...

    first = await app.enqueue(report, day="mon", dedup_key="report-mon")
    assert await app.cancel_job(first)
    second = await app.enqueue(report, day="mon", dedup_key="report-mon")
    assert second != first
    with pytest.raises(SoniqError) as info:
        await app.retry_job(first)
    assert info.value.code == JOB_NOT_RETRYABLE
    assert "dedup key" in info.value.message
    assert await has_status(app, first, "cancelled")


# --------------------------------------------------------------------------- cancel_job


async def test_cancel_a_queued_job_and_nothing_that_has_finished(
    app: Soniq, database_url: str
) -> None:
    @app.job()
    async def noop() -> None: ...

    queued = await app.enqueue(noop)
    assert await app.cancel_job(queued) is True
    assert await has_status(app, queued, "cancelled")
    assert await app.cancel_job(queued) is False  # already cancelled

    done = await app.enqueue(noop)
    await app.run_worker(run_once=True)
    before = await job(app, done)
    # Fencing: a cancel that arrives after the job finished changes nothing.
    assert await app.cancel_job(done) is False
    assert await job(app, done) == before
    assert before["cancel_requested_at"] is None
    assert await app.cancel_job(str(uuid.uuid4())) is False


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "polling"])
async def test_a_running_async_handler_is_cancelled_from_another_connection(
    database_url: str, listen: bool
) -> None:
    started, interrupted = asyncio.Event(), asyncio.Event()
    errors: list[str] = []
    # Listening, the poll comes too late to matter: the NOTIFY must do it.
    settings = {"listen_notify": listen, "heartbeat_interval": 60.0 if listen else 0.2}
    async with (
        Soniq(database_url=database_url, **settings) as app,
        Soniq(database_url=database_url) as operator,
    ):

        @app.job(retries=3)
        async def forever() -> None:
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                interrupted.set()
                raise

        @app.job()
        async def after() -> str:
            return "still working"

        @app.on_error
        def on_error(job_name: str, job_id: str, error: str, attempt: int) -> None:
            errors.append(error)

        job_id = await app.enqueue(forever)
        async with running(app, concurrency=2) as worker:
            await asyncio.wait_for(started.wait(), 10)
            assert await operator.cancel_job(job_id) is True
            requested = await job(operator, job_id)
            assert requested["cancel_requested_at"] is not None
            await wait_for(lambda: has_status(operator, job_id, "cancelled"), timeout=10)
            assert interrupted.is_set()
            # The worker carries on with other jobs.
            next_id = await app.enqueue(after)
            await wait_for(lambda: has_status(operator, next_id, "done"), timeout=10)
            assert worker.id
        row = await job(operator, job_id)
        assert (row["attempts"], row["worker_id"]) == (1, None)
        assert row["finished_at"] is not None
        assert errors == []  # a cancel is not a failure: no on_error, no retry


async def test_a_sync_handler_sees_the_request_and_stops(database_url: str) -> None:
    started = threading.Event()
    saw: list[bool] = []

    class Stopped(Exception):
        pass

    async with (
        Soniq(database_url=database_url) as app,
        Soniq(database_url=database_url) as operator,
    ):

        @app.job()
        def crunch(ctx: JobContext) -> None:
            saw.append(ctx.cancel_requested)
            started.set()
            for _ in range(3000):  # at most 30 s
                if ctx.cancel_requested:
                    saw.append(True)
                    raise Stopped
                threading.Event().wait(0.01)

        job_id = await app.enqueue(crunch)
        async with running(app):
            await asyncio.to_thread(started.wait, 10)
            # The request comes from blocking code this time (a Django view, a script).
            with soniq_sync.Soniq(database_url=database_url) as blocking:
                assert await asyncio.to_thread(blocking.cancel_job, job_id) is True
            await wait_for(lambda: has_status(operator, job_id, "cancelled"), timeout=10)
        assert saw == [False, True]
        assert (await job(operator, job_id))["last_error"] is None


async def test_a_handler_that_finishes_anyway_is_done(database_url: str) -> None:
    release = threading.Event()
    started = threading.Event()
    async with (
        Soniq(database_url=database_url) as app,
        Soniq(database_url=database_url) as operator,
    ):

        @app.job()
        def stubborn(ctx: JobContext) -> str:
            started.set()
            release.wait(30)
            return f"finished, request seen: {ctx.cancel_requested}"

        job_id = await app.enqueue(stubborn)
        async with running(app):
            await asyncio.to_thread(started.wait, 10)
            assert await operator.cancel_job(job_id) is True
            assert await operator.cancel_job(job_id) is True  # asking again is harmless
            await wait_for(
                lambda: _requested_and_seen(operator, job_id),
                timeout=10,
                message="the request to be recorded",
            )
            release.set()
            await wait_for(lambda: has_status(operator, job_id, "done"), timeout=10)
        row = await job(operator, job_id)
        assert row["result"] == "finished, request seen: True"
        assert row["cancel_requested_at"] is not None  # kept: it was asked


async def _requested_and_seen(app: Soniq, job_id: str) -> bool:
    return (await job(app, job_id))["cancel_requested_at"] is not None


async def test_a_request_during_before_job_hooks_keeps_the_handler_from_starting(
    database_url: str,
) -> None:
    in_hook, release_hook = asyncio.Event(), asyncio.Event()
    ran: list[str] = []
    async with (
        Soniq(database_url=database_url, heartbeat_interval=0.2) as app,
        Soniq(database_url=database_url) as operator,
    ):

        @app.before_job
        async def slow_hook(job_name: str, job_id: str, attempt: int) -> None:
            in_hook.set()
            await release_hook.wait()

        @app.job()
        async def never() -> None:
            ran.append("ran")

        job_id = await app.enqueue(never)
        async with running(app) as worker:
            await asyncio.wait_for(in_hook.wait(), 10)
            assert await operator.cancel_job(job_id) is True
            await wait_for(
                lambda: job_id in worker._cancel_requests, message="the worker to hear it"
            )
            release_hook.set()
            await wait_for(lambda: has_status(operator, job_id, "cancelled"), timeout=10)
        assert ran == []


async def test_a_request_during_on_error_hooks_leaves_the_hooks_alone(
    database_url: str,
) -> None:
    """Only a running handler is interrupted: once it has failed, its job is in its
    hooks, which a cancel request must not cut short."""
    in_hook, release_hook = asyncio.Event(), asyncio.Event()
    hook_ends: list[str] = []
    async with (
        Soniq(database_url=database_url, heartbeat_interval=0.2) as app,
        Soniq(database_url=database_url) as operator,
    ):

        @app.on_error
        async def slow_hook(job_name: str, job_id: str, error: str, attempt: int) -> None:
            in_hook.set()
            try:
                await release_hook.wait()
            except asyncio.CancelledError:
                hook_ends.append("interrupted")
                raise
            hook_ends.append("finished")

        @app.job(retries=0)
        async def fails() -> None:
            raise ValueError("broken")

        job_id = await app.enqueue(fails)
        async with running(app) as worker:
            await asyncio.wait_for(in_hook.wait(), 10)
            assert await operator.cancel_job(job_id) is True
            await wait_for(
                lambda: job_id in worker._cancel_requests or hook_ends,
                message="the worker to hear it",
            )
            release_hook.set()
            await wait_for(
                lambda: _has_left_processing(operator, job_id),
                timeout=10,
                message="the failed job's outcome to be written",
            )
        assert hook_ends == ["finished"]
        assert (await job(operator, job_id))["last_error"] == "ValueError: broken"


async def _has_left_processing(app: Soniq, job_id: str) -> bool:
    return (await job(app, job_id))["status"] not in ("queued", "processing")


async def test_a_failure_after_the_request_ends_cancelled_not_retried(
    database_url: str,
) -> None:
    """The cancel path is fenced like the other outcomes, and a handler that reacts to
    the request by raising is not counted as failing."""
    started = threading.Event()
    async with (
        Soniq(database_url=database_url) as app,
        Soniq(database_url=database_url) as operator,
    ):

        @app.job(retries=5)
        def reacts(ctx: JobContext) -> None:
            started.set()
            for _ in range(3000):
                if ctx.cancel_requested:
                    raise RuntimeError("asked to stop")
                threading.Event().wait(0.01)

        job_id = await app.enqueue(reacts)
        async with running(app):
            await asyncio.to_thread(started.wait, 10)
            await operator.cancel_job(job_id)
            await wait_for(lambda: has_status(operator, job_id, "cancelled"), timeout=10)
        assert (await job(operator, job_id))["attempts"] == 1


async def test_a_retry_written_after_a_request_ends_cancelled(
    app: Soniq, database_url: str
) -> None:
    """A request that reaches the row but not the worker (its outcome was on the way)
    still wins: the job is not queued again."""

    @app.job()
    async def noop() -> None: ...

    job_id = await app.enqueue(noop)
    await sql(
        database_url,
        "UPDATE soniq_jobs SET status = 'processing', attempts = 1 WHERE id = %s",
        job_id,
    )
    assert await app.cancel_job(job_id) is True
    from soniq.storage.queries import QUERIES

    for name, params in (
        ("retry_job", {"id": job_id, "attempt": 1, "delay": 0.0, "error": "E: late"}),
        ("snooze_job", {"id": job_id, "attempt": 1, "delay": 0.0, "error": "SNOOZE"}),
    ):
        await sql(database_url, "UPDATE soniq_jobs SET status = 'processing' WHERE id = %s", job_id)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(QUERIES[name].psycopg, params)
        row = await job(app, job_id)
        assert (row["status"], row["attempts"]) == ("cancelled", 1), name
        assert row["finished_at"] is not None and row["worker_id"] is None
    # The fenced outcome of a stale attempt changes nothing.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            QUERIES["cancel_running_job"].psycopg, {"id": job_id, "attempt": 7}
        )
        assert await cur.fetchall() == []


# --------------------------------------------------------------------------- soniq_sync


def test_the_blocking_app_manages_jobs_too(sync_app: soniq_sync.Soniq) -> None:
    @sync_app.job()
    def noop() -> None: ...

    job_id = sync_app.enqueue(noop)
    since = datetime.now(timezone.utc) - timedelta(minutes=5)
    assert [j["id"] for j in sync_app.list_jobs(since=since)] == [job_id]
    assert sync_app.list_jobs(until=since) == []
    assert sync_app.cancel_job(job_id) is True
    assert sync_app.retry_job(job_id) == job_id
    assert sync_app.get_job(job_id)["status"] == "queued"  # type: ignore[index]
    sync_app.run_worker(run_once=True)
    with pytest.raises(SoniqError) as info:
        sync_app.retry_job(job_id)
    assert info.value.code == JOB_NOT_RETRYABLE
    assert sync_app.cancel_job(job_id) is False


async def _claim_as_dead_worker(app: Soniq, conn: psycopg.AsyncConnection[Any]) -> int:
    """Claim the one queued job for a registered worker, then make that worker stale.

    Returns the attempt it claimed."""
    from soniq.storage.queries import QUERIES

    worker = str(uuid.uuid4())
    await conn.execute(
        QUERIES["register_worker"].psycopg,
        {"id": worker, "hostname": "h", "pid": 1, "queues": None, "concurrency": 1},
    )
    cur = await conn.execute(
        QUERIES["claim_jobs"].psycopg, {"queues": None, "limit": 1, "worker_id": worker}
    )
    (row,) = await cur.fetchall()
    await conn.execute(
        "UPDATE soniq_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = %s",
        (worker,),
    )
    return int(row[5])


async def test_retrying_a_cancelled_job_keeps_the_old_attempt_fenced_out(
    app: Soniq, database_url: str
) -> None:
    """A cancel request, then stale-worker recovery (the row ends cancelled while the old
    attempt may still run somewhere), then retry_job: the new attempt has a new number,
    so the old attempt's late completion cannot land on it."""
    from soniq.storage.dialect import POSTGRES
    from soniq.storage.queries import QUERIES

    @app.job(name="ops.fenced")
    async def fenced() -> None: ...

    job_id = await app.enqueue(fenced)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        old = await _claim_as_dead_worker(app, conn)
        assert await app.cancel_job(job_id) is True
        await conn.execute(QUERIES["recover_stale_workers"].psycopg, {"timeout": 300})
        assert (await job(app, job_id))["status"] == "cancelled"
        assert await app.retry_job(job_id) == job_id
        cur = await conn.execute(
            QUERIES["claim_jobs"].psycopg,
            {"queues": None, "limit": 1, "worker_id": str(uuid.uuid4())},
        )
        (claimed,) = await cur.fetchall()
        assert claimed[5] > old
        cur = await conn.execute(
            QUERIES["complete_jobs"].psycopg, POSTGRES.completions([(job_id, old, '"stale"')])
        )
        assert await cur.fetchall() == []  # fenced out
    row = await job(app, job_id)
    assert (row["status"], row["result"]) == ("processing", None)


async def test_a_cancel_request_on_the_last_attempt_of_a_dead_worker_ends_cancelled(
    app: Soniq, database_url: str
) -> None:
    @app.job(name="ops.last", retries=0)
    async def last() -> None: ...

    job_id = await app.enqueue(last)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await _claim_as_dead_worker(app, conn)
        assert await app.cancel_job(job_id) is True
        from soniq.storage.queries import QUERIES

        await conn.execute(QUERIES["recover_stale_workers"].psycopg, {"timeout": 300})
    row = await job(app, job_id)
    assert row["status"] == "cancelled"
    assert await app.dead_letter.count() == 0
