"""app.scheduler on real PostgreSQL, through the async app and the blocking one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import soniq_sync
from soniq import Soniq, SoniqError, daily, every, task_ref
from soniq.errors import (
    CRON_OR_EVERY,
    INVALID_ARGUMENT,
    INVALID_CRON,
    INVALID_INTERVAL,
    INVALID_PRIORITY,
    INVALID_QUEUE,
    INVALID_TARGET,
    INVALID_TIMEZONE,
    TASK_ARGS_INVALID,
    UNKNOWN_TASK_NAME,
)


def schedule_rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM soniq_recurring_jobs ORDER BY name")
        return cur.fetchall()


async def test_add_list_get_pause_resume_remove(app: Soniq, database_url: str) -> None:
    @app.job(name="reports.daily", queue="reports")
    async def report(region: str = "EU") -> None: ...

    before = datetime.now(timezone.utc)
    name = await app.scheduler.add(
        report, cron=daily().at("09:00"), args={"region": "US"}, priority=10
    )
    assert name == "reports.daily"
    added = await app.scheduler.get(name)
    assert added is not None and added["name"] == "reports.daily"
    assert (added["cron"], added["interval_seconds"], added["timezone"]) == (
        "0 9 * * *",
        None,
        "UTC",
    )
    assert (added["args"], added["queue"], added["priority"]) == ({"region": "US"}, "reports", 10)
    assert added["status"] == "active" and added["catch_up"] is False
    assert added["next_run_at"] > before
    assert (added["next_run_at"].hour, added["next_run_at"].minute) == (9, 0)

    assert await app.scheduler.list() == [added]
    assert await app.scheduler.list(status="paused") == []

    assert await app.scheduler.pause("reports.daily") is True
    paused = await app.scheduler.get("reports.daily")
    assert paused is not None and paused["status"] == "paused"
    assert [r["name"] for r in await app.scheduler.list(status="paused")] == ["reports.daily"]
    assert await app.scheduler.list(status="active") == []

    assert await app.scheduler.resume("reports.daily") is True
    resumed = await app.scheduler.get("reports.daily")
    assert resumed is not None and resumed["status"] == "active"
    assert resumed["next_run_at"] == added["next_run_at"]  # the same next 09:00

    assert await app.scheduler.remove("reports.daily") is True
    assert await app.scheduler.remove("reports.daily") is False
    assert await app.scheduler.get("reports.daily") is None
    assert schedule_rows(database_url) == []


async def test_re_adding_updates_in_place(app: Soniq, database_url: str) -> None:
    @app.job(name="metrics.flush")
    def flush() -> None: ...

    async def add(*args: Any, **kwargs: Any) -> dict[str, Any]:
        record = await app.scheduler.get(await app.scheduler.add(*args, **kwargs))
        assert record is not None
        return record

    first = await add("metrics.flush", every=timedelta(seconds=30))
    again = await add(name="metrics.flush", every=30, queue="metrics")
    assert again["next_run_at"] == first["next_run_at"]  # timing unchanged: kept
    assert again["queue"] == "metrics" and again["created_at"] == first["created_at"]
    await app.scheduler.pause("metrics.flush")
    changed = await add(flush, cron=every(5).minutes(), timezone="Europe/Berlin", catch_up=True)
    assert changed["status"] == "paused"  # re-adding does not resume
    assert (changed["cron"], changed["interval_seconds"]) == ("*/5 * * * *", None)
    assert changed["timezone"] == "Europe/Berlin" and changed["catch_up"] is True
    assert changed["next_run_at"] != first["next_run_at"]
    assert len(schedule_rows(database_url)) == 1


async def test_task_refs_and_unregistered_names_by_validation_mode(database_url: str) -> None:
    ref = task_ref("billing.invoices.send", default_queue="billing")
    async with Soniq(database_url=database_url, enqueue_validation="none") as app:
        assert await app.scheduler.add(ref, every=60, args={"invoice": 7}) == ref.name
        rec = await app.scheduler.get(ref.name)
        assert rec is not None and rec["queue"] == "billing"
        await app.scheduler.add(name="remote.task", every=5)
        other = await app.scheduler.get("remote.task")
        assert other is not None and other["queue"] == "default"


async def test_every_bad_add_raises_and_writes_nothing(app: Soniq, database_url: str) -> None:
    @app.job(name="jobs.one")
    def one(n: int = 1) -> None: ...

    cases: list[tuple[dict[str, Any], str]] = [
        ({}, INVALID_TARGET),
        ({"target": one}, CRON_OR_EVERY),
        ({"target": one, "cron": "* * * * *", "every": 5}, CRON_OR_EVERY),
        ({"target": one, "cron": "61 * * * *"}, INVALID_CRON),
        ({"target": one, "cron": "0 0 30 2 *"}, INVALID_CRON),
        ({"target": one, "every": -5}, INVALID_INTERVAL),
        ({"target": one, "every": every(5).minutes()}, INVALID_INTERVAL),
        ({"target": one, "every": 5, "timezone": "Europe/Nowhere"}, INVALID_TIMEZONE),
        ({"target": one, "every": 5, "args": {"n": 1, "bogus": 2}}, TASK_ARGS_INVALID),
        ({"target": one, "every": 5, "args": ["n"]}, TASK_ARGS_INVALID),
        ({"target": one, "every": 5, "queue": ""}, INVALID_QUEUE),
        ({"target": one, "every": 5, "priority": 0}, INVALID_PRIORITY),
        ({"target": one, "every": 5, "catch_up": "yes"}, INVALID_ARGUMENT),
        ({"target": one, "name": "jobs.other", "every": 5}, INVALID_ARGUMENT),
        ({"target": "jobs.unknown", "every": 5}, UNKNOWN_TASK_NAME),
        ({"name": "jobs.unknown", "every": 5}, UNKNOWN_TASK_NAME),
        ({"target": 42, "every": 5}, INVALID_TARGET),
    ]
    for kwargs, code in cases:
        with pytest.raises(SoniqError) as info:
            await app.scheduler.add(**kwargs)
        assert info.value.code == code, kwargs
        assert info.value.message
    assert await app.scheduler.pause("jobs.one") is False
    assert await app.scheduler.resume("jobs.one") is False
    for call, arg, code in [
        (app.scheduler.pause, "", INVALID_ARGUMENT),
        (app.scheduler.get, 5, INVALID_ARGUMENT),
        (app.scheduler.remove, None, INVALID_ARGUMENT),
        (app.scheduler.list, "running", INVALID_ARGUMENT),
    ]:
        with pytest.raises(SoniqError) as info:
            await call(arg)
        assert info.value.code == code, (call, arg)
    assert schedule_rows(database_url) == []


def test_the_blocking_app_has_the_same_scheduler(
    sync_app: soniq_sync.Soniq, database_url: str
) -> None:
    @sync_app.job(name="sync.cleanup", queue="maintenance")
    def cleanup(days: int = 30) -> None: ...

    assert sync_app.scheduler.add(cleanup, every=every(30).seconds(), args={"days": 7}) == (
        "sync.cleanup"
    )
    rec = sync_app.scheduler.get("sync.cleanup")
    assert rec is not None
    assert (rec["interval_seconds"], rec["queue"], rec["args"]) == (
        30.0,
        "maintenance",
        {"days": 7},
    )
    assert sync_app.scheduler.pause("sync.cleanup") is True
    assert sync_app.scheduler.list(status="paused")[0]["name"] == "sync.cleanup"
    assert sync_app.scheduler.resume("sync.cleanup") is True
    got = sync_app.scheduler.get("sync.cleanup")
    assert got is not None and got["status"] == "active"
    with pytest.raises(SoniqError) as info:
        sync_app.scheduler.add(cleanup, cron="0 9 * * *", every=5)
    assert info.value.code == CRON_OR_EVERY
    assert sync_app.scheduler.pause("sync.nothing") is False
    assert sync_app.scheduler.remove("sync.cleanup") is True
    assert schedule_rows(database_url) == []
