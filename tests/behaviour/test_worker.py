"""The worker on every backend: results, retries, dead-lettering, sync handlers,
JobContext, Snooze, timeouts, hooks and jobs nobody registered."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from soniq import JobContext, Snooze, Soniq
from soniq.testing import drain


async def test_run_once_marks_jobs_done_with_results(backend_app: Soniq) -> None:
    app = backend_app

    @app.job()
    async def double(x: int) -> dict[str, int]:
        return {"x": x, "double": x * 2}

    ids = [await app.enqueue(double, x=x) for x in range(4)]
    assert await app.run_worker(run_once=True) is True

    for x, job_id in enumerate(ids):
        assert await app.get_result(job_id) == {"x": x, "double": x * 2}
        job = await app.get_job(job_id)
        assert job is not None
        assert (job["status"], job["attempts"], job["last_error"]) == ("done", 1, None)
        assert job["started_at"] is not None and job["finished_at"] >= job["started_at"]
    assert await app.run_worker(run_once=True) is False  # nothing left to run


async def test_run_once_returns_when_the_last_job_ends_as_a_slot_frees(backend_app: Soniq) -> None:
    # The order that once hung run_once on Python 3.12+: ``quick`` frees a slot and
    # wakes the claim loop, then ``yields_once`` ends before its done callback has run,
    # so the final drain met a finished task still counted as running (asyncio.gather
    # over finished tasks returns there without yielding to the event loop).
    app = backend_app

    @app.job()
    async def quick() -> str:
        return "quick"

    @app.job()
    async def yields_once() -> str:
        await asyncio.sleep(0)
        return "yielded"

    ids = [await app.enqueue(quick), await app.enqueue(yields_once)]
    assert await app.run_worker(run_once=True, concurrency=2) is True
    assert [await app.get_result(i) for i in ids] == ["quick", "yielded"]


async def test_run_worker_runs_as_many_jobs_at_once_as_the_concurrency_setting(
    make_app: Callable[..., Soniq],
) -> None:
    app = make_app(concurrency=3)  # what SONIQ_CONCURRENCY=3 would set
    seen: list[int] = []

    @app.job()
    async def look() -> None:
        seen.extend(worker["concurrency"] for worker in await app.list_workers())

    await app.enqueue(look)
    assert await app.run_worker(run_once=True) is True
    assert seen == [3]


async def test_a_failing_job_is_retried_with_its_error_recorded(backend_app: Soniq) -> None:
    app = backend_app
    attempts: list[int] = []

    @app.job(retries=2, retry_delay=60)
    def flaky(ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ValueError(f"try {ctx.attempt}")
        return "third time lucky"

    job_id = await app.enqueue(flaky)
    await app.run_worker(run_once=True)
    job = await app.get_job(job_id)
    assert job is not None
    assert (job["status"], job["attempts"], job["last_error"]) == ("queued", 1, "ValueError: try 1")
    assert job["scheduled_at"] > datetime.now(timezone.utc) + timedelta(seconds=30)
    assert await app.run_worker(run_once=True) is False  # waiting out its retry delay

    report = await drain(app, skip_delays=True)
    assert (report.retried, report.done) == (1, 1)
    assert attempts == [1, 2, 3]
    assert await app.get_result(job_id) == "third time lucky"


async def test_an_exhausted_job_is_dead_lettered(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="disk.check", retries=1, queue="ops", priority=20)
    async def doomed(disk: str) -> None:
        raise RuntimeError(f"{disk} on fire")

    job_id = await app.enqueue(doomed, disk="sda")
    report = await drain(app, skip_delays=True)
    assert (report.retried, report.dead_lettered, report.done) == (1, 1, 0)

    assert await app.list_jobs() == []  # moved out of the jobs, not copied
    assert await app.dead_letter.count() == 1
    (listed,) = await app.dead_letter.list()
    dead = await app.dead_letter.get(job_id)
    assert dead is not None and dead == listed
    assert (dead["id"], dead["job_name"], dead["args"], dead["queue"], dead["priority"]) == (
        job_id,
        "disk.check",
        {"disk": "sda"},
        "ops",
        20,
    )
    assert (dead["attempts"], dead["max_attempts"]) == (2, 2)
    assert dead["reason"] == "Failed all 2 attempts."
    assert dead["last_error"] == "RuntimeError: sda on fire"
    assert "Traceback" in dead["traceback"] and "sda on fire" in dead["traceback"]
    assert dead["resurrection_count"] == 0

    job = await app.get_job(job_id)
    assert job is not None
    assert (job["status"], job["reason"], job["resurrection_count"]) == (
        "dead_letter",
        "Failed all 2 attempts.",
        0,
    )


async def test_sync_handlers_run_off_the_event_loop_thread(backend_app: Soniq) -> None:
    app = backend_app
    threads: list[bool] = []

    @app.job()
    def blocking(n: int) -> int:
        threads.append(threading.current_thread() is threading.main_thread())
        return n + 1

    job_id = await app.enqueue(blocking, n=41)
    await app.run_worker(run_once=True)
    assert await app.get_result(job_id) == 42
    assert threads == [False]


async def test_job_context_describes_the_running_job(backend_app: Soniq) -> None:
    app = backend_app
    seen: list[JobContext] = []

    @app.job(name="ctx.probe", retries=2, queue="probe")
    async def probe(n: int, ctx: JobContext) -> None:
        seen.append(ctx)

    job_id = await app.enqueue(probe, n=1)
    await app.run_worker(run_once=True)
    job = await app.get_job(job_id)
    assert job is not None

    (ctx,) = seen
    assert (ctx.job_id, ctx.job_name, ctx.attempt, ctx.max_attempts, ctx.queue) == (
        job_id,
        "ctx.probe",
        1,
        3,
        "probe",
    )
    assert isinstance(ctx.worker_id, str) and ctx.worker_id
    assert ctx.created_at == job["created_at"] and ctx.scheduled_at == job["scheduled_at"]
    assert ctx.cancel_requested is False


async def test_snooze_puts_the_job_back_without_spending_an_attempt(backend_app: Soniq) -> None:
    app = backend_app
    calls: list[int] = []

    @app.job(retries=0)
    async def patient(how: str) -> str | Snooze:
        calls.append(1)
        if len(calls) == 1:
            raise Snooze(600)
        if len(calls) == 2:
            return Snooze(600)
        return "ready"

    job_id = await app.enqueue(patient, how="x")
    await app.run_worker(run_once=True)
    job = await app.get_job(job_id)
    assert job is not None
    assert (job["status"], job["attempts"]) == ("queued", 0)
    assert job["scheduled_at"] > datetime.now(timezone.utc) + timedelta(seconds=500)

    report = await drain(app, skip_delays=True)
    assert (report.snoozed, report.done) == (1, 1)  # the returned Snooze, then success
    assert await app.get_result(job_id) == "ready"  # retries=0, yet it ran three times


async def test_a_timed_out_run_is_a_failure(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(timeout=0.2, retries=0)
    async def stuck() -> None:
        await asyncio.sleep(60)  # cut short by the timeout

    job_id = await app.enqueue(stuck)
    report = await drain(app)
    assert report.dead_lettered == 1
    dead = await app.dead_letter.get(job_id)
    assert dead is not None and "timed out after 0.2s" in dead["last_error"]


async def test_hooks_are_called_around_each_run(backend_app: Soniq) -> None:
    app = backend_app
    events: list[tuple[Any, ...]] = []

    @app.before_job
    async def before(job_name: str, job_id: str, attempt: int) -> None:
        events.append(("before", job_name, job_id, attempt))

    @app.after_job
    def after(job_name: str, job_id: str, duration_ms: float) -> None:
        events.append(("after", job_name, job_id, duration_ms >= 0))

    @app.on_error
    def on_error(job_name: str, job_id: str, error: str, attempt: int) -> None:
        events.append(("error", job_name, job_id, error, attempt))

    @app.job(name="hook.ok")
    async def ok() -> None: ...

    @app.job(name="hook.bad", retries=0)
    async def bad() -> None:
        raise ValueError("nope")

    good = await app.enqueue(ok)
    await app.run_worker(run_once=True)
    broken = await app.enqueue(bad)
    await app.run_worker(run_once=True)
    assert events == [
        ("before", "hook.ok", good, 1),
        ("after", "hook.ok", good, True),
        ("before", "hook.bad", broken, 1),
        ("error", "hook.bad", broken, "nope", 1),
    ]


async def test_a_job_with_no_handler_is_dead_lettered_at_once(
    make_app: Callable[..., Soniq],
) -> None:
    app = make_app(enqueue_validation="none")

    @app.job()
    async def fine() -> None: ...

    ghost = await app.enqueue("ghost.task", args={"n": 1})
    ok = await app.enqueue(fine)
    report = await drain(app)
    assert (report.done, report.dead_lettered, report.retried) == (1, 1, 0)

    dead = await app.dead_letter.get(ghost)
    assert dead is not None
    assert (dead["reason"], dead["attempts"], dead["last_error"]) == (
        "Job ghost.task not registered.",
        1,
        None,
    )
    job = await app.get_job(ok)
    assert job is not None and job["status"] == "done"
