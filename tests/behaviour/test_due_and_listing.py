"""On every backend: delayed jobs run once due, a reused worker, finished counts in
status(), and listing newest first with keyset pages (``before=``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from soniq import JobContext, Soniq, SoniqError
from tests.helpers import wait_for


async def _queue_status(app: Soniq, queue: str = "default") -> dict[str, object]:
    for row in (await app.status())["queues"]:
        if row["queue"] == queue:
            return dict(row)
    return {}


async def test_a_reused_worker_runs_max_jobs_on_every_run_once(backend_app: Soniq) -> None:
    app = backend_app
    ran: list[int] = []

    @app.job()
    async def note(n: int) -> None:
        ran.append(n)

    for n in range(3):
        await app.enqueue(note, n=n)
    worker = app.worker()
    results = [await worker.run_once(max_jobs=1) for _ in range(4)]
    assert results == [True, True, True, False]
    assert sorted(ran) == [0, 1, 2]
    assert worker.processed == 3  # the lifetime count goes on across calls


async def test_a_scheduled_job_is_scheduled_then_runnable_then_run(backend_app: Soniq) -> None:
    app = backend_app
    ran: list[str] = []

    @app.job()
    async def later(tag: str) -> None:
        ran.append(tag)

    job_id = await app.schedule(later, timedelta(milliseconds=300), tag="x")
    status = await _queue_status(app)
    assert (status["runnable"], status["scheduled"]) == (0, 1)
    assert await app.run_worker(run_once=True) is False
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "queued"  # delayed is not a status

    # Due now, though no worker has looked: status() already calls it runnable.
    await wait_for(lambda: _runnable(app), 10, message="the scheduled job to be due")
    assert await app.run_worker(run_once=True) is True
    assert ran == ["x"]
    done = await app.get_job(job_id)
    assert done is not None and done["status"] == "done"
    assert done["started_at"] >= done["scheduled_at"]


async def _runnable(app: Soniq) -> bool:
    status = await _queue_status(app)
    return (status.get("runnable"), status.get("scheduled")) == (1, 0)


async def test_a_retry_delay_that_runs_out_during_run_once_is_run_by_it(
    backend_app: Soniq,
) -> None:
    app = backend_app
    attempts: list[int] = []

    @app.job(retries=1, retry_delay=0.2)
    def flaky(ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            # Keep the worker busy until the retry is due, so that run_once finds it due.
            raise ValueError("first try")
        return "ok"

    @app.job()
    async def slow() -> None:
        await asyncio.sleep(0.4)

    job_id = await app.enqueue(flaky)
    await app.enqueue(slow)
    await app.run_worker(run_once=True)
    # Either this run caught the retry once due, or it stopped first and a later one runs it.
    if attempts == [1]:
        await wait_for(lambda: _due_retry(app), 10, message="the retry to fall due")
        assert await app.run_worker(run_once=True) is True
    assert attempts == [1, 2]
    assert await app.get_result(job_id) == "ok"


async def _due_retry(app: Soniq) -> bool:
    return (await _queue_status(app)).get("runnable") == 1


async def test_a_running_worker_runs_a_delayed_job_without_waiting_for_its_poll(
    make_app: Callable[..., Soniq],
) -> None:
    # The poll interval is far longer than the test: the worker must sleep until the
    # job's own time, not poll for it.
    app = make_app(poll_interval=120)
    started: list[datetime] = []

    @app.job()
    async def tick() -> None:
        started.append(datetime.now(timezone.utc))

    worker = app.worker()
    task = asyncio.create_task(worker.run(concurrency=2))
    try:
        await wait_for(lambda: worker._live is not None, 10, message="the worker to start")
        await asyncio.sleep(0)  # let its promoter look once (nothing is delayed yet)
        await app.enqueue(tick)  # a NOTIFY (or a poll) wakes nobody for a delayed job...
        job_id = await app.schedule(tick, 0.5)
        await wait_for(lambda: len(started) == 2, 20, message="both jobs to run")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "done"


async def test_status_counts_what_finished_in_the_last_hour_and_minute(
    backend_app: Soniq,
) -> None:
    app = backend_app

    @app.job(queue="work")
    async def fine() -> None:
        pass

    @app.job(queue="work", retries=1)
    async def broken() -> None:
        raise RuntimeError("no")

    for _ in range(3):
        await app.enqueue(fine)
    await app.enqueue(broken)
    await app.cancel_job(await app.enqueue(fine))  # cancelled while queued
    await app.run_worker(run_once=True)

    work = await _queue_status(app, "work")
    assert (work["done"], work["done_last_minute"]) == (3, 3)
    assert work["failed"] == 2  # attempt 1 retried, attempt 2 dead-lettered
    assert (work["cancelled"], work["dead_letter"]) == (1, 1)
    assert (work["runnable"], work["scheduled"], work["processing"]) == (0, 0, 0)


async def test_jobs_are_listed_newest_first_in_enqueue_order(
    make_app: Callable[..., Soniq],
) -> None:
    app = make_app(enqueue_validation="none")
    ids = [await app.enqueue("t.noop", args={"n": n}) for n in range(50)]
    ids += await app.enqueue_many("t.noop", [{"n": n} for n in range(50, 80)])
    ids.append(await app.enqueue("t.noop", args={"n": 80}))
    listed = [job["id"] for job in await app.list_jobs(limit=200)]
    assert listed == ids[::-1]


@pytest.fixture
def named_app(make_app: Callable[..., Soniq]) -> Soniq:
    return make_app(enqueue_validation="none")


async def test_keyset_pages_neither_repeat_nor_skip_while_jobs_arrive(named_app: Soniq) -> None:
    app = named_app
    original = await app.enqueue_many("t.page", [{"n": n} for n in range(300)])
    seen: list[str] = []
    before: str | None = None
    while True:
        page = await app.list_jobs(job_name="t.page", limit=37, before=before)
        if not page:
            break
        seen += [job["id"] for job in page]
        before = page[-1]["id"]
        # New jobs arrive between pages; they are newer than every page so far.
        await app.enqueue("t.page", args={"n": -1})
    assert seen == original[::-1]
    assert len(await app.list_jobs(job_name="t.page", limit=1000)) == 300 + len(seen) // 37 + 1


async def test_before_combines_with_filters_and_offset(named_app: Soniq) -> None:
    app = named_app
    a = await app.enqueue_many("t.a", [{"n": n} for n in range(5)], queue="qa")
    b = await app.enqueue_many("t.b", [{"n": n} for n in range(5)], queue="qb")
    assert [j["id"] for j in await app.list_jobs(before=b[2])] == [b[1], b[0], *a[::-1]]
    assert [j["id"] for j in await app.list_jobs(before=b[2], queue="qa", limit=2)] == [
        a[4],
        a[3],
    ]
    assert [j["id"] for j in await app.list_jobs(before=a[4], offset=1)] == a[2::-1]
    # An id that is no job is still a bound: everything older is listed.
    assert [j["id"] for j in await app.list_jobs(before="ffffffff-0000-7000-8000-000000000000")]
    assert await app.list_jobs(before="00000000-0000-7000-8000-000000000000") == []


@pytest.mark.parametrize("bad", ["nope", "", "123", 17])
async def test_a_malformed_before_is_refused(backend_app: Soniq, bad: object) -> None:
    with pytest.raises(SoniqError) as err:
        await backend_app.list_jobs(before=bad)  # type: ignore[arg-type]
    assert err.value.code == "SONIQ_INVALID_JOB_ID"
