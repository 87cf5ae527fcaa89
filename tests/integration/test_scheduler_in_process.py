"""``app.scheduler.start()``/``stop()`` fire schedules from inside the app's process,
and the schedule records carry the original Soniq's keys; on real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

import soniq_sync
from soniq import Soniq, SoniqError
from soniq.errors import SCHEDULER_ASYNC_ONLY


async def wait_for_jobs(app: Soniq, name: str, deadline: float = 15.0) -> int:
    """Poll until a job of task ``name`` is queued; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = len(await app.list_jobs(job_name=name))
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} job within {deadline}s")


async def test_start_fires_due_schedules_until_stop(app: Soniq) -> None:
    @app.job(name="inproc.added")
    async def added() -> None: ...

    @app.periodic(every=timedelta(seconds=1), name="inproc.declared")
    async def declared() -> None: ...

    assert await app.scheduler.add(added, every=1) == "inproc.added"
    assert app.scheduler.running is False
    await app.scheduler.start(check_interval=0.1)
    try:
        assert app.scheduler.running is True
        await app.scheduler.start(check_interval=0.1)  # already running: nothing new
        assert await wait_for_jobs(app, "inproc.added") >= 1
        assert await wait_for_jobs(app, "inproc.declared") >= 1  # @periodic written at start
    finally:
        await app.scheduler.stop()
    assert app.scheduler.running is False
    await app.scheduler.stop()  # a second stop is harmless

    # Stopped means stopped: the next due run is not enqueued.
    record = await app.scheduler.get("inproc.added")
    assert record is not None
    count = len(await app.list_jobs(job_name="inproc.added"))
    await app.scheduler.resume("inproc.added")  # next run one second from now
    record = await app.scheduler.get("inproc.added")
    assert record is not None
    still = time.monotonic() + 1.5
    while time.monotonic() < still:
        assert len(await app.list_jobs(job_name="inproc.added")) == count
        await asyncio.sleep(0.1)

    await app.run_worker(run_once=True)
    assert await app.list_jobs(job_name="inproc.added", status="queued") == []


async def test_close_stops_the_in_process_scheduler(app: Soniq) -> None:
    @app.job(name="inproc.closing")
    async def closing() -> None: ...

    await app.scheduler.add(closing, every=60)
    await app.scheduler.start(check_interval=0.1)
    assert app.scheduler.running
    await app.close()
    assert not app.scheduler.running


async def test_records_carry_the_original_keys(app: Soniq) -> None:
    @app.job(name="keys.cron", retries=5)
    async def by_cron() -> None: ...

    @app.job(name="keys.every")
    async def by_interval() -> None: ...

    await app.scheduler.add(by_cron, cron="0 9 * * 1")
    await app.scheduler.add(by_interval, every=timedelta(seconds=90))
    cron_rec, every_rec = await app.scheduler.list()
    assert cron_rec["name"] == cron_rec["id"] == "keys.cron"
    assert (cron_rec["schedule_type"], cron_rec["schedule_value"]) == ("cron", "0 9 * * 1")
    assert (every_rec["schedule_type"], every_rec["schedule_value"]) == ("interval", "90")
    assert cron_rec["max_attempts"] == 6
    assert every_rec["max_attempts"] == app.settings.max_retries + 1
    for rec in (cron_rec, every_rec):
        assert rec["next_run"] == rec["next_run_at"] is not None
        assert rec["last_run"] is rec["last_run_at"] is None
        assert rec["status"] == "active" and rec["args"] == {}
        assert rec["run_count"] is None and rec["last_job_id"] is None
        assert {"priority", "queue", "created_at"} <= rec.keys()
    assert await app.scheduler.get("keys.every") == every_rec


def test_the_blocking_app_refuses_start_and_says_what_to_run(
    sync_app: soniq_sync.Soniq,
) -> None:
    @sync_app.job(name="sync.tick")
    def tick() -> None: ...

    assert sync_app.scheduler.add(tick, every=1) == "sync.tick"
    with pytest.raises(SoniqError) as info:
        sync_app.scheduler.start()
    assert info.value.code == SCHEDULER_ASYNC_ONLY
    assert "soniq scheduler" in info.value.message
    assert sync_app.scheduler.running is False
    sync_app.scheduler.stop()  # nothing started: a no-op
    assert sync_app.list_jobs() == []
