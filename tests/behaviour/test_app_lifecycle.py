"""An app's config and runtime on every backend: what freezes, reconfigure, using_backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import soniq_sync
import soniq_sync.testing as sync_testing
from soniq import Soniq, SoniqError, task_ref
from soniq.errors import APP_FROZEN, INVALID_ARGUMENT, INVALID_SETTING
from soniq.testing import drain, enqueued_jobs


def _hook(*args: object) -> None: ...


async def test_settings_freeze_while_the_app_is_in_use(
    backend_app: Soniq, store: dict[str, str]
) -> None:
    app = backend_app
    before = app.settings
    app.settings = before.model_copy(update={"priority": 7})  # not in use yet: allowed
    assert app.settings.priority == 7
    await app.enqueue(task_ref("a.b"), args={})  # first use: initialises

    with pytest.raises(SoniqError) as caught:
        app.settings = before
    assert caught.value.code == APP_FROZEN
    assert caught.value.details["part"] == "settings"
    assert "reconfigure" in caught.value.message
    assert app.settings.priority == 7  # nothing changed
    [job] = await app.list_jobs()
    assert job["priority"] == 7

    await app.close()  # closed: the settings may change again
    app.settings = before
    assert app.settings is before
    second = await app.enqueue(task_ref("a.b"), args={})
    assert (await app.get_job(second))["priority"] == before.priority  # type: ignore[index]


async def test_setup_freezes_the_settings(backend_app: Soniq) -> None:
    await backend_app.setup()
    with pytest.raises(SoniqError) as caught:
        backend_app.settings = backend_app.settings
    assert caught.value.code == APP_FROZEN


async def test_hooks_freeze_when_a_worker_starts_but_jobs_can_still_register(
    backend_app: Soniq,
) -> None:
    app = backend_app
    ran: list[str] = []
    app.before_job(_hook)  # before any worker: fine
    await app.enqueue(task_ref("late.job"), args={})  # in use, no worker yet
    app.after_job(_hook)  # hooks still open: no worker has started
    assert await app.run_worker(run_once=True) is True  # dead-letters the unknown task

    for register in (app.before_job, app.after_job, app.on_error):
        with pytest.raises(SoniqError) as caught:
            register(_hook)
        assert caught.value.code == APP_FROZEN
        assert caught.value.details["part"] == "hooks"
    assert app.hooks == {"before_job": [_hook], "after_job": [_hook], "on_error": []}

    # Registering a job stays legitimate (a lazily imported jobs module, Django's tasks):
    # the next worker runs it.
    @app.job(name="late.registered")
    async def late() -> None:
        ran.append("late")

    await app.enqueue(late)
    assert (await drain(app)).done == 1
    assert ran == ["late"]

    await app.close()
    app.on_error(_hook)  # closed: hooks open again
    assert app.hooks["on_error"] == [_hook]


async def test_reconfigure_applies_new_settings_and_keeps_jobs_and_hooks(
    backend_app: Soniq, store: dict[str, str]
) -> None:
    app = backend_app
    ran: list[int] = []

    @app.job(name="re.configured")
    async def handler(n: int) -> None:
        ran.append(n)

    app.before_job(_hook)
    first = await app.enqueue(handler, n=1)
    await app.reconfigure(**store, priority=7, max_retries=0)  # in use: still allowed
    assert (app.settings.priority, app.settings.max_retries) == (7, 0)
    # New defaults apply to later enqueues (a registered job keeps its own options).
    remote = await app.enqueue(task_ref("remote.task"), args={})
    job = await app.get_job(remote)
    assert job is not None and (job["priority"], job["max_attempts"]) == (7, 1)
    await app.cancel_job(remote)
    second = await app.enqueue(handler, n=2)
    # The same store (memory too: a memory app that stays on memory keeps its jobs).
    assert {job["id"] for job in await enqueued_jobs(app)} == {first, second}
    assert app.registry.get("re.configured") is not None
    assert app.hooks["before_job"] == [_hook]
    assert (await drain(app)).done == 2
    assert sorted(ran) == [1, 2]


async def test_a_refused_reconfigure_changes_nothing(
    backend_app: Soniq, store: dict[str, str]
) -> None:
    app = backend_app
    job_id = await app.enqueue(task_ref("a.b"), args={})
    backend, settings = app.backend, app.settings
    bad_values: list[dict[str, Any]] = [
        {"concurrency": -1},
        {"pool_min_size": 5, "pool_max_size": 2},
    ]
    for bad in bad_values:
        with pytest.raises(SoniqError) as caught:
            await app.reconfigure(**store, **bad)
        assert caught.value.code == INVALID_SETTING
        assert app.settings is settings and app.backend is backend
    assert (await app.get_job(job_id)) is not None  # still connected, same store


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.integration)])
async def test_reconfigure_closes_the_pool_and_reconnects_on_next_use(
    backend_app: Soniq, store: dict[str, str]
) -> None:
    app = backend_app
    await app.enqueue(task_ref("a.b"), args={})
    old_pool = app.backend.pool  # type: ignore[attr-defined]
    await app.reconfigure(**store, pool_max_size=3)
    assert old_pool.closed
    await app.enqueue(task_ref("a.b"), args={})
    assert app.backend.pool is not old_pool  # type: ignore[attr-defined]
    assert app.backend.pool.max_size == 3  # type: ignore[attr-defined]


async def test_using_backend_runs_an_app_in_use_on_a_fresh_memory_store(
    backend_app: Soniq, backend: str
) -> None:
    app = backend_app
    ran: list[str] = []

    @app.job(name="in.memory")
    async def job() -> None:
        ran.append("ran")

    app.before_job(_hook)
    outside = await app.enqueue(job)  # in use: settings frozen
    outer_backend, outer_settings = app.backend, app.settings
    with app.using_backend("memory") as same:
        assert same is app and app.backend.kind == "memory"
        assert await app.list_jobs() == []
        await app.enqueue(job)
        assert (await drain(app)).done == 1
    assert ran == ["ran"]
    assert app.backend is outer_backend and app.settings is outer_settings
    assert app.backend.kind == backend
    assert [j["id"] for j in await app.list_jobs()] == [outside]  # its connections still work
    with pytest.raises(SoniqError) as caught:  # and its state is back: still frozen
        app.settings = outer_settings
    assert caught.value.code == APP_FROZEN


async def test_using_backend_takes_memory_only(backend_app: Soniq, backend: str) -> None:
    with pytest.raises(SoniqError) as caught, backend_app.using_backend("sqlite"):
        pass  # pragma: no cover
    assert caught.value.code == INVALID_ARGUMENT
    assert backend_app.backend.kind == backend


def test_the_blocking_app_reconfigures_and_uses_a_memory_backend(
    make_sync_app: Callable[..., soniq_sync.Soniq], store: dict[str, str], backend: str
) -> None:
    app = make_sync_app()

    @app.job(name="sync.lifecycle")
    def double(n: int) -> int:
        return n * 2

    first = app.enqueue(double, n=1)
    with pytest.raises(SoniqError) as caught:
        app.settings = app.settings
    assert caught.value.code == APP_FROZEN
    app.reconfigure(**store, priority=9)  # a plain call
    remote = app.get_job(app.enqueue(task_ref("remote.task"), args={}))
    assert remote is not None and remote["priority"] == 9

    with app.using_backend("memory"):
        job_id = app.enqueue(double, n=21)
        # The worker runs on an async backend around the app's own memory database.
        assert sync_testing.drain(app).done == 1
        assert app.get_result(job_id) == 42
        assert app.run_worker(run_once=True) is False  # nothing left, same store
    assert app.backend.kind == backend
    assert first in {job["id"] for job in app.list_jobs()}
