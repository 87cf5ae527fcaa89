"""A fleet-wide pause against real ``soniq worker`` processes: workers that listen,
a worker that only polls, and a worker started after the pause."""

from __future__ import annotations

from datetime import datetime

import psycopg

from soniq import Soniq
from tests.acceptance.test_worker_process import Spawner, job, spawner  # noqa: F401


async def test_no_worker_starts_a_paused_queue_until_it_is_resumed(
    spawner: Spawner,  # noqa: F811
    client: Soniq,
    database_url: str,
) -> None:
    listening = spawner.start(database_url, "--concurrency", "4")
    polling = spawner.start(database_url, "--concurrency", "4", SONIQ_LISTEN_NOTIFY="false")
    for worker in (listening, polling):
        await worker.wait_log("started", timeout=30)
    await client.queues.pause("held", reason="incident")

    held = [
        await client.enqueue("t.record", args={"key": f"held-{i}"}, queue="held") for i in range(4)
    ]
    for i in range(8):
        await client.enqueue("t.record", args={"key": f"free-{i}"}, queue="free")
    await spawner.until(
        lambda: all(spawner.marked(f"done-free-{i}") for i in range(8)),
        30,
        "the other queue's jobs to run on both workers",
    )
    # A worker started after the pause never claims the queue either.
    late = spawner.start(database_url, "--concurrency", "4")
    await late.wait_log("started", timeout=30)
    marker = await client.enqueue("t.record", args={"key": "after-late"}, queue="free")
    await spawner.until(lambda: spawner.marked("done-after-late"), 30, "the marker job")
    assert (await job(client, marker))["status"] == "done"
    for job_id in held:
        row = await job(client, job_id)
        assert (row["status"], row["attempts"]) == ("queued", 0)
    assert not any(spawner.marked(f"done-held-{i}") for i in range(4))

    assert await client.queues.resume("held") is True
    await spawner.until(
        lambda: all(spawner.marked(f"done-held-{i}") for i in range(4)),
        30,
        "the held jobs to run after the resume",
    )
    for job_id in held:
        assert (await job(client, job_id))["attempts"] == 1


async def test_after_pause_returns_no_worker_process_starts_the_queue(
    spawner: Spawner,  # noqa: F811
    client: Soniq,
    database_url: str,
) -> None:
    """The barrier across processes: two draining workers (one listening, one that
    only polls) hold claimed jobs of the queue when it is paused; no handler of the
    queue starts after pause() returns (the handlers write their start on the
    database's clock), the other queue keeps running, and no job runs twice."""
    await client.ensure_initialized()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE starts (id uuid, queue text, at timestamptz)")
    await client.enqueue_many("t.stamp", [{"n": i} for i in range(1500)], queue="busy")
    await client.enqueue_many("t.stamp", [{"n": i} for i in range(300)], queue="other")
    for env in ({}, {"SONIQ_LISTEN_NOTIFY": "false"}):
        spawner.start(database_url, "--concurrency", "8", **env)

    def started(queue: str, after: datetime | None = None) -> int:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM starts WHERE queue = %s"
                " AND (%s::timestamptz IS NULL OR at > %s::timestamptz)",
                (queue, after, after),
            ).fetchone()
        assert row is not None
        return int(row[0])

    await spawner.until(lambda: started("busy") >= 200, 60, "the busy queue to drain")
    await client.queues.pause("busy", wait=True, timeout=20)
    with psycopg.connect(database_url, autocommit=True) as conn:
        (returned,) = conn.execute("SELECT clock_timestamp()").fetchone() or (None,)
    await spawner.until(lambda: started("other") == 300, 60, "the other queue to finish")
    assert started("busy", after=returned) == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        spent = conn.execute(
            "SELECT count(*) FROM soniq_jobs WHERE queue = 'busy' AND status = 'queued'"
            " AND attempts > 0"
        ).fetchone()
    assert spent == (0,)

    await client.queues.resume("busy")
    await spawner.until(lambda: started("busy") == 1500, 120, "the busy queue after resume")
    with psycopg.connect(database_url, autocommit=True) as conn:
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT id FROM starts GROUP BY id HAVING count(*) > 1) t"
        ).fetchone()
    assert twice == (0,)
