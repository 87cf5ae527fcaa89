"""``soniq.testing`` on every backend: drain and its report, and the enqueue assertions."""

from __future__ import annotations

import pytest

from soniq import Snooze, Soniq, SoniqError, task_ref
from soniq.errors import DRAIN_LIMIT
from soniq.testing import (
    DrainReport,
    assert_enqueued,
    assert_not_enqueued,
    drain,
    enqueued_jobs,
)


async def test_drain_runs_jobs_and_what_they_enqueue(backend_app: Soniq) -> None:
    app = backend_app
    seen: list[int] = []

    @app.job()
    async def leaf(n: int) -> None:
        seen.append(n)

    @app.job()
    async def fan_out(count: int) -> None:
        for n in range(count):
            await app.enqueue(leaf, n=n)

    @app.job(retries=1)
    async def always_fails() -> None:
        raise RuntimeError("no")

    await app.enqueue(fan_out, count=3)
    await app.enqueue(always_fails)

    report = await drain(app, skip_delays=True)
    assert sorted(seen) == [0, 1, 2]
    assert (report.done, report.retried, report.dead_lettered, report.snoozed) == (4, 1, 1, 0)
    assert report.ran == 6 and report.rounds >= 2
    assert await enqueued_jobs(app) == []
    assert await drain(app) == DrainReport()  # nothing left to run


async def test_drain_leaves_delayed_jobs_unless_asked(backend_app: Soniq) -> None:
    app = backend_app

    @app.job()
    async def later() -> None: ...

    job_id = await app.schedule(later, 3600)
    assert (await drain(app)).ran == 0
    assert [j["id"] for j in await enqueued_jobs(app)] == [job_id]
    assert (await drain(app, skip_delays=True)).done == 1
    assert await enqueued_jobs(app) == []


async def test_drain_stops_a_job_that_never_settles(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="forever.snooze")
    async def forever() -> Snooze:
        return Snooze(0)

    await app.enqueue(forever)
    with pytest.raises(SoniqError) as info:
        await drain(app, max_rounds=3)
    assert info.value.code == DRAIN_LIMIT
    assert info.value.details["runnable"] == {"forever.snooze": 1}
    assert info.value.details["report"].snoozed == 3


async def test_assert_enqueued_and_assert_not_enqueued(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="mail.welcome")
    async def welcome(to: str) -> None: ...

    await app.enqueue(welcome, to="ada@example.com", queue="mail")
    await app.enqueue(welcome, to="bob@example.com", queue="mail")

    matched = await assert_enqueued(app, welcome, {"to": "ada@example.com"})
    assert [j["args"] for j in matched] == [{"to": "ada@example.com"}]
    await assert_enqueued(app, "mail.welcome", count=2, queue="mail")
    await assert_enqueued(app, task_ref("mail.welcome"), {"to": "bob@example.com"})
    await assert_not_enqueued(app, welcome, {"to": "eve@example.com"})
    await assert_not_enqueued(app, welcome, queue="default")
    await assert_not_enqueued(app, "billing.charge")

    with pytest.raises(AssertionError, match=r"bob@example\.com"):
        await assert_enqueued(app, welcome, {"to": "eve@example.com"})  # lists what waits
    with pytest.raises(AssertionError):
        await assert_enqueued(app, welcome, count=1)
    with pytest.raises(AssertionError):
        await assert_not_enqueued(app, welcome, {"to": "ada@example.com"})

    await drain(app)
    await assert_not_enqueued(app, welcome)  # jobs that ran no longer count
    assert await enqueued_jobs(app, welcome) == []
