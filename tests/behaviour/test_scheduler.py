"""Recurring schedules on every backend: ``app.scheduler`` management, and a due
``every=`` schedule fired by ``SchedulerProcess.step()``."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from soniq import Soniq, SoniqError
from soniq.errors import CRON_OR_EVERY
from soniq.recurring.periodic import SchedulerProcess


async def test_add_get_list_pause_resume_remove(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="nightly.report")
    def nightly(kind: str = "full") -> None: ...

    @app.job(name="cache.flush")
    def flush() -> None: ...

    name = await app.scheduler.add(
        nightly, cron="0 3 * * *", args={"kind": "short"}, queue="reports", priority=7
    )
    assert name == "nightly.report"
    added = await app.scheduler.get(name)
    assert added is not None
    assert (added["name"], added["cron"], added["args"], added["queue"], added["priority"]) == (
        "nightly.report",
        "0 3 * * *",
        {"kind": "short"},
        "reports",
        7,
    )
    assert added["status"] == "active" and added["last_run_at"] is None
    next_run = added["next_run_at"]
    assert (next_run.hour, next_run.minute) == (3, 0)
    assert next_run > datetime.now(timezone.utc)

    await app.scheduler.add(flush, every=timedelta(minutes=10))
    flush_record = await app.scheduler.get("cache.flush")
    assert flush_record is not None and flush_record["interval_seconds"] == 600
    assert await app.scheduler.get("no.such") is None
    assert [r["name"] for r in await app.scheduler.list()] == ["cache.flush", "nightly.report"]

    assert await app.scheduler.pause("nightly.report") is True
    assert [r["name"] for r in await app.scheduler.list(status="paused")] == ["nightly.report"]
    assert [r["name"] for r in await app.scheduler.list(status="active")] == ["cache.flush"]
    assert await app.scheduler.resume("nightly.report") is True
    resumed = await app.scheduler.get("nightly.report")
    assert resumed is not None and resumed["status"] == "active"

    assert await app.scheduler.remove("cache.flush") is True
    assert await app.scheduler.remove("cache.flush") is False
    assert [r["name"] for r in await app.scheduler.list()] == ["nightly.report"]
    assert await app.scheduler.pause("cache.flush") is False
    assert await app.scheduler.resume("cache.flush") is False
    with pytest.raises(SoniqError) as info:
        await app.scheduler.add(flush, cron="* * * * *", every=60)
    assert info.value.code == CRON_OR_EVERY
    assert await app.scheduler.get("cache.flush") is None  # the bad add stored nothing


async def fire_when_due(proc: SchedulerProcess, deadline: float = 10.0) -> int:
    """Step the scheduler until it has enqueued something; return how many jobs.

    ``step()`` only fires runs that are due, so this waits on that condition (with a
    deadline) rather than sleeping for the interval.
    """
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert await proc.step() is True  # the only scheduler here: it leads
        fired = len(await proc.app.list_jobs(job_name="tick.tock"))
        if fired:
            return fired
    raise AssertionError(f"the schedule did not fire within {deadline}s")


async def test_a_due_every_schedule_enqueues_exactly_one_job(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="tick.tock")
    async def tock(n: int = 0) -> int:
        return n

    await app.scheduler.add(tock, every=1, args={"n": 3}, queue="cron")
    proc = SchedulerProcess(app)
    try:
        assert await fire_when_due(proc) == 1
        assert await proc.step() is True
        assert len(await app.list_jobs(job_name="tick.tock")) == 1  # fired once, not again
    finally:
        # SchedulerProcess has no close(); run() after stop() skips the loop and
        # releases the leader connection on its way out.
        proc.stop()
        await proc.run(handle_signals=False)

    (job,) = await app.list_jobs(job_name="tick.tock")
    assert (job["args"], job["queue"], job["status"]) == ({"n": 3}, "cron", "queued")
    record = await app.scheduler.get("tick.tock")
    assert record is not None and record["last_run_at"] == job["scheduled_at"]
    assert record["next_run_at"] > record["last_run_at"]
    await app.run_worker(run_once=True)
    assert await app.get_result(job["id"]) == 3
