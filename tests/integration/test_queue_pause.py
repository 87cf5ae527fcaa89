"""app.queues: a fleet-wide pause that the claim itself reads, on real PostgreSQL,
through the public API, the blocking twin and the CLI."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

import soniq_sync
from soniq import JobContext, Soniq, SoniqError
from soniq.cli import main
from soniq.errors import INVALID_ARGUMENT, INVALID_QUEUE, PAUSE_NOT_CONFIRMED
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


# ----------------------------------------------------------------- the worker's side


def _fake_worker(url: str, heartbeat_age: float = 0.0) -> str:
    """A worker row that never confirms anything (a worker that hangs)."""
    worker_id = str(uuid.uuid4())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO soniq_workers (id, hostname, pid, queues, concurrency, last_heartbeat)"
            " VALUES (%s, 'hung-host', 4242, NULL, 1, now() - make_interval(secs => %s))",
            (worker_id, heartbeat_age),
        )
    return worker_id


def _control_seen(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT id::text, control_seen FROM soniq_workers").fetchall()
    return {worker_id: seen for worker_id, seen in rows}


async def test_pause_waits_until_no_worker_can_start_a_job_of_the_queue(app: Soniq) -> None:
    """A draining worker holds claimed, unstarted jobs; once pause() returns, none of
    the queue's jobs starts, and those it held are back with their attempt refunded."""
    starts: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()

    @app.job()
    async def stamp(ctx: JobContext, n: int) -> None:
        starts.append((ctx.queue, loop.time()))
        await asyncio.sleep(0.003)

    await app.enqueue_many(stamp, [{"n": i} for i in range(3000)], queue="busy")
    await app.enqueue_many(stamp, [{"n": i} for i in range(200)], queue="other")
    await app.ensure_initialized()
    worker = Worker(app.backend, app.registry, app.settings)
    run = asyncio.create_task(worker.run(concurrency=8))
    try:
        await wait_for(lambda: sum(q == "busy" for q, _ in starts) >= 300, timeout=30)
        await app.queues.pause("busy", wait=True, timeout=20)
        returned = loop.time()
        # The rest of the other queue runs (and proves the worker kept going).
        await wait_for(lambda: sum(q == "other" for q, _ in starts) == 200, timeout=30)
        late = [at for q, at in starts if q == "busy" and at > returned]
        assert late == [], f"{len(late)} job(s) of the paused queue started after pause()"
        url = app.settings.database_url
        assert url is not None
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'queued' AND attempts > 0),"
                " count(*) FILTER (WHERE status = 'processing'),"
                " count(*) FILTER (WHERE status = 'queued')"
                " FROM soniq_jobs WHERE queue = 'busy'"
            ).fetchone()
        assert row is not None
        spent, running, queued = row
        assert (spent, running) == (0, 0) and queued > 0
        # The worker confirmed the pause's control version.
        (seen,) = [v for k, v in _control_seen(url).items() if k == worker.id]
        assert seen > 0

        await app.queues.resume("busy")
        await wait_for(lambda: sum(q == "busy" for q, _ in starts) == 3000, timeout=60)
    finally:
        worker.stop()
        await run
    assert Counter(q for q, _ in starts) == {"busy": 3000, "other": 200}


async def test_a_worker_that_does_not_listen_confirms_at_its_heartbeat(app: Soniq) -> None:
    @app.job()
    async def noop() -> None: ...

    await app.ensure_initialized()
    settings = app.settings.model_copy(
        update={"listen_notify": False, "heartbeat_interval": 0.2, "poll_interval": 0.2}
    )
    worker = Worker(app.backend, app.registry, settings)
    run = asyncio.create_task(worker.run(concurrency=2))
    url = app.settings.database_url
    assert url is not None
    try:
        await wait_for(lambda: worker.id in _control_seen(url), timeout=20)
        await app.queues.pause("q", wait=True, timeout=10)
        first = _control_seen(url)[worker.id]
        await app.queues.resume("q")
        await app.queues.pause("q", wait=True, timeout=10)
        assert _control_seen(url)[worker.id] > first
    finally:
        worker.stop()
        await run


async def test_a_worker_that_does_not_confirm_is_named_and_the_pause_stays(app: Soniq) -> None:
    await app.ensure_initialized()
    url = app.settings.database_url
    assert url is not None
    hung = _fake_worker(url)
    _fake_worker(url, heartbeat_age=3600)  # stale: not waited for, not named
    with pytest.raises(SoniqError) as caught:
        await app.queues.pause("emails", reason="incident", timeout=0.3)
    err = caught.value
    assert err.code == PAUSE_NOT_CONFIRMED
    assert [w["id"] for w in err.details["unconfirmed"]] == [hung]
    assert "hung-host:4242" in err.message and err.suggestions
    assert [q.name for q in await app.queues.paused()] == ["emails"]
    # Without waiting, the same pause returns at once.
    info = await app.queues.pause("emails", wait=False)
    assert info.paused


@pytest.mark.parametrize("timeout", [-1, float("inf"), "soon", True])
async def test_a_bad_barrier_timeout_is_refused_before_anything_is_written(
    app: Soniq, timeout: Any
) -> None:
    with pytest.raises(SoniqError) as caught:
        await app.queues.pause("emails", timeout=timeout)
    assert caught.value.code == INVALID_ARGUMENT
    assert await app.queues.paused() == []


def test_cli_pause_exits_3_when_a_worker_does_not_confirm(database_url: str) -> None:
    soniq("setup", "--database-url", database_url)
    hung = _fake_worker(database_url)
    result = CliRunner().invoke(
        main,
        ["queues", "pause", "emails", "--timeout", "0.2", "--json", "--database-url", database_url],
    )
    assert result.exit_code == 3, result.output
    body = json.loads(result.stdout)
    assert body["name"] == "emails" and body["paused"] and body["confirmed"] is False
    assert [w["id"] for w in body["unconfirmed"]] == [hung]
    assert "SONIQ_PAUSE_NOT_CONFIRMED" in result.stderr
    quick = soniq("queues", "pause", "emails", "--no-wait", "--database-url", database_url)
    assert quick.exit_code == 0 and "confirmed" not in quick.output
