"""Job progress (ctx.progress, ctx.progress_sync) through a real worker and database.

Writes are counted by two triggers this file adds to ``soniq_jobs``: one row per
progress statement (``progress_statements``) and one per row it changed
(``progress_log``, with the value), so that coalescing and fencing are measured where
they happen, in the database.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import soniq_sync
from soniq import JobContext, Soniq
from soniq.errors import INVALID_ARGUMENT, SoniqError
from tests.helpers import wait_for

TRIGGERS = """
CREATE TABLE progress_statements (n bigserial PRIMARY KEY);
CREATE TABLE progress_log (n bigserial PRIMARY KEY, id uuid NOT NULL, value jsonb);
CREATE FUNCTION progress_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO progress_statements DEFAULT VALUES; RETURN NULL; END $$;
CREATE FUNCTION progress_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO progress_log (id, value) VALUES (NEW.id, NEW.progress); RETURN NULL; END $$;
CREATE TRIGGER progress_statement AFTER UPDATE OF progress ON soniq_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION progress_statement();
CREATE TRIGGER progress_row AFTER UPDATE OF progress ON soniq_jobs
    FOR EACH ROW EXECUTE FUNCTION progress_row();
"""


async def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


async def statements(url: str) -> int:
    return int((await sql(url, "SELECT count(*) FROM progress_statements"))[0][0])


async def logged(url: str, job_id: str) -> list[dict[str, Any]]:
    rows = await sql(url, "SELECT value FROM progress_log WHERE id = %s ORDER BY n", job_id)
    return [row[0] for row in rows]


async def progress_of(app: Soniq, job_id: str) -> Any:
    job = await app.get_job(job_id)
    assert job is not None
    return job["progress"]


@pytest.fixture
async def counted(database_url: str) -> str:
    await sql(database_url, TRIGGERS)
    return database_url


@pytest.fixture
async def slow_app(counted: str) -> AsyncIterator[Soniq]:
    """An app whose worker flushes once a minute: after the first flush, only a job's
    end writes its progress."""
    async with Soniq(database_url=counted, progress_interval=60.0) as app:
        yield app


class Running:
    """A worker running in the background of a test; stopped on exit."""

    def __init__(self, app: Soniq, concurrency: int = 2) -> None:
        self.worker = app.worker()
        self.concurrency = concurrency
        self.task: asyncio.Task[bool] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.worker.run(concurrency=self.concurrency))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.worker.stop()
        await asyncio.wait_for(self.task, 30)


def value(current: Any, total: Any, message: Any = None, data: Any = None, attempt: int = 1) -> Any:
    fraction = None if current is None or total is None else current / total
    return {
        "current": current,
        "total": total,
        "fraction": fraction,
        "message": message,
        "data": data,
        "attempt": attempt,
    }


async def test_a_running_job_shows_its_progress_and_ends_with_its_last(slow_app: Soniq) -> None:
    app = slow_app
    go = asyncio.Event()

    @app.job()
    async def render(pages: int, ctx: JobContext) -> str:
        await ctx.progress(current=1, total=pages, message="page 1")
        await go.wait()
        await ctx.progress(current=pages, total=pages, message="done", data={"url": "/x"})
        return "ok"

    job_id = await app.enqueue(render, pages=4)
    assert await progress_of(app, job_id) is None
    async with Running(app):
        await wait_for(lambda: progress_of(app, job_id), message="the first progress value to show")
        assert await progress_of(app, job_id) == value(1, 4, "page 1")
        listed = await app.list_jobs(status="processing")
        assert [job["progress"] for job in listed] == [value(1, 4, "page 1")]
        go.set()
        await wait_for(lambda: app.get_result(job_id), message="the job to finish")
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "done"
    # The interval (60 s) never came round again: the last value was written at the end,
    # before the outcome.
    assert job["progress"] == value(4, 4, "done", {"url": "/x"})


async def test_many_reports_coalesce_into_few_writes(counted: str) -> None:
    calls = 100_000
    interval = 0.1

    async with Soniq(database_url=counted, progress_interval=interval) as app:

        @app.job()
        async def busy(ctx: JobContext) -> float:
            started = time.monotonic()
            for i in range(calls):
                await ctx.progress(current=i + 1, total=calls)
                if i % 1000 == 0:
                    await asyncio.sleep(0.005)  # let the worker's other tasks run
            return time.monotonic() - started

        job_id = await app.enqueue(busy)
        before = await table_updates(counted)
        assert await app.run_worker(run_once=True) is True
        duration = await app.get_result(job_id)

    assert isinstance(duration, float)
    writes = await statements(counted)
    assert 2 <= writes <= duration / interval + 2, (writes, duration)
    seen = await logged(counted, job_id)
    assert len(seen) == writes  # one row per statement: the only running job's
    currents = [v["current"] for v in seen]
    assert currents == sorted(set(currents)), "a watcher's sequence must only move forward"
    assert seen[-1] == value(calls, calls)
    # The table's own statistics agree: the claim, the progress writes, the completion.
    # (The worker's connections have closed, which flushes their statistics.)
    expected = before + 1 + writes + 1
    await wait_for(
        lambda: table_updates_at_least(counted, expected),
        timeout=30,
        message=f"n_tup_upd of soniq_jobs to reach {expected}",
    )
    assert await table_updates(counted) == expected


async def table_updates(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        cur = await conn.execute(
            "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'soniq_jobs'"
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def table_updates_at_least(url: str, expected: int) -> bool:
    return await table_updates(url) >= expected


async def test_a_zombie_attempt_cannot_overwrite_the_current_one(
    slow_app: Soniq, counted: str
) -> None:
    app = slow_app
    reported = asyncio.Event()
    go = asyncio.Event()

    @app.job()
    async def slow(ctx: JobContext) -> None:
        await ctx.progress(current=1, total=10)
        reported.set()
        await go.wait()
        await ctx.progress(current=9, total=10, message="from the zombie")

    job_id = await app.enqueue(slow)
    async with Running(app):
        await asyncio.wait_for(reported.wait(), 10)
        await wait_for(lambda: progress_of(app, job_id), message="attempt 1's progress")
        # Meanwhile this attempt was presumed dead and the job claimed again (attempt 2),
        # which has reported progress of its own.
        current = value(2, 10, "attempt 2", attempt=2)
        await sql(
            counted,
            "UPDATE soniq_jobs SET attempts = 2, progress = %s::jsonb WHERE id = %s",
            psycopg.types.json.Jsonb(current),
            job_id,
        )
        writes = await statements(counted)
        go.set()
        # Attempt 1 ends: its last progress is written (fenced out), then its outcome
        # (fenced out too: the row stays attempt 2's).
        await wait_for(
            lambda: statements_above(counted, writes), message="the zombie's progress write"
        )
    job = await app.get_job(job_id)
    assert job is not None
    assert (job["status"], job["attempts"], job["progress"]) == ("processing", 2, current)
    assert [v["attempt"] for v in await logged(counted, job_id)] == [1, 2]  # ours, the test's


async def statements_above(url: str, count: int) -> bool:
    return await statements(url) > count


async def test_sync_handlers_report_from_many_threads(slow_app: Soniq) -> None:
    app = slow_app
    go = threading.Event()

    @app.job()
    def crunch(ctx: JobContext) -> list[str]:
        ctx.progress_sync(current=0, total=4000, message="started")
        if not go.wait(10):
            raise TimeoutError("the test never saw the first progress value")
        failures: list[str] = []

        def hammer(thread: int) -> None:
            try:
                for i in range(1000):
                    ctx.progress_sync(current=thread * 1000 + i, total=4000, data={"t": thread})
            except Exception as exc:  # reported through the result
                failures.append(repr(exc))

        threads = [threading.Thread(target=hammer, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            ctx.progress_sync(current=-1)
        except SoniqError as exc:
            failures.append(exc.code)
        ctx.progress_sync(current=4000, total=4000, message="final")
        return failures

    job_id = await app.enqueue(crunch)
    async with Running(app):
        # Reported from a handler thread: the flush task was woken across threads.
        await wait_for(lambda: progress_of(app, job_id), message="the first progress value")
        assert await progress_of(app, job_id) == value(0, 4000, "started")
        go.set()
        await wait_for(lambda: status_is(app, job_id, "done"), message="the job to end")
    assert await app.get_result(job_id) == [INVALID_ARGUMENT]
    assert await progress_of(app, job_id) == value(4000, 4000, "final")


BAD_INPUTS: list[tuple[str, dict[str, Any]]] = [
    ("bool current", {"current": True}),
    ("negative current", {"current": -1}),
    ("nan current", {"current": float("nan")}),
    ("infinite current", {"current": float("inf")}),
    ("text current", {"current": "3"}),
    ("zero total", {"total": 0}),
    ("negative total", {"total": -2.5}),
    ("bool total", {"total": False}),
    ("number message", {"message": 5}),
    ("NUL message", {"message": "a\x00b"}),
    ("object data", {"data": object()}),
    ("nan data", {"data": {"x": float("nan")}}),
    ("NUL data", {"data": {"k": "\x00"}}),
    ("set data", {"data": {1, 2}}),
    ("huge numbers", {"current": 10**400, "total": 1}),
]


async def test_bad_input_raises_a_coded_error_and_writes_nothing(
    slow_app: Soniq, counted: str
) -> None:
    app = slow_app

    @app.job()
    async def careless(ctx: JobContext) -> list[list[str]]:
        raised = []
        for label, kwargs in BAD_INPUTS:
            try:
                await ctx.progress(**kwargs)
            except SoniqError as exc:
                raised.append([label, exc.code, exc.message])
            else:
                raised.append([label, "no error", ""])
        return raised

    job_id = await app.enqueue(careless)
    assert await app.run_worker(run_once=True) is True
    raised = await app.get_result(job_id)
    assert [r[0] for r in raised] == [label for label, _ in BAD_INPUTS]
    assert {r[1] for r in raised} == {INVALID_ARGUMENT}, raised
    assert all(r[2].startswith("ctx.progress(") and "Pass" in r[2] for r in raised), raised
    assert await progress_of(app, job_id) is None
    assert await statements(counted) == 0


async def test_progress_outside_a_worker_says_so() -> None:
    ctx = JobContext(job_id="j", job_name="t", attempt=1, max_attempts=3, queue="default")
    with pytest.raises(SoniqError) as raised:
        await ctx.progress(current=1)
    assert raised.value.code == INVALID_ARGUMENT and "built by hand" in raised.value.message
    with pytest.raises(SoniqError) as raised_sync:
        ctx.progress_sync(current=1)
    assert raised_sync.value.code == INVALID_ARGUMENT


async def events_until_sentinel(listener: psycopg.AsyncConnection[Any], url: str) -> list[str]:
    """Every soniq_job_events payload heard so far. A sentinel sent now arrives after
    anything committed before it, so reading up to it misses nothing."""
    await sql(url, "SELECT pg_notify('soniq_job_events', 'sentinel')")
    heard: list[str] = []
    async for note in listener.notifies(timeout=10):
        if note.payload == "sentinel":
            return heard
        heard.append(note.payload)
    raise AssertionError(f"the sentinel never arrived (heard {heard})")


@pytest.fixture
async def listener(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("LISTEN soniq_job_events")
        yield conn


async def test_an_unwatched_drain_sends_nothing_and_writes_no_progress(
    counted: str, listener: psycopg.AsyncConnection[Any]
) -> None:
    async with Soniq(database_url=counted, progress_interval=0.01) as app:

        @app.job()
        async def noop(n: int) -> int:
            return n

        @app.job()
        def noop_sync(n: int) -> int:
            return n

        await app.enqueue_many(noop, [{"n": n} for n in range(40)])
        await app.enqueue_many(noop_sync, [{"n": n} for n in range(10)])
        assert await app.run_worker(run_once=True, concurrency=8) is True
        assert (await app.get_queue_stats())["done"] == 50
    assert await events_until_sentinel(listener, counted) == []
    assert await statements(counted) == 0


async def test_unwatched_jobs_report_progress_without_events(
    counted: str, listener: psycopg.AsyncConnection[Any]
) -> None:
    async with Soniq(database_url=counted, progress_interval=0.01) as app:

        @app.job()
        async def step(n: int, ctx: JobContext) -> None:
            for i in range(3):
                await ctx.progress(current=i + 1, total=3)
                await asyncio.sleep(0.02)

        ids = await app.enqueue_many(step, [{"n": n} for n in range(5)])
        assert await app.run_worker(run_once=True, concurrency=5) is True
        for job_id in ids:
            assert await progress_of(app, job_id) == value(3, 3)
    assert await statements(counted) > 0
    assert await events_until_sentinel(listener, counted) == []


async def test_a_watched_job_sends_progress_events(
    counted: str, listener: psycopg.AsyncConnection[Any]
) -> None:
    async with Soniq(database_url=counted, progress_interval=0.05) as app:
        await watched_job_events(app, counted, listener)


async def watched_job_events(
    app: Soniq, counted: str, listener: psycopg.AsyncConnection[Any]
) -> None:
    go = asyncio.Event()

    @app.job()
    async def tracked(ctx: JobContext) -> None:
        await ctx.progress(current=1, total=2)
        await go.wait()
        await ctx.progress(current=2, total=2)

    watched = await app.enqueue(tracked)
    unwatched = await app.enqueue(tracked)
    # enqueue(watch=True) is another part of this work; the column is what counts.
    await sql(counted, "UPDATE soniq_jobs SET watched = true WHERE id = %s", watched)
    heard: list[str] = []
    async with Running(app):

        async def first_event() -> None:
            async for note in listener.notifies(timeout=10):
                heard.append(note.payload)
                if f"p:{watched}" in note.payload.split(","):
                    return

        await first_event()
        await wait_for(lambda: progress_of(app, unwatched), message="the unwatched progress")
        go.set()
        for job_id in (watched, unwatched):
            await wait_for(lambda j=job_id: status_is(app, j, "done"), message="both to end")
    heard += await events_until_sentinel(listener, counted)
    items = [item for payload in heard for item in payload.split(",")]
    # Each value is written once (by a flush or at the job's end): one event each.
    assert [item for item in items if item.startswith("p:")] == [f"p:{watched}"] * 2
    assert all(unwatched not in item for item in items), items
    assert await progress_of(app, unwatched) == value(2, 2)


async def status_is(app: Soniq, job_id: str, status: str) -> bool:
    job = await app.get_job(job_id)
    return job is not None and job["status"] == status


async def test_a_dead_lettered_job_keeps_its_progress(slow_app: Soniq, counted: str) -> None:
    app = slow_app

    @app.job(retries=0)
    async def doomed(ctx: JobContext) -> None:
        await ctx.progress(current=3, total=7, message="failing at 3")
        raise RuntimeError("boom")

    job_id = await app.enqueue(doomed)
    await sql(counted, "UPDATE soniq_jobs SET watched = true WHERE id = %s", job_id)
    assert await app.run_worker(run_once=True) is True
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "dead_letter"
    assert job["progress"] == value(3, 7, "failing at 3")
    assert await sql(counted, "SELECT watched FROM soniq_dead_letter_jobs") == [(True,)]


async def test_stale_recovery_keeps_progress_in_the_dead_letter(
    app: Soniq, database_url: str
) -> None:
    @app.job(retries=0)
    async def lost() -> None: ...

    job_id = await app.enqueue(lost)
    # A worker that died (its row is gone) during the job's last attempt.
    await sql(
        database_url,
        "UPDATE soniq_jobs SET status = 'processing', attempts = 1, watched = true,"
        " worker_id = gen_random_uuid(), progress = '{\"current\": 5}' WHERE id = %s",
        job_id,
    )
    recovered = await app.store.workers.recover_stale(timeout=60.0)
    assert recovered.dead_lettered == 1
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "dead_letter"
    assert job["progress"] == {"current": 5}
    assert await sql(database_url, "SELECT watched FROM soniq_dead_letter_jobs") == [(True,)]


STALL = """
CREATE TABLE stall (on_ boolean);
CREATE FUNCTION stall_progress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM stall) THEN PERFORM pg_sleep(60); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER stall_progress AFTER UPDATE OF progress ON soniq_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION stall_progress();
INSERT INTO stall VALUES (true);
"""


async def test_a_flush_lost_to_an_outage_is_written_by_the_next(
    counted: str, caplog: pytest.LogCaptureFixture
) -> None:
    await sql(counted, STALL)
    go = asyncio.Event()
    async with Soniq(database_url=counted, progress_interval=0.05, error_retry_delay=0.1) as app:

        @app.job()
        async def patient(ctx: JobContext) -> str:
            await ctx.progress(current=1, total=2, message="before the outage")
            await go.wait()
            return "survived"

        job_id = await app.enqueue(patient)
        async with Running(app):
            # The flush is stuck in the database; its connection dies there.
            stuck = await wait_for(
                lambda: sql(
                    counted,
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event = 'PgSleep'",
                ),
                message="the progress flush to stall",
            )
            await sql(counted, "DELETE FROM stall")
            await sql(counted, "SELECT pg_terminate_backend(%s)", stuck[0][0])
            # Nothing new was reported: the next flush writes the value kept.
            await wait_for(lambda: progress_of(app, job_id), message="the value kept")
            assert await progress_of(app, job_id) == value(1, 2, "before the outage")
            go.set()
            await wait_for(lambda: status_is(app, job_id, "done"), message="the job to end")
        assert await app.get_result(job_id) == "survived"
    assert any("could not write the progress of 1 job" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_local_backends_store_progress(backend: str, tmp_path: Path) -> None:
    where: dict[str, Any] = (
        {"database_url": f"sqlite:///{tmp_path / 'jobs.db'}"}
        if backend == "sqlite"
        else {"backend": "memory"}
    )
    go = asyncio.Event()
    async with Soniq(**where, progress_interval=0.05) as app:

        @app.job(retries=0)
        async def local(fail: bool, ctx: JobContext) -> None:
            await ctx.progress(current=1, total=2, message="half")
            await go.wait()
            await ctx.progress(current=2, total=2, data=["end"])
            if fail:
                raise RuntimeError("boom")

        ok = await app.enqueue(local, fail=False)
        bad = await app.enqueue(local, fail=True)
        async with Running(app):
            for job_id in (ok, bad):
                await wait_for(lambda j=job_id: progress_of(app, j), message="progress")
                assert await progress_of(app, job_id) == value(1, 2, "half")
            go.set()
            await wait_for(lambda: status_is(app, ok, "done"), message="the job to end")
            await wait_for(lambda: status_is(app, bad, "dead_letter"), message="the burial")
        assert await progress_of(app, ok) == value(2, 2, data=["end"])
        assert await progress_of(app, bad) == value(2, 2, data=["end"])


def test_the_blocking_app_shows_the_progress_of_sync_handlers(
    sync_app: soniq_sync.Soniq,
) -> None:
    @sync_app.job()
    def tally(n: int, ctx: JobContext) -> int:
        for i in range(n):
            ctx.progress_sync(current=i + 1, total=n, data={"last": i})
        return n

    job_id = sync_app.enqueue(tally, n=500)
    assert sync_app.run_worker(run_once=True) is True
    job = sync_app.get_job(job_id)
    assert job is not None and job["status"] == "done"
    assert job["progress"] == value(500, 500, data={"last": 499})
    assert [j["progress"] for j in sync_app.list_jobs()] == [value(500, 500, data={"last": 499})]
