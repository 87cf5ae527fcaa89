"""Retention against real PostgreSQL: the result TTL, app.prune() and the workers' sweep.

Ages are made with SQL (``finished_at`` moved into the past) rather than by waiting.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import soniq_sync
from soniq import Soniq
from soniq.errors import INVALID_DURATION, RETENTION_OFF, SoniqError
from soniq.ops.pruning import SWEEP_LOCK_KEY, Pruner
from tests.helpers import wait_for


async def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


async def add_jobs(
    url: str, n: int, status: str, finished_ago: str | None, *, queue: str = "default"
) -> list[str]:
    """``n`` rows in ``status``, finished ``finished_ago`` (an interval) ago; their ids."""
    rows = await sql(
        url,
        """INSERT INTO soniq_jobs (id, job_name, queue, status, attempts, finished_at, result)
           SELECT gen_random_uuid(), 'r.job', %s, %s, 1,
                  now() - %s::interval, CASE WHEN %s = 'done' THEN '1'::jsonb END
           FROM generate_series(1, %s)
           RETURNING id::text""",
        queue,
        status,
        finished_ago,
        status,
        n,
    )
    return [r[0] for r in rows]


async def count(url: str, where: str = "true") -> int:
    rows = await sql(url, f"SELECT count(*) FROM soniq_jobs WHERE {where}")
    return int(rows[0][0])


async def remaining(url: str, ids: list[str]) -> int:
    rows = await sql(url, "SELECT count(*) FROM soniq_jobs WHERE id = ANY(%s::uuid[])", ids)
    return int(rows[0][0])


async def add_dead_letter(url: str) -> None:
    await sql(
        url,
        """INSERT INTO soniq_dead_letter_jobs (id, job_name, args, queue, priority, attempts,
               max_attempts, reason, original_created_at, dead_lettered_at)
           VALUES (gen_random_uuid(), 'r.job', '{}', 'default', 100, 4, 4, 'boom',
                   now() - interval '30 days', now() - interval '30 days')""",
    )


# -- the result TTL ------------------------------------------------------------------


async def test_a_result_is_readable_for_the_ttl_then_gone(database_url: str) -> None:
    async with Soniq(database_url=database_url, result_ttl=60) as app:

        @app.job()
        async def answer() -> int:
            return 42

        job_id = await app.enqueue(answer)
        assert await app.get_result(job_id) is None  # not run yet
        await app.run_worker(run_once=True)
        assert await app.get_result(job_id) == 42
        await sql(
            database_url,
            "UPDATE soniq_jobs SET finished_at = now() - interval '59 seconds' WHERE id = %s",
            job_id,
        )
        assert await app.get_result(job_id) == 42  # still inside the TTL
        await sql(
            database_url,
            "UPDATE soniq_jobs SET finished_at = now() - interval '61 seconds' WHERE id = %s",
            job_id,
        )
        assert await app.get_result(job_id) is None
        # The row itself is still there until it is pruned.
        job = await app.get_job(job_id)
        assert job is not None and job["status"] == "done"


async def test_a_zero_ttl_keeps_no_result(database_url: str) -> None:
    async with Soniq(database_url=database_url, result_ttl=0) as app:

        @app.job()
        async def answer() -> int:
            return 42

        job_id = await app.enqueue(answer)
        await app.run_worker(run_once=True)
        assert await app.get_result(job_id) is None


def test_the_blocking_app_applies_the_ttl(database_url: str) -> None:
    with soniq_sync.Soniq(database_url=database_url, result_ttl=60) as app:
        with psycopg.connect(database_url, autocommit=True) as conn:
            job_id = str(uuid.uuid4())
            conn.execute(
                """INSERT INTO soniq_jobs (id, job_name, status, finished_at, result)
                   VALUES (%s, 'r.job', 'done', now() - interval '30 seconds', '"kept"')""",
                (job_id,),
            )
            assert app.get_result(job_id) == "kept"
            conn.execute(
                "UPDATE soniq_jobs SET finished_at = now() - interval '2 minutes' WHERE id = %s",
                (job_id,),
            )
        assert app.get_result(job_id) is None


# -- app.prune() ---------------------------------------------------------------------


async def test_prune_deletes_only_old_finished_rows(database_url: str) -> None:
    old_done = await add_jobs(database_url, 5, "done", "2 hours")
    old_cancelled = await add_jobs(database_url, 3, "cancelled", "2 hours")
    young_done = await add_jobs(database_url, 4, "done", "30 minutes")
    # Queued and processing rows are never pruned, whatever their finished_at says.
    queued = await add_jobs(database_url, 2, "queued", "5 days")
    processing = await add_jobs(database_url, 2, "processing", "5 days")
    await add_dead_letter(database_url)
    async with Soniq(database_url=database_url) as app:  # retention 3600 s
        assert await app.prune() == 8
        assert await remaining(database_url, old_done + old_cancelled) == 0
        assert await remaining(database_url, young_done + queued + processing) == 8
        assert await sql(database_url, "SELECT count(*) FROM soniq_dead_letter_jobs") == [(1,)]
        assert await app.prune() == 0
        # A shorter age on the call takes the younger ones too.
        assert await app.prune(older_than=timedelta(minutes=10)) == 4
        assert await remaining(database_url, queued + processing) == 4


async def test_prune_never_deletes_a_result_younger_than_its_ttl(database_url: str) -> None:
    fresh = await add_jobs(database_url, 3, "done", "2 minutes")
    stale = await add_jobs(database_url, 2, "done", "6 minutes")
    async with Soniq(database_url=database_url, result_ttl=300, finished_job_retention=0) as app:
        assert await app.prune() == 2  # retention 0: as soon as the TTL allows
        assert await app.prune(older_than=0) == 0
        assert await remaining(database_url, fresh) == 3
        assert await remaining(database_url, stale) == 0


async def test_prune_works_through_many_batches(database_url: str) -> None:
    await add_jobs(database_url, 2500, "done", "2 hours")  # three DELETEs of up to 1,000
    keep = await add_jobs(database_url, 10, "done", "1 minute")
    async with Soniq(database_url=database_url) as app:
        assert await app.prune() == 2500
    assert await count(database_url) == 10
    assert await remaining(database_url, keep) == 10


@pytest.mark.parametrize(
    ("older_than", "code"),
    [(-1, INVALID_DURATION), ("2h", INVALID_DURATION), (float("nan"), INVALID_DURATION)],
)
async def test_prune_rejects_bad_ages_and_deletes_nothing(
    database_url: str, older_than: object, code: str
) -> None:
    await add_jobs(database_url, 3, "done", "2 hours")
    async with Soniq(database_url=database_url) as app:
        with pytest.raises(SoniqError) as info:
            await app.prune(older_than=older_than)  # type: ignore[arg-type]
        assert info.value.code == code
    assert await count(database_url) == 3


async def test_prune_with_retention_off_needs_an_age(database_url: str) -> None:
    await add_jobs(database_url, 3, "done", "400 days")
    async with Soniq(database_url=database_url, finished_job_retention=None) as app:
        with pytest.raises(SoniqError) as info:
            await app.prune()
        assert info.value.code == RETENTION_OFF
        assert await count(database_url) == 3
        assert await app.prune(older_than=timedelta(days=1)) == 3


def test_the_blocking_app_prunes(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO soniq_jobs (id, job_name, status, finished_at)
               SELECT gen_random_uuid(), 'r.job', 'done', now() - interval '2 hours'
               FROM generate_series(1, 1200)"""
        )
    with soniq_sync.Soniq(database_url=database_url) as app:
        assert app.prune() == 1200
        with pytest.raises(SoniqError) as info:
            app.prune(older_than=-5)
        assert info.value.code == INVALID_DURATION


async def test_two_prunes_at_once_split_the_rows(database_url: str) -> None:
    await add_jobs(database_url, 3000, "done", "2 hours")
    async with (
        Soniq(database_url=database_url) as one,
        Soniq(database_url=database_url) as two,
    ):
        counts = await asyncio.gather(one.prune(), two.prune())
    assert sum(counts) == 3000
    assert await count(database_url) == 0


# -- the workers' sweep --------------------------------------------------------------


async def test_a_sweep_deletes_oldest_first_in_capped_batches(database_url: str) -> None:
    oldest = await add_jobs(database_url, 20, "done", "3 hours")
    older = await add_jobs(database_url, 15, "cancelled", "2 hours")
    young = await add_jobs(database_url, 5, "done", "10 minutes")
    async with Soniq(database_url=database_url) as app:
        await app.ensure_initialized()
        pruner = Pruner(app.store, app.settings, batch_size=10, max_batches=2)
        assert await pruner.sweep() == 20  # two full batches: the cap
        assert pruner.backlog is True
        assert await remaining(database_url, oldest) == 0
        assert await remaining(database_url, older) == 15
        assert await pruner.sweep() == 15  # 10 + 5: the short batch ends the run
        assert pruner.backlog is False
        assert await remaining(database_url, young) == 5


async def test_only_one_worker_sweeps_at_a_time(database_url: str) -> None:
    await add_jobs(database_url, 30, "done", "2 hours")
    async with Soniq(database_url=database_url) as app:
        await app.ensure_initialized()
        pruner = Pruner(app.store, app.settings, batch_size=10)
        # Another worker's sweep holds the lock: this one skips its turn.
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as other:
            await other.execute("SELECT pg_advisory_lock(%s)", (SWEEP_LOCK_KEY,))
            assert await pruner.sweep() is None
            assert await count(database_url) == 30
            await other.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK_KEY,))
        assert await pruner.sweep() == 30
        # The lock was released with the run: the next run gets it again.
        assert await pruner.sweep() == 0
        locks = await sql(
            database_url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
            SWEEP_LOCK_KEY & 0xFFFFFFFF,
        )
        assert locks == [(0,)]


async def test_two_sweepers_at_once_delete_each_row_once(database_url: str) -> None:
    await add_jobs(database_url, 2000, "done", "2 hours")
    async with (
        Soniq(database_url=database_url) as one,
        Soniq(database_url=database_url) as two,
    ):
        await one.ensure_initialized()
        await two.ensure_initialized()
        sweepers = [
            Pruner(one.store, one.settings, batch_size=100),
            Pruner(two.store, two.settings, batch_size=100),
        ]
        results = await asyncio.gather(*(p.sweep() for p in sweepers))
    assert sum(r or 0 for r in results) == 2000
    assert await count(database_url) == 0


async def test_a_running_worker_sweeps_old_finished_jobs(database_url: str) -> None:
    settings = {"finished_job_retention": 0, "result_ttl": 0, "prune_interval": 0.1}
    old = await add_jobs(database_url, 50, "done", "1 hour")
    waiting = await add_jobs(database_url, 3, "queued", "1 hour")
    await sql(
        database_url,
        "UPDATE soniq_jobs SET scheduled_at = now() + interval '1 day' WHERE id = ANY(%s::uuid[])",
        waiting,
    )
    async with Soniq(database_url=database_url, **settings) as app:

        @app.job()
        async def noop() -> None:
            return None

        await app.ensure_initialized()
        worker = app.worker()
        task = asyncio.create_task(worker.run(concurrency=2))
        try:
            await wait_for(
                lambda: _is_zero(remaining(database_url, old)), 10, message="old rows gone"
            )
            # Jobs the worker finishes now go too, once the next sweep comes round.
            ran = [await app.enqueue(noop) for _ in range(5)]
            await wait_for(
                lambda: _is_zero(remaining(database_url, ran)), 10, message="new rows gone"
            )
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
    assert await remaining(database_url, waiting) == 3


@pytest.mark.parametrize(
    "settings",
    [
        {"prune_interval": 0, "finished_job_retention": 0},
        {"prune_interval": 0.1, "finished_job_retention": None},
    ],
)
async def test_the_sweep_can_be_turned_off(database_url: str, settings: dict[str, Any]) -> None:
    old = await add_jobs(database_url, 5, "done", "400 days")
    async with Soniq(database_url=database_url, result_ttl=0, **settings) as app:
        await app.ensure_initialized()
        pruner = Pruner(app.store, app.settings)
        assert pruner.enabled is False
        # Returns at once without closing being set: there is nothing to do.
        await asyncio.wait_for(pruner.run(asyncio.Event()), 5)
    assert await remaining(database_url, old) == 5


async def _is_zero(value: Any) -> bool:
    return await value == 0
