"""Managing jobs on every backend: cancel, retry, delete, queue statistics, status(),
workers, unregistered tasks and prune."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from soniq import Soniq, SoniqError
from soniq.errors import JOB_NOT_FOUND, JOB_NOT_RETRYABLE
from soniq.testing import drain
from tests.helpers import wait_for

MISSING_ID = "00000000-0000-4000-8000-000000000000"


async def status_of(app: Soniq, job_id: str) -> str | None:
    job = await app.get_job(job_id)
    return None if job is None else str(job["status"])


async def test_cancel_a_queued_job(backend_app: Soniq) -> None:
    app = backend_app
    ran: list[str] = []

    @app.job()
    def work(tag: str) -> None:
        ran.append(tag)

    cancelled = await app.enqueue(work, tag="cancelled")
    kept = await app.enqueue(work, tag="kept")
    assert await app.cancel_job(cancelled) is True
    assert await app.cancel_job(cancelled) is False  # already cancelled
    assert await app.cancel_job(MISSING_ID) is False

    await app.run_worker(run_once=True)
    assert ran == ["kept"]
    assert [await status_of(app, i) for i in (cancelled, kept)] == ["cancelled", "done"]
    assert await app.cancel_job(kept) is False  # finished


async def test_retry_a_cancelled_job_keeps_its_id(backend_app: Soniq) -> None:
    app = backend_app

    @app.job()
    async def answer() -> int:
        return 42

    job_id = await app.enqueue(answer)
    await app.cancel_job(job_id)
    assert await app.retry_job(job_id) == job_id
    assert await status_of(app, job_id) == "queued"
    await app.run_worker(run_once=True)
    assert await app.get_result(job_id) == 42

    with pytest.raises(SoniqError) as info:
        await app.retry_job(job_id)  # done: it succeeded
    assert info.value.code == JOB_NOT_RETRYABLE
    with pytest.raises(SoniqError) as info:
        await app.retry_job(MISSING_ID)
    assert info.value.code == JOB_NOT_FOUND


async def test_retry_a_dead_lettered_job_makes_a_new_one(backend_app: Soniq) -> None:
    app = backend_app
    calls: list[int] = []

    @app.job(retries=0)
    async def second_time_lucky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return "ok"

    job_id = await app.enqueue(second_time_lucky)
    await app.run_worker(run_once=True)
    assert await status_of(app, job_id) == "dead_letter"

    new_id = await app.retry_job(job_id)
    assert new_id != job_id and await status_of(app, new_id) == "queued"
    await app.run_worker(run_once=True)
    assert await app.get_result(new_id) == "ok"
    dead = await app.dead_letter.get(job_id)
    assert dead is not None and dead["resurrection_count"] == 1


async def test_delete_job_removes_the_row(backend_app: Soniq) -> None:
    app = backend_app

    @app.job()
    async def noop() -> None: ...

    gone = await app.enqueue(noop)
    stays = await app.enqueue(noop)
    assert await app.delete_job(gone) is True
    assert await app.delete_job(gone) is False
    assert await app.get_job(gone) is None
    assert [j["id"] for j in await app.list_jobs()] == [stays]


async def test_queue_stats_and_status_count_each_queue(backend_app: Soniq) -> None:
    app = backend_app

    @app.job()
    async def noop() -> None: ...

    @app.job(retries=0)
    async def boom() -> None:
        raise RuntimeError("boom")

    await app.enqueue(noop, queue="mail")
    await app.enqueue(noop, queue="mail")
    await app.schedule(noop, 3600, queue="mail")
    cancelled = await app.enqueue(noop, queue="mail")
    await app.cancel_job(cancelled)
    await app.enqueue(noop, queue="billing")
    await app.enqueue(boom, queue="billing")
    await app.run_worker(run_once=True, queues=["billing"])

    # The original's single dict over every queue; total is the sum of the five.
    assert await app.get_queue_stats() == {
        "total": 6,
        "queued": 3,
        "processing": 0,
        "done": 1,
        "dead_letter": 1,
        "cancelled": 1,
    }
    assert await app.get_queue_stats_by_queue() == [
        {
            "queue": "billing",
            "queued": 0,
            "processing": 0,
            "done": 1,
            "cancelled": 0,
            "dead_letter": 1,
            "total": 2,
        },
        {
            "queue": "mail",
            "queued": 3,
            "processing": 0,
            "done": 0,
            "cancelled": 1,
            "dead_letter": 0,
            "total": 4,
        },
    ]

    status = await app.status()
    assert (status["workers"], status["stale_workers"]) == (0, 0)
    billing, mail = status["queues"]
    assert (billing["queue"], mail["queue"]) == ("billing", "mail")
    assert (mail["runnable"], mail["scheduled"], mail["processing"]) == (2, 1, 0)
    assert (mail["done"], mail["cancelled"], mail["dead_letter"]) == (0, 1, 0)
    assert mail["oldest_runnable_age"] is not None and mail["oldest_runnable_age"] >= 0
    assert (billing["runnable"], billing["done"], billing["dead_letter"]) == (0, 1, 1)
    assert billing["oldest_runnable_age"] is None
    assert billing["done_last_minute"] == 1


async def test_unregistered_tasks_lists_names_without_a_handler(
    make_app: Callable[..., Soniq],
) -> None:
    app = make_app(enqueue_validation="none")

    @app.job(name="known.task")
    async def known() -> None: ...

    await app.enqueue(known)
    assert await app.unregistered_tasks() == []

    await app.enqueue("remote.task", args={})
    await app.enqueue("remote.task", args={})
    await app.enqueue("other.task", args={}, queue="elsewhere")
    await app.run_worker(run_once=True, queues=["elsewhere"])  # dead-letters other.task
    assert await app.unregistered_tasks() == [
        {"job_name": "other.task", "queued": 0, "processing": 0, "dead_letter": 1},
        {"job_name": "remote.task", "queued": 2, "processing": 0, "dead_letter": 0},
    ]


async def test_a_running_worker_is_listed_and_gone_once_stopped(
    make_app: Callable[..., Soniq],
) -> None:
    app = make_app(poll_interval=0.05)

    @app.job()
    async def answer() -> int:
        return 42

    async def workers() -> list[dict[str, Any]]:
        return await app.list_workers()

    assert await workers() == []
    await app.ensure_initialized()
    worker = app.worker()
    running = asyncio.create_task(worker.run(concurrency=2))
    try:
        rows: list[dict[str, Any]] = await wait_for(workers, message="the worker to register")
        (listed,) = rows
        assert listed["id"] == worker.id and listed["stale"] is False
        job_id = await app.enqueue(answer)  # picked up by the running worker
        await wait_for(lambda: app.get_result(job_id), message="the job to run")
        assert (await app.status())["workers"] == 1
    finally:
        worker.stop()
        await asyncio.wait_for(running, 15)
    assert await app.list_workers() == []
    assert await app.get_result(job_id) == 42


async def test_prune_deletes_finished_jobs_only(make_app: Callable[..., Soniq]) -> None:
    app = make_app(result_ttl=0)

    @app.job()
    async def noop() -> None: ...

    @app.job(retries=0)
    async def boom() -> None:
        raise RuntimeError("boom")

    done = [await app.enqueue(noop) for _ in range(2)]
    cancelled = await app.enqueue(noop)
    await app.cancel_job(cancelled)
    dead = await app.enqueue(boom)
    await drain(app)
    queued = await app.enqueue(noop)
    later = await app.schedule(noop, 3600)

    assert await app.prune(older_than=0) == 3
    assert [await app.get_job(i) for i in (*done, cancelled)] == [None, None, None]
    assert {j["id"] for j in await app.list_jobs()} == {queued, later}
    assert await status_of(app, dead) == "dead_letter"
    assert await app.prune(older_than=0) == 0
