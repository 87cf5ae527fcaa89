"""Prometheus metrics against real PostgreSQL: a worker's /metrics scraped over HTTP."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import anyio
import prometheus_client
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from soniq import Soniq
from soniq.observability.metrics import SoniqMetrics
from soniq.observability.worker import QueueGauges
from tests.helpers import wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(port: int) -> Samples:
    def fetch() -> str:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
        return body.decode()

    return parse(await anyio.to_thread.run_sync(fetch))


def job(name: str, queue: str = "default") -> frozenset[tuple[str, str]]:
    return frozenset({("job_name", name), ("queue", queue)})


async def test_a_running_worker_serves_its_metrics(database_url: str) -> None:
    port = free_port()
    app = Soniq(
        database_url=database_url,
        metrics_port=port,
        metrics_host="127.0.0.1",
        metrics_interval=0.1,
    )

    @app.job(name="metrics.ok")
    async def ok() -> None: ...

    @app.job(name="metrics.broken", retries=0)
    async def broken() -> None:
        raise RuntimeError("broken on purpose")

    ok_ids = [await app.enqueue(ok), await app.enqueue(ok)]
    broken_id = await app.enqueue(broken)
    worker = app.worker()
    running = asyncio.create_task(worker.run(concurrency=2, queues=["default"]))
    try:

        async def finished() -> bool:
            states = [(await app.get_job(i) or {}).get("status") for i in [*ok_ids, broken_id]]
            return states == ["done", "done", "dead_letter"]

        await wait_for(finished, message="both jobs done and the broken one dead-lettered")

        async def drained() -> Samples | None:
            samples = await scrape(port)
            depth = samples.get(("soniq_queue_depth", frozenset({("queue", "default")})))
            return samples if depth == 0 else None

        samples = await wait_for(drained, message="the queue depth gauge at 0")
    finally:
        worker.stop()
        await running
        await app.close()

    assert samples[("soniq_jobs_enqueued_total", job("metrics.ok"))] == 2
    assert samples[("soniq_jobs_enqueued_total", job("metrics.broken"))] == 1
    assert samples[("soniq_jobs_started_total", job("metrics.ok"))] == 2
    assert samples[("soniq_jobs_succeeded_total", job("metrics.ok"))] == 2
    assert samples[("soniq_jobs_failed_total", job("metrics.ok"))] == 0
    assert samples[("soniq_jobs_started_total", job("metrics.broken"))] == 1
    assert samples[("soniq_jobs_succeeded_total", job("metrics.broken"))] == 0
    assert samples[("soniq_jobs_failed_total", job("metrics.broken"))] == 1
    assert samples[("soniq_jobs_dead_lettered_total", job("metrics.broken"))] == 1
    assert samples[("soniq_jobs_duration_seconds_count", job("metrics.ok"))] == 2
    assert samples[("soniq_jobs_duration_seconds_count", job("metrics.broken"))] == 1
    assert samples[("soniq_jobs_duration_seconds_sum", job("metrics.ok"))] > 0
    age = ("soniq_queue_oldest_job_age_seconds", frozenset({("queue", "default")}))
    assert samples[age] == 0
    # The endpoint goes away with the worker.
    with pytest.raises(urllib.error.URLError):
        await scrape(port)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[CollectorRegistry]:
    fresh = CollectorRegistry()
    monkeypatch.setattr(prometheus_client, "REGISTRY", fresh)
    yield fresh


async def test_queue_gauges_count_the_jobs_ready_now(
    app: Soniq, registry: CollectorRegistry
) -> None:
    @app.job(name="metrics.waiting")
    async def waiting() -> None: ...

    minute_ago = datetime.now(timezone.utc) - timedelta(seconds=60)
    for _ in range(3):
        await app.enqueue(waiting, queue="q1", scheduled_at=minute_ago)
    await app.schedule(waiting, 3600, queue="q1")  # not ready: not counted
    await app.enqueue(waiting, queue="q2")
    await app.ensure_initialized()
    metrics = SoniqMetrics()

    def gauge(name: str, queue: str) -> float | None:
        return registry.get_sample_value(name, {"queue": queue})

    await QueueGauges(app.store, metrics, None, 1.0).refresh()
    assert (gauge("soniq_queue_depth", "q1"), gauge("soniq_queue_depth", "q2")) == (3, 1)
    assert 60 <= (gauge("soniq_queue_oldest_job_age_seconds", "q1") or 0) < 120
    assert 0 <= (gauge("soniq_queue_oldest_job_age_seconds", "q2") or -1) < 60

    # A reader for q2 only (a worker serving q2) leaves the other queues' gauges alone.
    await app.run_worker(run_once=True, queues=["q2"])
    await QueueGauges(app.store, metrics, ["q2"], 1.0).refresh()
    assert gauge("soniq_queue_depth", "q2") == 0
    assert gauge("soniq_queue_depth", "q1") == 3
