"""Waiting for a job's outcome (app.handle, wait_many, events) on real PostgreSQL,
through the public API: outcomes, the subscribe-then-check race, one LISTEN connection
per app, a lost listener, polling without LISTEN, and the events only watched jobs send.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

import soniq_sync
from soniq import JobCancelled, JobFailed, JobGone, JobOutcome, Soniq, SoniqError
from soniq.errors import (
    INVALID_ARGUMENT,
    INVALID_JOB_ID,
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_GONE,
    WAIT_IN_HANDLER,
)
from soniq.waiting.hub import APPLICATION_NAME, CHANNEL
from soniq.worker import Worker
from tests.helpers import wait_for


@asynccontextmanager
async def running(app: Soniq, concurrency: int = 8) -> AsyncIterator[Worker]:
    """A worker of ``app`` running in this process until the block ends."""
    await app.ensure_initialized()
    worker = app.worker()
    task = asyncio.create_task(worker.run(concurrency=concurrency))
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def listeners(database_url: str) -> list[int]:
    """Pids of the wait hubs' LISTEN connections to this test's database."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            (APPLICATION_NAME,),
        )
        return [pid for (pid,) in await cur.fetchall()]


def pending(app: Soniq) -> int:
    """Jobs with a registered wait in the app's hub (0 when nothing waits)."""
    return app._wait_hub.pending


async def test_a_finished_job_is_answered_at_once_with_its_outcome(app: Soniq) -> None:
    @app.job()
    async def add(a: int, b: int) -> int:
        return a + b

    job_id = await app.enqueue(add, a=2, b=3)
    await app.run_worker(run_once=True)
    started = time.monotonic()
    outcome = await app.handle(job_id).wait(timeout=10)
    assert time.monotonic() - started < 1.0  # not the 2 s safety poll
    assert outcome == JobOutcome(
        job_id=job_id,
        status="done",
        result=5,
        error=None,
        attempts=1,
        finished_at=outcome.finished_at,
    )
    assert outcome.finished_at is not None
    assert await app.handle(job_id).result(timeout=10) == 5
    assert pending(app) == 0


async def test_outcomes_dead_letter_cancelled_and_gone(app: Soniq) -> None:
    @app.job(retries=0)
    async def fails() -> None:
        raise ValueError("the printer is on fire")

    @app.job()
    async def noop() -> None: ...

    failed = await app.enqueue(fails)
    cancelled = await app.enqueue(noop)
    deleted = await app.enqueue(noop)
    assert await app.cancel_job(cancelled)
    await app.run_worker(run_once=True)

    with pytest.raises(JobFailed) as failure:
        await app.handle(failed).result(timeout=10)
    assert failure.value.code == JOB_FAILED
    assert "the printer is on fire" in (failure.value.error or "")
    assert failure.value.outcome.status == "dead_letter"
    outcome = await app.handle(failed).wait(timeout=10)
    assert (outcome.status, outcome.result) == ("dead_letter", None)

    with pytest.raises(JobCancelled) as cancel:
        await app.handle(cancelled).result(timeout=10)
    assert cancel.value.code == JOB_CANCELLED
    assert (await app.handle(cancelled).wait(timeout=10)).status == "cancelled"

    assert await app.delete_job(deleted)
    with pytest.raises(JobGone) as gone:
        await app.handle(deleted).wait(timeout=10)
    assert gone.value.code == JOB_GONE and gone.value.job_id == deleted
    # An id that never named a job is gone too: the two cannot be told apart.
    with pytest.raises(JobGone):
        await app.handle("01900000-0000-7000-8000-000000000000").result(timeout=10)
    assert pending(app) == 0


async def test_a_result_past_the_ttl_is_gone(app: Soniq, database_url: str) -> None:
    @app.job()
    async def value() -> int:
        return 7

    job_id = await app.enqueue(value)
    await app.run_worker(run_once=True)
    assert await app.handle(job_id).result(timeout=10) == 7
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE soniq_jobs SET finished_at = now() - make_interval(secs => %s) WHERE id = %s",
            (app.settings.result_ttl + 60, job_id),
        )
    assert await app.get_result(job_id) is None  # as get_result sees it
    with pytest.raises(JobGone):
        await app.handle(job_id).result(timeout=10)


async def test_a_timeout_leaves_the_job_running_to_completion(app: Soniq) -> None:
    release = asyncio.Event()

    @app.job()
    async def slow() -> str:
        await release.wait()
        return "finished"

    job_id = await app.enqueue(slow)
    async with running(app):
        handle = app.handle(job_id)
        with pytest.raises(TimeoutError):
            await handle.wait(timeout=0.2)
        assert pending(app) == 0  # the timed-out wait unregistered itself
        assert (await app.get_job(job_id) or {})["status"] in ("queued", "processing")
        release.set()
        assert await handle.result(timeout=10) == "finished"


async def test_enqueue_then_wait_at_once_never_misses_the_end(database_url: str) -> None:
    # The safety poll and the worker's poll far beyond the timeout: a missed event,
    # or a claim that skipped a row the wait had locked, would time the wait out.
    async with Soniq(database_url=database_url, wait_poll=60, poll_interval=60) as app:

        @app.job()
        async def noop() -> None: ...

        async def loop(n: int, watch: bool) -> int:
            for _ in range(n):
                job_id = await app.enqueue(noop, watch=watch)
                outcome = await app.handle(job_id).wait(timeout=3)
                assert outcome.status == "done"
            return n

        async with running(app, concurrency=16):
            done = await asyncio.gather(*(loop(500, watch=i % 2 == 0) for i in range(4)))
        assert sum(done) == 2000
        assert pending(app) == 0


async def test_a_thousand_waits_share_one_listen_connection(app: Soniq, database_url: str) -> None:
    @app.job()
    async def square(n: int) -> int:
        return n * n

    ids = await app.enqueue_many(square, [{"n": n} for n in range(1000)])
    waits = [asyncio.create_task(app.handle(i).result(timeout=60)) for i in ids]
    await wait_for(lambda: pending(app) == 1000, message="1000 registered waits")
    await wait_for(lambda: app._wait_hub.listening)
    assert len(await listeners(database_url)) == 1
    async with running(app, concurrency=32):
        results = await asyncio.gather(*waits)
    assert results == [n * n for n in range(1000)]
    assert len(await listeners(database_url)) == 1
    assert pending(app) == 0


async def test_a_killed_listener_loses_no_wait(database_url: str) -> None:
    async with Soniq(database_url=database_url, wait_poll=1.0) as app:
        release = asyncio.Event()

        @app.job()
        async def gated() -> str:
            await release.wait()
            return "ok"

        job_id = await app.enqueue(gated)
        async with running(app):
            wait = asyncio.create_task(app.handle(job_id).result(timeout=30))
            (pid,) = await wait_for(lambda: listeners(database_url), message="a listener")
            await wait_for(lambda: app._wait_hub.listening)
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            # The job ends while the listener is down: its event is lost.
            release.set()
            await wait_for(lambda: app.get_result(job_id), message="the job done", interval=0.005)
            started = time.monotonic()
            assert await wait == "ok"
            # The safety poll (1 s) or the reconnection's re-check, whichever first.
            assert time.monotonic() - started < 1.0 + 1.0 + 1.0
            reconnected = await wait_for(lambda: listeners(database_url), message="a new listener")
            assert reconnected != [pid]


async def test_without_listen_waits_poll(database_url: str) -> None:
    async with Soniq(database_url=database_url, listen_notify=False, poll_interval=0.2) as app:

        @app.job()
        async def value(n: int) -> int:
            return n

        async with running(app):
            ids = [await app.enqueue(value, n=n) for n in range(5)]
            outcomes = await app.wait_many(ids, timeout=20)
            assert [o.result for o in outcomes.values()] == list(range(5))
        assert await listeners(database_url) == []


async def test_sqlite_waits_poll(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with Soniq(database_url=url) as app:

        @app.job()
        async def value(n: int) -> int:
            return n

        await app.setup()
        job_id = await app.enqueue(value, n=42)
        async with running(app):
            assert await app.handle(job_id).result(timeout=20) == 42
        with pytest.raises(TimeoutError):
            await app.handle(await app.enqueue(value, n=1)).wait(timeout=0.2)


async def test_memory_backend_waits_poll() -> None:
    async with Soniq(backend="memory") as app:

        @app.job()
        async def value() -> str:
            return "memory"

        job_id = await app.enqueue(value, watch=True)
        async with running(app):
            assert await app.handle(job_id).result(timeout=20) == "memory"


async def test_cancelled_and_timed_out_waiters_leave_nothing_behind(app: Soniq) -> None:
    @app.job()
    async def noop() -> None: ...

    ids = await app.enqueue_many(noop, [{}] * 200)
    tasks = [asyncio.create_task(app.handle(i).wait()) for i in ids for _ in range(5)]
    await wait_for(lambda: pending(app) == 200, message="the waits registered")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(task.cancelled() for task in tasks)
    assert pending(app) == 0
    timed_out = await asyncio.gather(
        *(app.handle(i).wait(timeout=0.05) for i in ids), return_exceptions=True
    )
    assert all(isinstance(r, TimeoutError) for r in timed_out)
    assert pending(app) == 0
    stream = app.handle(ids[0]).events()
    reader = asyncio.create_task(stream.__anext__())
    await wait_for(lambda: pending(app) == 1)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await stream.aclose()
    assert pending(app) == 0


async def test_waiting_inside_a_handler_is_refused(app: Soniq) -> None:
    seen: list[str] = []

    @app.job()
    async def other() -> None: ...

    @app.job()
    async def waits(awaited: str) -> None:
        try:
            await app.handle(awaited).wait(timeout=1)
        except SoniqError as exc:
            seen.append(exc.code)
        try:
            await app.wait_many([awaited], timeout=1)
        except SoniqError as exc:
            seen.append(exc.code)
        outcome = await app.handle(awaited).wait(timeout=10, allow_in_handler=True)
        seen.append(outcome.status)

    target = await app.enqueue(other)
    await app.run_worker(run_once=True)
    await app.enqueue(waits, awaited=target)
    await app.run_worker(run_once=True)
    assert seen == [WAIT_IN_HANDLER, WAIT_IN_HANDLER, "done"]


async def test_only_watched_jobs_send_events(app: Soniq, database_url: str) -> None:
    @app.job()
    async def noop() -> None: ...

    @app.job(retries=0)
    async def fails() -> None:
        raise RuntimeError("no")

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as spy:
        await spy.execute(f"LISTEN {CHANNEL}")

        async def heard_until_marker(marker: str) -> list[str]:
            """Every payload before ``marker``, which is sent after everything else."""
            async with await psycopg.AsyncConnection.connect(
                database_url, autocommit=True
            ) as other:
                await other.execute("SELECT pg_notify(%s, %s)", (CHANNEL, marker))
            heard: list[str] = []
            async for note in spy.notifies(timeout=10):
                if note.payload == marker:
                    return heard
                heard.append(note.payload)
            raise AssertionError(f"marker {marker!r} never arrived; heard {heard}")

        # A drain of unwatched jobs, single and batched, done and dead: no NOTIFY at all.
        await app.enqueue_many(noop, [{}] * 300)
        for _ in range(20):
            await app.enqueue(noop)
        await app.enqueue(fails)
        await app.cancel_job(await app.enqueue(noop))
        await app.run_worker(run_once=True)
        assert await heard_until_marker("marker-1") == []

        # The control: watched jobs send exactly their own events.
        done = await app.enqueue(noop, watch=True)
        batch = await app.enqueue_many(noop, [{}] * 3, watch=True)
        dead = await app.enqueue(fails, watch=True)
        cancelled = await app.enqueue(noop, watch=True)
        await app.cancel_job(cancelled)
        await app.run_worker(run_once=True)
        items = {i for p in await heard_until_marker("marker-2") for i in p.split(",")}
        assert items == {f"d:{done}", *(f"d:{b}" for b in batch), f"x:{dead}", f"c:{cancelled}"}
        assert (await app.handle(dead).wait(timeout=10)).status == "dead_letter"


async def test_watch_is_checked(app: Soniq) -> None:
    @app.job()
    async def noop() -> None: ...

    for call in (
        lambda: app.enqueue(noop, watch="yes"),  # type: ignore[arg-type]
        lambda: app.enqueue_many(noop, [{}], watch=1),  # type: ignore[arg-type]
    ):
        with pytest.raises(SoniqError) as err:
            await call()
        assert err.value.code == INVALID_ARGUMENT
    assert await app.list_jobs() == []


async def test_bad_input_is_refused_before_any_io(app: Soniq) -> None:
    job_id = "01900000-0000-7000-8000-000000000000"
    bad: list[tuple[Callable[[], Any], str]] = [
        (lambda: app.handle(job_id).wait(timeout=-1), INVALID_ARGUMENT),
        (lambda: app.handle(job_id).wait(timeout=math.nan), INVALID_ARGUMENT),
        (lambda: app.handle(job_id).result(timeout=True), INVALID_ARGUMENT),
        (lambda: app.handle(job_id).wait(timeout="5"), INVALID_ARGUMENT),
        (lambda: app.wait_many([job_id], return_when="any"), INVALID_ARGUMENT),
        (lambda: app.wait_many(job_id), INVALID_ARGUMENT),
        (lambda: app.wait_many(["nope"]), INVALID_JOB_ID),
    ]
    for call, code in bad:
        with pytest.raises(SoniqError) as err:
            await call()
        assert err.value.code == code
    with pytest.raises(SoniqError) as err:
        app.handle("not-a-uuid")
    assert err.value.code == INVALID_JOB_ID
    assert app._wait_hub.pending == 0
    assert await app.wait_many([]) == {}


async def test_wait_many_all_and_first(app: Soniq) -> None:
    @app.job()
    async def value(n: int) -> int:
        return n

    a = await app.enqueue(value, n=1, queue="a")
    b = await app.enqueue(value, n=2, queue="b")
    await app.run_worker(run_once=True, queues=["a"])
    first = await app.wait_many([a, b], timeout=10, return_when="first")
    assert list(first) == [a] and first[a].result == 1
    with pytest.raises(TimeoutError):
        await app.wait_many([a, b], timeout=0.2)
    await app.run_worker(run_once=True, queues=["b"])
    both = await app.wait_many([b, a, b], timeout=10)
    assert list(both) == [b, a]
    assert [o.result for o in both.values()] == [2, 1]


async def test_events_follow_the_row_to_the_end(app: Soniq, database_url: str) -> None:
    failed_once: list[int] = []
    release = asyncio.Event()

    @app.job(retries=1)
    async def flaky() -> str:
        if not failed_once:
            failed_once.append(1)
            raise RuntimeError("first attempt fails")
        await release.wait()
        return "second"

    job_id = await app.enqueue(flaky, watch=True)
    kinds: list[str] = []
    events: list[Any] = []

    async def follow() -> None:
        async for event in app.handle(job_id).events():
            kinds.append(event.kind)
            events.append(event)

    follower = asyncio.create_task(follow())
    await wait_for(lambda: pending(app) == 1)
    async with running(app):
        await wait_for(lambda: "retrying" in kinds, message="a retrying event")
        # What a progress write does (another part of issue 17): the row's progress
        # column changes and a "p" event names the job.
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            await wait_for(lambda: _status(c, job_id, "processing"), message="the second attempt")
            await c.execute(
                'UPDATE soniq_jobs SET progress = \'{"current": 1, "total": 2}\' WHERE id = %s',
                (job_id,),
            )
            await c.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"p:{job_id}"))
        await wait_for(lambda: "progress" in kinds, message="a progress event")
        release.set()
        await asyncio.wait_for(follower, 20)
    assert kinds[-1] == "done" and kinds.count("done") == 1
    assert kinds.index("retrying") < kinds.index("progress") < kinds.index("done")
    progress = next(e for e in events if e.kind == "progress")
    assert progress.progress == {"current": 1, "total": 2} and progress.attempt == 2
    assert events[-1].outcome is not None and events[-1].outcome.result == "second"
    assert pending(app) == 0


async def _status(conn: psycopg.AsyncConnection[Any], job_id: str, status: str) -> bool:
    cur = await conn.execute("SELECT status FROM soniq_jobs WHERE id = %s", (job_id,))
    row = await cur.fetchone()
    return row is not None and row[0] == status


def test_the_blocking_twin_honours_its_timeout(sync_app: soniq_sync.Soniq) -> None:
    @sync_app.job()
    def value() -> str:
        return "sync"

    job_id = sync_app.enqueue(value)
    handle = sync_app.handle(job_id)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        handle.wait(timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2.0
    sync_app.run_worker(run_once=True)
    assert handle.result(timeout=10) == "sync"
    outcomes = sync_app.wait_many([job_id], timeout=10)
    assert outcomes[job_id].status == "done"
    kinds = [event.kind for event in handle.events()]
    assert kinds == ["done"]


async def test_stale_worker_recovery_tells_the_waiters(app: Soniq, database_url: str) -> None:
    @app.job(retries=0)
    async def last_try() -> None: ...

    @app.job(retries=2)
    async def again() -> None: ...

    buried = await app.enqueue(last_try, watch=True)
    requeued = await app.enqueue(again, watch=True)
    plain = await app.enqueue(again)
    worker_id = "00000000-0000-4000-8000-0000000000aa"
    await app.store.workers.register(
        {"id": worker_id, "hostname": "gone", "pid": 1, "queues": None, "concurrency": 4}
    )
    assert len(await app.store.jobs.claim(worker_id, None, 10)) == 3
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as spy:
        await spy.execute(f"LISTEN {CHANNEL}")
        wait = asyncio.create_task(app.handle(buried).wait(timeout=30))
        await wait_for(lambda: pending(app) == 1)
        await spy.execute(
            "UPDATE soniq_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = %s",
            (worker_id,),
        )
        recovered = await app.store.workers.recover_stale(60)
        assert (recovered.requeued, recovered.dead_lettered) == (2, 1)
        heard: set[str] = set()
        async for note in spy.notifies(timeout=10):
            heard.update(note.payload.split(","))
            if len(heard) >= 2:
                break
        assert heard == {f"x:{buried}", f"r:{requeued}"}  # not the unwatched one
        assert plain not in str(heard)
        assert (await wait).status == "dead_letter"


async def test_a_locked_row_holds_up_no_other_wait(app: Soniq, database_url: str) -> None:
    @app.job()
    async def value(n: int) -> int:
        return n

    locked = await app.enqueue(value, n=1)
    other = await app.enqueue(value, n=2, queue="other")
    await app.run_worker(run_once=True, queues=["other"])
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        # A long transaction holds the queued job's row (as a handler's might).
        await holder.execute("SELECT 1 FROM soniq_jobs WHERE id = %s FOR UPDATE", (locked,))
        wait = asyncio.create_task(app.handle(locked).result(timeout=30))
        await wait_for(lambda: pending(app) == 1)
        started = time.monotonic()
        assert await app.handle(other).result(timeout=5) == 2
        assert time.monotonic() - started < 1.0  # not stuck behind the lock
        assert not wait.done()
        await holder.rollback()
    # Once the lock is gone the job is marked watched, and its end is heard.
    await wait_for(lambda: _watched(database_url, locked), message="the job marked")
    await app.run_worker(run_once=True)
    assert await wait == 1


async def _watched(database_url: str, job_id: str) -> bool:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT watched FROM soniq_jobs WHERE id = %s", (job_id,))
        row = await cur.fetchone()
        return bool(row and row[0])


async def test_an_idle_hub_lets_its_connections_go(
    app: Soniq, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import soniq.waiting.hub as hub_module

    monkeypatch.setattr(hub_module, "IDLE_STOP", 0.2)
    monkeypatch.setattr(hub_module, "FIRST_POLL", 0.05)

    @app.job()
    async def value(n: int) -> int:
        return n

    first = await app.enqueue(value, n=1)
    await app.run_worker(run_once=True)
    assert await app.handle(first).result(timeout=10) == 1
    await wait_for(lambda: listeners(database_url), message="the hub's listener")
    # Nothing waits: the listener (and the reads' connection) close...
    await wait_for(
        lambda: _no_listener(database_url), message="the idle listener closed", timeout=15
    )
    # ...and the next wait starts the hub again.
    second = await app.enqueue(value, n=2)
    waiting = asyncio.create_task(app.handle(second).result(timeout=10))
    await wait_for(lambda: listeners(database_url), message="a listener again")
    await app.run_worker(run_once=True)
    assert await waiting == 2


async def _no_listener(database_url: str) -> bool:
    return not await listeners(database_url)


def test_the_blocking_twin_on_the_memory_backend_and_its_threads() -> None:
    import threading

    with soniq_sync.Soniq(backend="memory") as app:

        @app.job()
        def double(n: int) -> int:
            return 2 * n

        ids = [app.enqueue(double, n=n) for n in range(4)]
        results: dict[int, int] = {}

        def wait_in_thread(n: int) -> None:
            results[n] = app.handle(ids[n]).result(timeout=20)

        threads = [threading.Thread(target=wait_in_thread, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        app.run_worker(run_once=True)
        for thread in threads:
            thread.join(timeout=30)
        assert results == {n: 2 * n for n in range(4)}
        assert app._wait_hub.pending == 0


async def test_closing_the_app_interrupts_pending_waits(app: Soniq) -> None:
    from soniq.errors import WAIT_INTERRUPTED

    @app.job()
    async def noop() -> None: ...

    job_id = await app.enqueue(noop)
    wait = asyncio.create_task(app.handle(job_id).wait())
    events = app.handle(job_id).events()
    follow = asyncio.create_task(events.__anext__())
    await wait_for(lambda: app._wait_hub.pending == 1)
    await app.close()
    for task in (wait, follow):
        with pytest.raises(SoniqError) as err:
            await asyncio.wait_for(task, 10)
        assert err.value.code == WAIT_INTERRUPTED
    await events.aclose()
    # The app reopens on next use, and so do its waits.
    await app.run_worker(run_once=True)
    assert (await app.handle(job_id).wait(timeout=10)).status == "done"


async def test_a_zero_timeout_still_looks_once(app: Soniq) -> None:
    @app.job()
    async def value() -> str:
        return "ready"

    finished = await app.enqueue(value)
    await app.run_worker(run_once=True)
    queued = await app.enqueue(value)
    assert await app.handle(finished).result(timeout=0) == "ready"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await app.handle(queued).wait(timeout=0)
    assert time.monotonic() - started < 2.0
    first = await app.wait_many([queued, finished], timeout=0, return_when="first")
    assert list(first) == [finished]
    assert pending(app) == 0


async def test_waits_follow_the_app_into_a_memory_backend(app: Soniq) -> None:
    @app.job()
    async def where() -> str:
        return "here"

    on_postgres = await app.enqueue(where)
    await app.run_worker(run_once=True)
    assert await app.handle(on_postgres).result(timeout=10) == "here"
    with app.using_backend("memory"):
        in_memory = await app.enqueue(where)
        await app.run_worker(run_once=True)
        assert await app.handle(in_memory).result(timeout=10) == "here"
    assert await app.handle(on_postgres).result(timeout=10) == "here"


async def test_a_task_ref_with_a_result_model_gives_a_typed_result(app: Soniq) -> None:
    from pydantic import BaseModel

    from soniq import task_ref
    from soniq.errors import INVALID_ARGUMENT, RESULT_INVALID

    class Rendered(BaseModel):
        url: str
        pages: int

    @app.job(name="docs.render")
    async def render(doc: int) -> dict[str, Any]:
        return {"url": f"/docs/{doc}.pdf", "pages": doc}

    @app.job(name="docs.broken")
    async def broken(doc: int) -> dict[str, Any]:
        return {"url": None}

    ref = task_ref("docs.render", result_model=Rendered)
    broken_ref = task_ref("docs.broken", result_model=Rendered)
    assert "result_model=" in repr(ref)
    ok = await app.enqueue(ref, args={"doc": 3})
    bad = await app.enqueue(broken_ref, args={"doc": 1})
    await app.run_worker(run_once=True)
    assert await app.handle(ok, ref=ref).result(timeout=10) == Rendered(url="/docs/3.pdf", pages=3)
    with pytest.raises(SoniqError) as err:
        await app.handle(bad, ref=broken_ref).result(timeout=10)
    assert err.value.code == RESULT_INVALID
    with pytest.raises(SoniqError) as err:
        task_ref("docs.render", result_model=object())
    assert err.value.code == INVALID_ARGUMENT
