"""Completion in the handler's transaction across real ``soniq worker`` processes.

Each handler below writes one business row (``orders``) on the same connection and in
the same transaction as its ``ctx.complete_sync``. Whatever kills or stops a worker
around the commit, the end state must be one of the two the guarantee allows: the job
done with exactly one business row, or the job retried with none from the failed
attempt. ``marks`` (written on a connection of their own, in autocommit) tell the test
where each attempt is, so that every wait is on a condition with a deadline.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from soniq import Soniq
from tests.acceptance.processes import SoniqProcess
from tests.acceptance.test_worker_process import Spawner

pytestmark = pytest.mark.timeout(180)

TX_MODULE = '''
import os
import signal
import time

import psycopg

from soniq import JobContext, Soniq

app = Soniq()
URL = os.environ["SONIQ_DATABASE_URL"]


def mark(ctx, what):
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO marks (job_id, attempt, what, pid) VALUES (%s, %s, %s, %s)",
            (ctx.job_id, ctx.attempt, what, os.getpid()),
        )


def order(conn, ctx, order_id):
    conn.execute(
        "INSERT INTO orders (order_id, attempt, pid) VALUES (%s, %s, %s)",
        (order_id, ctx.attempt, os.getpid()),
    )


def wait_to_be_stopped(ctx):
    """On a first attempt, give the test time to SIGSTOP this process (wall-clock
    time passes while it is stopped, so it goes on at once when resumed)."""
    mark(ctx, "waiting")
    if ctx.attempt == 1:
        time.sleep(8)


@app.job(name="tx.kill_before_commit")
def kill_before_commit(ctx: JobContext, order_id: int) -> None:
    with psycopg.connect(URL) as conn, conn.transaction():
        ctx.complete_sync(conn)
        order(conn, ctx, order_id)
        if ctx.attempt == 1:
            os.kill(os.getpid(), signal.SIGKILL)


@app.job(name="tx.kill_after_commit")
def kill_after_commit(ctx: JobContext, order_id: int) -> None:
    with psycopg.connect(URL) as conn, conn.transaction():
        ctx.complete_sync(conn)
        order(conn, ctx, order_id)
    mark(ctx, "committed")
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)


@app.job(name="tx.fence_last")
def fence_last(ctx: JobContext, order_id: int) -> None:
    with psycopg.connect(URL) as conn, conn.transaction():
        order(conn, ctx, order_id)
        wait_to_be_stopped(ctx)
        try:
            ctx.complete_sync(conn)
        except Exception as exc:
            mark(ctx, getattr(exc, "code", repr(exc)))
            raise


@app.job(name="tx.fence_first")
def fence_first(ctx: JobContext, order_id: int) -> None:
    with psycopg.connect(URL, application_name=f"fence-first-{ctx.attempt}") as conn:
        with conn.transaction():
            ctx.complete_sync(conn)
            order(conn, ctx, order_id)
            wait_to_be_stopped(ctx)
'''

TABLES = """
CREATE TABLE orders (order_id int NOT NULL, attempt int NOT NULL, pid int NOT NULL);
CREATE TABLE marks (job_id uuid, attempt int, what text, pid int);
"""


class TxSpawner(Spawner):
    """A :class:`Spawner` whose workers import :data:`TX_MODULE`."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        (tmp_path / "tx_jobs.py").write_text(TX_MODULE)

    def start(
        self, database_url: str, *args: str, global_args: Sequence[str] = (), **env: str
    ) -> SoniqProcess:
        env = {"SONIQ_JOBS_MODULES": "tx_jobs", **env}
        return super().start(database_url, *args, global_args=global_args, **env)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[TxSpawner]:
    spawn = TxSpawner(tmp_path)
    try:
        yield spawn
    finally:
        spawn.close()


@pytest.fixture
async def url(client: Soniq, database_url: str) -> str:
    await client.ensure_initialized()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TABLES)
    return database_url


def rows(url: str, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def job_state(url: str, job_id: str) -> tuple[str, int] | None:
    found = rows(url, "SELECT status, attempts FROM soniq_jobs WHERE id = %s", (job_id,))
    return (found[0][0], found[0][1]) if found else None


def orders(url: str, order_id: int) -> list[tuple[int, int]]:
    """(attempt, pid) of each committed business row of ``order_id``."""
    return [
        (a, p)
        for a, p in rows(
            url, "SELECT attempt, pid FROM orders WHERE order_id = %s ORDER BY 1", (order_id,)
        )
    ]


def marked(url: str, job_id: str, what: str, attempt: int | None = None) -> bool:
    query = "SELECT count(*) FROM marks WHERE job_id = %s AND what = %s"
    params: list[Any] = [job_id, what]
    if attempt is not None:
        query += " AND attempt = %s"
        params.append(attempt)
    return bool(rows(url, query, params)[0][0])


async def test_a_worker_killed_before_the_commit_leaves_no_effect_and_the_job_reruns(
    client: Soniq, url: str, fleet: TxSpawner
) -> None:
    job_id = await client.enqueue("tx.kill_before_commit", args={"order_id": 1})
    doomed = fleet.start(url)
    assert await doomed.wait_exit(30) == -signal.SIGKILL
    assert orders(url, 1) == []  # the server rolled the dead session's transaction back
    assert job_state(url, job_id) == ("processing", 1)
    survivor = fleet.start(url)
    await fleet.until(lambda: job_state(url, job_id) == ("done", 2), 30, "the rerun")
    assert [attempt for attempt, _ in orders(url, 1)] == [2]
    assert survivor.alive(), fleet.describe()


async def test_a_worker_killed_after_the_commit_leaves_the_job_done_never_rerun(
    client: Soniq, url: str, fleet: TxSpawner
) -> None:
    job_id = await client.enqueue("tx.kill_after_commit", args={"order_id": 2})
    doomed = fleet.start(url)
    assert await doomed.wait_exit(30) == -signal.SIGKILL
    assert marked(url, job_id, "committed")
    survivor = fleet.start(url)
    # The dead worker is recovered; its job is done, so there is nothing to requeue.
    await survivor.wait_log("recovered 1 stale worker(s): 0 job(s) requeued", timeout=30)
    assert job_state(url, job_id) == ("done", 1)
    assert [attempt for attempt, _ in orders(url, 2)] == [1]


async def test_a_zombie_that_reaches_the_fence_last_is_refused_and_writes_nothing(
    client: Soniq, url: str, fleet: TxSpawner
) -> None:
    job_id = await client.enqueue("tx.fence_last", args={"order_id": 3})
    a = fleet.start(url)
    await fleet.until(lambda: marked(url, job_id, "waiting", 1), 30, "A's business write")
    a.proc.send_signal(signal.SIGSTOP)
    try:
        b = fleet.start(url)
        await fleet.until(lambda: job_state(url, job_id) == ("done", 2), 30, "B's rerun")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    await fleet.until(
        lambda: marked(url, job_id, "SONIQ_JOB_LEASE_LOST", 1), 30, "A to be fenced out"
    )
    assert [(attempt, pid) for attempt, pid in orders(url, 3)] == [(2, b.proc.pid)]
    assert job_state(url, job_id) == ("done", 2)
    assert a.alive() and b.alive(), fleet.describe()


async def test_a_zombie_that_took_the_fence_first_keeps_the_job_from_recovery(
    client: Soniq, url: str, fleet: TxSpawner
) -> None:
    job_id = await client.enqueue("tx.fence_first", args={"order_id": 4})
    a = fleet.start(url)
    await fleet.until(lambda: marked(url, job_id, "waiting", 1), 30, "A to hold the fence")
    a.proc.send_signal(signal.SIGSTOP)
    try:
        b = fleet.start(url)
        # B declares A dead, but recovery skips the row A's transaction has locked.
        await b.wait_log("recovered 1 stale worker(s): 0 job(s) requeued", timeout=30)
        assert job_state(url, job_id) == ("processing", 1)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    await fleet.until(lambda: job_state(url, job_id) == ("done", 1), 30, "A's commit")
    assert [(attempt, pid) for attempt, pid in orders(url, 4)] == [(1, a.proc.pid)]
    assert not marked(url, job_id, "waiting", 2)  # B never ran it


async def test_a_zombie_whose_session_is_ended_loses_its_lock_and_the_job_reruns_once(
    client: Soniq, url: str, fleet: TxSpawner
) -> None:
    job_id = await client.enqueue("tx.fence_first", args={"order_id": 5})
    a = fleet.start(url)
    await fleet.until(lambda: marked(url, job_id, "waiting", 1), 30, "A to hold the fence")
    a.proc.send_signal(signal.SIGSTOP)
    try:
        ended = rows(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'fence-first-1'",
        )
        assert ended == [(True,)]
        b = fleet.start(url)
        await fleet.until(lambda: job_state(url, job_id) == ("done", 2), 30, "B's rerun")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert [(attempt, pid) for attempt, pid in orders(url, 5)] == [(2, b.proc.pid)]
    # A wakes to a dead connection: its attempt fails, and its outcome is fenced out.
    await a.wait_log("was taken over by another worker", timeout=30)
    assert job_state(url, job_id) == ("done", 2)
    assert [(attempt, pid) for attempt, pid in orders(url, 5)] == [(2, b.proc.pid)]
