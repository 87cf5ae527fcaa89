"""Queries on a big ``soniq_jobs``: do claims, listings and status stay cheap?

Run it against a server on which it may create and drop databases::

    python benchmarks/big_table.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/big_table.py --quick      # smoke run: 50,000 and 100,000 rows

Two shapes, each loaded by COPY into a scratch database ``soniq_bench_<random>`` that is
dropped at the end (also after an error or Ctrl-C), then ``VACUUM ANALYZE``-ed, as
autovacuum would leave a table that stopped changing (``--no-vacuum`` skips it):

1. **Future jobs**: ``--future`` jobs (1,000,000) scheduled for tomorrow, none due. Timed:
   - an empty claim (the worker's ``claim_jobs`` statement, 16 rows asked for), which
     every NOTIFY and every poll of every worker pays;
   - the same claim with 1,000 due jobs whose priority number is *larger* than the future
     ones' (so they sort after them in priority order);
   - for reference, a claim with 1,000 due jobs *ahead* of the future ones;
   - where the schema has it, the statement that moves due delayed jobs into the claim's
     index (``promote_due_jobs``), with nothing to move.
   Claims that find rows run in a transaction that is rolled back, so every round sees
   the same table. Each claim is timed by ``EXPLAIN (ANALYZE, BUFFERS)``: the figures are
   the server's execution time and the shared buffers the statement touched.
2. **Finished jobs**: ``--finished`` done jobs (2,000,000) finished within the last hour,
   plus 10,000 queued, 1,000 scheduled and 100 processing. Timed through the public API
   in this process (``app.list_jobs(limit=20)``, the same filtered by status, the next
   page by ``before=`` where supported, ``app.status()``, ``app.get_queue_stats()``) and
   as a user runs them (``soniq jobs list --limit 20`` and ``soniq status``, whole
   processes, interpreter start-up included).

Each figure is the median (and minimum) of ``--rounds`` rounds after one untimed warm-up.
The script works on older Soniq schemas too (it loads the columns the schema has), so the
same file measures a checkout before and after a change. It prints figures and never
fails on a slow result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from inspect import signature
from typing import Any, Final

import psycopg
from support import Scratch, loadavg, positive, run_timed

import soniq
from soniq import Soniq
from soniq.enqueue.ids import new_job_ids
from soniq.storage.queries import QUERIES
from soniq.storage.urls import normalise_database_url

DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
WORKER_ID: Final = str(uuid.uuid4())
CLAIM_LIMIT: Final = 16
COPY_CHUNK: Final = 50_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("SONIQ_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--future", type=positive, default=1_000_000)
    parser.add_argument("--finished", type=positive, default=2_000_000)
    parser.add_argument("--rounds", type=positive, default=5)
    parser.add_argument("--no-vacuum", action="store_true", help="skip VACUUM ANALYZE")
    parser.add_argument("--quick", action="store_true", help="50,000 / 100,000 rows, 3 rounds")
    opts = parser.parse_args()
    if opts.quick:
        opts.future, opts.finished, opts.rounds = 50_000, 100_000, 3
    return run_timed(_main(opts))


async def _main(opts: argparse.Namespace) -> int:
    url = normalise_database_url(opts.database_url)
    print(
        f"soniq {soniq.__version__} from {os.path.dirname(soniq.__file__)}\n"
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {loadavg()}",
        flush=True,
    )
    scratch = Scratch(url)
    try:
        await _future_jobs(await scratch.create(), opts)
        await _finished_jobs(await scratch.create(), opts)
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        await scratch.drop_all()
    return 0


# ------------------------------------------------------------------------ loading


async def _columns(conn: psycopg.AsyncConnection[Any]) -> set[str]:
    cur = await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'soniq_jobs'"
    )
    return {row[0] for row in await cur.fetchall()}


def _lines(
    count: int,
    *,
    status: str,
    priority: int,
    scheduled: datetime,
    finished: datetime | None,
    columns: list[str],
    delayed: bool,
) -> Iterator[bytes]:
    """COPY text lines for ``count`` jobs, in chunks."""
    at = scheduled.isoformat()
    done_at = finished.isoformat() if finished is not None else "\\N"
    worker = WORKER_ID if status == "processing" else "\\N"
    extra = {"delayed": "t" if delayed else "f"}
    tail = "".join(f"\t{extra[c]}" for c in columns[9:])
    left = count
    while left:
        n = min(left, COPY_CHUNK)
        left -= n
        yield "".join(
            f"{job_id}\tbench.noop\t{{}}\tdefault\t{priority}\t{status}\t{at}\t{done_at}"
            f"\t{worker}{tail}\n"
            for job_id in new_job_ids(n)
        ).encode()


async def _load(
    url: str,
    count: int,
    *,
    status: str,
    priority: int = 100,
    scheduled: datetime,
    finished: datetime | None = None,
) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        columns = [
            "id",
            "job_name",
            "args",
            "queue",
            "priority",
            "status",
            "scheduled_at",
            "finished_at",
            "worker_id",
        ]
        delayed = status == "queued" and scheduled > datetime.now(timezone.utc)
        if "delayed" in await _columns(conn):
            columns.append("delayed")
        stmt = f"COPY soniq_jobs ({', '.join(columns)}) FROM STDIN"
        async with conn.cursor() as cur, cur.copy(stmt.encode()) as copy:
            for chunk in _lines(
                count,
                status=status,
                priority=priority,
                scheduled=scheduled,
                finished=finished,
                columns=columns,
                delayed=delayed,
            ):
                await copy.write(chunk)


async def _vacuum(url: str, opts: argparse.Namespace) -> None:
    if opts.no_vacuum:
        print("no VACUUM ANALYZE (--no-vacuum)", flush=True)
        return
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE soniq_jobs")
        print(f"VACUUM ANALYZE soniq_jobs: {time.perf_counter() - started:.1f} s", flush=True)


async def _setup(url: str) -> None:
    async with Soniq(database_url=url) as app:
        await app.setup()


# ------------------------------------------------------------------------ timing


def _report(label: str, values: list[float], unit: str = "ms", extra: str = "") -> None:
    med, low = statistics.median(values), min(values)
    print(f"  {label:<58} median {med:9.2f} {unit}  min {low:9.2f} {unit}{extra}", flush=True)


async def _explain(
    conn: psycopg.AsyncConnection[Any], name: str, params: dict[str, Any]
) -> tuple[float, int]:
    """Server execution time (ms) and shared buffers touched, in a rolled-back transaction."""
    text = b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + QUERIES[name].psycopg
    async with conn.transaction(force_rollback=True):
        cur = await conn.execute(text, params)
        row = await cur.fetchone()
    assert row is not None
    plan = row[0][0]
    buffers = plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0)
    return float(plan["Execution Time"]), int(buffers)


async def _time_statement(
    conn: psycopg.AsyncConnection[Any],
    label: str,
    name: str,
    params: dict[str, Any],
    rounds: int,
) -> None:
    await _explain(conn, name, params)  # warm-up
    times, buffers = [], []
    for _ in range(rounds):
        ms, bufs = await _explain(conn, name, params)
        times.append(ms)
        buffers.append(bufs)
    _report(label, times, extra=f"  buffers {int(statistics.median(buffers)):,}")


async def _time_call(label: str, call: Callable[[], Awaitable[object]], rounds: int) -> None:
    await call()  # warm-up
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000.0)
    _report(label, times)


def _time_cli(label: str, args: list[str], url: str, rounds: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env["SONIQ_DATABASE_URL"] = url
    command = [sys.executable, "-m", "soniq", *args]
    times = []
    for n in range(rounds + 1):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        if n:  # the first run is the warm-up
            times.append((time.perf_counter() - started) * 1000.0)
    _report(label, times)


# ------------------------------------------------------------------------ shapes


def _claim_params() -> dict[str, Any]:
    return {"queues": None, "limit": CLAIM_LIMIT, "worker_id": WORKER_ID}


async def _future_jobs(url: str, opts: argparse.Namespace) -> None:
    await _setup(url)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    await _load(url, opts.future, status="queued", scheduled=now + timedelta(days=1))
    print(f"loaded {opts.future:,} jobs due tomorrow in {time.perf_counter() - started:.1f} s")
    await _vacuum(url, opts)
    print(f"1. {opts.future:,} future jobs (priority 100), load {loadavg()}", flush=True)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await _time_statement(conn, "claim, none due", "claim_jobs", _claim_params(), opts.rounds)
        if "promote_due_jobs" in QUERIES:
            await _time_statement(
                conn,
                "promote_due_jobs, none due",
                "promote_due_jobs",
                {"limit": 1000},
                opts.rounds,
            )
    past = now - timedelta(minutes=1)
    await _load(url, 1000, status="queued", priority=200, scheduled=past)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("ANALYZE soniq_jobs")
        await _time_statement(
            conn,
            "claim, 1,000 due at priority 200 (behind the future ones)",
            "claim_jobs",
            _claim_params(),
            opts.rounds,
        )
    await _load(url, 1000, status="queued", priority=50, scheduled=past)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("ANALYZE soniq_jobs")
        await _time_statement(
            conn,
            "claim, 1,000 due at priority 50 (ahead: reference)",
            "claim_jobs",
            _claim_params(),
            opts.rounds,
        )


async def _finished_jobs(url: str, opts: argparse.Namespace) -> None:
    await _setup(url)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    await _load(
        url,
        opts.finished,
        status="done",
        scheduled=now - timedelta(minutes=30),
        finished=now - timedelta(minutes=20),
    )
    await _load(url, 10_000, status="queued", scheduled=now - timedelta(minutes=1))
    await _load(url, 1_000, status="queued", scheduled=now + timedelta(hours=1))
    await _load(url, 100, status="processing", scheduled=now - timedelta(minutes=1))
    print(f"loaded {opts.finished + 11_100:,} jobs in {time.perf_counter() - started:.1f} s")
    await _vacuum(url, opts)
    print(f"2. {opts.finished:,} done jobs + 11,100 live ones, load {loadavg()}", flush=True)
    async with Soniq(database_url=url) as app:
        await _time_call("app.list_jobs(limit=20)", lambda: app.list_jobs(limit=20), opts.rounds)
        await _time_call(
            "app.list_jobs(status='queued', limit=20)",
            lambda: app.list_jobs(status="queued", limit=20),
            opts.rounds,
        )
        await _time_call(
            "app.list_jobs(limit=20, offset=1000)",
            lambda: app.list_jobs(limit=20, offset=1000),
            opts.rounds,
        )
        if "before" in signature(app.list_jobs).parameters:
            first = await app.list_jobs(limit=20)
            last = first[-1]["id"]
            await _time_call(
                "app.list_jobs(limit=20, before=<last id of page 1>)",
                lambda: app.list_jobs(limit=20, before=last),
                opts.rounds,  # type: ignore[call-arg]
            )
        await _time_call("app.status()", app.status, opts.rounds)
        await _time_call("app.get_queue_stats()", app.get_queue_stats, opts.rounds)
    _time_cli(
        "soniq jobs list --limit 20 (whole process)",
        ["jobs", "list", "--limit", "20"],
        url,
        opts.rounds,
    )
    _time_cli("soniq status (whole process)", ["status"], url, opts.rounds)
    _time_cli("soniq --help (interpreter start-up, for reference)", ["--help"], url, opts.rounds)
    with contextlib.suppress(Exception):
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT pg_size_pretty(pg_total_relation_size('soniq_jobs'))")
            size = await cur.fetchone()
            print(f"  soniq_jobs with indexes: {size[0] if size else '?'}")
    print(json.dumps({"load": loadavg()}))


if __name__ == "__main__":
    sys.exit(main())
