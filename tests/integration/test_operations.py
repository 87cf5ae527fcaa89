"""The API behind the operator commands: status(), list_workers(), unregistered_tasks(),
migration_status(), against real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

import soniq_sync
from soniq import Soniq
from soniq.storage.queries import migration_files


async def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


async def add_worker(url: str, *, silent_for: str, queues: list[str] | None = None) -> str:
    worker_id = str(uuid.uuid4())
    await sql(
        url,
        """INSERT INTO soniq_workers (id, hostname, pid, queues, concurrency, started_at,
               last_heartbeat)
           VALUES (%s, 'box', 4242, %s, 8, now() - interval '1 day', now() - %s::interval)""",
        worker_id,
        queues,
        silent_for,
    )
    return worker_id


async def add_job(
    url: str,
    *,
    queue: str = "default",
    status: str = "queued",
    name: str = "ops.job",
    due: str = "0 seconds",
    finished: str | None = None,
    worker_id: str | None = None,
) -> None:
    """A row whose scheduled_at is ``due`` ago (negative: in the future)."""
    await sql(
        url,
        """INSERT INTO soniq_jobs (id, job_name, queue, status, scheduled_at, finished_at,
               worker_id, attempts)
           VALUES (gen_random_uuid(), %s, %s, %s, now() - %s::interval,
                   now() - %s::interval, %s, 1)""",
        name,
        queue,
        status,
        due,
        finished,
        worker_id,
    )


async def add_dead_letter(url: str, *, queue: str = "default", name: str = "ops.job") -> None:
    await sql(
        url,
        """INSERT INTO soniq_dead_letter_jobs (id, job_name, args, queue, priority, attempts,
               max_attempts, reason, original_created_at)
           VALUES (gen_random_uuid(), %s, '{}', %s, 100, 4, 4, 'boom', now())""",
        name,
        queue,
    )


async def add_stats(
    url: str,
    minutes_ago: int,
    *,
    queue: str = "default",
    done: int = 0,
    cancelled: int = 0,
    retried: int = 0,
    dead: int = 0,
) -> None:
    """A soniq_stats row for the minute ``minutes_ago`` whole minutes before this one."""
    await sql(
        url,
        """INSERT INTO soniq_stats (minute, queue, job_name, done, cancelled, retried, dead)
           VALUES (date_trunc('minute', now()) - make_interval(mins => %s), %s, 'ops.job',
                   %s, %s, %s, %s)""",
        minutes_ago,
        queue,
        done,
        cancelled,
        retried,
        dead,
    )


async def test_status_counts_each_queue_and_the_workers(app: Soniq, database_url: str) -> None:
    live = await add_worker(database_url, silent_for="1 second")
    await add_worker(database_url, silent_for="1 hour")  # past the 300 s timeout
    for _ in range(3):
        await add_job(database_url, due="90 seconds")
    await add_job(database_url, due="5 seconds")
    await add_job(database_url, due="-1 hour")  # scheduled for later
    await add_job(database_url, status="processing", worker_id=live)
    # Finished rows are not counted: the figures come from what workers reported.
    await add_job(database_url, status="done", finished="10 seconds")
    await add_job(database_url, status="cancelled", finished="10 seconds")
    await add_stats(database_url, 0, done=1, cancelled=1)
    await add_stats(database_url, 10, done=1, retried=2, dead=1)  # not in the last minute
    await add_stats(database_url, 90, done=5)  # not in the last hour
    await add_dead_letter(database_url)
    await add_dead_letter(database_url, queue="graveyard")  # a queue with only dead letters
    await add_job(database_url, queue="emails", due="-1 minute")

    report = await app.status()
    assert (report["workers"], report["stale_workers"]) == (1, 1)
    queues = {q["queue"]: q for q in report["queues"]}
    assert list(queues) == ["default", "emails", "graveyard"]
    default = queues["default"]
    age = default.pop("oldest_runnable_age")
    assert 90 <= age < 150
    assert default == {
        "queue": "default",
        "runnable": 4,
        "scheduled": 1,
        "processing": 1,
        "done": 2,
        "cancelled": 1,
        "failed": 3,
        "dead_letter": 1,
        "done_last_minute": 1,
    }
    assert queues["emails"]["oldest_runnable_age"] is None  # nothing due yet
    assert (queues["emails"]["scheduled"], queues["emails"]["runnable"]) == (1, 0)
    assert queues["graveyard"]["dead_letter"] == 1
    assert queues["graveyard"]["runnable"] == 0


async def test_finished_figures_weigh_the_minute_the_window_cuts(
    app: Soniq, database_url: str
) -> None:
    async def elapsed() -> float:
        """Seconds since the database's current minute began."""
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute(
                "SELECT EXTRACT(EPOCH FROM now() - date_trunc('minute', now()))::float8"
            )
            row = await cur.fetchone()
        assert row is not None
        return float(row[0])

    for _ in range(3):  # again if a new minute begins meanwhile (the buckets would move)
        await sql(database_url, "DELETE FROM soniq_stats")
        before = await elapsed()
        await add_stats(database_url, 0, done=10)  # the minute under way: all in
        await add_stats(database_url, 1, done=600)  # cut by the last-minute window
        await add_stats(database_url, 2, done=7)  # in the hour, not the minute
        await add_stats(database_url, 60, done=6000)  # cut by the hour window
        await add_stats(database_url, 61, done=10_000)  # out of both
        report = (await app.status())["queues"][0]
        after = await elapsed()
        if after >= before:
            break
    else:
        raise AssertionError("three minute boundaries in a row")
    # The minute a window cuts counts for the part of it inside the window.
    assert 10 + 600 * (1 - after / 60) - 1 <= report["done_last_minute"]
    assert report["done_last_minute"] <= 10 + 600 * (1 - before / 60) + 1
    assert 617 + 6000 * (1 - after / 60) - 1 <= report["done"]
    assert report["done"] <= 617 + 6000 * (1 - before / 60) + 1


async def test_status_of_an_empty_database(app: Soniq) -> None:
    assert await app.status() == {
        "queues": [],
        "workers": 0,
        "stale_workers": 0,
        "paused_queues": [],
        "limit_groups": [],
        "limited_queues": [],
        "queue_index": False,
    }


async def test_get_queue_stats_keeps_its_keys(app: Soniq, database_url: str) -> None:
    assert await app.get_queue_stats() == dict.fromkeys(
        ("total", "queued", "processing", "done", "dead_letter", "cancelled"), 0
    )
    await add_job(database_url, due="-1 hour")
    await add_job(database_url, status="done", finished="1 second")
    assert list(await app.get_queue_stats()) == [
        "total",
        "queued",
        "processing",
        "done",
        "dead_letter",
        "cancelled",
    ]
    assert await app.get_queue_stats_by_queue() == [
        {
            "queue": "default",
            "queued": 1,
            "processing": 0,
            "done": 1,
            "cancelled": 0,
            "dead_letter": 0,
            "total": 2,
        }
    ]


async def test_list_workers(database_url: str) -> None:
    async with Soniq(database_url=database_url, heartbeat_timeout=60) as app:
        busy = await add_worker(database_url, silent_for="2 seconds", queues=["a", "b"])
        quiet = await add_worker(database_url, silent_for="2 minutes")
        await add_job(database_url, status="processing", worker_id=busy)
        await add_job(database_url, status="processing", worker_id=busy)
        await add_job(database_url, status="done", worker_id=busy, finished="1 second")
        rows = {w["id"]: w for w in await app.list_workers()}
    assert set(rows) == {busy, quiet}
    assert rows[busy]["queues"] == ["a", "b"] and rows[quiet]["queues"] is None
    assert (rows[busy]["jobs_in_flight"], rows[quiet]["jobs_in_flight"]) == (2, 0)
    assert (rows[busy]["stale"], rows[quiet]["stale"]) == (False, True)  # timeout 60 s
    assert 2 <= rows[busy]["seconds_since_heartbeat"] < 60
    assert 120 <= rows[quiet]["seconds_since_heartbeat"] < 180
    assert (rows[busy]["hostname"], rows[busy]["pid"], rows[busy]["concurrency"]) == (
        "box",
        4242,
        8,
    )
    assert rows[busy]["started_at"] is not None and rows[busy]["last_heartbeat"] is not None


async def test_unregistered_tasks(database_url: str) -> None:
    async with Soniq(database_url=database_url) as app:

        @app.job(name="ops.known")
        async def known() -> None:
            return None

        await add_job(database_url, name="ops.known")
        await add_dead_letter(database_url, name="ops.known")
        assert await app.unregistered_tasks() == []
        await add_job(database_url, name="ops.renamed")
        # A running job is held by a worker: a claim sets worker_id with the status.
        await add_job(
            database_url, name="ops.renamed", status="processing", worker_id=str(uuid.uuid4())
        )
        await add_job(database_url, name="ops.renamed", status="done", finished="1 second")
        await add_dead_letter(database_url, name="ops.removed")
        # Finished jobs need no handler: they are not drift.
        await add_job(database_url, name="ops.old", status="done", finished="1 second")
        assert await app.unregistered_tasks() == [
            {"job_name": "ops.removed", "queued": 0, "processing": 0, "dead_letter": 1},
            {"job_name": "ops.renamed", "queued": 1, "processing": 1, "dead_letter": 0},
        ]


async def test_migration_status_of_a_migrated_database(app: Soniq, database_url: str) -> None:
    shipped = [version for version, _ in migration_files()]
    report = await app.migration_status()
    assert [m["version"] for m in report["applied"]] == shipped
    assert all(m["applied_at"] is not None for m in report["applied"])
    assert (report["pending"], report["unknown"]) == ([], [])
    await sql(database_url, "INSERT INTO soniq_migrations (version) VALUES ('9999_future')")
    report = await app.migration_status()
    assert report["unknown"] == ["9999_future"]
    assert report["pending"] == []


async def test_migration_status_of_an_empty_database(empty_database_url: str) -> None:
    shipped = [version for version, _ in migration_files()]
    async with Soniq(database_url=empty_database_url) as app:
        assert await app.migration_status() == {
            "applied": [],
            "pending": shipped,
            "unknown": [],
        }
        # A half-applied history: the first migration only.
        await sql(
            empty_database_url,
            """CREATE TABLE soniq_migrations (version text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())""",
        )
        await sql(
            empty_database_url, "INSERT INTO soniq_migrations (version) VALUES (%s)", shipped[0]
        )
        report = await app.migration_status()
    assert [m["version"] for m in report["applied"]] == shipped[:1]
    assert report["pending"] == shipped[1:]


def test_the_blocking_app_has_the_same_inspection(sync_app: soniq_sync.Soniq) -> None:
    assert sync_app.status() == {
        "queues": [],
        "workers": 0,
        "stale_workers": 0,
        "paused_queues": [],
        "limit_groups": [],
        "limited_queues": [],
        "queue_index": False,
    }
    assert sync_app.list_workers() == []
    assert sync_app.unregistered_tasks() == []
    assert sync_app.migration_status()["pending"] == []
