"""The blocking facade, ``soniq_sync``, on real PostgreSQL: no event loop anywhere.

These tests are plain functions: if any call needed a running loop, they would fail.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import soniq_sync
from soniq import JobContext, SoniqError, task_ref


def rows(url: str, table: str = "soniq_jobs") -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT * FROM {table} ORDER BY created_at, id")  # type: ignore[arg-type]
        return cur.fetchall()


def no_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


def test_the_whole_producer_surface_works_without_an_event_loop(
    sync_app: soniq_sync.Soniq, database_url: str
) -> None:
    assert no_running_loop()

    @sync_app.job(queue="mail", priority=5)
    def send(to: str, ctx: JobContext) -> None: ...

    first = sync_app.enqueue(send, to="a@example.com")
    later = sync_app.schedule(send, 3600, to="b@example.com")
    many = sync_app.enqueue_many(send, [{"to": "c@example.com"}, {"to": "d@example.com"}])

    job = sync_app.get_job(first)
    assert job is not None
    assert (job["status"], job["queue"], job["priority"]) == ("queued", "mail", 5)
    assert job["args"] == {"to": "a@example.com"}
    scheduled = sync_app.get_job(later)
    assert scheduled is not None
    assert scheduled["scheduled_at"] > datetime.now(timezone.utc) + timedelta(minutes=59)
    assert [r["id"] for r in sync_app.list_jobs(queue="mail", limit=10)] != []
    assert {str(r["id"]) for r in rows(database_url)} == {first, later, *many}

    assert sync_app.cancel_job(later) is True
    assert sync_app.cancel_job(later) is False
    assert sync_app.get_result(first) is None
    assert sync_app.delete_job(many[0]) is True
    stats = sync_app.get_queue_stats_by_queue()
    assert [(s["queue"], s["queued"], s["cancelled"]) for s in stats] == [("mail", 2, 1)]
    totals = sync_app.get_queue_stats()
    assert (totals["total"], totals["queued"], totals["cancelled"]) == (3, 2, 1)


def test_same_checks_as_the_async_app(sync_app: soniq_sync.Soniq, database_url: str) -> None:
    with pytest.raises(SoniqError) as caught:
        sync_app.enqueue("nobody.registered.this", args={})
    assert caught.value.code == "SONIQ_UNKNOWN_TASK_NAME"

    ref = task_ref("billing.charge", default_queue="billing")
    job_id = sync_app.enqueue(ref, args={"order": 7})
    assert sync_app.get_job("not-a-uuid") is None  # names no job, as in the original
    with pytest.raises(SoniqError) as caught:
        sync_app.get_job(12345)  # type: ignore[arg-type]
    assert caught.value.code == "SONIQ_INVALID_JOB_ID"
    assert [(str(r["id"]), r["queue"]) for r in rows(database_url)] == [(job_id, "billing")]


def test_unique_enqueue_returns_the_queued_job(sync_app: soniq_sync.Soniq) -> None:
    @sync_app.job(unique=True)
    def rebuild(page: int) -> None: ...

    assert sync_app.enqueue(rebuild, page=1) == sync_app.enqueue(rebuild, page=1)
    assert sync_app.enqueue(rebuild, page=1) != sync_app.enqueue(rebuild, page=2)


def test_callers_psycopg_connection_commits_and_rolls_back_with_it(
    sync_app: soniq_sync.Soniq, database_url: str
) -> None:
    ref = task_ref("reports.build")
    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            kept = sync_app.enqueue(ref, args={"n": 1}, connection=conn)
        with pytest.raises(ZeroDivisionError), conn.transaction():
            sync_app.enqueue(ref, args={"n": 2}, connection=conn)
            sync_app.enqueue_many(ref, [{"n": 3}, {"n": 4}], connection=conn)
            1 / 0  # noqa: B018 - the caller's transaction fails after the enqueues
    assert [(str(r["id"]), r["args"]) for r in rows(database_url)] == [(kept, {"n": 1})]


def test_threads_share_one_app(sync_app: soniq_sync.Soniq, database_url: str) -> None:
    ref = task_ref("t.job")
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def produce(worker: int) -> None:
        try:
            for n in range(25):
                job_id = sync_app.enqueue(ref, args={"w": worker, "n": n})
                with lock:
                    ids.append(job_id)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(set(ids)) == 200
    assert len(rows(database_url)) == 200


def test_dead_letter_replay(sync_app: soniq_sync.Soniq, database_url: str) -> None:
    job_id = sync_app.enqueue(task_ref("x.y"), args={"a": 1})
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO soniq_dead_letter_jobs (id, job_name, args, queue, priority, "
            "attempts, max_attempts, last_error, reason, original_created_at) "
            "SELECT id, job_name, args, queue, priority, 1, 1, 'boom', 'failed', created_at "
            "FROM soniq_jobs WHERE id = %s",
            (job_id,),
        )
        conn.execute("DELETE FROM soniq_jobs WHERE id = %s", (job_id,))
    assert [str(r["id"]) for r in sync_app.dead_letter.list()] == [job_id]
    new_id = sync_app.dead_letter.replay(job_id)
    assert [str(r["id"]) for r in rows(database_url)] == [new_id]
    record = sync_app.dead_letter.get(job_id)
    assert record is not None and record["resurrection_count"] == 1


def test_setup_creates_the_schema(empty_database_url: str) -> None:
    app = soniq_sync.Soniq(database_url=empty_database_url)
    try:
        with pytest.raises(SoniqError) as caught:
            app.enqueue(task_ref("a.b"), args={})
        assert caught.value.code == "SONIQ_SCHEMA_MISSING"
        assert app.setup() != []
        assert app.setup() == []
        assert app.enqueue(task_ref("a.b"), args={})
    finally:
        app.close()


def test_context_manager_closes_the_pool(database_url: str) -> None:
    with soniq_sync.Soniq(database_url=database_url) as app:
        app.enqueue(task_ref("a.b"), args={})
        pool = app.backend.pool
        assert not pool.closed
    assert pool.closed


def test_module_level_functions_use_the_configured_default_app(database_url: str) -> None:
    app = soniq_sync.configure(database_url=database_url)
    try:
        assert soniq_sync.default_app() is app

        @soniq_sync.job(name="mod.level")
        def handler(x: int) -> None: ...

        first = soniq_sync.enqueue(handler, x=1)
        second = soniq_sync.schedule("mod.level", timedelta(hours=1), args={"x": 2})
        more = soniq_sync.enqueue_many(handler, [{"x": 3}])
        assert [str(r["id"]) for r in rows(database_url)] == [first, second, *more]

        # Reconfiguring keeps the registrations and fails whole on a bad value.
        with pytest.raises(SoniqError) as caught:
            soniq_sync.configure(database_url=database_url, concurrency=-1)
        assert caught.value.code == "SONIQ_INVALID_SETTING"
        with pytest.raises(SoniqError) as caught:
            soniq_sync.configure(database_url="mysql://nope")
        assert caught.value.code == "SONIQ_INVALID_DATABASE_URL"
        assert soniq_sync.default_app().settings.database_url == database_url
        assert soniq_sync.default_app().registry.get("mod.level") is not None
    finally:
        soniq_sync.default_app().close()


def test_connection_provider_routes_enqueues_into_the_callers_transaction(
    sync_app: soniq_sync.Soniq, database_url: str
) -> None:
    ref = task_ref("p.job")
    with psycopg.connect(database_url) as conn:
        sync_app.connection_provider = lambda: conn if conn.info.transaction_status else None
        try:
            with pytest.raises(RuntimeError), conn.transaction():
                sync_app.enqueue(ref, args={"n": 1})
                raise RuntimeError("roll back")
            outside = sync_app.enqueue(ref, args={"n": 2})  # no transaction: own pool
        finally:
            sync_app.connection_provider = None
    assert [str(r["id"]) for r in rows(database_url)] == [outside]


def test_same_public_names_as_the_async_app() -> None:
    import soniq

    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(soniq_sync.Soniq) == public(soniq.Soniq)


def test_run_worker_blocks_until_the_runnable_jobs_are_done(sync_app: soniq_sync.Soniq) -> None:
    seen: list[int] = []

    @sync_app.job()
    def record(n: int) -> int:
        seen.append(n)
        return n * 10

    ids = [sync_app.enqueue(record, n=n) for n in range(5)]
    assert sync_app.run_worker(concurrency=2, run_once=True) is True
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert [sync_app.get_result(i) for i in ids] == [0, 10, 20, 30, 40]
    assert sync_app.run_worker(run_once=True) is False  # nothing left


def test_a_callers_connection_is_freed_after_enqueues_on_it(
    sync_app: soniq_sync.Soniq, database_url: str
) -> None:
    import gc
    import weakref

    conn = psycopg.connect(database_url)
    with conn.transaction():
        sync_app.enqueue(task_ref("a.b"), args={}, connection=conn)
    conn.close()
    ref = weakref.ref(conn)
    del conn
    gc.collect()
    assert ref() is None  # the cursor Soniq keeps on it does not keep it alive


def test_threads_sharing_one_autocommit_connection(
    sync_app: soniq_sync.Soniq, database_url: str
) -> None:
    ref = task_ref("shared.conn")
    errors: list[BaseException] = []
    with psycopg.connect(database_url, autocommit=True) as conn:

        def produce(worker: int) -> None:
            try:
                for n in range(25):
                    sync_app.enqueue(ref, args={"w": worker, "n": n}, connection=conn)
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert sorted((r["args"]["w"], r["args"]["n"]) for r in rows(database_url)) == [
        (w, n) for w in range(4) for n in range(25)
    ]


def test_configure_applies_new_defaults_to_later_enqueues(database_url: str) -> None:
    ref = task_ref("remote.task")
    soniq_sync.configure(database_url=database_url, max_retries=3)
    try:
        first = soniq_sync.enqueue(ref, args={})
        soniq_sync.configure(database_url=database_url, max_retries=0)
        second = soniq_sync.enqueue(ref, args={})
        app = soniq_sync.default_app()
        attempts = [app.get_job(i)["max_attempts"] for i in (first, second)]  # type: ignore[index]
        assert attempts == [4, 1]
    finally:
        soniq_sync.default_app().close()
