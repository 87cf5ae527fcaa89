"""An app's MetricsSink, called by real workers on real PostgreSQL for every attempt."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from soniq import JobContext, Snooze, Soniq, SoniqError
from soniq.errors import APP_FROZEN, INVALID_ARGUMENT
from soniq.observability import MetricsSink, NoopMetricsSink, PrometheusMetricsSink
from soniq.testing import drain
from tests.helpers import wait_for


@dataclass
class Recorder:
    """A custom sink: keeps every call, in order."""

    starts: list[dict[str, Any]] = field(default_factory=list)
    ends: list[dict[str, Any]] = field(default_factory=list)
    emitted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def record_job_start(
        self, *, job_id: str, job_name: str, queue: str, attempt: int
    ) -> None:
        self.starts.append(
            {"job_id": job_id, "job_name": job_name, "queue": queue, "attempt": attempt}
        )

    async def record_job_end(
        self,
        *,
        job_id: str,
        job_name: str,
        queue: str,
        status: str,
        duration_s: float,
        error: str | None = None,
    ) -> None:
        self.ends.append(
            {
                "job_id": job_id,
                "job_name": job_name,
                "queue": queue,
                "status": status,
                "duration_s": duration_s,
                "error": error,
            }
        )

    def emit(self, event: str, **fields: Any) -> None:
        self.emitted.append((event, fields))

    def statuses(self, job_id: str) -> list[str]:
        return [end["status"] for end in self.ends if end["job_id"] == job_id]


async def test_a_custom_sink_hears_every_attempt_of_a_real_worker(database_url: str) -> None:
    sink = Recorder()
    app = Soniq(database_url=database_url, metrics_sink=sink, enqueue_validation="none")
    async with app:
        assert isinstance(sink, MetricsSink) and app.metrics_sink is sink

        @app.job(name="sink.ok", queue="fast")
        async def ok() -> str:
            return "fine"

        @app.job(name="sink.flaky", retries=2)
        async def flaky(ctx: JobContext) -> None:
            if ctx.attempt == 1:
                raise ValueError("first time fails")

        @app.job(name="sink.broken", retries=0)
        def broken() -> None:  # a sync handler reports the same way
            raise RuntimeError("always")

        sleepy_seen: list[int] = []

        @app.job(name="sink.sleepy", retries=0)
        async def sleepy() -> Snooze | None:
            if not sleepy_seen:
                sleepy_seen.append(1)
                return Snooze(0)
            return None

        ids = {
            "ok": await app.enqueue(ok),
            "flaky": await app.enqueue(flaky),
            "broken": await app.enqueue(broken),
            "sleepy": await app.enqueue(sleepy),
            "unknown": await app.enqueue("sink.nobody", args={}),
        }
        await drain(app)

    assert sink.statuses(ids["ok"]) == ["done"]
    assert sink.statuses(ids["flaky"]) == ["failed", "done"]
    assert sink.statuses(ids["broken"]) == ["dead_letter"]
    assert sink.statuses(ids["sleepy"]) == ["snoozed", "done"]
    assert sink.statuses(ids["unknown"]) == ["dead_letter"]  # reported too: it was claimed

    # One start per attempt, before its end, with the attempt number.
    assert len(sink.starts) == len(sink.ends) == 7
    flaky_starts = [s["attempt"] for s in sink.starts if s["job_id"] == ids["flaky"]]
    assert flaky_starts == [1, 2]
    (ok_start,) = [s for s in sink.starts if s["job_id"] == ids["ok"]]
    assert ok_start == {"job_id": ids["ok"], "job_name": "sink.ok", "queue": "fast", "attempt": 1}
    errors = {(e["job_id"], e["status"]): e["error"] for e in sink.ends}
    assert errors[(ids["flaky"], "failed")] == "ValueError: first time fails"
    assert errors[(ids["broken"], "dead_letter")] == "RuntimeError: always"
    assert errors[(ids["ok"], "done")] is None
    assert "not registered" in (errors[(ids["unknown"], "dead_letter")] or "")
    assert all(end["duration_s"] >= 0 for end in sink.ends)
    assert sink.emitted == []


async def test_a_shutdown_requeue_is_reported_as_requeued(database_url: str) -> None:
    sink = Recorder()
    started = asyncio.Event()
    async with Soniq(database_url=database_url, metrics_sink=sink) as app:

        @app.job(name="sink.long")
        async def long() -> None:
            started.set()
            await asyncio.sleep(60)

        job_id = await app.enqueue(long)
        await app.ensure_initialized()
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 10)
        worker.stop(timeout=0)
        await asyncio.wait_for(task, 10)
        job = await app.get_job(job_id)
        assert job is not None and (job["status"], job["attempts"]) == ("queued", 0)

    assert sink.statuses(job_id) == ["requeued"]
    assert sink.emitted == [
        ("shutdown_nack", {"job_id": job_id, "job_name": "sink.long", "queue": "default"})
    ]


class Exploding:
    async def record_job_start(self, **_: Any) -> None:
        raise RuntimeError("sink down (start)")

    async def record_job_end(self, **_: Any) -> None:
        raise RuntimeError("sink down (end)")


async def test_a_failing_sink_is_logged_and_never_fails_the_job(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Soniq(database_url=database_url, metrics_sink=Exploding()) as app:

        @app.job()
        async def fine() -> int:
            return 7

        job_id = await app.enqueue(fine)
        with caplog.at_level(logging.ERROR, logger="soniq.worker"):
            await app.run_worker(run_once=True)
        assert await app.get_result(job_id) == 7
    assert "sink down (start)" in caplog.text and "sink down (end)" in caplog.text


async def test_a_prometheus_sink_with_its_own_registry(database_url: str) -> None:
    registry = CollectorRegistry()
    sink = PrometheusMetricsSink(registry=registry, prefix="myapp")
    async with Soniq(database_url=database_url, metrics_sink=sink) as app:

        @app.job(name="sink.counted")
        async def counted(fail: bool) -> None:
            if fail:
                raise RuntimeError("x")

        @app.job(name="sink.counted_once", retries=0)
        async def counted_once() -> None:
            raise RuntimeError("x")

        await app.enqueue(counted, fail=False)
        await app.enqueue(counted_once)
        await app.run_worker(run_once=True)

    def value(name: str, task: str) -> float | None:
        return registry.get_sample_value(name, {"job_name": task, "queue": "default"})

    assert value("myapp_jobs_started_total", "sink.counted") == 1
    assert value("myapp_jobs_succeeded_total", "sink.counted") == 1
    assert value("myapp_jobs_duration_seconds_count", "sink.counted") == 1
    assert value("myapp_jobs_failed_total", "sink.counted_once") == 1
    assert value("myapp_jobs_dead_lettered_total", "sink.counted_once") == 1
    assert value("soniq_jobs_started_total", "sink.counted") is None  # nothing elsewhere


async def test_the_noop_sink_is_the_default_and_records_nothing(database_url: str) -> None:
    noop = NoopMetricsSink()
    assert isinstance(noop, MetricsSink)
    async with Soniq(database_url=database_url, metrics_sink=noop) as app:

        @app.job()
        async def quick() -> int:
            return 1

        job_id = await app.enqueue(quick)
        await app.ensure_initialized()
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        try:
            await wait_for(lambda: app.get_result(job_id), message="the job to run")
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)
    assert Soniq(database_url=database_url).metrics_sink is None


async def test_the_sink_is_checked_and_frozen_once_initialised(database_url: str) -> None:
    with pytest.raises(SoniqError) as info:
        Soniq(database_url=database_url, metrics_sink=object())  # type: ignore[arg-type]
    assert info.value.code == INVALID_ARGUMENT
    assert "record_job_start and record_job_end" in info.value.message

    app = Soniq(database_url=database_url)
    try:
        sink = Recorder()
        app.metrics_sink = sink
        await app.ensure_initialized()
        with pytest.raises(SoniqError) as frozen:
            app.metrics_sink = None
        assert frozen.value.code == APP_FROZEN and frozen.value.details["part"] == "metrics_sink"
        assert app.metrics_sink is sink
        await app.close()
        app.metrics_sink = None
    finally:
        await app.close()
