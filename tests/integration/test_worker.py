"""The worker in-process against real PostgreSQL: claim order, outcomes, hooks, fencing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

from soniq import JobContext, Soniq
from soniq.types import Snooze
from soniq.worker import Worker
from soniq.worker.claim_ahead import ClaimAhead
from tests.helpers import wait_for


async def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


async def status(app: Soniq, job_id: str) -> str | None:
    job = await app.get_job(job_id)
    return None if job is None else job["status"]


async def test_run_once_runs_everything_runnable_and_stores_results(app: Soniq) -> None:
    @app.job()
    async def double(x: int) -> int:
        return x * 2

    ids = [await app.enqueue(double, x=i) for i in range(10)]
    assert await app.run_worker(run_once=True) is True
    assert [await app.get_result(i) for i in ids] == [i * 2 for i in range(10)]
    assert {await status(app, i) for i in ids} == {"done"}
    assert await app.run_worker(run_once=True) is False


async def test_claim_order_is_priority_then_time(app: Soniq) -> None:
    seen: list[str] = []

    @app.job()
    def record(tag: str) -> None:
        seen.append(tag)

    base = datetime.now(timezone.utc) - timedelta(minutes=10)
    await app.enqueue(record, tag="p100-late", scheduled_at=base + timedelta(minutes=2))
    await app.enqueue(record, tag="p100-early", scheduled_at=base)
    await app.enqueue(record, tag="p5", priority=5, scheduled_at=base + timedelta(minutes=5))
    await app.enqueue(record, tag="p1000", priority=1000, scheduled_at=base)
    await app.run_worker(run_once=True, concurrency=1)
    assert seen == ["p5", "p100-early", "p100-late", "p1000"]


async def test_queues_and_future_jobs_are_left_alone(app: Soniq) -> None:
    @app.job()
    async def noop() -> None: ...

    a = await app.enqueue(noop, queue="a")
    b = await app.enqueue(noop, queue="b")
    later = await app.schedule(noop, 3600, queue="a")
    await app.run_worker(run_once=True, queues=["a"])
    assert [await status(app, j) for j in (a, b, later)] == ["done", "queued", "queued"]


async def test_max_jobs_caps_one_run(app: Soniq) -> None:
    @app.job()
    async def noop() -> None: ...

    await app.enqueue_many(noop, [{}] * 5)
    worker = app.worker()
    assert await worker.run_once(max_jobs=2) is True
    assert worker.processed == 2
    assert len(await app.list_jobs(status="queued")) == 3


async def test_max_jobs_just_above_the_concurrency_returns(app: Soniq) -> None:
    """The last claim of a capped run is as small as the cap, even while a backlog
    waits (which otherwise claims only once a quarter of the slots are free)."""

    @app.job()
    async def noop() -> None: ...

    await app.enqueue_many(noop, [{}] * 40)
    worker = app.worker()
    assert await asyncio.wait_for(worker.run_once(max_jobs=17, concurrency=16), 30) is True
    assert worker.processed == 17
    assert len(await app.list_jobs(status="queued", limit=100)) == 23


async def test_context_is_injected_and_sync_handlers_run_off_the_loop(app: Soniq) -> None:
    got: dict[str, Any] = {}

    @app.job(name="ctx.probe", retries=2, queue="q")
    def probe(n: int, ctx: JobContext) -> None:
        got["ctx"] = ctx
        got["thread"] = threading.current_thread() is threading.main_thread()

    job_id = await app.enqueue(probe, n=1)
    await app.run_worker(run_once=True, queues=["q"])
    ctx = got["ctx"]
    assert (ctx.job_id, ctx.job_name, ctx.attempt, ctx.max_attempts, ctx.queue) == (
        job_id,
        "ctx.probe",
        1,
        3,
        "q",
    )
    assert ctx.worker_id and ctx.created_at and ctx.scheduled_at
    assert got["thread"] is False
    with pytest.raises(AttributeError):
        ctx.attempt = 2  # type: ignore[misc]


async def test_failure_retries_with_delay_then_succeeds(app: Soniq, database_url: str) -> None:
    attempts: list[int] = []

    @app.job(retries=2, retry_delay=[0, 30])
    def flaky(ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ValueError(f"try {ctx.attempt}")
        return "ok"

    job_id = await app.enqueue(flaky)
    await app.run_worker(run_once=True)  # attempt 1 fails, retried at once: attempt 2 fails
    job = await app.get_job(job_id)
    assert job is not None
    assert attempts == [1, 2]
    assert (job["status"], job["attempts"], job["last_error"]) == ("queued", 2, "ValueError: try 2")
    assert job["scheduled_at"] > datetime.now(timezone.utc) + timedelta(seconds=25)
    await sql(database_url, "UPDATE soniq_jobs SET scheduled_at = now() WHERE id = %s", job_id)
    await app.run_worker(run_once=True)
    assert await app.get_result(job_id) == "ok"
    assert attempts == [1, 2, 3]


async def test_exhausted_job_moves_to_dead_letter_with_traceback(app: Soniq) -> None:
    @app.job(retries=1)
    async def doomed() -> None:
        raise RuntimeError("disk on fire")

    job_id = await app.enqueue(doomed)
    await app.run_worker(run_once=True)
    assert await app.list_jobs() == []  # moved, not copied
    (dead,) = await app.dead_letter.list()
    assert dead["id"] == job_id
    assert dead["attempts"] == 2 and dead["last_error"] == "RuntimeError: disk on fire"
    assert "disk on fire" in dead["traceback"] and "Traceback" in dead["traceback"]
    new_id = await app.dead_letter.replay(job_id)
    assert new_id != job_id and await status(app, new_id) == "queued"
    again = await app.dead_letter.get(job_id)
    assert again is not None and again["resurrection_count"] == 1


async def test_timeout_is_a_failure_with_a_clear_reason(app: Soniq) -> None:
    @app.job(timeout=0.2, retries=0)
    async def slow() -> None:
        await asyncio.sleep(30)

    job_id = await app.enqueue(slow)
    await app.run_worker(run_once=True)
    dead = await app.dead_letter.get(job_id)
    assert dead is not None and "timed out after 0.2s" in dead["last_error"]


async def test_unregistered_and_invalid_jobs_are_dead_lettered_at_once(
    app: Soniq, database_url: str
) -> None:
    class Args(BaseModel):
        order_id: str

    @app.job(name="billing.send", validate=Args, retries=5)
    async def send(order_id: str) -> None: ...

    @app.job()
    async def fine() -> None: ...

    async with Soniq(database_url=database_url, enqueue_validation="none") as producer:
        ghost = await producer.enqueue("ghost.task", args={})
        invalid = await producer.enqueue("billing.send", args={"order_id": ["not", "str"]})
        misfit = await producer.enqueue("billing.send", args={})
    ok = await app.enqueue(fine)
    await app.run_worker(run_once=True)
    reasons = {d["id"]: d for d in await app.dead_letter.list()}
    assert reasons[ghost]["reason"] == "Job ghost.task not registered."
    assert "Args" in reasons[invalid]["reason"] and reasons[invalid]["attempts"] == 1
    assert reasons[misfit]["attempts"] == 1
    assert await status(app, ok) == "done"


async def test_args_that_never_fit_the_signature_are_not_retried(
    app: Soniq, database_url: str
) -> None:
    @app.job(name="needs.x", retries=5)
    async def needs_x(x: int) -> None: ...

    async with Soniq(database_url=database_url, enqueue_validation="none") as producer:
        job_id = await producer.enqueue("needs.x", args={"y": 1})
    await app.run_worker(run_once=True)
    dead = await app.dead_letter.get(job_id)
    assert dead is not None and dead["attempts"] == 1 and "do not fit" in dead["reason"]


@pytest.mark.parametrize("how", ["raise", "return"])
async def test_snooze_requeues_without_spending_an_attempt(app: Soniq, how: str) -> None:
    @app.job(retries=0)
    async def later() -> Snooze:
        if how == "raise":
            raise Snooze(120)
        return Snooze(120)

    job_id = await app.enqueue(later)
    await app.run_worker(run_once=True)
    job = await app.get_job(job_id)
    assert job is not None
    assert (job["status"], job["attempts"]) == ("queued", 0)
    assert job["scheduled_at"] > datetime.now(timezone.utc) + timedelta(seconds=100)


async def test_hooks_run_in_order_and_a_broken_hook_is_only_logged(
    app: Soniq, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[tuple[Any, ...]] = []

    @app.before_job
    def broken(job_name: str, job_id: str, attempt: int) -> None:
        raise ConnectionError("metrics down")

    @app.before_job
    async def before(job_name: str, job_id: str, attempt: int) -> None:
        events.append(("before", job_name, attempt))

    @app.after_job
    def after(job_name: str, job_id: str, duration_ms: float) -> None:
        events.append(("after", job_name, duration_ms >= 0))

    @app.on_error
    async def on_error(job_name: str, job_id: str, error: str, attempt: int) -> None:
        events.append(("error", job_name, error, attempt))

    @app.job(name="ok.job")
    async def ok() -> None:
        events.append(("run", "ok.job"))

    @app.job(name="bad.job", retries=0)
    async def bad() -> None:
        raise ValueError("nope")

    ok_id = await app.enqueue(ok)
    await app.run_worker(run_once=True)
    await app.enqueue(bad)
    with caplog.at_level(logging.WARNING, logger="soniq.worker"):
        await app.run_worker(run_once=True)
    assert events == [
        ("before", "ok.job", 1),
        ("run", "ok.job"),
        ("after", "ok.job", True),
        ("before", "bad.job", 1),
        ("error", "bad.job", "nope", 1),
    ]
    assert await status(app, ok_id) == "done"
    assert any("Hook before_job failed" in r.getMessage() for r in caplog.records)


# -- continuous mode ----------------------------------------------------------------------


async def test_listen_wakes_an_idle_worker(database_url: str) -> None:
    async with Soniq(database_url=database_url, poll_interval=60) as app:
        done = asyncio.Event()

        @app.job()
        async def ping() -> None:
            done.set()

        await app.ensure_initialized()
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        try:
            await wait_for(lambda: worker.listener is not None and worker.listener.mode == "listen")
            await app.enqueue(ping)
            await asyncio.wait_for(done.wait(), 10)  # far below the 60 s poll
        finally:
            worker.stop()
            assert await asyncio.wait_for(task, 10) is True


async def test_polling_when_listen_is_off(database_url: str) -> None:
    async with Soniq(database_url=database_url, poll_interval=0.2, listen_notify=False) as app:

        @app.job()
        async def noop() -> None: ...

        await app.ensure_initialized()
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        try:
            job_id = await app.enqueue(noop)
            await wait_for(lambda: status(app, job_id), message="job done by polling")
            await wait_for(lambda: _is(status(app, job_id), "done"))
            assert worker.listener is None
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)


async def _is(value: Any, expected: str) -> bool:
    return await value == expected


async def test_stop_requeues_running_jobs_and_deregisters(app: Soniq, database_url: str) -> None:
    started = asyncio.Event()

    @app.job()
    async def long() -> None:
        started.set()
        await asyncio.sleep(60)

    job_id = await app.enqueue(long)
    await app.ensure_initialized()
    worker = app.worker()
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    assert await sql(database_url, "SELECT count(*) FROM soniq_workers") == [(1,)]
    worker.stop(timeout=0)  # no grace: the running job is requeued at once
    await asyncio.wait_for(task, 10)
    job = await app.get_job(job_id)
    assert job is not None and (job["status"], job["attempts"]) == ("queued", 0)
    assert await sql(database_url, "SELECT count(*) FROM soniq_workers") == [(0,)]


async def test_a_worker_presumed_dead_cannot_complete_a_reassigned_attempt(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Fencing: A's late acknowledgement of attempt 1 must not touch attempt 2."""
    release_a = threading.Event()
    settings = {"heartbeat_interval": 60.0, "heartbeat_timeout": 120.0, "cleanup_interval": 0.2}
    async with (
        Soniq(database_url=database_url, **settings) as app_a,
        Soniq(database_url=database_url, **settings) as app_b,
    ):

        @app_a.job(name="fenced.job")
        def slow_a(ctx: JobContext) -> str:
            release_a.wait(30)
            return f"a{ctx.attempt}"

        @app_b.job(name="fenced.job")
        def quick_b(ctx: JobContext) -> str:
            return f"b{ctx.attempt}"

        job_id = await app_a.enqueue("fenced.job", args={})
        await app_a.ensure_initialized()
        worker_a = app_a.worker()
        # One slot, held by the stuck attempt: A cannot re-claim the job itself.
        task_a = asyncio.create_task(worker_a.run(concurrency=1))
        await wait_for(lambda: _is(status(app_a, job_id), "processing"))
        # A goes silent: its heartbeat is now far in the past.
        await sql(
            database_url,
            "UPDATE soniq_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = %s",
            worker_a.id,
        )
        await app_b.ensure_initialized()
        worker_b = app_b.worker()
        task_b = asyncio.create_task(worker_b.run())
        try:
            await wait_for(lambda: _is(status(app_b, job_id), "done"), timeout=15)
            caplog.set_level(logging.WARNING, logger="soniq.worker")
            release_a.set()  # A finishes attempt 1 late and tries to acknowledge it
            await wait_for(
                lambda: any("taken over" in r.getMessage() for r in caplog.records),
                message="A's late completion to be refused",
            )
            job = await app_b.get_job(job_id)
            assert job is not None
            assert (job["attempts"], job["result"]) == (2, "b2")
            assert any("taken over by another worker" in r.getMessage() for r in caplog.records)
        finally:
            release_a.set()
            worker_a.stop()
            worker_b.stop()
            await asyncio.wait_for(asyncio.gather(task_a, task_b), 15)


async def test_sync_timeout_counts_from_the_handler_start(app: Soniq) -> None:
    """A timed-out sync handler keeps its thread; the next job must not pay for that."""

    @app.job(name="stuck", timeout=0.3, retries=0)
    def stuck() -> None:
        time.sleep(1.5)  # outlives its timeout and holds the only thread past quick's 1 s

    @app.job(name="quick", timeout=1.0, retries=0)
    def quick() -> str:
        return "ran"

    stuck_id = await app.enqueue(stuck)
    quick_id = await app.enqueue(quick, priority=200)  # claimed after the stuck one
    worker = app.worker()
    run = asyncio.create_task(worker.run_once(concurrency=1))
    await asyncio.wait_for(run, 15)
    dead = await app.dead_letter.get(stuck_id)
    assert dead is not None and "timed out" in dead["last_error"]
    assert await app.get_result(quick_id) == "ran"


async def test_worker_opens_its_own_connections(database_url: str) -> None:
    async with Soniq(database_url=database_url) as app:

        @app.job()
        async def noop() -> None: ...

        await app.enqueue(noop)
        await app.close()  # the worker must not depend on an earlier ensure_initialized()
        assert await app.worker().run_once() is True


async def test_a_worker_without_jobs_says_so(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Soniq(database_url=database_url, enqueue_validation="none") as app:
        job_id = await app.enqueue("orphan.task", args={})
        with caplog.at_level(logging.WARNING, logger="soniq.worker"):
            await app.run_worker(run_once=True)
        dead = await app.dead_letter.get(job_id)
    assert dead is not None and dead["reason"] == "Job orphan.task not registered."
    assert any("no jobs are registered" in r.getMessage() for r in caplog.records)


async def test_a_backlog_of_completions_is_written_in_bounded_batches(
    app: Soniq, monkeypatch: pytest.MonkeyPatch
) -> None:
    from soniq.worker import acks

    monkeypatch.setattr(acks, "MAX_BATCH", 3)

    @app.job()
    async def square(x: int) -> int:
        return x * x

    ids = [await app.enqueue(square, x=i) for i in range(10)]
    await app.run_worker(run_once=True, concurrency=10)
    assert [await app.get_result(i) for i in ids] == [i * i for i in range(10)]
    assert {await status(app, i) for i in ids} == {"done"}


@pytest.fixture
def eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers claim two jobs beyond their free slots whatever their measurements say."""
    monkeypatch.setattr(ClaimAhead, "ahead", lambda self: 2)


async def test_jobs_claimed_ahead_run_in_claim_order(app: Soniq, eager: None) -> None:
    seen: list[int] = []

    @app.job()
    async def record(n: int) -> None:
        seen.append(n)

    base = datetime.now(timezone.utc) - timedelta(minutes=10)
    for n in range(6):
        await app.enqueue(record, n=n, scheduled_at=base + timedelta(seconds=n))
    worker = Worker(app.backend, app.registry, app.settings, app.hooks)
    assert await worker.run_once(concurrency=1) is True
    assert seen == list(range(6))


async def test_stop_requeues_jobs_claimed_ahead_without_spending_attempts(
    app: Soniq, database_url: str, eager: None
) -> None:
    started = asyncio.Event()

    @app.job()
    async def long() -> None:
        started.set()
        await asyncio.sleep(60)

    ids = await app.enqueue_many(long, [{}] * 4)
    await app.ensure_initialized()
    worker = Worker(app.backend, app.registry, app.settings, app.hooks)
    task = asyncio.create_task(worker.run(concurrency=1))
    await asyncio.wait_for(started.wait(), 10)
    # One job runs and two wait in the worker for its only slot.
    rows = await sql(database_url, "SELECT count(*) FROM soniq_jobs WHERE status = 'processing'")
    assert rows == [(3,)]
    worker.stop(timeout=0)
    await asyncio.wait_for(task, 10)
    jobs = [await app.get_job(i) for i in ids]
    assert [(j["status"], j["attempts"]) for j in jobs if j] == [("queued", 0)] * 4


async def test_stop_requeues_jobs_claimed_ahead_while_a_sync_job_finishes(
    app: Soniq, database_url: str, eager: None
) -> None:
    """The jobs held ready go back at once: not only after the running sync job, which
    may take long (and a second signal would then leave them to stale-worker recovery)."""
    started, release = threading.Event(), threading.Event()

    @app.job()
    def slow() -> None:
        started.set()
        release.wait(30)

    first, *held = await app.enqueue_many(slow, [{}] * 3)
    await app.ensure_initialized()
    worker = Worker(app.backend, app.registry, app.settings, app.hooks)
    task = asyncio.create_task(worker.run(concurrency=1))
    try:
        await asyncio.to_thread(started.wait, 10)
        worker.stop()

        async def held_requeued() -> bool:
            return {await status(app, i) for i in held} == {"queued"}

        await wait_for(held_requeued, timeout=10, message="the held jobs to be requeued")
        assert await status(app, first) == "processing"  # still running: waited for
    finally:
        release.set()
        await asyncio.wait_for(task, 10)
    assert await status(app, first) == "done"


async def test_results_of_one_batch_keep_their_exact_values(app: Soniq) -> None:
    tricky: list[Any] = [
        'quote " backslash \\ comma , brace } {',
        {"nested": [1, 2.5, None, True], "ünïcode": "☃", "null": None},
        [],
        0,
        "null",
        None,
    ]

    @app.job()
    async def give(i: int) -> Any:
        return tricky[i]

    ids = [await app.enqueue(give, i=i) for i in range(len(tricky))]
    await app.run_worker(run_once=True, concurrency=len(tricky))
    assert [await app.get_result(i) for i in ids] == tricky
    assert {await status(app, i) for i in ids} == {"done"}


async def test_nul_characters_in_results_and_errors_do_not_stall_the_worker(
    app: Soniq, database_url: str
) -> None:
    @app.job()
    async def nul_result() -> str:
        return "a\x00b"  # jsonb cannot store \u0000

    @app.job(retries=0)
    async def nul_error() -> None:
        raise ValueError("bad\x00byte")  # text columns cannot store NUL

    @app.job()
    async def fine(n: int) -> int:
        return n

    bad = await app.enqueue(nul_result)
    failing = await app.enqueue(nul_error)
    good = [await app.enqueue(fine, n=n) for n in range(5)]
    await app.run_worker(run_once=True)
    assert await status(app, bad) == "done"
    assert await app.get_result(bad) is None
    assert [await app.get_result(i) for i in good] == list(range(5))
    (record,) = await app.dead_letter.list()
    assert str(record["id"]) == failing
    assert "bad\\x00byte" in record["last_error"]


async def test_a_validator_raising_a_non_validation_error_dead_letters_the_job(
    database_url: str,
) -> None:
    from pydantic import field_validator

    class Strict(BaseModel):
        n: int

        @field_validator("n")
        @classmethod
        def positive(cls, value: int) -> int:
            if value < 0:
                raise TypeError("negative")  # pydantic does not wrap TypeError
            return value

    async with Soniq(database_url=database_url, enqueue_validation="none") as app:

        @app.job(name="strict.job", validate=Strict)
        async def handler(n: int) -> None: ...

        producer = Soniq(database_url=database_url, enqueue_validation="none")
        job_id = await producer.enqueue("strict.job", args={"n": -1})
        await producer.close()
        await app.run_worker(run_once=True)
        assert await status(app, job_id) == "dead_letter"
        record = await app.dead_letter.get(job_id)
        assert record is not None and "negative" in record["reason"]


async def test_stop_during_a_claim_requeues_the_claimed_jobs(app: Soniq, database_url: str) -> None:
    @app.job(retries=0)
    async def work(n: int) -> None: ...

    worker = Soniq(database_url=database_url, poll_interval=0.05, listen_notify=False)
    worker.registry = app.registry
    w = worker.worker()
    run = asyncio.create_task(w.run(concurrency=2))
    async with await psycopg.AsyncConnection.connect(database_url) as locker:
        # Hold the table so that the worker's next claim waits inside PostgreSQL, then
        # queue the jobs in the same transaction: the claim sees them once it may go on.
        await locker.execute("LOCK TABLE soniq_jobs IN ACCESS EXCLUSIVE MODE")

        async def claim_is_waiting() -> bool:
            rows = await sql(
                database_url,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%%FOR UPDATE SKIP LOCKED%%'",
            )
            return bool(rows[0][0])

        await wait_for(claim_is_waiting, timeout=15, message="a claim waiting on the lock")
        await app.enqueue_many(work, [{"n": n} for n in range(10)], connection=locker)
        w.stop()  # lands while the claim is in flight
        await locker.commit()
    await asyncio.wait_for(run, 30)
    await worker.close()
    rows = await sql(database_url, "SELECT status, attempts FROM soniq_jobs")
    assert sorted(rows) == [("queued", 0)] * 10  # requeued, attempts not spent
    assert await sql(database_url, "SELECT count(*) FROM soniq_workers") == [(0,)]
