"""A worker's shutdown in-process on real PostgreSQL: the grace of SONIQ_SHUTDOWN_TIMEOUT,
stop(timeout=), cancellation; and SONIQ_QUEUES staying inert."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from soniq import Soniq, SoniqError
from soniq.errors import INVALID_ARGUMENT
from tests.helpers import wait_for

GRACE_LOG = "running job(s) to finish"


async def test_stop_gives_a_running_job_the_shutdown_timeout_to_finish(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    async with Soniq(database_url=database_url, shutdown_timeout=30) as app:

        @app.job()
        async def patient() -> str:
            started.set()
            await release.wait()
            return "finished"

        job_id = await app.enqueue(patient)
        await app.ensure_initialized()
        worker = app.worker()
        with caplog.at_level(logging.INFO, logger="soniq.worker"):
            task = asyncio.create_task(worker.run())
            await asyncio.wait_for(started.wait(), 10)
            worker.stop()
            await wait_for(lambda: GRACE_LOG in caplog.text, message="the grace to begin")
            job = await app.get_job(job_id)
            assert job is not None and job["status"] == "processing"  # not interrupted
            release.set()
            assert await asyncio.wait_for(task, 10) is True
        assert await app.get_result(job_id) == "finished"
        job = await app.get_job(job_id)
        assert job is not None and (job["status"], job["attempts"]) == ("done", 1)
    assert "waiting up to 30s for 1 running job(s) to finish" in caplog.text


async def test_stop_timeout_overrides_the_setting(database_url: str) -> None:
    started = asyncio.Event()
    async with Soniq(database_url=database_url, shutdown_timeout=3600) as app:

        @app.job()
        async def stuck() -> None:
            started.set()
            await asyncio.sleep(3600)

        job_id = await app.enqueue(stuck)
        await app.ensure_initialized()
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 10)
        worker.stop(timeout=0.2)
        await asyncio.wait_for(task, 10)  # long before the hour
        job = await app.get_job(job_id)
        assert job is not None and (job["status"], job["attempts"]) == ("queued", 0)


async def test_cancelling_the_run_stops_at_once_without_grace(database_url: str) -> None:
    started = asyncio.Event()
    async with Soniq(database_url=database_url, shutdown_timeout=3600) as app:

        @app.job()
        async def stuck() -> None:
            started.set()
            await asyncio.sleep(3600)

        job_id = await app.enqueue(stuck)
        task = asyncio.create_task(app.run_worker())
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        job = await app.get_job(job_id)
        assert job is not None and (job["status"], job["attempts"]) == ("queued", 0)


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan"), "soon", True])
async def test_stop_rejects_a_bad_timeout(app: Soniq, bad: object) -> None:
    worker = app.worker()
    with pytest.raises(SoniqError) as info:
        worker.stop(timeout=bad)  # type: ignore[arg-type]
    assert info.value.code == INVALID_ARGUMENT and "timeout" in info.value.message


async def test_soniq_queues_setting_does_not_narrow_run_worker(database_url: str) -> None:
    async with Soniq(database_url=database_url, queues=("only-this",)) as app:

        @app.job()
        async def anywhere(n: int) -> int:
            return n

        ids = [
            await app.enqueue(anywhere, n=1),
            await app.enqueue(anywhere, n=2, queue="reports"),
            await app.enqueue(anywhere, n=3, queue="only-this"),
        ]
        assert app.settings.queues == ("only-this",)
        await app.run_worker(run_once=True)  # no queues=: every queue
        assert [await app.get_result(i) for i in ids] == [1, 2, 3]
        # queues= still narrows.
        other = await app.enqueue(anywhere, n=4, queue="reports")
        await app.run_worker(run_once=True, queues=["only-this"])
        job = await app.get_job(other)
        assert job is not None and job["status"] == "queued"


async def test_a_shutdown_during_a_slow_metrics_sink_still_records_the_outcome(
    database_url: str,
) -> None:
    """The sink's start call is interrupted by the end of the grace: the job is put
    back (not left 'processing' under a worker that has gone) with its attempt kept."""
    in_sink = asyncio.Event()

    class SlowSink:
        async def record_job_start(self, **_: object) -> None:
            in_sink.set()
            await asyncio.sleep(60)

        async def record_job_end(self, **_: object) -> None:
            return None

    async with Soniq(database_url=database_url, metrics_sink=SlowSink()) as app:

        @app.job()
        async def quick() -> str:
            return "done"

        job_id = await app.enqueue(quick)
        await app.ensure_initialized()
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(in_sink.wait(), 10)
        worker.stop(timeout=0.1)
        await asyncio.wait_for(task, 20)
        job = await app.get_job(job_id)
        assert job is not None
        assert job["status"] == "queued"
        assert job["attempts"] == 0


async def test_a_cancel_that_lands_while_waiting_for_a_pooled_connection_is_kept(
    database_url: str,
) -> None:
    """psycopg_pool waits for a free connection with asyncio.wait_for, which before
    Python 3.12 can drop a cancellation landing as the wait ends: the task then ran on
    as if never cancelled (a cancelled worker kept working). Tasks that queue for a
    two-connection pool are cancelled at every point of their wait: none may return
    as if it had not been."""
    async with Soniq(database_url=database_url, pool_min_size=2, pool_max_size=2) as app:
        await app.ensure_initialized()
        backend = app.backend

        async def borrow() -> int:
            async with backend.acquire() as conn:
                await conn.execute("SELECT 1")
            task = asyncio.current_task()
            return task.cancelling() if task is not None and sys.version_info >= (3, 11) else 0

        dropped = 0
        for round_ in range(600):
            tasks = [asyncio.create_task(borrow()) for _ in range(4)]
            for _ in range(round_ % 7):
                await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, int) and outcome > 0:
                    dropped += 1
        assert dropped == 0
