"""``@app.middleware`` through the public API, on real PostgreSQL workers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import soniq_sync
from soniq import JobContext, Soniq
from soniq.errors import APP_FROZEN, INVALID_MIDDLEWARE, SoniqError


async def test_middleware_wrap_in_registration_order_and_see_the_context(app: Soniq) -> None:
    calls: list[str] = []

    @app.middleware
    async def outer(ctx: JobContext, call_next: Any) -> Any:
        calls.append(f"outer>{ctx.job_name}:{ctx.attempt}")
        result = await call_next()
        calls.append("outer<")
        return result

    @app.middleware
    async def inner(ctx: JobContext, call_next: Any) -> Any:
        calls.append("inner>")
        result = await call_next()
        calls.append("inner<")
        return result

    @app.job(name="mw.add")
    async def add(a: int, b: int) -> int:
        calls.append("handler")
        return a + b

    job_id = await app.enqueue(add, a=2, b=3)
    assert await app.run_worker(run_once=True)
    assert calls == ["outer>mw.add:1", "inner>", "handler", "inner<", "outer<"]
    assert await app.get_result(job_id) == 5


async def test_middleware_can_replace_the_result_and_short_circuit(app: Soniq) -> None:
    ran: list[str] = []

    @app.middleware
    async def doubled(ctx: JobContext, call_next: Any) -> Any:
        if ctx.job_name == "mw.skipped":
            return "short-circuited"
        return (await call_next()) * 2

    @app.job(name="mw.value")
    async def value() -> int:
        return 21

    @app.job(name="mw.skipped")
    async def skipped() -> str:
        ran.append("skipped ran")
        return "handler"

    a = await app.enqueue(value)
    b = await app.enqueue(skipped)
    await app.run_worker(run_once=True)
    assert await app.get_result(a) == 42
    assert await app.get_result(b) == "short-circuited"
    assert ran == []


async def test_a_sync_handler_runs_in_a_worker_thread_under_middleware(app: Soniq) -> None:
    threads: dict[str, int] = {}

    @app.middleware
    async def mark(ctx: JobContext, call_next: Any) -> Any:
        threads["middleware"] = threading.get_ident()
        return await call_next()

    @app.job(name="mw.sync")
    def blocking(ctx: JobContext, n: int) -> dict[str, Any]:
        threads["handler"] = threading.get_ident()
        return {"n": n, "job": ctx.job_name}

    job_id = await app.enqueue(blocking, n=7)
    await app.run_worker(run_once=True)
    assert await app.get_result(job_id) == {"n": 7, "job": "mw.sync"}
    assert threads["middleware"] == threading.get_ident()  # on the worker's event loop
    assert threads["handler"] != threads["middleware"]


async def test_middleware_sees_the_handlers_exception_and_its_own_fails_the_job(
    app: Soniq,
) -> None:
    seen: list[str] = []

    @app.middleware
    async def observe(ctx: JobContext, call_next: Any) -> Any:
        try:
            return await call_next()
        except ValueError as exc:
            seen.append(f"{ctx.job_name}: {exc}")
            raise

    @app.middleware
    async def refuse(ctx: JobContext, call_next: Any) -> Any:
        if ctx.job_name == "mw.refused":
            raise PermissionError("refused by middleware")
        return await call_next()

    @app.job(name="mw.fails", retries=0)
    async def fails() -> None:
        raise ValueError("boom")

    @app.job(name="mw.refused", retries=0)
    async def refused() -> None:
        raise AssertionError("the handler must not run")

    a = await app.enqueue(fails)
    b = await app.enqueue(refused)
    await app.run_worker(run_once=True)
    assert seen == ["mw.fails: boom"]
    dead = {job["id"]: job for job in await app.dead_letter.list()}
    assert "ValueError: boom" in (dead[a]["last_error"] or "")
    assert "PermissionError: refused by middleware" in (dead[b]["last_error"] or "")


async def test_a_middleware_exception_is_retried_like_a_handler_failure(app: Soniq) -> None:
    attempts: list[int] = []

    @app.middleware
    async def flaky(ctx: JobContext, call_next: Any) -> Any:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails in middleware")
        return await call_next()

    @app.job(name="mw.retried", retries=2)
    async def retried() -> str:
        return "ok"

    job_id = await app.enqueue(retried)
    await app.run_worker(run_once=True)
    assert attempts == [1, 2]
    assert await app.get_result(job_id) == "ok"


async def test_the_timeout_covers_the_middleware_chain(app: Soniq) -> None:
    import anyio

    @app.middleware
    async def slow(ctx: JobContext, call_next: Any) -> Any:
        await anyio.sleep(30)
        return await call_next()

    @app.job(name="mw.slow", retries=0, timeout=0.2)
    async def quick() -> None:
        return None

    job_id = await app.enqueue(quick)
    with anyio.fail_after(20):
        await app.run_worker(run_once=True)
    [dead] = await app.dead_letter.list()
    assert dead["id"] == job_id
    assert "timed out" in (dead["last_error"] or "")


async def test_a_task_registered_after_the_worker_started_gets_the_chain(app: Soniq) -> None:
    wrapped: list[str] = []

    @app.middleware
    async def record(ctx: JobContext, call_next: Any) -> Any:
        wrapped.append(ctx.job_name)
        return await call_next()

    worker = app.worker()  # chains are built when it runs, from the registry then

    @app.job(name="mw.late")
    async def late() -> int:
        return 1

    job_id = await app.enqueue(late)
    await worker.run_once()
    assert wrapped == ["mw.late"]
    assert await app.get_result(job_id) == 1


async def test_middleware_is_frozen_once_a_worker_started_and_thaws_at_close(app: Soniq) -> None:
    async def mw(ctx: JobContext, call_next: Any) -> Any:
        return await call_next()

    app.worker()
    with pytest.raises(SoniqError) as info:
        app.middleware(mw)
    assert info.value.code == APP_FROZEN
    assert info.value.details["part"] == "middleware"
    assert app._config.middleware == []
    await app.close()
    app.middleware(mw)
    assert app._config.middleware == [mw]


def test_non_async_middleware_is_refused_with_a_code() -> None:
    app = Soniq(backend="memory")

    def sync_mw(ctx: JobContext, call_next: Any) -> Any:
        return call_next()

    async def one_arg(ctx: JobContext) -> Any:
        return None

    for bad in (sync_mw, one_arg, "not callable"):
        with pytest.raises(SoniqError) as info:
            app.middleware(bad)  # type: ignore[arg-type]
        assert info.value.code == INVALID_MIDDLEWARE
    assert app._config.middleware == []


def test_a_blocking_app_runs_middleware_round_its_sync_handlers(
    sync_app: soniq_sync.Soniq,
) -> None:
    calls: list[str] = []

    @sync_app.middleware
    async def tag(ctx: JobContext, call_next: Any) -> Any:
        calls.append(ctx.job_name)
        return {"wrapped": await call_next()}

    @sync_app.job(name="mw.blocking")
    def work(n: int) -> int:
        return n + 1

    job_id = sync_app.enqueue(work, n=1)
    assert sync_app.run_worker(run_once=True)
    assert calls == ["mw.blocking"]
    assert sync_app.get_result(job_id) == {"wrapped": 2}
