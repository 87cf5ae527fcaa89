"""Tracing against real PostgreSQL: the trace context rides in the job row into the worker.

Spans are collected by the OpenTelemetry SDK's in-memory exporter (tests/otel_support).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import psycopg2
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import soniq_sync
from soniq import Soniq, SoniqError
from soniq.errors import SCHEMA_MISSING
from tests import otel_support
from tests.otel_support import named, one

tracer = trace.get_tracer("soniq.tests")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    yield otel_support.install()


async def headers_of(url: str, job_id: str) -> Any:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT headers FROM soniq_jobs WHERE id = %s", (job_id,))
        row = await cur.fetchone()
    assert row is not None, f"no job {job_id}"
    return row[0]


def trace_hex(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


async def test_a_trace_runs_from_the_enqueue_into_the_worker(
    app: Soniq, database_url: str, spans: InMemorySpanExporter
) -> None:
    @app.job(name="t.traced")
    async def traced(n: int) -> None:
        with tracer.start_as_current_span("inside the async handler"):
            pass

    @app.job(name="t.traced-sync")
    def traced_sync(n: int) -> None:
        with tracer.start_as_current_span("inside the sync handler"):
            pass

    with tracer.start_as_current_span("web request") as request:
        job_id = await app.enqueue(traced, n=1)
        sync_id = await app.enqueue(traced_sync, n=2)

    headers = await headers_of(database_url, job_id)
    assert headers["traceparent"].startswith(f"00-{trace_hex(request)}-")
    await app.run_worker(run_once=True)

    finished = spans.get_finished_spans()
    request_id = request.get_span_context().span_id
    for name, handler_span, jid in [
        ("t.traced", "inside the async handler", job_id),
        ("t.traced-sync", "inside the sync handler", sync_id),
    ]:
        producer = one(finished, f"soniq.enqueue {name}")
        consumer = one(finished, f"soniq.run {name}")
        inner = one(finished, handler_span)
        assert producer.kind is SpanKind.PRODUCER
        assert producer.parent is not None and producer.parent.span_id == request_id
        assert consumer.kind is SpanKind.CONSUMER
        assert consumer.context.trace_id == request.get_span_context().trace_id
        assert consumer.parent is not None
        assert consumer.parent.span_id == producer.context.span_id
        assert consumer.parent.is_remote
        assert inner.parent is not None and inner.parent.span_id == consumer.context.span_id
        assert dict(producer.attributes or {}) == {
            "messaging.system": "soniq",
            "messaging.operation.type": "send",
            "messaging.operation.name": "enqueue",
            "messaging.destination.name": "default",
            "messaging.message.id": jid,
            "soniq.job.name": name,
        }
        assert dict(consumer.attributes or {}) == {
            "messaging.system": "soniq",
            "messaging.operation.type": "process",
            "messaging.operation.name": "run",
            "messaging.destination.name": "default",
            "messaging.message.id": jid,
            "soniq.job.name": name,
            "soniq.job.attempt": 1,
            "soniq.job.outcome": "succeeded",
        }
        assert consumer.status.status_code is StatusCode.UNSET


async def test_an_enqueue_outside_a_span_writes_no_headers_and_starts_a_new_trace(
    app: Soniq, database_url: str, spans: InMemorySpanExporter
) -> None:
    @app.job(name="t.plain")
    async def plain() -> None: ...

    job_id = await app.enqueue(plain)
    assert await headers_of(database_url, job_id) is None
    assert named(spans.get_finished_spans(), "soniq.enqueue t.plain") == []
    # A worker inside a span of its own does not adopt jobs without headers.
    with tracer.start_as_current_span("around the worker"):
        await app.run_worker(run_once=True)
    consumer = one(spans.get_finished_spans(), "soniq.run t.plain")
    assert consumer.parent is None


async def test_enqueue_many_and_schedule_carry_the_context(
    app: Soniq, database_url: str, spans: InMemorySpanExporter
) -> None:
    @app.job(name="t.many")
    async def many(n: int) -> None: ...

    @app.job(name="t.unique-many", unique=True)
    async def unique_many(n: int) -> None: ...

    with tracer.start_as_current_span("batch") as batch:
        ids = await app.enqueue_many(many, [{"n": i} for i in range(3)])
        deduped = await app.enqueue_many(unique_many, [{"n": 1}, {"n": 1}, {"n": 2}])
        later = await app.schedule(many, 0.0, n=9)
    assert len(set(ids)) == 3 and deduped[0] == deduped[1] != deduped[2]
    for job_id in [*ids, *deduped, later]:
        headers = await headers_of(database_url, job_id)
        assert headers["traceparent"].split("-")[1] == trace_hex(batch)

    producers = named(spans.get_finished_spans(), "soniq.enqueue t.many")
    counts = [(p.attributes or {}).get("messaging.batch.message_count") for p in producers]
    assert sorted(counts, key=str) == [3, None]  # enqueue_many, then schedule
    await app.run_worker(run_once=True)
    runs = named(spans.get_finished_spans(), "soniq.run t.many")
    assert len(runs) == 4
    assert {run.context.trace_id for run in runs} == {batch.get_span_context().trace_id}


async def test_the_transactional_path_carries_the_context(
    app: Soniq, database_url: str, spans: InMemorySpanExporter
) -> None:
    @app.job(name="t.tx")
    async def tx(n: int) -> None: ...

    with tracer.start_as_current_span("request") as request:
        async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
            by_psycopg = await app.enqueue(tx, n=1, connection=conn)
            many_psycopg = await app.enqueue_many(tx, [{"n": 2}], connection=conn)
        pg = await asyncpg.connect(database_url)
        try:
            async with pg.transaction():
                by_asyncpg = await app.enqueue(tx, n=3, connection=pg)
                many_asyncpg = await app.enqueue_many(tx, [{"n": 4}], connection=pg)
        finally:
            await pg.close()
        engine = create_async_engine(
            make_url(database_url).set(drivername="postgresql+psycopg").render_as_string(False)
        )
        try:
            async with AsyncSession(engine) as session, session.begin():
                by_sqlalchemy = await app.enqueue(tx, n=5, connection=session)
                many_sqlalchemy = await app.enqueue_many(tx, [{"n": 6}], connection=session)
        finally:
            await engine.dispose()
    written = [by_psycopg, *many_psycopg, by_asyncpg, *many_asyncpg]
    written += [by_sqlalchemy, *many_sqlalchemy]
    for job_id in written:
        headers = await headers_of(database_url, job_id)
        assert headers["traceparent"].split("-")[1] == trace_hex(request)


def test_the_blocking_app_carries_the_context(
    sync_app: soniq_sync.Soniq, database_url: str, spans: InMemorySpanExporter
) -> None:
    @sync_app.job(name="t.sync-producer")
    def job(n: int) -> None:
        with tracer.start_as_current_span("inside"):
            pass

    with tracer.start_as_current_span("django view") as view:
        one_id = sync_app.enqueue(job, n=1)
        many_ids = sync_app.enqueue_many(job, [{"n": 2}, {"n": 3}])
        with psycopg.connect(database_url) as conn, conn.transaction():
            tx_id = sync_app.enqueue(job, n=4, connection=conn)
        legacy = psycopg2.connect(database_url)
        try:
            with legacy:  # commits
                legacy_ids = sync_app.enqueue_many(job, [{"n": 5}, {"n": 6}], connection=legacy)
        finally:
            legacy.close()
    written = [one_id, *many_ids, tx_id, *legacy_ids]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id::text, headers FROM soniq_jobs WHERE id = ANY(%s::uuid[])", (written,)
        ).fetchall()
    assert len(rows) == 6
    for _, headers in rows:
        assert headers["traceparent"].split("-")[1] == trace_hex(view)

    assert sync_app.run_worker(run_once=True) is True
    runs = named(spans.get_finished_spans(), "soniq.run t.sync-producer")
    assert {run.context.trace_id for run in runs} == {view.get_span_context().trace_id}
    assert len(runs) == 6


async def test_a_failing_job_has_an_error_span_with_the_exception(
    app: Soniq, spans: InMemorySpanExporter
) -> None:
    @app.job(name="t.flaky", retries=1)
    async def flaky() -> None:
        raise ValueError("no luck")

    with tracer.start_as_current_span("request"):
        await app.enqueue(flaky)
    await app.run_worker(run_once=True)  # attempt 1 fails and is retried at once
    await app.run_worker(run_once=True)  # attempt 2 fails and is dead-lettered
    runs = sorted(
        named(spans.get_finished_spans(), "soniq.run t.flaky"),
        key=lambda s: (s.attributes or {})["soniq.job.attempt"],
    )
    assert [(s.attributes or {})["soniq.job.outcome"] for s in runs] == [
        "retried",
        "dead_lettered",
    ]
    for run in runs:
        assert run.status.status_code is StatusCode.ERROR
        assert run.status.description == "ValueError: no luck"
        (event,) = [e for e in run.events if e.name == "exception"]
        assert (event.attributes or {})["exception.type"] == "ValueError"
        assert (event.attributes or {})["exception.message"] == "no luck"
    assert runs[0].parent is not None and runs[1].parent is not None
    assert runs[0].parent.span_id == runs[1].parent.span_id  # both continue the producer


async def test_unreadable_headers_do_not_stop_the_job(
    app: Soniq, database_url: str, spans: InMemorySpanExporter
) -> None:
    @app.job(name="t.odd-headers")
    async def odd() -> str:
        return "ran"

    ids = [await app.enqueue(odd) for _ in range(3)]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        odd_values = ['"not an object"', '{"traceparent": "garbage"}', '{"traceparent": 7}']
        for job_id, value in zip(ids, odd_values, strict=True):
            await conn.execute(
                "UPDATE soniq_jobs SET headers = %s::jsonb WHERE id = %s", (value, job_id)
            )
    await app.run_worker(run_once=True)
    assert [await app.get_result(i) for i in ids] == ["ran"] * 3
    runs = named(spans.get_finished_spans(), "soniq.run t.odd-headers")
    assert len(runs) == 3 and all(run.parent is None for run in runs)


async def test_tracing_off_writes_no_headers_and_makes_no_spans(
    database_url: str, spans: InMemorySpanExporter
) -> None:
    app = Soniq(database_url=database_url, tracing="off")
    try:

        @app.job(name="t.untraced")
        async def untraced() -> None: ...

        with tracer.start_as_current_span("request"):
            job_id = await app.enqueue(untraced)
            many = await app.enqueue_many(untraced, [{}])
        assert await headers_of(database_url, job_id) is None
        assert await headers_of(database_url, many[0]) is None
        await app.run_worker(run_once=True)
        soniq_spans = [s for s in spans.get_finished_spans() if s.name.startswith("soniq.")]
        assert soniq_spans == []
    finally:
        await app.close()


async def test_a_failed_write_ends_the_producer_span_with_the_error(
    app: Soniq, database_url: str, spans: InMemorySpanExporter
) -> None:
    @app.job(name="t.never-written")
    async def never() -> None: ...

    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        await conn.execute("DROP TABLE soniq_jobs CASCADE")  # rolled back below
        with tracer.start_as_current_span("request"), pytest.raises(SoniqError) as info:
            await app.enqueue(never, connection=conn)
        raise psycopg.Rollback()
    assert info.value.code == SCHEMA_MISSING
    producer = one(spans.get_finished_spans(), "soniq.enqueue t.never-written")
    assert producer.status.status_code is StatusCode.ERROR
    assert [e.name for e in producer.events] == ["exception"]
