"""The scheduler's leadership and tick, in-process on real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from soniq import Soniq
from soniq.recurring.periodic import SchedulerProcess
from tests.helpers import wait_for


def job_times(url: str, name: str) -> list[object]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT scheduled_at FROM soniq_jobs WHERE job_name = %s ORDER BY scheduled_at",
            (name,),
        ).fetchall()
    return [row[0] for row in rows]


def set_due(url: str, name: str, ago: timedelta) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE soniq_recurring_jobs SET next_run_at = date_trunc('second', now()) - %s "
            "WHERE name = %s",
            (ago, name),
        )


async def test_one_leader_at_a_time_and_the_lock_passes_on(app: Soniq) -> None:
    first, second = SchedulerProcess(app), SchedulerProcess(app)
    try:
        assert await first.lead() is True
        assert await second.lead() is False
        assert await first.lead() is True  # still leading: the session is alive
        await first._resign()
        # The server drops the lock when the closed session's backend exits, a moment
        # after the client closes it: the follower takes over on one of its retries.
        await wait_for(second.lead, message="the second scheduler to take the lock")
        assert await first.lead() is False
    finally:
        await first._resign()
        await second._resign()


async def test_declarations_are_synced_and_due_runs_enqueued_once(
    app: Soniq, database_url: str
) -> None:
    @app.periodic(every=60, name="t.minutely", queue="cron", priority=7)
    def minutely() -> None: ...

    proc = SchedulerProcess(app, app.periodic_jobs.values())
    await proc.sync_declarations()
    rec = await app.scheduler.get("t.minutely")
    assert rec is not None and (rec["queue"], rec["priority"]) == ("cron", 7)
    assert await proc.tick() == 0  # not due yet

    set_due(database_url, "t.minutely", timedelta(seconds=5))
    stale = await app.store.schedules.due(10)
    assert await proc.tick() == 1
    assert await proc._fire(stale[0]) == 0  # that run is claimed already
    (when,) = job_times(database_url, "t.minutely")
    (job,) = await app.list_jobs(job_name="t.minutely")
    assert (job["queue"], job["priority"]) == ("cron", 7)
    after = await app.scheduler.get("t.minutely")
    assert after is not None
    assert after["last_run_at"] == when
    assert after["next_run_at"] == when + timedelta(seconds=60)

    await proc.sync_declarations()  # a restart keeps the next run
    again = await app.scheduler.get("t.minutely")
    assert again is not None and again["next_run_at"] == after["next_run_at"]


async def test_missed_runs_are_skipped_unless_catch_up(app: Soniq, database_url: str) -> None:
    @app.job(name="t.skip")
    def skip() -> None: ...

    @app.job(name="t.catch")
    def catch() -> None: ...

    await app.scheduler.add(skip, every=600)
    await app.scheduler.add(catch, every=600, catch_up=True)
    set_due(database_url, "t.skip", timedelta(hours=1))
    set_due(database_url, "t.catch", timedelta(hours=1))
    proc = SchedulerProcess(app)
    await proc.tick()
    assert job_times(database_url, "t.skip") == []
    caught = job_times(database_url, "t.catch")
    assert len(caught) == 7  # -60, -50, ..., -0 minutes
    assert len(set(caught)) == 7
    for name in ("t.skip", "t.catch"):
        rec = await app.scheduler.get(name)
        assert rec is not None and rec["next_run_at"] > caught[-1]  # type: ignore[operator]


async def test_paused_schedules_do_not_fire(app: Soniq, database_url: str) -> None:
    @app.job(name="t.paused")
    def paused() -> None: ...

    await app.scheduler.add(paused, every=60)
    await app.scheduler.pause("t.paused")
    set_due(database_url, "t.paused", timedelta(seconds=1))
    assert await SchedulerProcess(app).tick() == 0
    assert job_times(database_url, "t.paused") == []
