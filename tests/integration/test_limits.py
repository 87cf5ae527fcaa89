"""Concurrency and rate limits per key, on real PostgreSQL, through the public API and
an in-process worker: what key a job gets, what the limited claim admits, and in what
order. The cross-process properties are in tests/acceptance/test_limits_process.py."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

import soniq_sync
from soniq import Concurrency, RateLimit, RateLimited, Soniq, SoniqError, task_ref
from soniq.errors import LIMIT_KEY_INVALID, LIMITS_NEED_READ_COMMITTED
from soniq.worker import Worker
from tests.helpers import wait_for


class Spans:
    """Start and end times of each handler run, by limit key, to measure overlap."""

    def __init__(self) -> None:
        self.by_key: dict[object, list[tuple[float, float]]] = defaultdict(list)
        self.starts: list[tuple[object, object]] = []

    async def run(self, key: object, tag: object = None, seconds: float = 0.0) -> None:
        self.starts.append((key, tag))
        began = time.monotonic()
        await asyncio.sleep(seconds)
        self.by_key[key].append((began, time.monotonic()))

    def overlap(self, key: object) -> int:
        events = sorted(
            [(a, 1) for a, _ in self.by_key[key]] + [(b, -1) for _, b in self.by_key[key]]
        )
        running = most = 0
        for _, step in events:
            running += step
            most = max(most, running)
        return most


async def rows(app: Soniq, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(app.settings.database_url) as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall() if cur.description else []


async def key_of(app: Soniq, job_id: str) -> str | None:
    ((key,),) = await rows(app, "SELECT limit_key FROM soniq_jobs WHERE id = %s", job_id)
    return key  # type: ignore[no-any-return]


# -- the key a job counts against ------------------------------------------------------


async def test_the_key_is_the_group_and_the_rendered_template(app: Soniq) -> None:
    @app.job(name="sync.customer", concurrency=Concurrency(2, key="{customer_id}"))
    async def sync_customer(customer_id: int, region: str = "eu") -> None: ...

    @app.job(name="reindex", concurrency=Concurrency(1, key="{tenant}-{region}", group="writes"))
    async def reindex(tenant: str, region: str = "eu") -> None: ...

    @app.job(name="nightly", concurrency=Concurrency(1))
    async def nightly() -> None: ...

    @app.job(name="plain")
    async def plain() -> None: ...

    assert await key_of(app, await app.enqueue(sync_customer, customer_id=42)) == "sync.customer:42"
    # A parameter's default fills the template when the call leaves it out.
    assert await key_of(app, await app.enqueue(reindex, tenant="acme")) == "writes:acme-eu"
    assert await key_of(app, await app.enqueue(nightly)) == "nightly"
    assert await key_of(app, await app.enqueue(plain)) is None
    # An explicit key wins, even on a task without limits.
    assert await key_of(app, await app.enqueue(plain, limit_key="vendor:x")) == "vendor:x"
    ids = await app.enqueue_many(sync_customer, [{"customer_id": i} for i in range(3)])
    assert [await key_of(app, i) for i in ids] == [f"sync.customer:{i}" for i in range(3)]


async def test_a_long_rendered_value_is_stored_as_its_hash(app: Soniq) -> None:
    @app.job(name="by.blob", concurrency=Concurrency(1, key="{blob}"))
    async def by_blob(blob: str) -> None: ...

    key = await key_of(app, await app.enqueue(by_blob, blob="x" * 300))
    assert key is not None and key.startswith("by.blob:sha256-") and len(key) < 100
    assert key == await key_of(app, await app.enqueue(by_blob, blob="x" * 300))


async def test_a_task_ref_carrying_the_declaration_computes_the_same_key(app: Soniq) -> None:
    @app.job(name="billing.charge", concurrency=Concurrency(3, key="{account}"))
    async def charge(account: str, cents: int) -> None: ...

    local = await app.enqueue(charge, account="a1", cents=5)
    stub = task_ref("billing.charge", concurrency=Concurrency(3, key="{account}"))
    remote = await app.enqueue(stub, args={"account": "a1", "cents": 5})
    assert await key_of(app, local) == await key_of(app, remote) == "billing.charge:a1"

    producer = Soniq(database_url=app.settings.database_url, enqueue_validation="none")
    try:
        far = await producer.enqueue(stub, args={"account": "a2", "cents": 1})
        assert await key_of(app, far) == "billing.charge:a2"
        with pytest.raises(SoniqError) as missing:
            await producer.enqueue(stub, args={"cents": 1})
        assert missing.value.code == LIMIT_KEY_INVALID and "account" in missing.value.message
    finally:
        await producer.close()


@pytest.mark.parametrize("bad", ["", ":x", 7, "g" * 501])
async def test_a_bad_limit_key_is_refused_and_nothing_is_written(app: Soniq, bad: Any) -> None:
    @app.job(name="plain")
    async def plain() -> None: ...

    with pytest.raises(SoniqError) as refused:
        await app.enqueue(plain, limit_key=bad)
    assert refused.value.code == LIMIT_KEY_INVALID
    with pytest.raises(SoniqError):
        await app.enqueue_many(plain, [{}, {}], limit_key=bad)
    assert await rows(app, "SELECT id FROM soniq_jobs") == []


# -- what the worker admits -------------------------------------------------------------


async def test_at_most_limit_jobs_of_a_key_run_at_once(app: Soniq) -> None:
    spans = Spans()

    @app.job(name="lim", concurrency=Concurrency(2, key="{k}"))
    async def lim(k: int, i: int) -> None:
        await spans.run(k, i, 0.005)

    @app.job(name="free")
    async def free(i: int) -> None: ...

    await app.enqueue_many(lim, [{"k": i % 4, "i": i} for i in range(60)])
    await app.enqueue_many(free, [{"i": i} for i in range(30)])
    await app.run_worker(concurrency=16, run_once=True)
    assert sorted(len(s) for s in spans.by_key.values()) == [15, 15, 15, 15]
    assert [spans.overlap(k) for k in range(4)] == [2, 2, 2, 2]
    ((left,),) = await rows(app, "SELECT count(*) FROM soniq_jobs WHERE status <> 'done'")
    assert left == 0


async def test_a_group_row_decides_and_a_missing_group_runs_one_at_a_time(app: Soniq) -> None:
    spans = Spans()

    @app.job(name="plain")
    async def plain(k: str, i: int) -> None:
        await spans.run(k, i, 0.005)

    # Nobody declares the groups of these explicit keys: one at a time, for safety.
    await app.enqueue_many(plain, [{"k": "a", "i": i} for i in range(6)], limit_key="ghost:a")
    await app.run_worker(concurrency=8, run_once=True)
    assert len(spans.by_key["a"]) == 6 and spans.overlap("a") == 1
    # A group set to 0 holds every job of it.
    await rows(app, "INSERT INTO soniq_limit_groups (name, concurrency) VALUES ('held', 0)")
    held = await app.enqueue(plain, k="h", i=0, limit_key="held:h")
    await app.run_worker(concurrency=8, run_once=True)
    assert (await app.get_job(held) or {})["status"] == "queued"


async def test_limited_backlog_does_not_hold_up_unlimited_jobs(app: Soniq) -> None:
    done: list[str] = []

    @app.job(name="slow", concurrency=Concurrency(1, key="{k}"))
    async def slow(k: str, i: int) -> None:
        await asyncio.sleep(0.01)
        done.append("slow")

    @app.job(name="fast", priority=500)
    async def fast(i: int) -> None:
        done.append("fast")

    # The limited jobs come first, at the most urgent priority.
    await app.enqueue_many(slow, [{"k": "one", "i": i} for i in range(2000)], priority=1)
    await app.enqueue_many(fast, [{"i": i} for i in range(500)])
    worker = Worker(app.backend, app.registry)
    running = asyncio.create_task(worker.run(concurrency=16))
    try:
        await wait_for(lambda: done.count("fast") == 500, 30, message="the unlimited jobs")
        assert done.count("slow") < 200  # one at a time, 10 ms each
    finally:
        worker.stop()
        await running


async def test_keys_take_turns_and_priority_holds_within_a_key(app: Soniq) -> None:
    spans = Spans()

    @app.job(name="turns", concurrency=Concurrency(1, key="{k}"))
    async def turns(k: str, i: int) -> None:
        await spans.run(k, i)

    await app.enqueue_many(turns, [{"k": "A", "i": i} for i in range(200)])
    for key in "BCDEFGHIJ":
        await app.enqueue_many(turns, [{"k": key, "i": i} for i in range(3)])
    # Within one key, the most urgent job first, whatever the enqueue order.
    for priority in (50, 10, 30):
        await app.enqueue(turns, k="P", i=priority, priority=priority)
    await app.run_worker(concurrency=4, run_once=True)
    order = [key for key, _ in spans.starts]
    fiftieth_a = [i for i, key in enumerate(order) if key == "A"][49]
    others = [i for i, key in enumerate(order) if key in "BCDEFGHIJ"]
    assert len(others) == 27 and max(others) < fiftieth_a
    assert [tag for key, tag in spans.starts if key == "P"] == [10, 30, 50]


async def test_a_future_job_does_not_stall_its_keys_due_ones(app: Soniq) -> None:
    @app.job(name="k", concurrency=Concurrency(1, key="{k}"))
    async def k_job(k: str) -> None: ...

    later = await app.enqueue(k_job, k="K", priority=1, scheduled_at=timedelta(hours=1))
    due = [await app.enqueue(k_job, k="K", priority=500) for _ in range(5)]
    await app.run_worker(concurrency=4, run_once=True)
    assert [(await app.get_job(j) or {})["status"] for j in due] == ["done"] * 5
    assert (await app.get_job(later) or {})["status"] == "queued"


async def test_a_rate_limit_paces_starts_by_the_database_clock(app: Soniq) -> None:
    @app.job(name="paced", rate_limit=RateLimit(5, per=1, key="{k}"))
    async def paced(k: str) -> None: ...

    ids = await app.enqueue_many(paced, [{"k": "v"} for _ in range(11)])
    # run_once takes what may start now: the first start, then nothing for 0.2 s.
    await app.run_worker(concurrency=8, run_once=True)
    assert [(await app.get_job(j) or {})["status"] for j in ids].count("done") == 1
    worker = Worker(app.backend, app.registry)
    running = asyncio.create_task(worker.run(concurrency=8))
    try:
        await wait_for(lambda: _all_done(app, ids), 20, message="the paced jobs")
    finally:
        worker.stop()
        await running
    starts = [
        r[0]
        for r in await rows(
            app, "SELECT started_at FROM soniq_jobs WHERE status = 'done' ORDER BY started_at"
        )
    ]
    assert len(starts) == 11
    # Any one-second window holds at most 5 starts: each is 0.2 s after the one before.
    for first, fifth_after in zip(starts, starts[5:], strict=False):
        assert fifth_after - first >= timedelta(seconds=1)
    ((tat,),) = await rows(app, "SELECT tat FROM soniq_limit_keys WHERE key = 'paced:v'")
    assert tat > starts[-1]


async def test_rate_limited_blocks_the_key_and_refunds_the_attempt(app: Soniq) -> None:
    raised: list[datetime] = []

    @app.job(name="vendor", concurrency=Concurrency(4, key="{account}"))
    async def vendor(account: str, first: bool) -> None:
        if first and not raised:
            raised.append(datetime.now(timezone.utc))
            raise RateLimited(retry_after=1.0, reason="429 from vendor")

    hit = await app.enqueue(vendor, account="acme", first=True)
    await app.run_worker(concurrency=4, run_once=True)
    job = await app.get_job(hit) or {}
    assert (job["status"], job["attempts"]) == ("queued", 0)
    assert job["last_error"].startswith("RATE_LIMITED: retry after 1s: 429 from vendor")
    ((blocked_until,),) = await rows(
        app, "SELECT blocked_until FROM soniq_limit_keys WHERE key = 'vendor:acme'"
    )
    assert blocked_until > raised[0]
    # Other jobs of the key wait for the block; they spend no attempt meanwhile.
    other = await app.enqueue(vendor, account="acme", first=False)
    elsewhere = await app.enqueue(vendor, account="other", first=False)
    await app.run_worker(concurrency=4, run_once=True)
    assert (await app.get_job(elsewhere) or {})["status"] == "done"
    worker = Worker(app.backend, app.registry)
    running = asyncio.create_task(worker.run(concurrency=4))
    try:
        for job_id in (hit, other):
            await wait_for(
                lambda j=job_id: _status(app, j), 20, message=f"job {job_id} to run after the block"
            )
    finally:
        worker.stop()
        await running
    for job_id in (hit, other):
        job = await app.get_job(job_id) or {}
        assert job["attempts"] == 1 and job["started_at"] >= blocked_until


async def _all_done(app: Soniq, ids: list[str]) -> bool:
    return all([await _status(app, j) for j in ids])


async def _status(app: Soniq, job_id: str) -> bool:
    return (await app.get_job(job_id) or {}).get("status") == "done"


async def test_the_limited_claim_refuses_a_snapshot_isolation_level(
    app: Soniq, caplog: pytest.LogCaptureFixture
) -> None:
    @app.job(name="lim", concurrency=Concurrency(1, key="{k}"))
    async def lim(k: str) -> None: ...

    @app.job(name="free")
    async def free() -> None: ...

    name = app.settings.database_url.rsplit("/", 1)[1].split("?")[0]
    await rows(app, f"ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'")
    limited = [await app.enqueue(lim, k="x") for _ in range(3)]
    unlimited = await app.enqueue(free)
    caplog.set_level(logging.ERROR, "soniq.worker")
    await app.run_worker(concurrency=4, run_once=True)
    assert (await app.get_job(unlimited) or {})["status"] == "done"
    for job_id in limited:
        job = await app.get_job(job_id) or {}
        assert (job["status"], job["attempts"]) == ("queued", 0)
    assert LIMITS_NEED_READ_COMMITTED in caplog.text


async def test_a_dead_lettered_job_keeps_its_key_when_replayed(app: Soniq) -> None:
    @app.job(name="fails", retries=0, concurrency=Concurrency(1, key="{k}"))
    async def fails(k: str) -> None:
        raise ValueError("boom")

    await app.enqueue(fails, k="z")
    await app.run_worker(concurrency=2, run_once=True)
    ((dead_id, key),) = await rows(app, "SELECT id::text, limit_key FROM soniq_dead_letter_jobs")
    assert key == "fails:z"
    new_id = await app.dead_letter.replay(dead_id)
    assert await key_of(app, new_id) == "fails:z"


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_a_dead_letters_key_survives_export_and_import(
    database_url: str, tmp_path: Any, backend: str
) -> None:
    url = database_url if backend == "postgres" else f"sqlite:///{tmp_path / 'dl.db'}"
    async with Soniq(database_url=url) as app:

        @app.job(name="fails", retries=0, concurrency=Concurrency(1, key="{k}"))
        async def fails(k: str) -> None:
            raise ValueError("boom")

        await app.enqueue(fails, k="z")
        await app.run_worker(concurrency=2, run_once=True)
        (dead,) = await app.dead_letter.list()
        assert dead["limit_key"] == "fails:z"
        out = io.StringIO()
        assert await app.dead_letter.export(out) == 1
        line = json.loads(out.getvalue())
        assert line["limit_key"] == "fails:z"
        assert await app.dead_letter.purge(all=True) == 1
        assert await app.dead_letter.import_(io.StringIO(out.getvalue())) == (1, 0)
        (back,) = await app.dead_letter.list()
        assert back["limit_key"] == "fails:z"
        new_id = await app.dead_letter.replay(back["id"])
        assert (await app.get_job(new_id) or {}).get("job_name") == "fails"
        # A line exported before the key existed imports with none; a bad key is refused
        # whole, naming the line.
        old = {k: v for k, v in line.items() if k != "limit_key"} | {"id": str(uuid.uuid4())}
        bad = line | {"id": str(uuid.uuid4()), "limit_key": ":no-group"}
        with pytest.raises(SoniqError) as refused:
            await app.dead_letter.import_([json.dumps(old) + "\n", json.dumps(bad) + "\n"])
        assert refused.value.code == "SONIQ_INVALID_EXPORT" and "Line 2" in str(refused.value)
        assert await app.dead_letter.import_([json.dumps(old) + "\n"]) == (1, 0)
        keys = {d["id"]: d["limit_key"] for d in await app.dead_letter.list()}
        assert keys[old["id"]] is None


async def test_the_worker_declares_its_groups_and_keeps_a_runtime_override(app: Soniq) -> None:
    @app.job(name="g1", concurrency=Concurrency(2), rate_limit=RateLimit(10, per=60, burst=2))
    async def g1() -> None: ...

    await app.run_worker(run_once=True)
    declared = await rows(
        app, "SELECT concurrency, rate_limit, rate_period, burst, source FROM soniq_limit_groups"
    )
    assert declared == [(2, 10, 60.0, 2, "code")]
    await rows(app, "UPDATE soniq_limit_groups SET concurrency = 7, source = 'runtime'")
    await app.run_worker(run_once=True)
    assert await rows(app, "SELECT concurrency, source FROM soniq_limit_groups") == [(7, "runtime")]


async def test_idle_key_state_is_pruned(app: Soniq) -> None:
    await rows(
        app,
        "INSERT INTO soniq_limit_keys (key, tat, touched_at) VALUES "
        "('g:old', now() - interval '2 hours', now() - interval '2 hours'), "
        "('g:busy', now() + interval '1 hour', now() - interval '2 hours'), "
        "('g:new', now(), now())",
    )
    await app.store.limits.prune(3600)
    kept = await rows(app, "SELECT key FROM soniq_limit_keys ORDER BY key")
    assert kept == [("g:busy",), ("g:new",)]


async def test_limits_on_a_local_backend_run_unenforced_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Soniq(backend="memory")
    try:
        seen: list[str] = []

        @app.job(name="lim", concurrency=Concurrency(1, key="{k}"))
        async def lim(k: str) -> None:
            seen.append(k)

        await app.enqueue(lim, k="a")
        caplog.set_level(logging.WARNING, "soniq.worker")
        await app.run_worker(run_once=True)
        assert seen == ["a"]
        assert "does not enforce concurrency or rate limits" in caplog.text
    finally:
        await app.close()


async def test_a_hundred_thousand_distinct_keys_drain(app: Soniq) -> None:
    @app.job(name="per.key", concurrency=Concurrency(1, key="{k}"))
    async def per_key(k: int) -> None: ...

    total = 100_000
    for start in range(0, total, 20_000):
        await app.enqueue_many(per_key, [{"k": i} for i in range(start, start + 20_000)])
    await app.run_worker(concurrency=64, run_once=True)
    counts = await rows(app, "SELECT status, count(*) FROM soniq_jobs GROUP BY 1")
    assert counts == [("done", total)]
    ((keys,),) = await rows(app, "SELECT count(DISTINCT limit_key) FROM soniq_jobs")
    assert keys == total


def test_the_blocking_twin_takes_the_same_declarations_and_keys(
    sync_app: soniq_sync.Soniq,
) -> None:
    @sync_app.job(name="sync.lim", concurrency=soniq_sync.Concurrency(1, key="{k}"))
    def lim(k: str) -> None: ...

    first = sync_app.enqueue(lim, k="a")
    by_hand = sync_app.enqueue("sync.lim", args={"k": "b"}, limit_key="other:b")
    many = sync_app.enqueue_many(lim, [{"k": "c"}])
    with psycopg.connect(sync_app.settings.database_url) as conn:
        keys = dict(conn.execute("SELECT id::text, limit_key FROM soniq_jobs").fetchall())
    assert [keys[first], keys[by_hand], keys[many[0]]] == ["sync.lim:a", "other:b", "sync.lim:c"]


async def test_a_key_full_by_concurrency_gives_no_wake_up_time_even_when_rated(
    app: Soniq,
) -> None:
    # Only a rate (or a block) has a time at which the key becomes eligible; a key at
    # its concurrency limit waits for a job to end. A wake-up time for it would make an
    # idle worker claim in a loop.
    await rows(
        app,
        "INSERT INTO soniq_limit_groups (name, concurrency, rate_limit, rate_period) "
        "VALUES ('both', 1, 100, 1)",
    )

    @app.job(name="plain")
    async def plain() -> None: ...

    await app.enqueue_many(plain, [{}, {}], limit_key="both:k")
    claim = (
        "SELECT count(id), max(wake_in) "
        "FROM soniq_claim_limited(gen_random_uuid(), NULL, NULL, 64, 8)"
    )
    assert await rows(app, claim) == [(1, None)]
    assert await rows(app, claim) == [(0, None)]  # full: no time to wake at
    await rows(app, "UPDATE soniq_limit_groups SET concurrency = 5")
    await rows(app, "UPDATE soniq_limit_keys SET tat = now() + interval '1 second'")
    ((count, wake_in),) = await rows(app, claim)
    assert count == 0 and 0.5 < wake_in <= 1.0  # held back by its rate: wake then


async def test_an_idle_listening_worker_starts_limited_jobs_as_they_are_announced(
    database_url: str,
) -> None:
    # After a claim that found no limited job, the worker waits for news rather than
    # running the limited claim at every wake-up; news must still reach it at once.
    async with Soniq(database_url=database_url, poll_interval=60) as app:
        ran: list[int] = []

        @app.job(name="lim", concurrency=Concurrency(1, key="{k}"))
        async def lim(k: int) -> None:
            ran.append(k)

        @app.job(name="free")
        async def free() -> None: ...

        await app.ensure_initialized()
        worker = app.worker()
        task = asyncio.create_task(worker.run(concurrency=4))
        try:
            await wait_for(lambda: worker.listener is not None and worker.listener.mode == "listen")
            await app.enqueue(free)  # a wake-up whose limited claim finds nothing
            for k in range(3):
                await app.enqueue(lim, k=k)
                await wait_for(lambda k=k: k in ran, 10, message=f"limited job {k}")  # not 60 s
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)


async def test_a_freed_slot_goes_to_the_next_job_without_waking_the_fleet(
    database_url: str,
) -> None:
    # A key at its limit: each acknowledgement frees the slot and the worker claims the
    # key's next job from there. Before, every completion sent a NOTIFY to the fleet and
    # woke this worker's loop for a full claim; now the NOTIFY is only for a slot that
    # nobody here refilled.
    async with Soniq(database_url=database_url, poll_interval=60) as app:
        spans = Spans()

        @app.job(name="lim.one", concurrency=Concurrency(1))
        async def one(i: int) -> None:
            await spans.run("one", i, 0.002)

        await app.ensure_initialized()
        heard: list[str] = []
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("LISTEN soniq_new_job")

            async def listen() -> None:
                async for note in conn.notifies():
                    heard.append(note.payload)

            listening = asyncio.create_task(listen())
            worker = app.worker()
            task = asyncio.create_task(worker.run(concurrency=4))
            try:
                await wait_for(
                    lambda: worker.listener is not None and worker.listener.mode == "listen"
                )
                await app.enqueue_many(one, [{"i": i} for i in range(40)])
                await wait_for(lambda: len(spans.by_key["one"]) == 40, 30, message="40 jobs")
            finally:
                worker.stop()
                await asyncio.wait_for(task, 10)
                listening.cancel()
    assert spans.overlap("one") == 1
    assert [tag for _, tag in spans.starts] == list(range(40))  # in order within the key
    # The enqueue's own NOTIFY, and a few at most for slots left free (40 without refill).
    assert len(heard) <= 5, heard


@pytest.mark.parametrize("how", ["stop", "cancel"])
async def test_a_worker_that_stops_mid_flow_leaves_no_limited_job_running(
    database_url: str, how: str
) -> None:
    # Freed slots are refilled from the acknowledger, beside the loop: a shutdown must
    # let a refill in flight land and start no other, or its jobs would stay
    # 'processing' under a gone worker until stale recovery.
    async with Soniq(database_url=database_url, poll_interval=60) as app:
        started: list[int] = []

        @app.job(name="lim.flow", concurrency=Concurrency(1, key="{k}"))
        async def flow(k: int, i: int) -> None:
            started.append(i)
            await asyncio.sleep(0.003)

        await app.enqueue_many(flow, [{"k": i % 3, "i": i} for i in range(300)])
        worker = app.worker()
        task = asyncio.create_task(worker.run(concurrency=4))
        await wait_for(lambda: len(started) >= 30, 20, message="30 limited jobs")
        if how == "stop":
            worker.stop()
            await asyncio.wait_for(task, 20)
        else:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        states = dict(await rows(app, "SELECT status, count(*) FROM soniq_jobs GROUP BY status"))
    assert "processing" not in states, states
    assert states.get("done", 0) > 0 and sum(states.values()) == 300
