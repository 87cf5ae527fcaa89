"""Waiting for jobs that a ``soniq worker`` process runs, including one killed with
SIGKILL mid-job: the producer's waits follow the job through stale-worker recovery to
the worker that finishes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from soniq import Soniq, task_ref
from soniq.waiting.hub import APPLICATION_NAME
from tests.acceptance.processes import SoniqProcess, start_soniq, until

JOBS_MODULE = """
import asyncio
import os
from pathlib import Path

from soniq import JobContext, Soniq

app = Soniq()
MARKS = Path(os.environ["JOBS_MARK_DIR"])


@app.job(name="w.value")
async def value(n: int) -> int:
    return n


@app.job(name="w.gate", retries=1)
async def gate(ctx: JobContext) -> str:
    (MARKS / f"started-{ctx.attempt}").touch()
    while not (MARKS / "open").exists():
        await asyncio.sleep(0.02)
    return f"through on attempt {ctx.attempt}"
"""

ENV = {
    "SONIQ_HEARTBEAT_INTERVAL": "0.5",
    "SONIQ_HEARTBEAT_TIMEOUT": "3",
    "SONIQ_CLEANUP_INTERVAL": "1",
    "SONIQ_POLL_INTERVAL": "0.5",
    "SONIQ_JOBS_MODULES": "wait_jobs",
    "SONIQ_LOG_LEVEL": "INFO",
}


class Workers:
    """``soniq worker`` processes on the jobs module in ``tmp_path``."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        (tmp_path / "wait_jobs.py").write_text(JOBS_MODULE)
        self.env = {**ENV, "SONIQ_DATABASE_URL": database_url, "JOBS_MARK_DIR": str(self.marks)}
        self.started: list[SoniqProcess] = []

    def start(self) -> SoniqProcess:
        name = f"worker{len(self.started) + 1}"
        worker = start_soniq(self.tmp_path, name, ["worker", "--concurrency", "8"], self.env)
        self.started.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.started:
            worker.kill()


@pytest.fixture
def workers(tmp_path: Path, database_url: str) -> Iterator[Workers]:
    made = Workers(tmp_path, database_url)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
async def producer(database_url: str) -> AsyncIterator[Soniq]:
    app = Soniq(database_url=database_url)
    try:
        yield app
    finally:
        await app.close()


async def listeners(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            (APPLICATION_NAME,),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def test_waits_for_jobs_of_a_worker_process(
    workers: Workers, producer: Soniq, database_url: str
) -> None:
    value = task_ref("w.value")
    worker = workers.start()
    await worker.wait_log("worker", timeout=20)

    async def enqueue_and_wait(n: int) -> int:
        job_id = await producer.enqueue(value, args={"n": n}, watch=n % 2 == 0)
        result: int = await producer.handle(job_id).result(timeout=20)
        return result

    results = await asyncio.gather(*(enqueue_and_wait(n) for n in range(200)))
    assert results == list(range(200))
    assert await listeners(database_url) == 1  # the producer's, whatever the number of waits


async def test_a_wait_follows_its_job_through_a_killed_worker(
    workers: Workers, producer: Soniq
) -> None:
    gate = task_ref("w.gate")
    first = workers.start()
    job_id = await producer.enqueue(gate, watch=True)
    kinds: list[str] = []

    async def follow() -> None:
        async for event in producer.handle(job_id).events():
            kinds.append(event.kind)

    following = asyncio.create_task(follow())
    waiting = asyncio.create_task(producer.handle(job_id).result(timeout=60))
    await until(lambda: (workers.marks / "started-1").exists(), 20, "attempt 1", [first])
    first.proc.kill()  # SIGKILL: no requeue, no acknowledgement, a stale worker row
    await first.wait_exit(10)
    second = workers.start()
    # Stale-worker recovery (heartbeat timeout 3 s) requeues the job, and tells its
    # waiters; the second worker runs attempt 2.
    await until(lambda: (workers.marks / "started-2").exists(), 30, "attempt 2", [second])
    (workers.marks / "open").touch()
    assert await waiting == "through on attempt 2"
    await asyncio.wait_for(following, 20)
    assert kinds[-1] == "done"
    assert "retrying" in kinds
