"""app.queues: a fleet-wide pause that the claim itself reads, on real PostgreSQL,
through the public API, the blocking twin and the CLI."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

import soniq_sync
from soniq import Soniq, SoniqError
from soniq.cli import main
from soniq.errors import INVALID_ARGUMENT, INVALID_QUEUE
from soniq.worker import Worker
from tests.helpers import wait_for


async def job_row(app: Soniq, job_id: str) -> dict[str, Any]:
    job = await app.get_job(job_id)
    assert job is not None
    return job


def soniq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


async def test_a_paused_queue_is_not_claimed_and_resume_lets_it_run(app: Soniq) -> None:
    @app.job()
    async def noop() -> None: ...

    paused = await app.enqueue(noop, queue="emails")
    other = await app.enqueue(noop, queue="billing")
    info = await app.queues.pause("emails", reason="vendor outage")
    assert info.name == "emails" and info.paused and info.reason == "vendor outage"
    assert info.paused_until is None and info.paused_by

    # Enqueue goes on while paused; the worker takes only the other queue.
    later = await app.enqueue(noop, queue="emails")
    await app.run_worker(run_once=True)
    assert (await job_row(app, other))["status"] == "done"
    for job_id in (paused, later):
        row = await job_row(app, job_id)
        assert (row["status"], row["attempts"]) == ("queued", 0)

    assert await app.queues.resume("emails") is True
    assert await app.queues.resume("emails") is False  # not paused any more
    await app.run_worker(run_once=True)
    assert [(await job_row(app, j))["status"] for j in (paused, later)] == ["done", "done"]


async def test_pausing_every_queue_holds_everything_until_resumed(app: Soniq) -> None:
    @app.job()
    async def noop() -> None: ...

    ids = [await app.enqueue(noop, queue=q) for q in ("a", "b", "default")]
    await app.queues.pause("*")
    assert await app.run_worker(run_once=True) is False
    # A queue paused by name stays paused when the '*' pause is lifted.
    await app.queues.pause("b")
    assert await app.queues.resume("*") is True
    await app.run_worker(run_once=True)
    assert [(await job_row(app, j))["status"] for j in ids] == ["done", "queued", "done"]


async def test_until_lifts_the_pause_with_no_process_acting(app: Soniq) -> None:
    @app.job()
    async def noop() -> None: ...

    job_id = await app.enqueue(noop, queue="reports")
    info = await app.queues.pause("reports", until=timedelta(seconds=1))
    assert info.paused_until is not None
    await app.run_worker(run_once=True)
    assert (await job_row(app, job_id))["status"] == "queued"

    async def ran() -> bool:
        await app.run_worker(run_once=True)
        return (await job_row(app, job_id))["status"] == "done"

    await wait_for(ran, timeout=15, message="the pause never lifted by itself")
    row = await job_row(app, job_id)
    assert row["started_at"] >= info.paused_until
    assert [q.name for q in await app.queues.list() if q.paused] == []


async def test_due_and_retried_jobs_of_a_paused_queue_wait(app: Soniq) -> None:
    attempts: list[int] = []

    @app.job(retries=3, retry_delay=0)
    async def flaky() -> None:
        attempts.append(1)
        raise RuntimeError("boom")

    @app.job()
    async def noop() -> None: ...

    failing = await app.enqueue(flaky, queue="q")
    await app.worker().run_once(max_jobs=1)  # one attempt fails and retries
    assert len(attempts) == 1
    scheduled = await app.schedule(noop, 0.2, queue="q")
    await app.queues.pause("q")

    # Let the scheduled job fall due, then prove a worker ran while it was due.
    async def due() -> bool:
        row = await job_row(app, scheduled)
        return bool(row["scheduled_at"] <= datetime.now(timezone.utc))

    await wait_for(due, timeout=10)
    marker = await app.enqueue(noop, queue="elsewhere")
    await app.run_worker(run_once=True)
    assert (await job_row(app, marker))["status"] == "done"
    assert (await job_row(app, failing))["status"] == "queued" and len(attempts) == 1
    assert (await job_row(app, scheduled))["status"] == "queued"


async def test_a_polling_worker_without_listen_never_starts_a_paused_queue(app: Soniq) -> None:
    started: list[str] = []

    @app.job()
    async def record(tag: str) -> None:
        started.append(tag)

    await app.queues.pause("held")
    await app.ensure_initialized()
    settings = app.settings.model_copy(update={"listen_notify": False, "poll_interval": 0.2})
    worker = Worker(app.backend, app.registry, settings)
    run = asyncio.create_task(worker.run(concurrency=4))
    try:
        held = await app.enqueue(record, tag="held", queue="held")
        await app.enqueue(record, tag="free", queue="free")
        await wait_for(lambda: "free" in started, timeout=20)
        assert (await job_row(app, held))["status"] == "queued"
        await app.queues.resume("held")
        await wait_for(lambda: "held" in started, timeout=20)
    finally:
        worker.stop()
        await run


async def test_list_shows_counts_and_pauses(app: Soniq) -> None:
    @app.job()
    async def noop() -> None: ...

    await app.enqueue_many(noop, [{}] * 3, queue="busy")
    await app.queues.pause("idle", until=3600, reason="maintenance")
    rows = {q.name: q for q in await app.queues.list()}
    assert rows["busy"].queued == 3 and not rows["busy"].paused
    idle = rows["idle"]
    assert idle.paused and idle.queued == 0 and idle.reason == "maintenance"
    assert idle.paused_until is not None and idle.paused_until > datetime.now(timezone.utc)
    assert json.loads(json.dumps(idle.as_dict()))["paused"] is True
    report = await app.status()
    assert [p["name"] for p in report["paused_queues"]] == ["idle"]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"name": ""}, INVALID_QUEUE),
        ({"name": 7}, INVALID_QUEUE),
        ({"name": "q", "until": -5}, "SONIQ_INVALID_SCHEDULE"),
        ({"name": "q", "until": datetime(2020, 1, 1, tzinfo=timezone.utc)}, INVALID_ARGUMENT),
        ({"name": "q", "until": "tomorrow"}, INVALID_ARGUMENT),
        ({"name": "q", "reason": "x" * 1001}, INVALID_ARGUMENT),
    ],
)
async def test_bad_pause_arguments_are_refused_and_write_nothing(
    app: Soniq, kwargs: dict[str, Any], code: str
) -> None:
    with pytest.raises(SoniqError) as caught:
        await app.queues.pause(**kwargs)
    assert caught.value.error_code == code
    assert [q for q in await app.queues.list() if q.paused] == []


async def test_a_pause_is_announced_on_the_control_channel(app: Soniq) -> None:
    url = app.settings.database_url
    assert url is not None
    await app.ensure_initialized()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("LISTEN soniq_control")
        await app.queues.pause("emails")
        await app.queues.resume("emails")
        seen = []
        async for note in conn.notifies(timeout=5, stop_after=2):
            seen.append(note.payload)
    assert seen == ["pause:emails", "resume:emails"]


def test_the_blocking_twin_pauses_lists_and_resumes(sync_app: soniq_sync.Soniq) -> None:
    @sync_app.job()
    def noop() -> None: ...

    job_id = sync_app.enqueue(noop, queue="sync-q")
    assert sync_app.queues.pause("sync-q", reason="r").paused
    assert [q.name for q in sync_app.queues.list() if q.paused] == ["sync-q"]
    assert sync_app.queues.resume("sync-q") is True
    job = sync_app.get_job(job_id)
    assert job is not None and job["status"] == "queued"


def test_cli_pause_list_resume_and_status(database_url: str) -> None:
    paused = soniq(
        "queues", "pause", "emails", "--for", "10m", "--reason", "outage",
        "--json", "--database-url", database_url,
    )  # fmt: skip
    assert paused.exit_code == 0, paused.output
    body = json.loads(paused.output)
    assert body["name"] == "emails" and body["paused"] and body["reason"] == "outage"
    until = datetime.fromisoformat(body["paused_until"])
    assert timedelta(minutes=9) < until - datetime.now(timezone.utc) <= timedelta(minutes=10)

    listed = soniq("queues", "list", "--json", "--database-url", database_url)
    assert [q["name"] for q in json.loads(listed.output) if q["paused"]] == ["emails"]
    table = soniq("queues", "list", "--database-url", database_url)
    assert "emails" in table.output and "paused" in table.output

    status = soniq("status", "--database-url", database_url)
    assert "Paused: queue emails" in status.output and "(outage)" in status.output
    status_json = json.loads(soniq("status", "--json", "--database-url", database_url).output)
    assert status_json["paused_queues"][0]["name"] == "emails"

    resumed = soniq("queues", "resume", "emails", "--json", "--database-url", database_url)
    assert json.loads(resumed.output) == {"name": "emails", "resumed": True}
    again = soniq("queues", "resume", "emails", "--database-url", database_url)
    assert "was not paused" in again.output


def test_cli_refuses_bad_durations_and_times(database_url: str) -> None:
    both = soniq(
        "queues", "pause", "q", "--for", "1m", "--until", "2030-01-01T00:00:00+00:00",
        "--database-url", database_url,
    )  # fmt: skip
    assert both.exit_code != 0 and "SONIQ_INVALID_ARGUMENT" in both.output
    naive = soniq("queues", "pause", "q", "--until", "2030-01-01T00:00:00",
                  "--database-url", database_url)  # fmt: skip
    assert naive.exit_code != 0 and "offset" in naive.output
    bad = soniq("queues", "pause", "q", "--for", "soon", "--database-url", database_url)
    assert bad.exit_code != 0 and "SONIQ_INVALID_DURATION" in bad.output
    listed = soniq("queues", "list", "--json", "--database-url", database_url)
    assert [q for q in json.loads(listed.output) if q["paused"]] == []
