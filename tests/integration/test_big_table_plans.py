"""Claims, listings and status on a big ``soniq_jobs`` read only what they need.

These tests check plans, never timings: each loads a table by COPY, lets the planner
see it (``VACUUM ANALYZE``, what autovacuum leaves), and reads ``EXPLAIN (ANALYZE,
BUFFERS)``. A claim with tens of thousands of jobs waiting for later, or behind them in
priority order, must touch a handful of index pages, not walk them all; a listing must
come off the primary key without sorting; status must never scan the table.
(benchmarks/big_table.py prints the timings at a million rows and more.)
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import psycopg.sql
import pytest

from soniq import Soniq
from soniq.enqueue.ids import new_job_ids
from soniq.storage.queries import QUERIES

pytestmark = pytest.mark.integration

WAITING = 20_000  # enough that walking them takes well over a hundred index pages
DONE = 20_000
WORKER = str(uuid.uuid4())


def _lines(
    count: int, *, status: str, priority: int, at: datetime, delayed: bool, queue: str = "default"
) -> Iterator[str]:
    finished = at.isoformat() if status == "done" else "\\N"
    for job_id in new_job_ids(count):
        yield (
            f"{job_id}\tplans.job\t{{}}\t{queue}\t{priority}\t{status}\t{at.isoformat()}"
            f"\t{finished}\t{'t' if delayed else 'f'}\n"
        )


async def _copy(
    url: str,
    count: int,
    *,
    status: str = "queued",
    priority: int = 100,
    at: datetime,
    delayed: bool = False,
    queue: str = "default",
) -> None:
    """COPY ``count`` jobs in, as written, without analysing the table."""
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY soniq_jobs (id, job_name, args, queue, priority, status, scheduled_at, "
            "finished_at, delayed) FROM STDIN"
        ) as copy,
    ):
        await copy.write(
            "".join(
                _lines(count, status=status, priority=priority, at=at, delayed=delayed, queue=queue)
            )
        )


async def _load(
    url: str,
    count: int,
    *,
    status: str = "queued",
    priority: int = 100,
    at: datetime,
    delayed: bool = False,
    queue: str = "default",
) -> None:
    """COPY ``count`` jobs in, then let the planner see them, as autovacuum would."""
    await _copy(url, count, status=status, priority=priority, at=at, delayed=delayed, queue=queue)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("VACUUM ANALYZE soniq_jobs")


async def _explain(url: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The plan of named query ``name``, run and rolled back."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + QUERIES[name].psycopg, params
        )
        row = await cur.fetchone()
        await conn.rollback()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _buffers(node: dict[str, Any]) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def _scans_of(plan: dict[str, Any], index: str) -> list[dict[str, Any]]:
    return [n for n in _nodes(plan) if n.get("Index Name") == index]


def _no_table_scan(plan: dict[str, Any]) -> None:
    seq = [
        n
        for n in _nodes(plan)
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "soniq_jobs"
    ]
    assert not seq, f"a sequential scan of soniq_jobs:\n{json.dumps(plan, indent=1)}"


def _claim(limit: int = 16) -> dict[str, Any]:
    return {"queues": None, "limit": limit, "worker_id": WORKER}


@pytest.fixture
async def future_jobs(database_url: str) -> str:
    """A queue whose only jobs are due tomorrow, written as a producer writes them."""
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    await _load(database_url, WAITING, at=tomorrow, delayed=True)
    return database_url


async def test_a_claim_with_nothing_due_reads_a_few_pages(future_jobs: str) -> None:
    plan = await _explain(future_jobs, "claim_jobs", _claim())
    _no_table_scan(plan)
    (scan,) = _scans_of(plan, "soniq_jobs_claim_idx")
    assert scan["Actual Rows"] == 0
    assert _buffers(plan) < 10, json.dumps(plan, indent=1)


async def test_a_claim_behind_future_jobs_in_priority_order_reads_only_due_rows(
    future_jobs: str,
) -> None:
    # Due jobs whose priority number is larger than the future ones': they sort after
    # them in claim order, so an index that held the future ones would walk them all.
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    await _load(future_jobs, 100, priority=500, at=past)
    plan = await _explain(future_jobs, "claim_jobs", _claim())
    _no_table_scan(plan)
    (scan,) = _scans_of(plan, "soniq_jobs_claim_idx")
    assert scan["Actual Rows"] == 16
    assert _buffers(scan) < 10, json.dumps(plan, indent=1)


async def test_an_old_style_future_row_in_the_claim_index_is_still_not_claimed(
    database_url: str,
) -> None:
    # A row written "not delayed" though not due (an older Soniq, or a producer whose
    # clock runs ahead) must still wait for its time.
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    await _load(database_url, 10, at=tomorrow, delayed=False)
    async with Soniq(database_url=database_url, enqueue_validation="none") as app:
        assert await app.run_worker(run_once=True) is False
        assert [j["status"] for j in await app.list_jobs()] == ["queued"] * 10


async def test_promoting_with_nothing_due_reads_a_few_pages(future_jobs: str) -> None:
    plan = await _explain(future_jobs, "promote_due_jobs", {"limit": 1000})
    _no_table_scan(plan)
    assert _buffers(plan) < 20, json.dumps(plan, indent=1)


async def test_promotion_moves_due_jobs_into_the_claim(future_jobs: str) -> None:
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    await _load(future_jobs, 30, at=past, delayed=True)
    async with Soniq(database_url=future_jobs, enqueue_validation="none") as app:
        before = (await app.status())["queues"][0]
        assert (before["runnable"], before["scheduled"]) == (30, WAITING)
        assert await app.run_worker(run_once=True) is True
        after = (await app.status())["queues"][0]
        assert (after["runnable"], after["scheduled"]) == (0, WAITING)
        assert after["failed"] == 30  # no handler registered: each was dead-lettered


@pytest.fixture
async def finished_jobs(database_url: str) -> str:
    """Many done jobs, and a few live ones of every kind."""
    now = datetime.now(timezone.utc)
    await _load(database_url, DONE, status="done", at=now - timedelta(minutes=30))
    await _load(database_url, 50, at=now - timedelta(minutes=1))
    await _load(database_url, 20, at=now + timedelta(hours=1), delayed=True)
    return database_url


def _list(**changes: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "before": None,
        "status": None,
        "queue": None,
        "job_name": None,
        "since": None,
        "until": None,
        "limit": 20,
        "offset": 0,
    }
    params.update(changes)
    return params


@pytest.mark.parametrize("page", ["first", "next"])
async def test_a_page_of_jobs_comes_off_the_primary_key_unsorted(
    finished_jobs: str, page: str
) -> None:
    before = None
    if page == "next":
        async with Soniq(database_url=finished_jobs) as app:
            before = (await app.list_jobs(limit=5000))[-1]["id"]
    plan = await _explain(finished_jobs, "list_jobs", _list(before=before))
    _no_table_scan(plan)
    assert not [n for n in _nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")]
    (scan,) = _scans_of(plan, "soniq_jobs_pkey")
    assert scan["Scan Direction"] == "Backward"
    assert scan["Actual Rows"] == 20


@pytest.mark.parametrize("name", ["queue_status", "task_names_in_use", "queue_gauges"])
async def test_status_figures_read_only_the_live_rows(finished_jobs: str, name: str) -> None:
    params = {"queues": None} if name == "queue_gauges" else {}
    plan = await _explain(finished_jobs, name, params)
    _no_table_scan(plan)
    rows_read = sum(
        n.get("Actual Rows", 0)
        for n in _nodes(plan)
        if n.get("Relation Name") == "soniq_jobs" or "soniq_jobs" in n.get("Index Name", "")
    )
    assert rows_read < DONE / 10, json.dumps(plan, indent=1)


async def test_the_workers_claim_walks_the_index_on_a_table_never_analysed(
    database_url: str,
) -> None:
    # No VACUUM ANALYZE: the planner knows nothing of these 20,000 due jobs. On the
    # worker's own pool the claim must still walk the claim index in order rather than
    # read every queued row and sort them.
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    await _copy(database_url, WAITING, at=past)
    await _assert_worker_claim_walks_the_index(database_url)


async def test_the_paused_queue_check_keeps_the_claim_on_the_index_of_an_analysed_table(
    database_url: str,
) -> None:
    # With statistics, the planner read "queue <> ALL(paused queues)" as one "<>" per
    # element it guessed the array holds, found almost no row left, and chose to read
    # and sort the whole table over walking the index (see claim_jobs).
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    await _load(database_url, WAITING, at=past)
    await _assert_worker_claim_walks_the_index(database_url)


async def _assert_worker_claim_walks_the_index(database_url: str) -> None:
    async with Soniq(database_url=database_url) as app:
        await app.ensure_initialized()
        worker_db = app.backend.for_worker()
        await worker_db.open()
        try:
            async with worker_db.acquire() as conn:
                cur = await conn.execute(
                    b"EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["claim_jobs"].psycopg,
                    _claim(64),
                )
                row = await cur.fetchone()
                await conn.rollback()
        finally:
            await worker_db.close()
    assert row is not None
    plan = row[0][0]["Plan"]
    kinds = {n["Node Type"] for n in _nodes(plan)}
    assert not kinds & {"Sort", "Bitmap Heap Scan"}, json.dumps(plan, indent=1)
    _no_table_scan(plan)
    (scan,) = _scans_of(plan, "soniq_jobs_claim_idx")
    assert scan["Node Type"] == "Index Scan" and scan["Actual Rows"] == 64


# -- acknowledgements, whose statements the driver prepares -----------------------------


def _numbered(query: bytes) -> tuple[str, list[str]]:
    """A named query with $1, $2, ... for its %(name)s parameters (for PREPARE), and
    the parameter names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, query.decode()), names


async def _in_flight(url: str, count: int) -> list[str]:
    """``count`` jobs in flight (attempt 0), analysed; their ids."""
    await _load(url, count, status="processing", at=datetime.now(timezone.utc))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SELECT id::text FROM soniq_jobs ORDER BY id")
        return [row[0] for row in await cur.fetchall()]


async def test_a_batch_acknowledgement_probes_the_key_under_its_generic_plan(
    database_url: str,
) -> None:
    # The driver prepares complete_jobs, and a generic plan guesses 100 batch elements.
    # On a small analysed table it read every row into a hash rather than probe the
    # primary key: 1 ms for each one-job acknowledgement on 2,000 rows.
    ids = await _in_flight(database_url, 2_000)
    sql, names = _numbered(QUERIES["complete_jobs"].psycopg)
    values = {"ids": "{" + ids[0] + "}", "attempts": "{0}", "results": "[null]"}
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE ack AS {sql}")
        args = psycopg.sql.SQL(", ").join([psycopg.sql.Literal(values[n]) for n in names])
        cur = await conn.execute(
            psycopg.sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE ack({})").format(args)
        )
        row = await cur.fetchone()
        await conn.rollback()
    assert row is not None
    plan = row[0][0]["Plan"]
    _no_table_scan(plan)
    assert plan["Actual Rows"] == 1


async def test_a_one_job_acknowledgement_is_not_planned_at_every_call(
    database_url: str,
) -> None:
    # complete_job, for a batch of one: after the server's five trial plans it keeps
    # one generic plan instead of planning again for each acknowledgement.
    ids = await _in_flight(database_url, 200)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for job_id in ids[:10]:
            cur = await conn.execute(
                QUERIES["complete_job"].psycopg,
                {"id": job_id, "attempt": 0, "result": None},
                prepare=True,
            )
            assert len(await cur.fetchall()) == 1
        cur = await conn.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%%status = ''done''%%'"
        )
        ((generic, custom),) = await cur.fetchall()
    assert generic >= 4 and custom <= 5, (generic, custom)


# -- the claim by queue (the optional index by queue) ------------------------------------


@pytest.fixture
async def backlog_elsewhere(database_url: str) -> str:
    """A big, older backlog in queue "big" and a little due work in "small" (no index
    by queue yet)."""
    now = datetime.now(timezone.utc)
    await _copy(database_url, WAITING, at=now - timedelta(hours=1), queue="big")
    await _copy(database_url, 50, at=now - timedelta(minutes=1), queue="small")
    await _load(database_url, 50, at=now + timedelta(hours=1), delayed=True, queue="small")
    return database_url


async def _add_index(url: str) -> None:
    async with Soniq(database_url=url) as app:
        await app.ensure_initialized()
        await app.queues.add_index()


def _index_rows(plan: dict[str, Any]) -> int:
    """Rows the plan's scans of soniq_jobs' claim indexes met: those returned and
    those their filters removed."""
    return sum(
        (int(n.get("Actual Rows", 0)) + int(n.get("Rows Removed by Filter", 0)))
        * int(n.get("Actual Loops", 1))
        for n in _nodes(plan)
        if n.get("Index Name") in ("soniq_jobs_claim_idx", "soniq_jobs_queue_claim_idx")
    )


async def test_the_global_claim_of_some_queues_walks_another_queues_backlog(
    backlog_elsewhere: str,
) -> None:
    # Why the claim by queue exists: the global index is in priority order, and the
    # rows of the queues a worker does not serve are skipped one by one. (With the
    # index by queue there, the planner may use it for this "queue = ANY" too; not
    # for the "all but the paused ones" of the case below.)
    plan = await _explain(backlog_elsewhere, "claim_jobs", _claim() | {"queues": ["small"]})
    assert plan["Actual Rows"] == 16
    assert _index_rows(plan) >= WAITING, json.dumps(plan, indent=1)


@pytest.mark.parametrize("paused", [False, True], ids=["--queues", "paused"])
async def test_the_claim_by_queue_reads_only_the_served_queues(
    backlog_elsewhere: str, paused: bool
) -> None:
    await _add_index(backlog_elsewhere)
    params = _claim() | {"queues": None if paused else ["small"]}
    if paused:
        async with Soniq(database_url=backlog_elsewhere) as app:
            await app.queues.pause("big", wait=False)
    plan = await _explain(backlog_elsewhere, "claim_jobs_by_queue", params)
    _no_table_scan(plan)
    assert plan["Actual Rows"] == 16
    assert _index_rows(plan) < 100, json.dumps(plan, indent=1)


async def test_the_claim_by_queue_with_nothing_due_reads_a_few_pages(
    future_jobs: str,
) -> None:
    # Issue 8's case on the new path: every job waits for later.
    await _add_index(future_jobs)
    for queues in (["default"], None):
        plan = await _explain(future_jobs, "claim_jobs_by_queue", _claim() | {"queues": queues})
        _no_table_scan(plan)
        assert plan["Actual Rows"] == 0
        assert _buffers(plan) < 50, json.dumps(plan, indent=1)


async def test_the_workers_pool_neither_waits_for_the_wal_nor_compiles_plans(
    database_url: str,
) -> None:
    # JIT compiled a claim by queue behind 200,000 jobs (estimated past
    # jit_above_cost) at every call: 40 ms of a 3 ms statement.
    async with Soniq(database_url=database_url) as app:
        worker_db = app.backend.for_worker()
        await worker_db.open()
        try:
            async with worker_db.acquire() as conn:
                shown = []
                for name in ("synchronous_commit", "enable_bitmapscan", "jit"):
                    row = await (await conn.execute(f"SHOW {name}")).fetchone()
                    assert row is not None
                    shown.append(row[0])
        finally:
            await worker_db.close()
    assert shown == ["off", "off", "off"]
