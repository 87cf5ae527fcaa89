"""The blocking twin ``soniq_sync.Soniq`` on every backend: enqueue, inspect and run."""

from __future__ import annotations

import pytest

import soniq_sync
import soniq_sync.testing as sync_testing
from soniq import SoniqError, task_ref
from soniq.errors import UNKNOWN_TASK_NAME


def test_enqueue_get_and_list(backend_sync_app: soniq_sync.Soniq) -> None:
    app = backend_sync_app

    @app.job(name="sync.greet", queue="greetings")
    def greet(name: str) -> str:
        return f"hello {name}"

    first = app.enqueue(greet, name="ada")
    second = app.enqueue("sync.greet", args={"name": "bob"}, priority=5)
    third = app.enqueue(task_ref("sync.greet"), args={"name": "cy"}, queue="other")

    job = app.get_job(first)
    assert job is not None
    assert (job["job_name"], job["args"], job["queue"], job["status"]) == (
        "sync.greet",
        {"name": "ada"},
        "greetings",
        "queued",
    )
    assert [j["id"] for j in app.list_jobs()] == [third, second, first]
    assert [j["id"] for j in app.list_jobs(queue="greetings")] == [second, first]
    assert len(app.enqueue_many(greet, [{"name": "d"}, {"name": "e"}])) == 2

    with pytest.raises(SoniqError) as info:
        app.enqueue("sync.nobody", args={})
    assert info.value.code == UNKNOWN_TASK_NAME
    assert len(app.list_jobs()) == 5


def test_run_worker_runs_its_jobs(backend_sync_app: soniq_sync.Soniq) -> None:
    app = backend_sync_app

    @app.job()
    def square(n: int) -> int:
        return n * n

    @app.job(retries=0)
    async def fails() -> None:
        raise RuntimeError("nope")

    ids = [app.enqueue(square, n=n) for n in range(4)]
    broken = app.enqueue(fails)
    assert app.run_worker(run_once=True, concurrency=2) is True
    assert [app.get_result(i) for i in ids] == [0, 1, 4, 9]
    assert {j["status"] for j in app.list_jobs()} == {"done"}
    assert app.dead_letter.count() == 1
    dead = app.get_job(broken)
    assert dead is not None and dead["status"] == "dead_letter"
    assert app.run_worker(run_once=True) is False


def test_sync_testing_helpers(backend_sync_app: soniq_sync.Soniq) -> None:
    app = backend_sync_app
    calls: list[int] = []

    @app.job(retries=2, retry_delay=300)
    def flaky(n: int) -> None:
        calls.append(n)
        if len(calls) < 3:
            raise ValueError("again")

    app.schedule(flaky, 3600, n=1)
    sync_testing.assert_enqueued(app, flaky, {"n": 1}, count=1)
    report = sync_testing.drain(app, skip_delays=True)
    assert (report.retried, report.done) == (2, 1)
    sync_testing.assert_not_enqueued(app, flaky)
    assert sync_testing.enqueued_jobs(app) == []
