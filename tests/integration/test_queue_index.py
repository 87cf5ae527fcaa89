"""The optional index by queue (app.queues.add_index, soniq queues index, soniq setup
--queue-index): a worker that serves only some queues claims from each queue's part
of it, on real PostgreSQL, through the public API and the CLI. The plans (a backlog
in another queue is not walked) are in test_big_table_plans."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import psycopg
import pytest
from click.testing import CliRunner, Result

import soniq_sync
from soniq import JobContext, Soniq, SoniqError
from soniq.cli import main
from soniq.errors import NOT_SUPPORTED_BY_BACKEND
from tests.helpers import wait_for


def soniq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def index_scans(url: str) -> int:
    """How many scans the statistics count on the index by queue (0 if it is absent)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT COALESCE(sum(idx_scan), 0) FROM pg_stat_user_indexes"
            " WHERE indexrelname = 'soniq_jobs_queue_claim_idx'"
        ).fetchone()
    return int(row[0]) if row else 0


async def test_add_and_drop_the_index(app: Soniq) -> None:
    await app.ensure_initialized()
    assert await app.queues.has_index() is False
    assert await app.queues.add_index() is True
    assert await app.queues.has_index() is True
    assert await app.queues.add_index() is False  # already there
    assert await app.queues.drop_index() is True
    assert await app.queues.has_index() is False
    assert await app.queues.drop_index() is False


async def test_an_invalid_index_left_by_a_failed_build_is_rebuilt(app: Soniq) -> None:
    await app.ensure_initialized()
    url = app.settings.database_url
    assert url is not None
    assert await app.queues.add_index() is True
    with psycopg.connect(url, autocommit=True) as conn:  # what a failed build leaves
        conn.execute(
            "UPDATE pg_index SET indisvalid = false"
            " WHERE indexrelid = 'soniq_jobs_queue_claim_idx'::regclass"
        )
    assert await app.queues.has_index() is False
    assert await app.queues.add_index() is True
    assert await app.queues.has_index() is True


async def test_a_worker_of_some_queues_claims_by_queue_in_priority_order(app: Soniq) -> None:
    ran: list[tuple[str, int]] = []

    @app.job()
    async def tag(ctx: JobContext, n: int) -> None:
        ran.append((ctx.queue, n))

    await app.ensure_initialized()
    await app.queues.add_index()
    url = app.settings.database_url
    assert url is not None
    before = index_scans(url)
    await app.enqueue_many(tag, [{"n": i} for i in range(200)], queue="big")
    for n, priority in ((1, 50), (2, 10), (3, 90)):
        await app.enqueue(tag, queue="small", priority=priority, n=n)
    await app.enqueue(tag, queue="other", n=0)
    await app.run_worker(concurrency=1, run_once=True, queues=["small", "other"])
    # Only its queues, and within them by priority (then age) as with the global claim.
    assert ran == [("small", 2), ("small", 1), ("small", 3), ("other", 0)]
    await wait_for(lambda: index_scans(url) > before, 10, message="the index by queue used")


async def test_the_claim_by_queue_holds_every_pause(app: Soniq) -> None:
    ran: Counter[str] = Counter()

    @app.job()
    async def noop(ctx: JobContext) -> None:
        ran[ctx.queue] += 1

    await app.ensure_initialized()
    await app.queues.add_index()
    for queue in ("a", "b", "c"):
        await app.enqueue_many(noop, [{}] * 5, queue=queue)
    await app.queues.pause("a", wait=False)
    # A worker of every queue, with one paused: it claims by queue, all but "a".
    await app.run_worker(concurrency=2, run_once=True)
    assert ran == {"b": 5, "c": 5}
    await app.queues.pause("*", wait=False)
    await app.enqueue_many(noop, [{}] * 3, queue="c")
    await app.run_worker(concurrency=2, run_once=True, queues=["b", "c"])
    assert ran == {"b": 5, "c": 5}  # '*' holds everything
    await app.queues.resume("*")
    await app.queues.resume("a")
    await app.run_worker(concurrency=2, run_once=True)
    assert ran == {"a": 5, "b": 5, "c": 8}


async def test_a_running_worker_learns_of_a_new_index_and_survives_its_drop(
    database_url: str,
) -> None:
    async with Soniq(database_url=database_url, poll_interval=60) as app:
        ran: list[int] = []

        @app.job()
        async def noop(n: int) -> None:
            ran.append(n)

        await app.ensure_initialized()
        worker = app.worker()
        task = asyncio.create_task(worker.run(concurrency=2, queues=["mine"]))
        try:
            await wait_for(lambda: worker.listener is not None and worker.listener.mode == "listen")
            await app.queues.add_index()  # announced on the control channel
            # The worker reads the index's state with the pauses: once it confirms a
            # pause (of a queue it does not serve), it knows of the index.
            await app.queues.pause("unrelated", wait=True, timeout=10)
            await app.enqueue(noop, queue="mine", n=1)
            await wait_for(lambda: ran == [1], 10, message="the first job")
            # Statistics reach the view within the server's idle flush interval.
            await wait_for(lambda: index_scans(database_url) > 0, 20, message="index used")
            await app.queues.drop_index()
            await app.enqueue(noop, queue="mine", n=2)  # claims go on without it
            await wait_for(lambda: ran == [1, 2], 10, message="the job after the drop")
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)


def test_the_blocking_twin_adds_and_drops_the_index(sync_app: soniq_sync.Soniq) -> None:
    sync_app.ensure_initialized()
    assert sync_app.queues.add_index() is True
    assert sync_app.queues.has_index() is True
    assert sync_app.queues.drop_index() is True


def test_status_shows_the_index_and_hints_at_it_while_a_queue_is_paused(
    database_url: str,
) -> None:
    url = ["--database-url", database_url]
    assert soniq("setup", *url).exit_code == 0
    assert json.loads(soniq("status", "--json", *url).output)["queue_index"] is False
    assert "No index by queue" not in soniq("status", *url).output  # nothing paused
    assert soniq("queues", "pause", "emails", "--no-wait", *url).exit_code == 0
    assert "No index by queue" in soniq("status", *url).output
    assert soniq("queues", "index", *url).exit_code == 0
    assert json.loads(soniq("status", "--json", *url).output)["queue_index"] is True
    assert "No index by queue" not in soniq("status", *url).output


def test_cli_builds_and_drops_the_index(database_url: str) -> None:
    built = soniq("setup", "--queue-index", "--database-url", database_url)
    assert built.exit_code == 0, built.output
    assert "Built the index by queue." in built.output
    again = soniq("queues", "index", "--database-url", database_url)
    assert "already there" in again.output
    dropped = soniq("queues", "index", "--drop", "--json", "--database-url", database_url)
    assert json.loads(dropped.output) == {"queue_index": False, "changed": True}
    built = soniq("queues", "index", "--json", "--database-url", database_url)
    assert json.loads(built.output) == {"queue_index": True, "changed": True}


@pytest.mark.parametrize("call", ["add_index", "drop_index", "has_index"])
async def test_a_local_backend_refuses_the_index(tmp_path: object, call: str) -> None:
    async with Soniq(database_url=f"sqlite:///{tmp_path}/q.db") as app:
        with pytest.raises(SoniqError) as refused:
            await getattr(app.queues, call)()
    assert refused.value.code == NOT_SUPPORTED_BY_BACKEND
    assert "PostgreSQL" in str(refused.value)
